"""Text for the character-level LSTM: tiny Shakespeare, Python's own documentation, or any UTF-8 file.

    --corpus shakespeare   the 1.1 MB tiny-Shakespeare text of TensorFlow's text-generation tutorial,
                           downloaded once into Keras' file cache and verified by its SHA-256
    --corpus pydoc         Python's bundled documentation text (pydoc_data.topics, 465 KB), offline
    --corpus tang          every Tang poem of regular verse (36,918 poems of 4 or 8 clauses of 5 or 7
                           characters, 1,636,416 characters, simplified), one a line, shipped gzip-compressed
                           in datasets/corpora/, offline: Chinese verse for the tutorial
    --corpus PATH          any UTF-8 text file; the vocabulary is per character, so any script works
    --corpus auto          shakespeare when cached or downloadable, else pydoc

A text is held out by its last 10%. A corpus of one document a line (tang, or PATH with --one-per-line) is
split by documents instead: after a fixed shuffle of the lines, the last 10% of them are held out, each
whole, and each document, in either split, is preceded and ended by a line end ("\n" poem "\n" poem ...).
The vocabulary is every distinct character of the whole text, sorted, so an id means the same character
in every run on that text.
"""

import dataclasses
import gzip
import json
import os

import numpy as np

from datasets import download_timeout

NAMED_CORPORA = ("auto", "shakespeare", "pydoc", "tang")
TANG_POEMS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpora", "tang_poems.txt.gz")
HELD_OUT_FRACTION = 0.1
DOCUMENT_SHUFFLE_SEED = 20  # the fixed shuffle of a one-document-a-line corpus before its split
LINE_END = "\n"
SHAKESPEARE_URL = "https://storage.googleapis.com/download.tensorflow.org/data/shakespeare.txt"
# The tutorial's file is Karpathy's char-rnn tinyshakespeare/input.txt (1,115,394 bytes).
SHAKESPEARE_SHA256 = "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed"


class CorpusError(Exception):
    """A corpus that cannot be had or used; the message says what to do instead."""


class Vocabulary:
    """Characters <-> ids: id i is the i-th character of `chars`."""

    def __init__(self, chars):
        self.chars = list(chars)
        self.ids = {char: index for index, char in enumerate(self.chars)}

    @classmethod
    def from_text(cls, text):
        return cls(sorted(set(text)))

    def __len__(self):
        return len(self.chars)

    def __eq__(self, other):
        return isinstance(other, Vocabulary) and self.chars == other.chars

    def unknown(self, text):
        """The distinct characters of `text` that are not in the vocabulary, in order of appearance."""
        return list(dict.fromkeys(char for char in text if char not in self.ids))

    def encode(self, text):
        """str -> int32 ids; raises CorpusError naming any characters outside the vocabulary."""
        missing = self.unknown(text)
        if missing:
            raise CorpusError(f"characters not in the run's vocabulary of {len(self)}: "
                              + " ".join(repr(char) for char in missing[:20]))
        return np.fromiter((self.ids[char] for char in text), dtype=np.int32, count=len(text))

    def decode(self, ids):
        return "".join(self.chars[int(index)] for index in ids)

    def save(self, path, write_text):
        """Writes vocab.json with `write_text(path, text)` (the run directory's atomic writer)."""
        write_text(path, json.dumps({"chars": self.chars}, ensure_ascii=False, indent=0) + "\n")

    @classmethod
    def load(cls, path):
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
        chars = data.get("chars") if isinstance(data, dict) else None
        if not (isinstance(chars, list) and chars and all(isinstance(c, str) and len(c) == 1 for c in chars)
                and len(set(chars)) == len(chars)):
            raise CorpusError(f"{path} is not a vocabulary this project wrote")
        return cls(chars)


@dataclasses.dataclass
class TextData:
    """A corpus split into training and held-out ids over its vocabulary."""

    source: str  # "shakespeare", "pydoc", or the file's absolute path
    description: str
    vocabulary: Vocabulary
    train_ids: np.ndarray  # int32 (n,)
    held_out_ids: np.ndarray  # int32 (m,), the last 10% of the text (of its documents, one_per_line)
    one_per_line: bool = False  # each line a document: "\n" doc "\n" doc ... "\n" in both splits

    def summary(self):
        summary = {"source": self.source, "description": self.description, "vocabulary_size": len(self.vocabulary),
                   "train_chars": int(len(self.train_ids)), "held_out_chars": int(len(self.held_out_ids)),
                   "one_per_line": self.one_per_line}
        if self.one_per_line:  # one line end per document, plus the one before the first
            line_end = self.vocabulary.ids[LINE_END]
            summary.update({"train_documents": int(np.sum(self.train_ids == line_end)) - 1,
                            "held_out_documents": int(np.sum(self.held_out_ids == line_end)) - 1})
        return summary

    def documents(self, split="held_out"):
        """The documents (lines, without their line ends) of one split of a one-document-a-line corpus."""
        ids = self.held_out_ids if split == "held_out" else self.train_ids
        return self.vocabulary.decode(ids).strip(LINE_END).split(LINE_END)


