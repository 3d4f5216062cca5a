"""Sizes for the Transformer's defaults: each candidate trained by train.py on pydoc for the same budget of
training seconds, its cosine schedule fitted to that budget, compared by held-out bits per character.

    flock /work/cpu.lock python docs/transformer_search/search.py --budget 100 -- "" "--context 64" ...

Each candidate's throughput is measured first (training.loop's own step, a few dozen steps), which sets
its --epochs to what fits in the budget. One line of JSON per candidate goes to results.jsonl beside this file.
"""

import argparse
import json
import math
import os
import shlex
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, REPO)
sys.path.insert(0, HERE)

from profile_step import chars_per_second  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--budget", type=float, default=120.0, help="training seconds per candidate")
    parser.add_argument("candidates", nargs="+", help="train.py transformer flags, one quoted string each")
    args = parser.parse_args()
    from datasets import text

    data = text.load("pydoc")
    for candidate in args.candidates:
        flags = shlex.split(candidate)
        rate, params = chars_per_second(flags, data, steps=24)
        epochs = max(1, math.floor(args.budget * rate / len(data.train_ids)))
        run_dir = tempfile.mkdtemp(prefix="transformer-search-")
        command = [sys.executable, os.path.join(REPO, "train.py"), "transformer", "--corpus", "pydoc", *flags,
                   "--epochs", str(epochs), "--quiet", "--run-dir", run_dir, "--overwrite"]
        subprocess.run(command, check=True, capture_output=True, cwd=REPO)
        from training.run_dir import read_history

        history = read_history(run_dir)
        result = {"flags": candidate, "parameters": params, "chars_per_sec": round(rate), "epochs": epochs,
                  "training_seconds": history[-1]["wall_seconds"],
                  "held_out_bits_per_char": round(history[-1]["test_bits_per_char"], 4),
                  "best_held_out_bits_per_char": round(min(row["test_bits_per_char"] for row in history), 4),
                  "train_bits_per_char": round(history[-1]["bits_per_char"], 4)}
        print(json.dumps(result), flush=True)
        with open(os.path.join(HERE, "results.jsonl"), "a", encoding="utf-8") as handle:
            handle.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
