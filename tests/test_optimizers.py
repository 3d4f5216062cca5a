"""training/optimizers.py: the fused updates follow Keras' Adam, AdamW and moving average."""

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from conftest import REPO
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
    assert optimizers.adam_class({"fused_optimizer": False}) is keras.optimizers.Adam
    assert optimizers.adam_class({"fused_optimizer": False}, optimizers.FusedAdamW) is keras.optimizers.AdamW
    # This Keras passes the guard's check: the fused ones are used.
    assert optimizers.adam_class({}) is optimizers.FusedAdam
    assert optimizers.adam_class({}, optimizers.FusedAdamW) is optimizers.FusedAdamW


class AdamKeepingItsVelocitiesElsewhere(keras.optimizers.Adam):
    """Adam as a Keras that renamed its list of second moments would have it."""

    def build(self, variables):
        super().build(variables)
        self._second_moments = self._velocities
        del self._velocities


class FusedAdamOfThatKeras(optimizers.FusedAdamUpdate, AdamKeepingItsVelocitiesElsewhere):
    pass


class FusedAdamStepTooLong(optimizers.FusedAdam):
    """A fused update gone wrong: twice Keras' step."""

    def _distributed_tf_update_step(self, distribution, grads_and_vars, learning_rate):
        super()._distributed_tf_update_step(distribution, grads_and_vars, 2 * learning_rate)


@pytest.mark.parametrize("fused_class, keras_class, why", [
    (FusedAdamOfThatKeras, AdamKeepingItsVelocitiesElsewhere, "AdamKeepingItsVelocitiesElsewhere has no _velocities"),
    (FusedAdamStepTooLong, keras.optimizers.Adam, "FusedAdamStepTooLong differs from Keras 3."),
])
def test_a_fused_update_this_keras_cannot_take_gives_keras_own_adam_and_one_line(fused_class, keras_class, why,
                                                                                   capsys):
    capsys.readouterr()
    assert optimizers.adam_class({}, fused_class) is keras_class
    assert optimizers.adam_class({}, fused_class) is keras_class  # asked again (the GAN's 2 optimizers): said once
    said = capsys.readouterr().err.splitlines()
    assert len(said) == 1, said
    assert said[0].startswith(f"warning: --fused-optimizer: Keras' own {keras_class.__name__} is used instead, as ")
    assert why in said[0], said[0]


class AdamWSummingUnderAnotherName(keras.optimizers.AdamW):
    """AdamW as a Keras that renamed _all_reduce_sum_gradients would have it: that name is no longer called."""

    def _backend_update_step(self, grads, trainable_variables, learning_rate):
        for gradient, variable in zip(grads, trainable_variables):
            self.update_step(gradient, variable, learning_rate)


def test_where_keras_sums_gradients_elsewhere_the_train_step_clips_them_and_says_so(capsys):
    capsys.readouterr()
    assert optimizers.summed_clipping_usable(keras.optimizers.AdamW)  # this Keras: the optimizer clips
    assert not optimizers.summed_clipping_usable(AdamWSummingUnderAnotherName)
    assert not optimizers.summed_clipping_usable(AdamWSummingUnderAnotherName)
    said = capsys.readouterr().err.splitlines()
    assert len(said) == 1 and said[0].startswith("warning: --clip-norm: the train step clips the gradients, which "
                                                 "then cross replicas twice, as "), said
    assert "AdamWSummingUnderAnotherName does not clip there" in said[0]


@pytest.fixture(scope="module")
def two_replica_text_steps():
    """tests/two_replica_text_steps.py's report: 3 steps of the tiny LSTM on 2 CPU replicas, three ways."""
    result = subprocess.run([sys.executable, os.path.join(REPO, "tests", "two_replica_text_steps.py")],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.splitlines()[-1])


def test_clipping_in_the_optimizer_sums_each_gradient_over_replicas_once_and_trains_as_the_step_s(
        two_replica_text_steps):
    """The optimizer clips the gradients it has summed: one sum of every gradient value per step, where the
    train step's clipping (the fallback) needs two; the weights end the same up to summation order."""
    report = two_replica_text_steps
    assert report["replicas"] == 2
    assert report["summed_values"] == {"fused": report["parameters"], "keras": report["parameters"],
                                       "step_clip": 2 * report["parameters"]}
    assert_apart_only_by_rounding(report["apart_from_fused"]["step_clip"])


def test_training_with_the_fused_optimizer_on_and_off_ends_with_the_same_weights(two_replica_text_steps):
    """The tiny LSTM (AdamW, clipping every step) trained with the fused update and with --no-fused-optimizer
    (Keras' own update): the same weights up to float32 rounding."""
    assert_apart_only_by_rounding(two_replica_text_steps["apart_from_fused"]["keras"])


def assert_apart_only_by_rounding(apart, learning_rate=0.01, steps=3):
    """conftest's tolerance for runs that differ only in float32 rounding (assert_equal_up_to_summation_order):
    Adam's division by sqrt(v) turns rounding into up to 2 x learning rate x steps where a gradient is near 0,
    so nearly every weight (99%) within 1e-5, and none further apart than that bound."""
    assert apart["share_beyond_1e-5"] < 1e-2 and apart["largest"] < 2 * learning_rate * steps, apart
