"""How tang_poems.txt.gz was made (not needed to use it): every Tang poem of the chinese-poetry collection
(MIT licence, https://github.com/chinese-poetry/chinese-poetry, npm package chinese-poetry 2.0.1) that is
regular verse, converted from traditional to simplified characters, one poem a line.

    npm pack chinese-poetry@2.0.1 && tar xzf chinese-poetry-2.0.1.tgz
    pip install opencc-python-reimplemented   # for this script only; training does not need it
    python datasets/corpora/make_tang_poems.py package/dist/quantangshi datasets/corpora/tang_poems.txt.gz

Regular verse here: the body (no title) is 4 or 8 clauses, all of 5 or all of 7 Chinese characters, each
ended by the collection's clause punctuation (，。？！；) and nothing else: no notes, no variant readings in
brackets, no missing characters (□). Of the collection's 57,607 Tang poems, 36,918 are: 1,636,416
characters, 6,662 distinct Chinese characters and 5 punctuation marks.
"""

import gzip
import json
import os
import re
import sys

from opencc import OpenCC

CLAUSE_PUNCTUATION = "，。？！；"
HAN = "\u3400-\u4dbf\u4e00-\u9fff\U00020000-\U0003134f"  # CJK Unified Ideographs and Extensions A to H
CLAUSE = re.compile(f"([{HAN}]+)[{CLAUSE_PUNCTUATION}]")
WHOLE_BODY = re.compile(f"(?:[{HAN}]+[{CLAUSE_PUNCTUATION}])+")
CLAUSES_PER_POEM = (4, 8)
CHARS_PER_CLAUSE = (5, 7)
POEMS_PER_FILE = 1000


def regular_verse(body):
    """True when `body` is 4 or 8 clauses all of 5 or all of 7 characters, punctuation only between them."""
    if not WHOLE_BODY.fullmatch(body):
        return False
    lengths = {len(clause) for clause in CLAUSE.findall(body)}
    return len(CLAUSE.findall(body)) in CLAUSES_PER_POEM and len(lengths) == 1 and lengths <= set(CHARS_PER_CLAUSE)


def tang_poems(folder):
    """Every poem of poet.tang.0.json, poet.tang.1000.json, ... in the collection's order."""
    start = 0
    while os.path.isfile(path := os.path.join(folder, f"poet.tang.{start}.json")):
        with open(path, encoding="utf-8") as handle:
            yield from json.load(handle)
        start += POEMS_PER_FILE


def main(folder, out_path):
    to_simplified = OpenCC("t2s")
    total, kept = 0, []
    for poem in tang_poems(folder):
        total += 1
        # Checked once simplified: a few characters simplify to ones outside the Basic Multilingual Plane.
        body = to_simplified.convert("".join(line.strip() for line in poem["paragraphs"]))
        if regular_verse(body):
            kept.append(body)
    # mtime=0: the same poems give the same bytes.
    with gzip.GzipFile(out_path, "wb", compresslevel=9, mtime=0) as handle:
        handle.write(("\n".join(kept) + "\n").encode("utf-8"))
    print(f"{len(kept):,} of {total:,} Tang poems are regular verse ({sum(map(len, kept)):,} characters)")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
