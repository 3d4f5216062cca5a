"""Training the character-level text generators (the LSTM here; the Transformer reuses it): every character
predicts the next one.

A training sequence is seq_len + 1 consecutive characters; the model reads the first seq_len and is
scored at every position on the character that follows (teacher forcing):

    window   T  h  e     c  a  t
    inputs   T  h  e     c  a          (window[:-1])
    targets  h  e     c  a  t          (window[1:])

The loss is the cross-entropy -log p(next char), in nats, averaged over positions and sequences;
divided by ln 2 it is bits per character (the held-out figure of merit), and exp of it is perplexity.

A corpus of one document a line (one_per_line: "\n" poem "\n" poem ... "\n") is read from line starts
instead: a window starts at the line end before each document, so its first input is that "\n" (the
prompt a poem is generated from) and its model starts from a zero state there, as generation does:

    ids      \n 床 前 明 月 光 ， ... 乡 。 \n 白 日 依 山 尽 ， ... 楼 。 \n 春 眠 ...
    window   \n 床 前 ... 乡 。 \n 白 日 ... 楼 。 \n 春 眠       (seq_len + 1 ids from a line end)
    next     \n 春 眠 ...                                        (from the line end of the last whole one)

Training windows are packed: each holds as many whole documents as fit, the rest of it the start of the next
one, where the next window starts; inside a document longer than a window, windows go on every seq_len.
Every character is a target once, or twice where a window ends inside a document. Held out, each document
is read on its own window: the targets after its closing "\n" weigh 0, so every held-out character counts once.
"""

import math
import os

import keras
import numpy as np
import tensorflow as tf

from datasets import pipeline
from datasets.text import LINE_END, CorpusError, Vocabulary
from models import fused_lstm
from models import lstm as lstm_models
from models import pinyin
from training import figures, loop, optimizers
from training.sampled_softmax import SampledSoftmax
from training import run_dir as run_files
from training.task import Task

VOCAB = "vocab.json"
SAMPLE_LENGTH = 300  # characters written to samples.txt after every epoch
SAMPLE_TEMPERATURE = 0.5


def split_window(windows):
    """(batch, seq_len + 1) ids -> (inputs, targets), each (batch, seq_len), targets one character ahead."""
    return windows[:, :-1], windows[:, 1:]


def training_windows(ids, seq_len, offset, count):
    """`count` windows of seq_len + 1 ids starting at offset, offset + seq_len, ...: consecutive windows
    share one character (the last target of one is the first input of the next), so every position of
    the text is a target exactly once."""
    starts = offset + seq_len * np.arange(count)
    return ids[starts[:, np.newaxis] + np.arange(seq_len + 1)]


def windows_per_epoch(num_ids, seq_len):
    """How many windows fit after the largest per-epoch offset (seq_len - 1)."""
    return (num_ids - seq_len) // seq_len


