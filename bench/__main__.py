"""`python -m bench [--quick] [--out FILE]`: the speed of every model at train.py's defaults, against the
keras-io way and against this machine's matmul peak, measured in one run.

For each model: steady-state training throughput of ours (train.py's Trainer) and of the keras-io style
`fit` baseline, the counted FLOPs per sample of each one's training step (bench/flops.py says how), the
achieved GFLOP/s and its share of the float32 matmul peak measured in the same run (the best of numpy's
and TensorFlow's 2048 x 2048 matmul, before and after the models), the time to a named quality
threshold (VAE, LSTM), LSTM generation against the tutorial's predict loop, and the Transformer's generation
with its KV cache against recomputing the window for every character. Writes FILE (JSON) and
FILE with .md in place of .json (a markdown table); prints both.
"""

import json
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # model.predict logs harmless C++ errors

from training import commands  # noqa: E402
from training import run_dir as run_files  # noqa: E402

DEFAULT_OUT = os.path.join("outputs", "bench", "bench.json")
# Issue 8's goals, and issue 19's for the Transformer, checked against each run.
GOALS = {"ratio_to_keras_io_fit": 1.3,
         "fraction_of_peak": {"gan": 0.70, "vae": 0.50, "lstm": 0.55, "transformer": 0.50},
         "generation_ratio": 50.0, "cache_generation_ratio": 5.0}
FULL = {"epochs": {"gan": 6, "vae": 6, "lstm": 3, "transformer": 3}, "lstm_steps": 40, "transformer_steps": 30,
        "extra_runners": True}
QUICK = {"epochs": {"gan": 2, "vae": 2, "lstm": 2, "transformer": 2}, "lstm_steps": 12, "transformer_steps": 8,
         "extra_runners": False}


def build_parser():
    parser = commands.Parser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="fewer measured epochs and no extra runners: a couple of minutes on a 2-core CPU")
    parser.add_argument("--out", default=DEFAULT_OUT,
                        help=f"the JSON file to write; the markdown table goes beside it (default: {DEFAULT_OUT})")
    return parser


def resolve(argv):
    args = build_parser().parse_or_exit(argv)
    if not args.out.endswith(".json"):
        commands.fail(f"--out {args.out}: give a .json file name (the markdown table goes beside it as .md)")
    try:
        run_files.prepare_output_file(args.out)
    except run_files.RunDirError as exc:
        commands.fail(f"--out {args.out} {exc}")
    return args


def goals_met(models):
    """Each goal of issue 8 beside what this run measured."""
    rows = []
    for name, result in models.items():
        ratio = result["ratio_to_keras_io_fit"]
        rows.append((f"{name}: ours / keras-io fit", f">= {GOALS['ratio_to_keras_io_fit']:.1f}x", f"{ratio:.2f}x",
                     ratio >= GOALS["ratio_to_keras_io_fit"]))
        fraction = result["rows"]["ours"]["fraction_of_peak"]
        target = GOALS["fraction_of_peak"][name]
        rows.append((f"{name}: achieved / matmul peak", f">= {target:.0%}", f"{fraction:.1%}", fraction >= target))
    generation = models["lstm"]["generation"]["ratio"]
    rows.append(("lstm: generation / tutorial loop", f">= {GOALS['generation_ratio']:.0f}x", f"{generation:.0f}x",
                 generation >= GOALS["generation_ratio"]))
    cached = models["transformer"]["generation"]["ratio"]
    goal = GOALS["cache_generation_ratio"]
    rows.append(("transformer: generation with the KV cache / recomputing the window", f">= {goal:.0f}x",
                 f"{cached:.1f}x", cached >= goal))
    return [{"goal": goal, "target": target, "measured": measured, "met": met}
            for goal, target, measured, met in rows]


