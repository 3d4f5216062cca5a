"""Prints results.jsonl as the README's markdown table of GAN trials."""

import json
import os

HERE = os.path.dirname(os.path.abspath(__file__))

print("| trial | flags | confident | effective classes | FID / floor | training |")
print("| --- | --- | --- | --- | --- | --- |")
with open(os.path.join(HERE, "results.jsonl"), encoding="utf-8") as handle:
    for line in handle:
        trial = json.loads(line)
        flags = " ".join(flag for flag in trial["flags"] if flag not in ("--data", "mnist-5k"))
        print(f"| {trial['name']} | `{flags or '(none)'}` | "
              f"{100 * trial['confident_fraction']:.1f}% | {trial['effective_classes']:.2f} | "
              f"{trial['fid_ratio_to_floor']:.2f}x | {trial['training_seconds']:.0f} s |")
