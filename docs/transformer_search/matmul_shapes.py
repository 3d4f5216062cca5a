"""The MLP sub-block's two matmuls alone (forward and backward, no LayerNorm, no bias) at batch 32 x 128
positions, d_model 128: on the (batch, time, d) tensors as Keras' Dense runs them (a batched matmul against
the shared kernel) and reshaped to one (batch * time, d) matmul, with and without XLA.

    python docs/transformer_search/matmul_shapes.py
"""

import time

import tensorflow as tf

BATCH, TIME, WIDTH = 32, 128, 128


def main():
    x = tf.random.normal((BATCH, TIME, WIDTH))
    hidden = tf.Variable(tf.random.normal((WIDTH, 4 * WIDTH)) * 0.05)
    output = tf.Variable(tf.random.normal((4 * WIDTH, WIDTH)) * 0.05)
    shapes = {"(batch, time, d) batched": lambda x: tf.matmul(tf.nn.gelu(tf.matmul(x, hidden)), output),
              "(batch * time, d) one matmul": lambda x: tf.reshape(
                  tf.matmul(tf.nn.gelu(tf.matmul(tf.reshape(x, (-1, WIDTH)), hidden)), output), x.shape)}
    for name, mlp in shapes.items():
        for jit in (False, True):
            @tf.function(jit_compile=jit)
            def forward_backward(mlp=mlp):
                with tf.GradientTape() as tape:
                    tape.watch(x)
                    loss = tf.reduce_sum(mlp(x))
                return tape.gradient(loss, [x, hidden, output])

            forward_backward()
            started = time.perf_counter()
            for _ in range(20):
                [gradient.numpy() for gradient in forward_backward()]
            print(f"{name:30s} jit {jit!s:5s} {(time.perf_counter() - started) / 20 * 1e3:6.2f} ms")


if __name__ == "__main__":
    main()
