"""training/optimizers.py: the fused updates follow Keras' Adam, AdamW and moving average."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from training import optimizers


def train_a_few_steps(optimizer_class, steps=20, **kwargs):
    """The weights and moving averages after `steps` updates from fixed weights and gradients."""
    rng = np.random.default_rng(0)
    variables = [keras.Variable(rng.standard_normal(shape).astype("float32")) for shape in ((30, 20), (20,))]
    gradients = [[tf.constant(rng.standard_normal(v.shape).astype("float32")) for v in variables]
                 for _ in range(steps)]
    optimizer = optimizer_class(**kwargs)
    optimizer.build(variables)

    @tf.function
    def apply(step_gradients):
        optimizer.apply_gradients(zip(step_gradients, variables))

    for step_gradients in gradients:
        apply(step_gradients)
    averages = optimizer._model_variables_moving_average if optimizer.use_ema else []
    return [v.numpy() for v in variables], [a.numpy() for a in averages]


@pytest.mark.parametrize("fused, reference, kwargs", [
    (optimizers.FusedAdam, keras.optimizers.Adam, {"learning_rate": 1e-2, "beta_1": 0.5}),
    (optimizers.FusedAdam, keras.optimizers.Adam, {"learning_rate": 1e-2, "use_ema": True, "ema_momentum": 0.9}),
    (optimizers.FusedAdamW, keras.optimizers.AdamW, {"learning_rate": 1e-2, "weight_decay": 0.5}),
    # a rate that changes every step, computed once per step for all variables
    (optimizers.FusedAdamW, keras.optimizers.AdamW,
     {"learning_rate": keras.optimizers.schedules.CosineDecay(1e-2, decay_steps=10), "weight_decay": 0.5}),
])
def test_fused_updates_equal_keras_updates(fused, reference, kwargs):
    got_weights, got_averages = train_a_few_steps(fused, **kwargs)
    expected_weights, expected_averages = train_a_few_steps(reference, **kwargs)
    # The same formula, one kernel instead of several ops: equal up to float32 rounding.
    for got, expected in zip(got_weights + got_averages, expected_weights + expected_averages):
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    # and the weights did move, so the comparison means something
    assert not np.allclose(got_weights[0], train_a_few_steps(fused, steps=0, **kwargs)[0][0])


def test_no_fused_optimizer_flag_gives_keras_classes():
    assert optimizers.adam_class({"fused_optimizer": False}) == (keras.optimizers.Adam, keras.optimizers.AdamW)
    assert optimizers.adam_class({}) == (optimizers.FusedAdam, optimizers.FusedAdamW)


def test_gan_optimizers_follow_the_lr_schedule():
    """train.py gan --lr-schedule cosine: D's and G's Adam decay from --learning-rate to 0 over
    --lr-decay-epochs, counted in training steps; the default stays constant."""
    from datasets import mnist
    from training import cli
    from training.gan import GanTask

    data = mnist.load("mnist-5k")
    flags = ["gan", "--data", "mnist-5k", "--batch-size", "64", "--steps-per-epoch", "5", "--learning-rate", "1e-3"]
    constant = GanTask(vars(cli.parse_args(flags)), data, tf.distribute.get_strategy())
    for optimizer in (constant.g_optimizer, constant.d_optimizer):
        optimizer.iterations.assign(1000)
        assert float(optimizer.learning_rate) == np.float32(1e-3)
    settings = vars(cli.parse_args(flags + ["--lr-schedule", "cosine", "--lr-decay-epochs", "2"]))
    task = GanTask(settings, data, tf.distribute.get_strategy())
    for optimizer in (task.g_optimizer, task.d_optimizer):
        rates = []
        for step in (0, 5, 10, 20):  # 5 steps per epoch: the start, halfway, the end, past it
            optimizer.iterations.assign(step)
            rates.append(float(optimizer.learning_rate))
        np.testing.assert_allclose(rates, [1e-3, 0.5e-3, 0, 0], atol=1e-9)


@pytest.mark.parametrize("schedule, end", [("cosine", 0.0), ("constant", 1e-3)])
def test_warm_up_rises_linearly_then_follows_the_schedule(schedule, end):
    settings = {"learning_rate": 1e-3, "lr_schedule": schedule, "lr_decay_epochs": 10, "warmup_steps": 20}
    rate = optimizers.learning_rate(settings, steps_per_epoch=10)  # 100 steps in all
    at = lambda step: float(rate(step))  # noqa: E731
    assert at(0) == 0 and at(10) == pytest.approx(5e-4) and at(20) == pytest.approx(1e-3)
    assert at(60) == pytest.approx(5e-4 if schedule == "cosine" else 1e-3, rel=1e-4)  # halfway through the decay
    assert at(100) == pytest.approx(end, abs=1e-9)