def held_out_windows(ids, seq_len):
    """The held-out ids as windows of at most seq_len + 1 (each read from a zero state)."""
    length = min(seq_len, len(ids) - 1)
    return training_windows(ids, length, 0, (len(ids) - 1) // length)


def document_window_starts(ids, seq_len, line_end_id):
    """(starts, ends) of the windows of a one-document-a-line text: a window starts at the line end before
    each document and every seq_len further while the document goes on; ends[i] is the position of the
    line end closing window i's document (its last target)."""
    line_ends = np.flatnonzero(ids == line_end_id)
    before, closing = line_ends[:-1], line_ends[1:]
    # A document's targets are its characters and its closing line end: ceil(count / seq_len) windows.
    per_document = -(-(closing - before) // seq_len)
    index_in_document = np.arange(per_document.sum()) - np.repeat(np.cumsum(per_document) - per_document,
                                                                  per_document)
    return np.repeat(before, per_document) + seq_len * index_in_document, np.repeat(closing, per_document)


def packed_window_starts(ids, seq_len, line_end_id):
    """Starts of the packed training windows of a one-document-a-line text (module docstring): each at a
    line end, the next at the last line end the window reaches as a target, or seq_len further when it
    reaches none (a document longer than a window)."""
    line_ends = np.flatnonzero(ids == line_end_id)
    starts, start = [], line_ends[0]
    while start < line_ends[-1]:
        starts.append(start)
        reached = line_ends[np.searchsorted(line_ends, start + seq_len, side="right") - 1]
        start = reached if reached > start else start + seq_len
    return np.array(starts, dtype=np.int64)


def windows_at(ids, starts, seq_len):
    """(len(starts), seq_len + 1) ids from each start; a window running past the end goes on from the text's
    start (real text, as a window into the next document does)."""
    return ids.take(starts[:, np.newaxis] + np.arange(seq_len + 1), mode="wrap")


def held_out_examples(ids, seq_len, line_end_id=None):
    """(windows (n, seq_len + 1), weights (n, seq_len) of their targets): the held-out text in windows read
    from a zero state, every character a target once. With line_end_id (one document a line), a window per
    document (or per seq_len of it), the targets past the document's end weighing 0."""
    if line_end_id is None:
        windows = held_out_windows(ids, seq_len)
        return windows, np.ones((len(windows), windows.shape[1] - 1), np.float32)
    starts, ends = document_window_starts(ids, seq_len, line_end_id)
    target_positions = starts[:, np.newaxis] + 1 + np.arange(seq_len)
    return windows_at(ids, starts, seq_len), (target_positions <= ends[:, np.newaxis]).astype(np.float32)


def load_run_vocabulary(run_dir):
    """The Vocabulary a run recorded in RUN_DIR/vocab.json; raises RunDirError if it cannot be read."""
    path = os.path.join(run_dir, VOCAB)
    try:
        return Vocabulary.load(path)
    except (CorpusError, ValueError, OSError) as exc:  # JSON errors are ValueErrors, bad UTF-8 too
        raise run_files.RunDirError(f"{path} cannot be read: {exc}") from exc


def default_prompt(vocabulary):
    """A newline when the text has one (the start of a paragraph), else its first character."""
    return "\n" if "\n" in vocabulary.ids else vocabulary.chars[0]


def cross_entropy(targets, logits):
    """-log softmax(logits)[target] per position, in nats: (batch, time)."""
    return tf.nn.sparse_softmax_cross_entropy_with_logits(labels=targets, logits=logits)


class LstmTask(Task):
    """The text generator, its optimizer, the text pipelines and the per-replica steps.

    Another text model (training/transformer.py) reuses all of it, overriding the model's part: build_model,
    logits, make_sampler, and the two names below (evaluate.py reads them too, from the run's model).
    """

    name = "lstm"
    length_flag = "seq_len"  # the setting that is the training sequence's length
    curves_title = "LSTM training"  # the title of figures/losses.png
    metric_names = ("loss", "bits_per_char")
    metric_labels = {"bits_per_char": "bits/char"}

    def __init__(self, settings, data, strategy, mixed_precision=False):
        self.seed = settings["seed"]
        self.seq_len = settings[self.length_flag]
        length_flag = "--" + self.length_flag.replace("_", "-")
        self.global_batch_size = settings["batch_size"]
        self.vocabulary = data.vocabulary
        self.train_ids = data.train_ids
        self.held_out_ids = data.held_out_ids
        # One document a line: windows from line starts (module docstring); else consecutive windows.
        self.line_end_id = data.vocabulary.ids[LINE_END] if data.one_per_line else None
        if self.line_end_id is None:
            self.num_windows = windows_per_epoch(len(self.train_ids), self.seq_len)
        else:
            self.document_starts = packed_window_starts(self.train_ids, self.seq_len, self.line_end_id)
            self.num_windows = len(self.document_starts)
        if self.num_windows < 1:
            raise ValueError(f"the corpus has {len(self.train_ids)} training characters, fewer than one training "
                             f"sequence of {length_flag} {self.seq_len} needs ({2 * self.seq_len}, as its start "
                             f"moves every epoch); use a longer text or a smaller {length_flag}")
        if len(self.held_out_ids) < 2:
            raise ValueError("the corpus is too short to hold out its last 10% (at least 2 characters); "
                             "use a longer text")
        self.steps_per_epoch = pipeline.steps_per_epoch(self.num_windows, self.global_batch_size,
                                                        settings.get("steps_per_epoch"))
        if self.steps_per_epoch < 1:
            raise ValueError(f"--batch-size {self.global_batch_size} is more than the {self.num_windows} "
                             f"training sequences of {self.seq_len} characters; use a smaller --batch-size")
        self.clip_norm = settings["clip_norm"]
        # --sampled-softmax N: the step's loss scores each position against N drawn characters, not all of them.
        self.sampled_softmax = None
        if settings.get("sampled_softmax"):
            self.sampled_softmax = SampledSoftmax(self.train_ids, len(self.vocabulary), settings["sampled_softmax"],
                                                  self.seed)
            # Its loss is not the cross-entropy (it is the softmax over the drawn characters): said so in the bar.
            self.metric_labels = {"loss": "sampled loss", "bits_per_char": "sampled bits"}
        with strategy.scope():
            self.model = self.build_model(settings)
            self.optimizer = optimizers.build(settings, self.steps_per_epoch, mixed_precision)
            self.optimizer.build(self.model.trainable_variables)  # slots made in the strategy's scope
        # The sampled loss reads what the output layer reads: the model up to it, sharing its layers.
        self.feature_model = keras.Model(self.model.inputs, self.feature_tensor()) if self.sampled_softmax else None
        self.sampler = None

    @property
    def samples_per_step(self):
        """samples_per_sec counts characters: every position of every sequence is a prediction."""
        return self.global_batch_size * self.seq_len

    def build_model(self, settings):
        """The text generator of the settings: ids (batch, time) -> logits (batch, time, vocab)."""
        # The same layers computed faster on a CPU (models/fused_lstm.py), unless --no-fused-lstm or a GPU.
        self.use_fused_lstm = fused_lstm.use_fused_lstm(settings.get("fused_lstm", True))
        self.lstm_chains = settings.get("lstm_chains", fused_lstm.SEQUENCE_CHAINS)
        sounds = pinyin.sound_table(self.vocabulary.chars) if settings.get("pinyin") else None
        if sounds is not None and not sounds.any():
            raise ValueError(f"--pinyin: none of the corpus' {len(self.vocabulary)} characters has a pinyin reading; "
                             "it is for Chinese text")
        rhyme = None
        if settings.get("rhyme"):
            if sounds is None:
                raise ValueError("--rhyme reads the characters' sounds: use it with --pinyin")
            rhyme = self.rhyme_ids()
        return lstm_models.build_text_generator(len(self.vocabulary), settings["embedding_dim"], settings["units"],
                                                settings["layers"], settings["dropout"], sounds, rhyme)

    def rhyme_ids(self):
        """(ids of the sentence ends, ids of the line end) of the vocabulary, for the rhyme memory."""
        ends = [self.vocabulary.ids[char] for char in pinyin.SENTENCE_ENDS if char in self.vocabulary.ids]
        if not ends:
            raise ValueError(f"--rhyme: the corpus has none of the sentence ends {' '.join(pinyin.SENTENCE_ENDS)} "
                             "after which a rhyme is remembered")
        return ends, [self.vocabulary.ids[LINE_END]] if LINE_END in self.vocabulary.ids else []

    def logits(self, ids, training=False):
        """Next-character logits (batch, time, vocab) of ids (batch, time), as model(ids) gives them."""
        if self.use_fused_lstm:
            return fused_lstm.text_logits(self.model, ids, training=training, chains=self.lstm_chains)
        return self.model(ids, training=training)

    def feature_tensor(self):
        """The model's tensor that its output layer reads (for feature_model)."""
        return self.model.get_layer("logits").input

    def features(self, ids, training=False):
        """What the output layer reads, (batch, time, width), for ids (batch, time): logits() but its last layer."""
        if self.use_fused_lstm:
            return fused_lstm.text_features(self.model, ids, training=training, chains=self.lstm_chains)
        return self.feature_model(ids, training=training)

    def output_weights(self):
        """(kernel (vocab, width), bias (vocab,)) of the output layer: logits = features kernel^T + bias."""
        output = self.model.get_layer("logits")
        return tf.transpose(output.kernel), output.bias

    def training_loss(self, ids, targets):
        """The loss a step minimises at each position, (batch, time) nats: the cross-entropy of the full softmax,
        or with --sampled-softmax its estimate from drawn characters (training/sampled_softmax.py)."""
        if self.sampled_softmax is None:
            return cross_entropy(targets, self.logits(ids, training=True))
        kernel, bias = self.output_weights()
        return self.sampled_softmax.loss(self.features(ids, training=True), targets, kernel, bias,
                                         self.optimizer.iterations)

    @staticmethod
    def make_sampler(model):
        """The sampler (a models.sampling.Sampler) of a text generator of this task's kind: the one that
        writes samples.txt in training, and generate.py's and evaluate.py's of a finished run."""
        return lstm_models.TextSampler(model)

    def checkpoint_items(self):
        return {"model": self.model, "optimizer": self.optimizer}

    def check_resume(self, run_dir):
        """A resumed run must see the same characters with the same ids."""
        if load_run_vocabulary(run_dir) != self.vocabulary:
            raise ValueError(f"the corpus no longer has the vocabulary recorded in {run_dir}/{VOCAB}; "
                             "resume with the text the run was started on")

    def train_dataset(self, epoch):
        """Global batches of (inputs, targets) for one epoch: windows from an offset keyed by (seed, epoch),
        so over epochs every character is seen at every position of a window; shuffled by (seed, epoch)."""
        if self.line_end_id is None:
            offset = pipeline.epoch_seed(self.seed, epoch) % self.seq_len
            windows = training_windows(self.train_ids, self.seq_len, offset, self.num_windows)
        else:  # the same windows, from line starts, every epoch; only their order changes
            windows = windows_at(self.train_ids, self.document_starts, self.seq_len)
        examples = tf.data.Dataset.from_tensor_slices(windows)
        batches = pipeline.epoch_batches(examples, self.num_windows, self.global_batch_size, self.seed, epoch,
                                         self.steps_per_epoch)
        return batches.map(lambda step, batch: split_window(batch)).prefetch(tf.data.AUTOTUNE)

    def held_out_dataset(self):
        """The held-out text as (inputs, targets, weights of the targets) windows, each read from a zero state."""
        windows, weights = held_out_examples(self.held_out_ids, self.seq_len, self.line_end_id)
        dataset = tf.data.Dataset.from_tensor_slices((windows, weights)).batch(self.global_batch_size)
        return pipeline.shard_by_data(dataset.map(lambda batch, weights: (*split_window(batch), weights)))

    def train_step(self, inputs):
        """One optimizer step on this replica's sequences; the loss averages every position."""
        ids, targets = inputs
        with tf.GradientTape() as tape:
            per_sequence = tf.reduce_mean(self.training_loss(ids, targets), axis=1)
            loss = loop.global_mean(per_sequence, self.global_batch_size)
            scaled_loss = self.optimizer.scale_loss(loss)
        variables = self.model.trainable_variables
        gradients = tape.gradient(scaled_loss, variables)
        if self.sampled_softmax is not None:
            # The sampled loss gathers the drawn characters' rows of the output layer: their gradients come as
            # slices, the same draw once per replica. The norm the clipping measures is that of the slices' values,
            # so it would change with the number of replicas; summed into dense gradients it is the same on any.
            gradients = [tf.convert_to_tensor(gradient) if isinstance(gradient, tf.IndexedSlices) else gradient
                         for gradient in gradients]
        # The optimizer clips the gradients once it has summed them over replicas; where this Keras does not let
        # it (optimizers.build said so), the step clips them here, which sums them over replicas once more.
        if self.clip_norm and not optimizers.clips_summed_gradients(self.optimizer):
            gradients = loop.clip_by_global_norm(gradients, self.clip_norm, self.optimizer)
        loop.apply_gradients(self.optimizer, gradients, variables)
        return {"loss": loss, "bits_per_char": loss / math.log(2.0)}

    def held_out_step(self, inputs):
        """Sums over this replica's held-out characters of the loss (nats) and bits, and their count (the
        targets' weights: 0 for the padding after a document's end)."""
        ids, targets, weights = inputs
        if ids.shape[0] == 0:
            # This replica's share of a last, short batch is empty (its size is known when traced); Keras'
            # LSTM cannot be traced on no rows, and they add nothing.
            return {"loss": tf.constant(0.0), "bits_per_char": tf.constant(0.0), "count": tf.constant(0.0)}
        logits = self.logits(ids)
        nats = tf.reduce_sum(cross_entropy(targets, logits) * weights)
        return {"loss": nats, "bits_per_char": nats / math.log(2.0), "count": tf.reduce_sum(weights)}

    def sample(self, length, temperature, seed):
        """Text generated by the model as it is now, after the default prompt."""
        if self.sampler is None:
            self.sampler = self.make_sampler(self.model)
        prompt = default_prompt(self.vocabulary)
        ids = self.sampler.generate(self.vocabulary.encode(prompt), length, temperature, seed=seed)
        return prompt + self.vocabulary.decode(ids)

    def end_epoch(self, epoch, history, run_dir):
        """Saves vocab.json (once), appends a sample to samples.txt, and redraws the curves."""
        if not os.path.isfile(os.path.join(run_dir, VOCAB)):
            self.vocabulary.save(os.path.join(run_dir, VOCAB), run_files.write_atomic)
        text = self.sample(SAMPLE_LENGTH, SAMPLE_TEMPERATURE, seed=self.seed)
        with open(os.path.join(run_dir, "samples.txt"), "a", encoding="utf-8") as handle:
            handle.write(f"=== epoch {epoch}, temperature {SAMPLE_TEMPERATURE} ===\n{text}\n\n")
        plot_curves(history, os.path.join(run_dir, run_files.FIGURES, "losses.png"), self.curves_title,
                    sampled=self.sampled_softmax is not None)
        tf.summary.text("sample", text)

    def export(self, run_dir):
        """Saves model.keras beside vocab.json: all generate.py needs."""
        self.vocabulary.save(os.path.join(run_dir, VOCAB), run_files.write_atomic)
        with run_files.atomic_path(os.path.join(run_dir, "model.keras")) as partial:
            self.model.save(partial)


def plot_curves(history, path, title="LSTM training", sampled=False):
    """Loss (nats/char) and bits per character per epoch, train beside held-out; a sampled softmax's training
    loss is said to be one (it is lower than the full softmax's, which held-out always is)."""
    panels = [("loss (nats per character)", ["loss", "test_loss"]),
              ("bits per character", ["bits_per_char", "test_bits_per_char"])]
    train = "train (sampled softmax)" if sampled else "train"
    labels = {column: ("held-out" if column.startswith("test_") else train) for _, pair in panels for column in pair}
    figures.plot_curves(history, panels, path, title=title, labels=labels)