def split(text, source, description):
    """TextData of `text`: vocabulary of the whole text, the last 10% held out."""
    vocabulary = Vocabulary.from_text(text)
    ids = vocabulary.encode(text)
    cut = int(len(ids) * (1 - HELD_OUT_FRACTION))
    return TextData(source, description, vocabulary, ids[:cut], ids[cut:])


def split_documents(text, source, description):
    """TextData of `text` as one document a line (blank lines dropped, Windows line ends read as line ends):
    the last 10% of the documents after a fixed shuffle held out, each whole."""
    lines = [line for line in text.replace("\r\n", LINE_END).split(LINE_END) if line.strip()]
    if len(lines) < 2:
        raise CorpusError(f"--corpus {source} has {len(lines)} non-empty line(s); one document a line needs at "
                          "least 2, one to train on and one to hold out")
    order = np.random.default_rng(DOCUMENT_SHUFFLE_SEED).permutation(len(lines))
    held_out_count = max(1, int(len(lines) * HELD_OUT_FRACTION))
    train_lines = [lines[index] for index in order[:-held_out_count]]
    held_out_lines = [lines[index] for index in order[-held_out_count:]]
    vocabulary = Vocabulary.from_text(LINE_END + LINE_END.join(lines))

    def as_ids(documents):  # each document between line ends, so each starts after one as at generation
        return vocabulary.encode(LINE_END + LINE_END.join(documents) + LINE_END)

    return TextData(source, description, vocabulary, as_ids(train_lines), as_ids(held_out_lines), one_per_line=True)


def tang_text():
    """The bundled Tang regular verse, one poem a line (datasets/corpora/make_tang_poems.py made it)."""
    with gzip.open(TANG_POEMS, "rt", encoding="utf-8") as handle:
        return handle.read()


def pydoc_text():
    """Python's bundled documentation topics (the text behind `help('assert')`), in a fixed order."""
    from pydoc_data.topics import topics

    return "\n\n".join(topics[name] for name in sorted(topics))


def shakespeare_text():
    """Tiny Shakespeare from Keras' cache (~/.keras/datasets), downloading and verifying it once."""
    import keras

    try:
        with download_timeout():
            path = keras.utils.get_file("shakespeare.txt", SHAKESPEARE_URL, file_hash=SHAKESPEARE_SHA256,
                                        hash_algorithm="sha256")
    except Exception as exc:  # noqa: BLE001 - Keras wraps network and hash failures in several types
        raise CorpusError(f"tiny Shakespeare is not cached and could not be downloaded ({exc}); "
                          "use --corpus pydoc, Python's bundled documentation, offline") from None
    with open(path, encoding="utf-8") as handle:
        return handle.read()


def file_text(path):
    """The text of a UTF-8 file; CorpusError for a missing, unreadable, empty or non-UTF-8 file."""
    if not os.path.exists(path):
        raise CorpusError(f"--corpus {path}: no such file (or name one of {', '.join(NAMED_CORPORA)})")
    if os.path.isdir(path):
        raise CorpusError(f"--corpus {path} is a directory; pass a UTF-8 text file")
    try:
        with open(path, "rb") as handle:
            raw = handle.read()
    except OSError as exc:
        raise CorpusError(f"--corpus {path} cannot be read ({exc.strerror or exc})") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CorpusError(f"--corpus {path} is not UTF-8 text (byte {exc.start} is {raw[exc.start]:#04x}); "
                          "convert it, e.g. iconv -f GB18030 -t UTF-8") from None
    if text.startswith("\ufeff"):
        text = text[1:]  # a byte-order mark is not part of the text
    if not text:
        raise CorpusError(f"--corpus {path} is empty")
    return text


def load(corpus="auto", one_per_line=False):
    """TextData for a corpus name or path, a document a line if `one_per_line` (always for tang); raises
    CorpusError. `.source` is the one actually used."""
    if corpus == "pydoc":
        return split(pydoc_text(), "pydoc", "Python's bundled documentation (pydoc_data.topics)")
    if corpus == "tang":
        return split_documents(tang_text(), "tang", "36,918 Tang poems of regular verse (全唐诗, chinese-poetry, "
                               "simplified), one a line")
    if corpus == "shakespeare":
        return split(shakespeare_text(), "shakespeare", "tiny Shakespeare (TensorFlow's text-generation tutorial)")
    if corpus == "auto":
        try:
            return load("shakespeare")
        except CorpusError:
            print("data: tiny Shakespeare could not be had (offline?); using --corpus pydoc instead")
            return load("pydoc")
    path = os.path.abspath(corpus)
    if one_per_line:
        return split_documents(file_text(corpus), path, f"the file {path}, one document a line")
    return split(file_text(corpus), path, f"the file {path}")
