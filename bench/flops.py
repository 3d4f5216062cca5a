"""Counted floating-point work of a training step, and the machine's float32 matmul peak.

FLOPs are counted, not estimated from parameter counts: the step is traced once at the benchmark's
batch size and every matrix multiplication and convolution in the resulting graph (forward, backward,
the R1 penalty's double backward, the optimizer: all of it) is counted as 2 x the multiply-adds its
shapes imply (an Einsum's: every output element times the sizes of the indices it sums over).
Element-wise work (activations, Adam's update, BatchNorm) is left out, as in the usual "model FLOPs"
utilisation measure: it is not what a matmul peak can be compared with. A while loop's
body (the LSTM's loop over time steps, and its gradient loop) counts once per iteration.
"""

import math
import time

import numpy as np
import tensorflow as tf

WHILE_OPS = ("While", "StatelessWhile")
CALL_OPS = ("PartitionedCall", "StatefulPartitionedCall")
HOW_COUNTED = ("2 x multiply-adds of every MatMul, BatchMatMul, Einsum and Conv2D (and their gradient ops) in the "
               "traced training step at the benchmark's batch, loop bodies once per time step; divided "
               "by the samples per step; element-wise ops not counted")


def _dims(tensor):
    shape = tensor.shape.as_list()
    if any(size is None for size in shape):
        raise ValueError(f"{tensor.name} has an unknown dimension {shape}: trace with a fixed batch size")
    return shape


def op_flops(op):
    """2 x multiply-adds of one matmul or convolution op; 0 for any other op."""
    if op.type == "MatMul":
        a, b = _dims(op.inputs[0]), _dims(op.inputs[1])
        rows, inner = (a[1], a[0]) if op.get_attr("transpose_a") else (a[0], a[1])
        columns = b[0] if op.get_attr("transpose_b") else b[1]
        return 2 * rows * inner * columns
    if op.type.startswith("BatchMatMul"):
        a, output = _dims(op.inputs[0]), _dims(op.outputs[0])
        inner = a[-2] if op.get_attr("adj_x") else a[-1]
        return 2 * math.prod(output) * inner
    if op.type == "Einsum" and len(op.inputs) == 2:
        # Each output element sums products over the indices that appear in the inputs but not the output.
        terms, output_term = op.get_attr("equation").decode().split("->")
        sizes = {}
        for term, tensor in zip(terms.split(","), op.inputs):
            sizes.update(_index_sizes(term, _dims(tensor)))
        summed = set(sizes) - set(output_term)
        return 2 * math.prod(_dims(op.outputs[0])) * math.prod(sizes[index] for index in summed)
    if op.type in ("Conv2D", "Conv2DBackpropInput", "Conv2DBackpropFilter"):
        # Each is one convolution of the forward pass's size: every element of the forward output
        # (the op's output, or its out_backprop input) takes kernel_h * kernel_w * in_channels multiply-adds.
        if op.type == "Conv2D":
            kernel, forward_output = _dims(op.inputs[1]), _dims(op.outputs[0])
        elif op.type == "Conv2DBackpropInput":
            kernel, forward_output = _dims(op.inputs[1]), _dims(op.inputs[2])
        else:
            input_channels = _dims(op.inputs[0])[-1]
            kernel_size = tf.get_static_value(op.inputs[1])
            kernel, forward_output = [kernel_size[0], kernel_size[1], input_channels], _dims(op.inputs[2])
        return 2 * math.prod(forward_output) * kernel[0] * kernel[1] * kernel[2]
    return 0


def _index_sizes(term, shape):
    """{einsum index letter: its size} of one operand; an ellipsis stands for the dimensions between."""
    head, _, tail = term.partition("...")
    return {**dict(zip(head, shape)), **dict(zip(tail, shape[len(shape) - len(tail):]))}


def graph_flops(graph, loop_iterations=None):
    """FLOPs of every matmul and convolution in `graph`, nested function calls and loop bodies included."""
    total = 0
    for op in graph.get_operations():
        total += op_flops(op)
        if op.type in WHILE_OPS:
            if loop_iterations is None:
                raise ValueError("the step has a while loop: give loop_iterations (its trip count)")
            total += loop_iterations * graph_flops(graph._get_function(op.get_attr("body").name).graph,
                                                   loop_iterations)
        elif op.type in CALL_OPS:
            total += graph_flops(graph._get_function(op.get_attr("f").name).graph, loop_iterations)
    return total


def step_flops(step, element_spec, loop_iterations=None):
    """Counted FLOPs of one call of `step(inputs)` on a batch of `element_spec` (fixed shapes: full batches)."""
    concrete = tf.function(step).get_concrete_function(element_spec)
    return graph_flops(concrete.graph, loop_iterations)


def matmul_peak(size=2048, repeats=10):
    """The best float32 GFLOP/s of a size x size matmul: {"numpy": ..., "tensorflow": ..., "peak": ...}."""
    rng = np.random.default_rng(0)
    a, b = (rng.standard_normal((size, size), dtype=np.float32) for _ in range(2))
    ta, tb = tf.constant(a), tf.constant(b)
    tf_matmul = tf.function(lambda: tf.matmul(ta, tb))
    rates = {}
    for name, run in (("numpy", lambda: a @ b), ("tensorflow", lambda: tf_matmul().numpy())):
        run()  # warm-up: thread pools, tracing
        best = float("inf")
        for _ in range(repeats):
            started = time.perf_counter()
            run()
            best = min(best, time.perf_counter() - started)
        rates[name] = round(2 * size ** 3 / best / 1e9, 1)
    rates["peak"] = max(rates["numpy"], rates["tensorflow"])
    return rates
