"""Devices, the tf.distribute strategy and numeric precision, set up once before any model exists.

The same command runs on a laptop CPU, one GPU, several GPUs (MirroredStrategy) and several
machines (MultiWorkerMirroredStrategy, from TF_CONFIG). `--cpu-replicas N` splits the CPU into
N logical devices so the mirrored path runs, and is tested, on a machine without GPUs.
"""

import datetime
import os
import platform

import keras
import tensorflow as tf

from training import cpus


class SetupError(Exception):
    """A device or strategy request this machine cannot honour."""


def configure_devices(cpu_replicas):
    """Splits the CPU into `cpu_replicas` logical devices; must run before TensorFlow initialises."""
    if cpu_replicas > 1:
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration() for _ in range(cpu_replicas)])


def configure_threads(intra_op_threads):
    """With intra_op_threads > 0, each op runs on that many threads and usable_cpus // intra_op_threads ops
    (at least 2) run at once, so independent ops share the cores out instead of queueing for all of them;
    0 keeps TensorFlow's default. Must run before TensorFlow initialises; in a process where it already
    runs (a notebook, the tests) the settings stay as they are. Returns the settings in effect."""
    if intra_op_threads > 0:
        try:
            tf.config.threading.set_intra_op_parallelism_threads(intra_op_threads)
            tf.config.threading.set_inter_op_parallelism_threads(max(2, cpus.usable_cpus() // intra_op_threads))
        except RuntimeError:
            pass
    # 0 means TensorFlow's default: every core.
    return {"intra_op": tf.config.threading.get_intra_op_parallelism_threads(),
            "inter_op": tf.config.threading.get_inter_op_parallelism_threads()}


def choose_strategy(name, cpu_replicas):
    """Returns (strategy, resolved_name) for --strategy `name` ("auto" picks from the machine)."""
    gpus = tf.config.list_physical_devices("GPU")
    if name == "auto":
        if "TF_CONFIG" in os.environ:
            name = "multi-worker"
        elif len(gpus) > 1 or cpu_replicas > 1:
            name = "mirrored"
        else:
            name = "default"
    if name == "default":
        if cpu_replicas > 1:
            raise SetupError(f"--cpu-replicas {cpu_replicas} needs --strategy mirrored (or auto)")
        return tf.distribute.get_strategy(), name
    if name == "mirrored":
        if gpus and cpu_replicas > 1:
            raise SetupError("--cpu-replicas is for machines without GPUs; this one has "
                             f"{len(gpus)} GPU(s), which the mirrored strategy uses")
        if gpus:
            devices = [device.name for device in tf.config.list_logical_devices("GPU")]
        else:
            devices = [device.name for device in tf.config.list_logical_devices("CPU")]
        # On CPU devices the all-reduce is a sum on one device: exact, and the same every run.
        cross_device_ops = None if gpus else tf.distribute.ReductionToOneDevice()
        return tf.distribute.MirroredStrategy(devices, cross_device_ops=cross_device_ops), name
    assert name == "multi-worker", name  # the choices of --strategy
    return tf.distribute.MultiWorkerMirroredStrategy(), name


def machine():
    """The machine a run trained on, as config.json records it: its CPU, the CPUs usable, its GPUs."""
    return {"platform": platform.platform(), "cpu_model": cpus.cpu_model(), "cpus": cpus.usable_cpus(),
            "gpus": len(tf.config.list_physical_devices("GPU"))}


def describe_machine():
    """The machine and software a measurement was made with, and the date: for reproduce.py's and the
    bench's reports."""
    return {**machine(), "processor": platform.machine(), "python": platform.python_version(),
            "tensorflow": tf.__version__, "keras": keras.__version__, "date": datetime.date.today().isoformat()}


def is_chief(strategy):
    """True for the one process that writes the run directory (always, outside multi-worker)."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.cluster_spec().as_dict():
        return True
    task_type, task_id = resolver.task_type, resolver.task_id
    return task_type == "chief" or (task_type == "worker" and task_id == 0
                                    and "chief" not in resolver.cluster_spec().as_dict())


def configure_precision(mixed_precision):
    """Sets Keras' global dtype policy; mixed_float16 only where a GPU makes it pay."""
    if not mixed_precision:
        keras.mixed_precision.set_global_policy("float32")
        return "float32"
    if not tf.config.list_physical_devices("GPU"):
        raise SetupError("--mixed-precision needs a GPU (float16 on this CPU is slower, not faster); "
                         "drop the flag to train in float32")
    keras.mixed_precision.set_global_policy("mixed_float16")
    return "mixed_float16"


def make_deterministic(seed):
    """Seeds Python, NumPy, TensorFlow and Keras, and makes TensorFlow's ops deterministic."""
    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()
