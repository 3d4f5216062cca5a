"""The GAN recipe search behind the README's GAN results: each trial is a real `train.py gan` command,
measured by `evaluate.py` (1,000 samples, the digit classifier's FID beside its floor, effective classes,
confident fraction). Trials run one after another on the same machine; results append to results.jsonl.

    python docs/gan_search/search.py NAME -- FLAGS...     one trial: python train.py gan FLAGS
"""

import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
RUNS = os.environ.get("GAN_SEARCH_RUNS", "/tmp/gan_search")


def trial(name, flags):
    run_dir = os.path.join(RUNS, name)
    started = time.perf_counter()
    subprocess.run([sys.executable, "train.py", "gan", *flags, "--run-dir", run_dir, "--quiet", "--overwrite"],
                   cwd=REPO, check=True, stdout=subprocess.DEVNULL)
    command_seconds = time.perf_counter() - started
    subprocess.run([sys.executable, "evaluate.py", run_dir], cwd=REPO, check=True, stdout=subprocess.DEVNULL)
    with open(os.path.join(run_dir, "metrics.json"), encoding="utf-8") as handle:
        metrics = json.load(handle)
    with open(os.path.join(run_dir, "history.csv"), encoding="utf-8") as handle:
        last = handle.read().strip().splitlines()[-1].split(",")
    with open(os.path.join(run_dir, "history.csv"), encoding="utf-8") as handle:
        header = handle.readline().strip().split(",")
    training_seconds = float(dict(zip(header, last))["wall_seconds"])
    keep = ("fid_classifier_features", "fid_floor_real_train_vs_test", "fid_ratio_to_floor", "classifier_score",
            "effective_classes", "confident_fraction", "class_histogram")
    result = {"name": name, "flags": flags, "training_seconds": training_seconds,
              "command_seconds": round(command_seconds, 1), **{key: metrics.get(key) for key in keep}}
    with open(os.path.join(HERE, "results.jsonl"), "a", encoding="utf-8") as handle:
        handle.write(json.dumps(result) + "\n")
    print(json.dumps(result))


if __name__ == "__main__":
    separator = sys.argv.index("--")
    trial(sys.argv[1], sys.argv[separator + 1:])
