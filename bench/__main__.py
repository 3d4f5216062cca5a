"""`python -m bench [--out-dir DIR]`: every benchmark in turn, each writing DIR/bench_<model>.json if given."""

import argparse
import os

from bench import gan_step, lstm_step, vae_step

if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    parser.add_argument("--out-dir", help="write bench_gan.json, bench_vae.json and bench_lstm.json here")
    args = parser.parse_args()
    for name, benchmark in (("gan", gan_step), ("vae", vae_step), ("lstm", lstm_step)):
        benchmark.main(["--out", os.path.join(args.out_dir, f"bench_{name}.json")] if args.out_dir else [])
        print()
