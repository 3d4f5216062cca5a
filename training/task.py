"""The task: what a model gives the shared Trainer (training/loop.py) and train.py, written down once.

A task owns one model's networks, optimizers, input pipelines and per-replica steps; the Trainer owns the
rest (the distributed loop, checkpoints, history, signals, logs). To add a model, write a Task subclass in
training/<model>.py with the abstract methods below (the others have defaults), name it in TASKS, and give
it its flags in training/cli.py. training/vae.py is the smallest complete one.
"""

import abc
import importlib

# Each model's task, by train.py's subcommand; imported when asked for, as it loads TensorFlow.
TASKS = {"gan": "training.gan:GanTask", "vae": "training.vae:VaeTask", "lstm": "training.lstm:LstmTask",
         "transformer": "training.transformer:TransformerTask"}


def task_class(model):
    """The Task subclass that trains `model` (a key of TASKS)."""
    module_name, class_name = TASKS[model].split(":")
    return getattr(importlib.import_module(module_name), class_name)


class Task(abc.ABC):
    """One model's training, as the Trainer runs it under any tf.distribute strategy.

    __init__(settings, data, strategy, mixed_precision=False) builds the models and optimizers inside
    strategy.scope() (and builds the optimizers there: Keras makes their slots lazily, which fails inside a
    replica function), and sets the two numbers the Trainer reads:
        global_batch_size   examples per global step, split evenly over the replicas
        steps_per_epoch     global steps per epoch
    settings are train.py's resolved flags (a dict), data what datasets.load_for returned.
    """

    name: str  # train.py's subcommand for this model ("gan"), as in TASKS
    metric_names: tuple  # the keys of train_step's result, each becoming a column of history.csv
    metric_labels = {}  # a shorter or clearer name for the progress bar and figures, e.g. {"d_real": "D(x)"}
    global_batch_size: int
    steps_per_epoch: int

    @property
    def samples_per_step(self):
        """What samples_per_sec counts in one global step: the batch's examples; the text models' characters."""
        return self.global_batch_size

    @abc.abstractmethod
    def checkpoint_items(self):
        """{name: trackable} saved in every checkpoint: the models and optimizers (Keras models' weights also
        make the run's weights fingerprint)."""

    @abc.abstractmethod
    def train_dataset(self, epoch):
        """The epoch's global batches, a tf.data.Dataset of steps_per_epoch elements; keyed by (seed, epoch)
        and (seed, step), so a resumed run that skips the batches already done sees the same ones."""

    @abc.abstractmethod
    def train_step(self, inputs):
        """One optimizer step on this replica's share of a global batch; returns {metric name: this replica's
        share of the global-batch mean} (training/loop.py: global_mean), which the Trainer sums over replicas."""

    def held_out_dataset(self):
        """Batches of the held-out split, measured by held_out_step after every epoch (test_* columns);
        None (the default) when the task has none."""
        return None

    def held_out_step(self, inputs):
        """{metric name: sum over this replica's held-out rows} plus their "count"; the Trainer divides the
        sums, added over replicas and batches, by the count. Needed when held_out_dataset gives batches."""
        raise NotImplementedError(f"{type(self).__name__} has a held-out dataset but no held_out_step")

    def end_epoch(self, epoch, history, run_dir):
        """After epoch `epoch` (from 1) is checkpointed, on the chief, inside TensorBoard's writer: figures,
        samples, snapshots. history holds the rows of history.csv so far. By default nothing."""

    @abc.abstractmethod
    def export(self, run_dir):
        """After the last epoch, on the chief: the files evaluate.py and generate.py read (e.g. model.keras)."""

    def check_resume(self, run_dir):
        """Before a resumed run restores its checkpoint: raises ValueError if the data no longer fits the run
        (the LSTM's vocabulary). By default any data does."""