def markdown(report):
    """The report as markdown tables."""
    peak = report["matmul_peak_gflops"]
    lines = [f"Measured {report['date']} on {report['cpus']} CPUs ({report['processor']}), TensorFlow "
             f"{report['tensorflow']}, Keras {report['keras']}{', quick mode' if report['quick'] else ''}. "
             f"Matmul peak (float32, 2048 x 2048, best of numpy {peak['numpy']:.0f} and TensorFlow "
             f"{peak['tensorflow']:.0f}, before and after the models): **{peak['peak']:.0f} GFLOP/s**.", "",
             "| model | runner | samples/s | counted MFLOP per sample | GFLOP/s | of matmul peak |",
             "| --- | --- | --- | --- | --- | --- |"]
    for name, result in report["models"].items():
        unit = result["unit"]
        for row in result["rows"].values():
            lines.append(f"| {name} | {row['label']} | {row[f'{unit}_per_sec_median']:,.0f} {unit}/s | "
                         f"{row['mflops_per_sample']:.3f} | {row['gflops_per_sec']:.1f} | "
                         f"{row['fraction_of_peak']:.1%} |")
    lines += ["", "| time to quality (ours, train.py's defaults) | wall-clock seconds | of which training steps "
              "| epochs |", "| --- | --- | --- | --- |"]
    for name, result in report["models"].items():
        if "time_to_quality" in result:
            quality = result["time_to_quality"]
            reached = "" if quality["reached"] else " (not reached)"
            lines.append(f"| {name}: {quality['metric']} <= {quality['threshold']:g}{reached} | "
                         f"{quality['wall_seconds']:.1f} | {quality['training_seconds']:.1f} | {quality['epochs']} |")
    parts = report["models"]["gan"].get("step_parts")
    if parts:
        lines += ["", f"GAN: ours' step took {parts['step_ms']:.2f} ms. Timed alone, its two optimizers' updates "
                  f"({parts['weights']:,} weights: D's Adam, G's Adam and the moving average) take "
                  f"{parts['update_ms']:.2f} ms. With every matmul at the peak and those updates, a step would "
                  f"reach {parts['ceiling_fraction_of_peak']:.0%} of the peak; "
                  f"{GOALS['ratio_to_keras_io_fit']:g}x keras-io's fit needs "
                  f"{parts['fraction_of_peak_for_goal']:.0%}."]
    parts = report["models"]["vae"].get("step_parts")
    if parts:
        lines += ["", f"VAE: ours' step took {parts['step_ms']:.2f} ms. Timed alone on one batch, its gradients take "
                  f"{parts['gradients_ms']:.2f} ms and the optimizer's update ({parts['weights']:,} weights, AdamW's "
                  f"decay and Adam) {parts['update_ms']:.2f} ms. With every matmul at the peak and that update, a "
                  f"step at this batch would reach {parts['ceiling_fraction_of_peak']:.0%} of the peak."]
    generation = report["models"]["lstm"]["generation"]
    lines += ["", f"LSTM generation of {generation['length']} characters: ours {generation['ours_chars_per_sec']:,.0f} "
              f"chars/s, the tutorial's predict loop {generation['tutorial_chars_per_sec']:.1f} chars/s "
              f"(**{generation['ratio']:,.0f}x**).", ""]
    generation = report["models"]["transformer"]["generation"]
    lines += [f"Transformer generation of {generation['length']} characters (context {generation['context']}): with "
              f"the KV cache {generation['cache_chars_per_sec']:,.0f} chars/s, recomputing the window "
              f"{generation['recompute_chars_per_sec']:,.0f} chars/s (**{generation['ratio']:.1f}x**).", "",
              "| goal (issues 8, 19) | target | measured | met |", "| --- | --- | --- | --- |"]
    lines += [f"| {goal['goal']} | {goal['target']} | {goal['measured']} | {'yes' if goal['met'] else '**no**'} |"
              for goal in report["goals"]]
    lines += ["", f"FLOPs: {report['how_flops_were_counted']}."]
    return "\n".join(lines) + "\n"


def main(argv=None):
    args = resolve(sys.argv[1:] if argv is None else argv)
    from bench import flops, gan_step, lstm_step, transformer_step, vae_step
    from training import distribute

    plan = QUICK if args.quick else FULL
    started = time.perf_counter()
    peak_before = flops.matmul_peak()
    print(f"matmul peak: numpy {peak_before['numpy']:.0f}, TensorFlow {peak_before['tensorflow']:.0f} GFLOP/s")
    peak = peak_before["peak"]
    models = {"gan": gan_step.measure(peak, plan["epochs"]["gan"], plan["extra_runners"],
                                      goal_ratio=GOALS["ratio_to_keras_io_fit"])}
    print()
    models["vae"] = vae_step.measure(peak, plan["epochs"]["vae"], plan["extra_runners"])
    print()
    models["lstm"] = lstm_step.measure(peak, plan["epochs"]["lstm"], plan["lstm_steps"], 500, plan["extra_runners"])
    print()
    models["transformer"] = transformer_step.measure(peak, plan["epochs"]["transformer"], plan["transformer_steps"],
                                                     500, plan["extra_runners"])
    peak_after = flops.matmul_peak()
    # The peak is the best seen in the run; the models' shares were computed against the first
    # measurement, so rescale them if the later one was higher (a share is never flattered).
    best = {key: max(peak_before[key], peak_after[key]) for key in ("numpy", "tensorflow", "peak")}
    for result in models.values():
        for row in result["rows"].values():
            row["fraction_of_peak"] = round(row["gflops_per_sec"] / best["peak"], 3)
    report = {"quick": args.quick, **distribute.describe_machine(), "matmul_peak_gflops": best,
              "matmul_peak_runs": {"before": peak_before, "after": peak_after},
              "how_flops_were_counted": flops.HOW_COUNTED, "models": models}
    report["goals"] = goals_met(models)
    report["wall_seconds"] = round(time.perf_counter() - started)
    table = markdown(report)
    markdown_path = args.out[: -len(".json")] + ".md"
    run_files.write_atomic(args.out, json.dumps(report, indent=2) + "\n")
    run_files.write_atomic(markdown_path, table)
    print("\n" + table)
    print(f"bench: {report['wall_seconds']} s; wrote {args.out} and {markdown_path}")


if __name__ == "__main__":
    main()
