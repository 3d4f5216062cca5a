"""Generation speed of a trained Transformer run: the KV cache against recomputing the window (bench's measure).

    flock /work/cpu.lock python docs/transformer_search/generation_speed.py RUN_DIR [--length 500]
"""

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))  # the repository
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir")
    parser.add_argument("--length", type=int, default=500)
    args = parser.parse_args()
    from bench.transformer_step import generation_speed
    from datasets import text
    from training import run_dir as run_files

    config = run_files.read_run_config(args.run_dir)
    data = text.load(config["data"]["source"])
    model = run_files.load_exported_model(args.run_dir, config, "model.keras", len(data.vocabulary))
    print(json.dumps(generation_speed(model, data, args.length)))


if __name__ == "__main__":
    main()
