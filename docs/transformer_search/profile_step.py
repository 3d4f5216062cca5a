"""Where a Transformer training step's time goes on this CPU, and training characters/s of candidate sizes.

    flock /work/cpu.lock python docs/transformer_search/profile_step.py [--steps 30]

Part timings: one block's attention sub-block (LayerNorm, Q/K/V projections, softmax(QK^T/sqrt(d))V, W_O),
its MLP sub-block, and the output layer with the loss, each forward and backward on (batch, context, d_model)
alone. Throughput: train.py's own step (training.loop.make_multi_step on TransformerTask), pydoc.
"""

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))  # the repository

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

from datasets import text  # noqa: E402
from training import loop  # noqa: E402
from training.cli import parse_args  # noqa: E402
from training.transformer import TransformerTask  # noqa: E402


def seconds_per_call(function, repeats):
    function()
    started = time.perf_counter()
    for _ in range(repeats):
        function()
    return (time.perf_counter() - started) / repeats


def part_times(batch, context, d_model, heads, vocab, jit, repeats=20):
    """ms of forward + backward of each part on one batch."""
    x = tf.random.normal((batch, context, d_model))
    targets = tf.zeros((batch, context), tf.int32)
    norm = keras.layers.LayerNormalization()
    attention = keras.layers.MultiHeadAttention(heads, d_model // heads)
    hidden, output = keras.layers.Dense(4 * d_model, activation="gelu"), keras.layers.Dense(d_model)
    final = keras.layers.Dense(vocab)
    parts = {"attention sub-block": lambda x: attention(norm(x), norm(x), use_causal_mask=True),
             "MLP sub-block": lambda x: output(hidden(norm(x))),
             "output layer + loss": lambda x: tf.nn.sparse_softmax_cross_entropy_with_logits(targets, final(x))}
    times = {}
    for name, part in parts.items():
        part(x)  # builds the layers

        @tf.function(jit_compile=jit)
        def forward_backward(part=part):
            with tf.GradientTape() as tape:
                tape.watch(x)
                loss = tf.reduce_sum(part(x))
            return tape.gradient(loss, [x] + [v for layer in (norm, attention, hidden, output, final)
                                              for v in layer.trainable_variables])

        times[name] = 1e3 * seconds_per_call(lambda: [g.numpy() for g in forward_backward() if g is not None],
                                             repeats)
    return times


def chars_per_second(flags, data, steps):
    settings = vars(parse_args(["transformer", "--corpus", "pydoc", *flags]))
    strategy = tf.distribute.get_strategy()
    task = TransformerTask(settings, data, strategy)
    run_steps = loop.make_multi_step(task, strategy, jit=settings["jit"], trackers=loop.make_trackers(task, strategy))
    iterator = iter(task.train_dataset(0).repeat())
    run_steps(iterator, tf.constant(4))["loss"].numpy()  # traces
    started = time.perf_counter()
    run_steps(iterator, tf.constant(steps))["loss"].numpy()
    seconds = time.perf_counter() - started
    return steps * task.samples_per_step / seconds, task.model.count_params()


CANDIDATES = [
    [], ["--jit"], ["--jit", "--batch-size", "64"], ["--jit", "--context", "64", "--batch-size", "64"],
    ["--jit", "--d-model", "192", "--heads", "6"], ["--jit", "--d-model", "256", "--heads", "8"],
    ["--jit", "--layers", "6"], ["--jit", "--d-model", "192", "--heads", "6", "--layers", "3"],
]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=30)
    args = parser.parse_args()
    data = text.load("pydoc")
    for jit in (False, True):
        for name, ms in part_times(32, 128, 128, 4, len(data.vocabulary), jit).items():
            print(f"batch 32 x 128, d_model 128, jit {jit}: {name:22s} {ms:7.2f} ms", flush=True)
    for flags in CANDIDATES:
        rate, params = chars_per_second(flags, data, args.steps)
        print(f"{' '.join(flags) or '(defaults)':55s} {params:>9,} parameters {rate:9,.0f} chars/s", flush=True)


if __name__ == "__main__":
    main()
