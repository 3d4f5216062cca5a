"""Poems from any text model trained on one poem a line: free, in a fixed form, or as an acrostic (藏头诗).

Every poem starts from a line end ("\\n", the start of a line as in training) and ends at the next one.
A form (五言/七言 绝句 and 律诗) is kept by constrained decoding on models.sampling's per-position bias:
the characters are sampled, the punctuation and the line end are placed by position.

    5x4 (五言绝句)   position  0 1 2 3 4 5 6 7 8 9 10 11 ... 23 24
                     allowed   字字字字字，字字字字字 。  ...  。 \\n

At a character position only Chinese characters are allowed (every punctuation mark and the line end get
-inf); at a punctuation position only "，" (odd clauses) or "。" (even clauses), at the end only "\\n". An
acrostic leaves a single character allowed at the first position of clause k: the k-th it was given.
"""

import re

import numpy as np

# models.sampling's "forbidden" (not imported: generate.py checks its flags with this module before TensorFlow loads).
NEGATIVE_INFINITY = float("-inf")

LINE_END = "\n"
# Chinese characters: CJK Unified Ideographs and Extensions A to H (as datasets/corpora/make_tang_poems.py keeps).
HAN = "\u3400-\u4dbf\u4e00-\u9fff\U00020000-\U0003134f"
CLAUSE_PUNCTUATION = "，。？！；"  # the collection's clause punctuation
ODD_CLAUSE_END, EVEN_CLAUSE_END = "，", "。"
# name: (characters per clause, clauses); 5x4 is 五言绝句, 7x8 七言律诗.
FORMS = {"5x4": (5, 4), "5x8": (5, 8), "7x4": (7, 4), "7x8": (7, 8)}
# An acrostic without a form: 七言, a quatrain if the characters fit in one, else a regulated verse.
ACROSTIC_FORMS = ("7x4", "7x8")
FREE_POEM_MAX_LENGTH = 200  # characters drawn for a free poem: a line longer than this is cut there


class PoemError(ValueError):
    """A form or acrostic the run cannot write; the message says why."""


def is_han(char):
    return re.fullmatch(f"[{HAN}]", char) is not None


def acrostic_form(acrostic):
    """The form an acrostic takes when none is asked: the smallest 七言 form with as many clauses."""
    for name in ACROSTIC_FORMS:
        if len(acrostic) <= FORMS[name][1]:
            return name
    raise PoemError(f"--acrostic {acrostic} has {len(acrostic)} characters; the longest form, "
                    f"{ACROSTIC_FORMS[-1]}, has {FORMS[ACROSTIC_FORMS[-1]][1]} clauses")


def form_bias(vocabulary, form, acrostic=""):
    """(positions, vocab) bias of a poem of `form` ending with its line end: 0 where a character is allowed,
    -inf elsewhere (module docstring). Raises PoemError for an acrostic that does not fit or a character
    the run's vocabulary does not have."""
    chars_per_clause, clauses = FORMS[form]
    if len(acrostic) > clauses:
        raise PoemError(f"--acrostic {acrostic} has {len(acrostic)} characters and the form {form} "
                        f"only {clauses} clauses; give at most {clauses} or a longer --form")
    missing = [char for char in dict.fromkeys(ODD_CLAUSE_END + EVEN_CLAUSE_END + LINE_END + acrostic)
               if char not in vocabulary.ids]
    if missing:
        raise PoemError("the run's vocabulary has no " + " ".join(repr(char) for char in missing)
                        + ("; choose characters of its corpus" if set(missing) <= set(acrostic) else ""))
    not_han = [char for char in acrostic if not is_han(char)]
    if not_han:
        raise PoemError(f"--acrostic takes Chinese characters, not {' '.join(map(repr, not_han))}")

    def only(char):
        row = np.full(len(vocabulary), NEGATIVE_INFINITY, np.float32)
        row[vocabulary.ids[char]] = 0.0
        return row

    any_han = np.where([is_han(char) for char in vocabulary.chars], 0.0, NEGATIVE_INFINITY).astype(np.float32)
    rows = []
    for clause in range(clauses):
        first = only(acrostic[clause]) if clause < len(acrostic) else any_han
        rows += [first] + [any_han] * (chars_per_clause - 1)
        rows.append(only(ODD_CLAUSE_END if clause % 2 == 0 else EVEN_CLAUSE_END))
    rows.append(only(LINE_END))
    return np.stack(rows)


def sample_poems(sampler, vocabulary, count, form=None, acrostic=None, temperature=1.0, top_k=0, top_p=1.0,
                 seed=0, max_length=FREE_POEM_MAX_LENGTH, jit=False):
    """`count` poems (str, without their line end) from any models.sampling.Sampler, all drawn at once as
    rows from the line-end prompt. Free without form or acrostic (each poem ends at the first line end
    drawn, or after max_length characters); else in `form` (default for an acrostic: acrostic_form)."""
    if acrostic and form is None:
        form = acrostic_form(acrostic)
    bias = None if form is None else form_bias(vocabulary, form, acrostic or "")
    length = max_length if bias is None else len(bias)
    ids = sampler.generate(vocabulary.encode(LINE_END), length, temperature, top_k=top_k, top_p=top_p, seed=seed,
                           rows=count, bias=bias, jit=jit)
    return [vocabulary.decode(row).split(LINE_END, 1)[0] for row in ids]
