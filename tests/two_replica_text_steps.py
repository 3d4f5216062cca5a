"""Run by tests/test_optimizers.py in a process of its own, as the CPU must be split before TensorFlow starts:
3 steps of the tiny LSTM (--clip-norm clipping every step) on 2 CPU replicas, three ways:

    fused      the fused optimizer, clipping the gradients once it has summed them over replicas
    keras      --no-fused-optimizer: Keras' own update, the same clipping
    step_clip  the fused optimizer without clipping: the train step clips (the fallback), summing them first

Prints, as JSON, the model's parameter count, the gradient values each way summed over replicas, and how far
the weights of `keras` and `step_clip` end from those of `fused` (how_far).
"""

import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from training import distribute  # noqa: E402

distribute.configure_devices(2)

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from conftest import TINY_LSTM  # noqa: E402
from datasets import text  # noqa: E402
from training import cli, loop, optimizers  # noqa: E402
from training.lstm import LstmTask  # noqa: E402


class CountingReduction(tf.distribute.ReductionToOneDevice):
    """train.py's cross-device sum on CPU replicas, counting the values its batch_reduce sums."""

    def __init__(self):
        super().__init__()
        self.summed_values = 0

    def batch_reduce(self, reduce_op, value_destination_pairs, options=None):
        self.summed_values += sum(value.values[0].shape.num_elements() for value, _ in value_destination_pairs)
        return super().batch_reduce(reduce_op, value_destination_pairs, options)


def train_three_steps(way, data):
    """(trainable weights, gradient values summed over replicas) after 3 steps trained `way`."""
    settings = vars(cli.parse_args(TINY_LSTM + (["--no-fused-optimizer"] if way == "keras" else [])))
    reduction = CountingReduction()
    strategy = tf.distribute.MirroredStrategy([device.name for device in tf.config.list_logical_devices("CPU")],
                                              cross_device_ops=reduction)
    distribute.make_deterministic(settings["seed"])
    task = LstmTask(settings, data, strategy)
    # This Keras passes both of the optimizers' checks: the fused update unless asked not to, clipping inside.
    assert isinstance(task.optimizer, optimizers.FusedAdamW) == (way != "keras")
    assert optimizers.clips_summed_gradients(task.optimizer)
    if way == "step_clip":  # as with a Keras whose optimizer cannot clip the summed gradients
        with strategy.scope():
            task.optimizer = optimizers.build({**settings, "clip_norm": 0.0}, task.steps_per_epoch, False)
            task.optimizer.build(task.model.trainable_variables)
    run_steps = loop.make_multi_step(task, strategy, jit=False, trackers=loop.make_trackers(task, strategy))
    run_steps(iter(strategy.experimental_distribute_dataset(task.train_dataset(epoch=0))), tf.constant(3))
    return [weight.numpy() for weight in task.model.trainable_weights], reduction.summed_values


def how_far(weights, reference):
    """The largest absolute difference of two runs' weights, and the share of weights more than 1e-5 apart."""
    differences = np.concatenate([np.abs(a - b).ravel() for a, b in zip(weights, reference)])
    return {"largest": float(differences.max()), "share_beyond_1e-5": float(np.mean(differences > 1e-5))}


data = text.load("pydoc")
runs = {way: train_three_steps(way, data) for way in ("fused", "keras", "step_clip")}
fused_weights = runs["fused"][0]
print(json.dumps({
    "replicas": len(tf.config.list_logical_devices("CPU")),
    "parameters": int(sum(weight.size for weight in fused_weights)),
    "summed_values": {way: summed for way, (_, summed) in runs.items()},
    "apart_from_fused": {way: how_far(weights, fused_weights) for way, (weights, _) in runs.items() if way != "fused"},
}))
