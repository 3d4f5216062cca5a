"""How tang_poems.txt was made (not needed to use it): the first 3,000 poems of the Complete Tang Poems
(全唐诗) in the chinese-poetry collection (MIT licence, https://github.com/chinese-poetry/chinese-poetry),
converted from traditional to simplified characters.

    npm pack chinese-poetry && tar xzf chinese-poetry-*.tgz
    pip install opencc-python-reimplemented
    python datasets/corpora/make_tang_poems.py package/dist/quantangshi > datasets/corpora/tang_poems.txt

Each poem is its title, then its lines as the collection has them (a couplet a line), then a blank line.
"""

import json
import os
import sys

from opencc import OpenCC

POEMS = 3000
POEMS_PER_FILE = 1000


def main(folder):
    to_simplified = OpenCC("t2s")
    poems = []
    for start in range(0, POEMS, POEMS_PER_FILE):
        with open(os.path.join(folder, f"poet.tang.{start}.json"), encoding="utf-8") as handle:
            poems.extend(json.load(handle))
    for poem in poems[:POEMS]:
        lines = [poem["title"].strip(), *(line.strip() for line in poem["paragraphs"] if line.strip())]
        sys.stdout.write(to_simplified.convert("\n".join(lines)) + "\n\n")


if __name__ == "__main__":
    main(sys.argv[1])
