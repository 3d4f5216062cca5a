"""Reproduce every figure and number in the README and the docs: `python reproduce.py`.

Trains the three models with the settings the docs state, evaluates them with evaluate.py, copies
the figures into docs/figures/, writes docs/results.json and rewrites the results tables (between their
<!-- reproduce:NAME --> markers) in README.md, README.zh-CN.md and docs/*.md. Every step is the same
`train.py` / `evaluate.py` / `generate.py` command a reader would type; the commands are printed as they run.

    python reproduce.py                   everything, about 40 minutes on a 2-core CPU
    python reproduce.py --only gan,vae    some of it (the pages keep the other rows)
    python reproduce.py --tables-only     rewrite the pages' tables from docs/results.json, training nothing
    python reproduce.py --seeds 3         each experiment with --seed 0, 1 and 2: every measure's mean, standard
                                          deviation, min and max (figures and generated text are seed 0's)
    python reproduce.py --quick --out DIR a smoke test of the whole pipeline (a few minutes): tiny runs,
                                          figures and tables written under DIR only, never over docs/
"""

import concurrent.futures
import datetime
import glob
import json
import os
import shutil
import subprocess
import sys
import threading
import time

from evaluation.spread import spread
from training import commands  # no TensorFlow: a mistyped command is refused at once
from training import run_dir as run_files

REPO = os.path.dirname(os.path.abspath(__file__))
DOCS = os.path.join(REPO, "docs")
README = os.path.join(REPO, "README.md")


def pages():
    """The pages whose <!-- reproduce:NAME --> tables are rewritten: both READMEs and the chapter pages."""
    return [README, os.path.join(REPO, "README.zh-CN.md"), *sorted(glob.glob(os.path.join(DOCS, "*.md")))]


# The parts' last runs on the README's 2-core CPU: `--only gan,vae` 23.7 minutes (after --intra-op-threads
# auto), the DCGAN's command and evaluation 10 minutes, the LSTM's about 4; vae_binarized, not yet measured,
# about as long as vae_z20 (under a minute). Each seed of --seeds N takes as long again.
EXPECTED_MINUTES = 39
DATA = "mnist-5k"  # the README's numbers are the offline 5k sample's; --data mnist measures full MNIST

# Each experiment: a train.py command, the evaluate.py flags, and the run's files that become README figures.
# The GAN ablation turns off one remedy of the default recipe at a time (and all of them: the tutorial's).
GAN_ABLATION = {
    "gan": [],
    "gan_no_r1": ["--r1-gamma", "0"],
    "gan_no_ema": ["--ema", "0"],
    "gan_tutorial": ["--r1-gamma", "0", "--ema", "0"],
}
EXPERIMENTS = {
    **{name: {"group": "gan", "train": ["gan", *flags], "evaluate": ["--over-training"] if name == "gan" else [],
              "figures": ({"figures/samples_epoch_{epochs:03d}.png": "gan_samples.png",
                           "figures/samples.gif": "gan_training.gif", "figures/losses.png": "gan_losses.png",
                           "figures/class_histogram.png": "gan_class_histogram.png",
                           "figures/quality_over_training.png": "gan_quality_over_training.png"}
                          if name == "gan" else
                          {"figures/samples_epoch_{epochs:03d}.png": "gan_recipe_samples.png"}
                          if name == "gan_tutorial" else {})}
       for name, flags in GAN_ABLATION.items()},
    "dcgan": {"group": "dcgan", "train": ["gan", "--arch", "dcgan"],  # its recipe: training.cli.RECIPES
              "evaluate": ["--over-training"],
              "figures": {"figures/samples_epoch_{epochs:03d}.png": "dcgan_samples.png",
                          "figures/class_histogram.png": "dcgan_class_histogram.png",
                          "figures/quality_over_training.png": "dcgan_quality_over_training.png"}},
    "vae_z20": {"group": "vae", "train": ["vae", "--latent-dim", "20"], "evaluate": [],
                "figures": {"figures/reconstructions.png": "vae_reconstructions.png",
                            "figures/prior_samples.png": "vae_prior_samples.png",
                            "figures/interpolation.png": "vae_interpolation.png",
                            "figures/losses.png": "vae_losses.png"}},
    # The same model on binarised digits (train.py vae --binarize): its NLL is MNIST's as papers report it.
    "vae_binarized": {"group": "vae", "train": ["vae", "--latent-dim", "20", "--binarize"], "evaluate": [],
                      "figures": {}},
    "vae_z2": {"group": "vae", "train": ["vae"], "evaluate": [],
               "figures": {"figures/latent_manifold.png": "vae_latent_manifold.png",
                           "figures/latent_space.png": "vae_latent_space.png"}},
    "vae_conv": {"group": "vae", "train": ["vae", "--arch", "conv", "--latent-dim", "20"], "evaluate": [],
                 "figures": {"figures/reconstructions.png": "vae_conv_reconstructions.png"}},
    "lstm_pydoc": {"group": "lstm", "train": ["lstm", "--corpus", "pydoc"], "evaluate": [],
                   "figures": {"figures/losses.png": "lstm_curves.png"},
                   "generate": [["--prompt", 'The "with" statement', "--length", "300", "--temperature", "0.5",
                                 "--seed", "1"]]},
    # The README's defaults for the Tang poems (the corpus' recipe): five poems, two acrostics (藏头诗).
    "lstm_tang": {"group": "lstm", "train": ["lstm", "--corpus", "tang"], "evaluate": [],
                  "quick_evaluate": ["--poems", "20"],
                  "figures": {"figures/losses.png": "lstm_tang_curves.png"},
                  "generate": [["--poems", "5", "--temperature", "0.8", "--seed", "1"],
                               ["--acrostic", "春夏秋冬", "--temperature", "0.8", "--seed", "1"],
                               ["--acrostic", "人工智能", "--form", "5x4", "--temperature", "0.8", "--seed", "1"]]},
    # The Transformer on the Tang poems (its recipe for them), measured beside the LSTM's lstm_tang.
    "transformer_tang": {"group": "transformer", "train": ["transformer", "--corpus", "tang"], "evaluate": [],
                         "quick_evaluate": ["--poems", "20"],
                         "generate": [["--poems", "5", "--temperature", "0.8", "--seed", "1"],
                                      ["--acrostic", "春夏秋冬", "--temperature", "0.8", "--seed", "1"],
                                      ["--acrostic", "人工智能", "--form", "5x4", "--temperature", "0.8",
                                       "--seed", "1"]],
                         "figures": {}},
    "transformer_pydoc": {"group": "transformer", "train": ["transformer", "--corpus", "pydoc"], "evaluate": [],
                          "figures": {"figures/losses.png": "transformer_curves.png",
                                      "figures/attention.png": "transformer_attention.png"},
                          "generate": [["--prompt", 'The "with" statement', "--length", "300", "--temperature",
                                        "0.5", "--seed", "1"]]},
}
GROUPS = ("gan", "dcgan", "vae", "lstm", "transformer")
# The text models side by side on one corpus: held-out bits per character against training seconds, drawn
# from both runs' history.csv when one reproduce.py run trains both (--only lstm,transformer).
TEXT_COMPARISON = {"runs": {"LSTM": "lstm_pydoc", "Transformer": "transformer_pydoc"},
                   "figure": "text_bits_vs_seconds.png"}
# --quick: the same commands, shrunk to seconds.
QUICK_TRAIN = ["--epochs", "2", "--steps-per-epoch", "3"]
# Rows with no figure of their own: the same commands again, with a flag (transformer_tang: lstm_tang's
# pipeline, poems and table with the other model, whose own pipeline transformer_pydoc checks).
QUICK_SKIPS = ("gan_no_r1", "gan_no_ema", "vae_binarized", "transformer_tang")
QUICK_EVALUATE = {"gan": ["--samples", "100"], "vae": ["--iw-samples", "3"], "lstm": [], "transformer": []}
# Experiments at a time: one, so each measured training time is the machine's alone; two with --quick,
# whose tiny runs are mostly process start-up and measure nothing.
DEFAULT_JOBS, QUICK_JOBS = 1, 2


def build_parser():
    parser = commands.Parser(prog="reproduce.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="tiny runs and sample counts: checks the pipeline end to end in a few minutes")
    parser.add_argument("--out", default=None,
                        help="where figures/, results.json and the results tables go (default: docs/, and "
                             "the README is rewritten; with --quick a directory is required)")
    parser.add_argument("--only", default=",".join(GROUPS),
                        help=f"comma-separated groups to run, of {', '.join(GROUPS)}, or single experiments of them "
                             "(such as transformer_tang); the other rows keep their last results")
    parser.add_argument("--data", choices=("mnist-5k", "mnist"), default=DATA,
                        help="the GAN's and VAE's data: the offline 5k sample (the README's), or full MNIST")
    parser.add_argument("--tables-only", action="store_true",
                        help="rewrite the pages' tables from --out's results.json (default docs/), training nothing")
    parser.add_argument("--seeds", type=int, default=1,
                        help="run each experiment with --seed 0 to N-1 and report each measure's mean, standard "
                             "deviation, min and max; 1: the commands' own seed 0, as typed in the docs")
    parser.add_argument("--jobs", type=int, default=None,
                        help=f"experiments run side by side (default {DEFAULT_JOBS}, so the training times are "
                             f"measured alone; {QUICK_JOBS} with --quick)")
    return parser


def resolve(argv):
    args = build_parser().parse_or_exit(argv)
    args.only = [group.strip() for group in args.only.split(",") if group.strip()]
    unknown = [item for item in args.only if item not in GROUPS and item not in EXPERIMENTS]
    if unknown or not args.only:
        commands.fail(f"--only takes groups of {', '.join(GROUPS)}, or experiments of them (such as "
                      f"transformer_tang), got {','.join(unknown) or 'none'}")
    if args.quick and args.out is None:
        commands.fail("--quick needs --out DIR: its tiny runs never replace the committed figures")
    out = os.path.abspath(args.out or DOCS)
    if args.quick and os.path.commonpath([out, DOCS]) == DOCS:
        commands.fail(f"--quick --out {args.out} is inside docs/; choose a directory outside the committed figures")
    if os.path.exists(out) and not os.path.isdir(out):
        commands.fail(f"--out {args.out} is a file, not a directory")
    if args.tables_only and not os.path.isfile(os.path.join(out, "results.json")):
        commands.fail(f"--tables-only: {os.path.join(args.out or 'docs', 'results.json')} does not exist; run the "
                 "experiments first")
    if args.jobs is None:
        args.jobs = QUICK_JOBS if args.quick else DEFAULT_JOBS
    if args.jobs < 1:
        commands.fail(f"--jobs must be 1 or more, got {args.jobs}")
    if args.seeds < 1:
        commands.fail(f"--seeds must be 1 or more, got {args.seeds}")
    if args.tables_only and args.seeds != 1:
        commands.fail("--tables-only trains nothing: the seeds are those results.json holds; drop --seeds")
    args.out = out
    args.update_pages = out == DOCS and not args.quick  # the pages' tables, README and docs/*.md
    return args


class Transcript:
    """Where progress goes: the console, a line at a time (each prefixed with its experiment's name when
    experiments run side by side), and the log, every command's whole output; safe from several threads."""

    def __init__(self, log, prefix_lines):
        self.log, self.prefix_lines = log, prefix_lines
        self.lock = threading.Lock()

    def say(self, name, line):
        with self.lock:
            print(f"[{name}] {line}" if self.prefix_lines else line, flush=True)

    def record(self, text):
        with self.lock:
            self.log.write(text)


def run(command, transcript, name):
    """Runs `python command...` from the repository, printing it; returns its stdout."""
    transcript.say(name, "$ python " + " ".join(_quote(part) for part in command))
    started = time.perf_counter()
    result = subprocess.run([sys.executable, *command], cwd=REPO, capture_output=True, text=True,
                            env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
    transcript.record(f"$ python {' '.join(command)}\n{result.stdout}\n{result.stderr}\n")
    if result.returncode != 0:
        commands.fail(f"`python {' '.join(command)}` failed with status {result.returncode}:\n{result.stderr[-3000:]}")
    transcript.say(name, f"  done in {time.perf_counter() - started:.0f} s")
    return result.stdout


def _quote(part):
    return part if part and all(c.isalnum() or c in "-_./,=:" for c in part) else json.dumps(part, ensure_ascii=False)


def run_experiment(name, spec, args, runs, figures_dir, transcript, seed=None):
    """Trains, evaluates (and for text, generates); returns the experiment's results and copies its figures.

    `seed`: None runs the commands as the docs type them (seed 0); a number adds `--seed` to training and
    evaluation, in a run directory of its own past seed 0. Only seed 0's run makes figures and text.
    """
    run_dir = os.path.join(runs, name if not seed else f"{name}-seed{seed}")
    train_flags = list(spec["train"])
    if spec["group"] in ("gan", "dcgan", "vae"):
        train_flags += ["--data", args.data]
    if args.quick:
        train_flags += QUICK_TRAIN
    seed_flags = [] if seed is None else ["--seed", str(seed)]
    train_flags += seed_flags
    started = time.perf_counter()
    run(["train.py", *train_flags, "--run-dir", run_dir, "--overwrite", "--quiet"], transcript, name)
    command_seconds = time.perf_counter() - started
    model = spec["train"][0]
    evaluate_flags = list(spec["evaluate"]) + (QUICK_EVALUATE[model] + spec.get("quick_evaluate", [])
                                               if args.quick else []) + seed_flags
    run(["evaluate.py", run_dir, *evaluate_flags], transcript, name)
    config = run_files.read_json(os.path.join(run_dir, "config.json"))
    history = run_files.read_history(run_dir)[-1]
    result = {"command": "python train.py " + " ".join(_quote(flag) for flag in train_flags),
              "evaluate": "python evaluate.py RUN_DIR " + " ".join(evaluate_flags),
              "epochs": config["settings"]["epochs"], "data": config["data"]["source"],
              "training_seconds": round(history["wall_seconds"], 1), "command_seconds": round(command_seconds, 1),
              "samples_per_sec_last_epoch": history["samples_per_sec"],
              # Each row's own machine (its config.json's) and day: a partial rerun (--only) keeps the other
              # rows' results, and the same command ran twice as fast on one 2-core machine as on another.
              "measured_on": f"{datetime.date.today().isoformat()}, {config['machine']['cpu_model']}",
              "metrics": run_files.read_json(os.path.join(run_dir, "metrics.json"))}
    result["generated"] = []
    if seed:  # the figures and text are seed 0's
        return result
    for flags in spec.get("generate", []):
        text = run(["generate.py", run_dir, *flags], transcript, name).rstrip("\n")
        generated = {"command": "python generate.py RUN_DIR " + " ".join(map(_quote, flags)), "text": text}
        if "--poems" in flags or "--acrostic" in flags:  # the form-valid share of what was printed, one poem a line
            from evaluation.verse import is_form_valid

            generated["form_valid_share"] = sum(map(is_form_valid, text.splitlines())) / len(text.splitlines())
        result["generated"].append(generated)
    for source, target in spec["figures"].items():
        source_path = os.path.join(run_dir, source.format(epochs=config["settings"]["epochs"]))
        shutil.copyfile(source_path, os.path.join(figures_dir, target))
        transcript.say(name, f"  figure: {os.path.relpath(os.path.join(figures_dir, target), REPO)}")
    return result


# Several seeds: one result per experiment, with the spread of every measure over the seeds.

SEED_FIELDS = ("command", "training_seconds", "command_seconds", "samples_per_sec_last_epoch", "metrics")


def numeric_leaves(tree, prefix=""):
    """(path, number) for each number in nested dicts, its path the keys joined by "/"."""
    for key, value in tree.items():
        if isinstance(value, dict):
            yield from numeric_leaves(value, f"{prefix}{key}/")
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            yield f"{prefix}{key}", value


def combine_seeds(results):
    """One experiment's results of seeds 0..N-1 as results.json keeps them: seed 0's (its command, figures and
    generated text), with "seeds": N, "per_seed": each run's command and measures, and "spread": the mean,
    standard deviation, min and max of every number all the runs measured, by path ("metrics/test_neg_elbo",
    "training_seconds"). One seed: its result as it is, as before --seeds."""
    if len(results) == 1:
        return results[0]
    per_seed = [{"seed": seed, **{field: result[field] for field in SEED_FIELDS}}
                for seed, result in enumerate(results)]
    leaves = [dict(numeric_leaves({field: result[field] for field in SEED_FIELDS[1:]})) for result in results]
    paths = [path for path in leaves[0] if path != "metrics/seed" and all(path in leaf for leaf in leaves)]
    return {**results[0], "seeds": len(results), "per_seed": per_seed,
            "spread": {path: spread([leaf[path] for leaf in leaves]) for path in paths}}


# The README's tables, made from results.json.

def _percent(value):
    return f"{100 * value:.1f}%"


def _decimals(places, suffix=""):
    return lambda value: f"{value:.{places}f}{suffix}"


def lookup(result, path):
    """The value at `path` ("metrics/verse/model/form_valid_share") of a result, or None where it has none."""
    value = result
    for key in path.split("/"):
        if not isinstance(value, dict) or key not in value:
            return None
        value = value[key]
    return value


def cell(result, path, form=_decimals(2)):
    """A measure's table cell: its value as `form` writes it; over several seeds, mean ± standard deviation
    [min, max]; "-" for results from before the measure existed."""
    over_seeds = result.get("spread", {}).get(path)
    if over_seeds is not None:
        return (f"{form(over_seeds['mean'])} ± {form(over_seeds['std'])} "
                f"[{form(over_seeds['min'])}, {form(over_seeds['max'])}]")
    value = lookup(result, path)
    return "-" if value is None else form(value)


def seeds_note(result, shown):
    """What a row's label adds when `shown` (some row of its table has several seeds): how many it has."""
    seeds = result.get("seeds", 1)
    if not shown:
        return ""
    return f" ({seeds} seeds, 0 to {seeds - 1}: mean ± std [min, max])" if seeds > 1 else " (seed 0 only)"


def several_seeds(results, names):
    return any(results[name].get("seeds", 1) > 1 for name in names if name in results)


def experiments_table(results, header, labels, cells):
    """A markdown table: the header's columns, then one row per labelled experiment that ran, its label (with
    its seeds when any row has several) and cells(result)."""
    shown = several_seeds(results, labels)
    rows = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    rows += ["| " + " | ".join([label + seeds_note(results[name], shown), *cells(results[name])]) + " |"
             for name, label in labels.items() if name in results]
    return "\n".join(rows)


def _training_time(result):
    return cell(result, "training_seconds", _decimals(0, " s"))


def gan_table(results):
    def cells(result):
        fid_floor_spread = "-"
        if lookup(result, "metrics/fid_floor_mean") is not None:  # one evaluation's draws: seed 0's
            metrics = result["metrics"]
            fid_floor_spread = (f"{metrics['fid_floor_mean']:.2f} ± {metrics['fid_floor_std']:.2f} "
                                f"[{metrics['fid_floor_min']:.2f}, {metrics['fid_floor_max']:.2f}]")
        copies = "-"
        if lookup(result, "metrics/memorization_distance_ratio") is not None:
            copies = (f"{cell(result, 'metrics/memorization_median_distance_samples')} / "
                      f"{cell(result, 'metrics/memorization_median_distance_held_out')} "
                      f"({cell(result, 'metrics/memorization_distance_ratio')}); "
                      f"{cell(result, 'metrics/memorization_share_below_held_out_p1', _percent)}")
        return [cell(result, "metrics/confident_fraction", _percent), cell(result, "metrics/effective_classes"),
                f"{cell(result, 'metrics/fid_classifier_features')} / "
                f"{cell(result, 'metrics/fid_floor_real_train_vs_test')} "
                f"({cell(result, 'metrics/fid_ratio_to_floor', _decimals(1, 'x'))})",
                fid_floor_spread, cell(result, "metrics/classifier_score"), copies, _training_time(result)]

    header = ["run (`python train.py gan ...`, 1,000 samples)", "confident (>= 0.9)", "effective classes",
              "classifier FID / real-data floor (ratio)", "floor over 5 draws of training digits",
              "classifier score",
              "nearest training digit, median L2: samples / held-out (ratio); samples nearer than 99% of held-out",
              "training time"]
    labels = {"gan": "defaults: the tutorial's MLP pair + R1 + EMA",
              "gan_no_r1": "defaults without R1 (`--r1-gamma 0`)", "gan_no_ema": "defaults without EMA (`--ema 0`)",
              "gan_tutorial": "the tutorial's recipe (`--r1-gamma 0 --ema 0`)",
              "dcgan": "`--arch dcgan`: its recipe, batch 64, learning rate 1e-3, InfoGAN's code (10 values, "
                       "weight 0.5), the same remedies"}
    return experiments_table(results, header, labels, cells)


def nll_name(metrics):
    """What a VAE's importance-weighted NLL is of: binarised digits (--binarize), or grey levels (runs before
    the flag, which have no "binarize")."""
    if metrics.get("binarize"):
        return "NLL of binarised digits"
    return "Bernoulli NLL on grey levels"


def vae_table(results):
    def cells(result):
        return [cell(result, "metrics/test_neg_elbo"),
                f"{cell(result, 'metrics/test_reconstruction')} + {cell(result, 'metrics/test_kl')}",
                f"{cell(result, 'metrics/test_nll_importance_weighted')} ({nll_name(result['metrics'])})",
                cell(result, "metrics/train_neg_elbo"), f"{_training_time(result)} ({result['epochs']} epochs)"]

    header = ["run (`python train.py vae ...`)", "test -ELBO (nats)", "reconstruction + KL",
              "importance-weighted NLL (K = 100)", "train -ELBO", "training time"]
    labels = {"vae_z20": "`--latent-dim 20` (the quality target: at most 112)",
              "vae_binarized": "`--latent-dim 20 --binarize`: binarised digits, MNIST's NLL as papers report it",
              "vae_z2": "the defaults (latent 2)", "vae_conv": "`--arch conv --latent-dim 20`: the conv recipe"}
    return experiments_table(results, header, labels, cells)


# The Tang poems' runs, measured side by side (evaluate.py's verse measures), in the table's column order.
VERSE_RUNS = {"LSTM": "lstm_tang", "Transformer": "transformer_tang"}


def verse_table(results):
    """The Tang poems' measures (evaluate.py): each text model's beside the real held-out poems' and the targets."""
    runs = {label: results[name] for label, name in VERSE_RUNS.items()
            if "verse" in results.get(name, {}).get("metrics", {})}
    first = next(iter(runs.values()))
    verse = first["metrics"]["verse"]
    real = verse["real_held_out"]
    entropy = verse["unigram_entropy_bits"]

    def constrained(result):
        shares = [generated["form_valid_share"] for generated in result.get("generated", [])
                  if "--form" in generated["command"] or "--acrostic" in generated["command"]]
        return ", ".join(_percent(share) for share in shares) or "-"

    def row(measure, cells, real_cell, target):
        return "| " + " | ".join([measure, *cells, real_cell, target]) + " |"

    def each(path, form=_percent):
        return [cell(result, f"metrics/{path}", form) for result in runs.values()]

    shown = any(result.get("seeds", 1) > 1 for result in runs.values())
    rows = [row(f"{verse['poems']} poems at temperature {verse['temperature']}", list(runs), "real held-out poems",
                "target"),
            "|" + " --- |" * (len(runs) + 3),
            row("run", [f"`{result['command']}` ({_training_time(result)} of training){seeds_note(result, shown)}"
                        for result in runs.values()], "", ""),
            row("form-valid (4 or 8 clauses, all of 5 or all of 7 characters)", each("verse/model/form_valid_share"),
                _percent(real["form_valid_share"]), ">= 95%"),
            row("form-valid with `--form` / `--acrostic` (the poems below)",
                [constrained(result) for result in runs.values()], "", "100%"),
            row("rhyme share of the valid poems (even clauses, 十三辙)", each("verse/model/rhyme_share_of_valid"),
                _percent(real["rhyme_share_of_valid"]),
                f">= 80% of the real share: {_percent(0.8 * real['rhyme_share_of_valid'])}"),
            row("novel clauses (in no training poem)", each("verse/model/novel_clause_share"),
                _percent(real["novel_clause_share"]), ">= 85%"),
            row("distinct poems", each("verse/model/distinct_share"), _percent(real["distinct_share"]), "100%"),
            row("held-out bits per character", each("held_out_bits_per_char", _decimals(3)),
                f"unigram entropy {entropy:.3f}", f"<= {entropy - 1.5:.3f}")]
    return "\n".join(rows)


def summary_table(results, machine_info):
    shown = several_seeds(results, results)
    rows = ["| model | command | measured (`python evaluate.py RUN_DIR`) | training time |",
            "| --- | --- | --- | --- |"]
    for name, result in results.items():
        metrics = result["metrics"]
        if metrics["model"] == "gan":
            measured = (f"{cell(result, 'metrics/confident_fraction', _percent)} confident, "
                        f"{cell(result, 'metrics/effective_classes')} effective classes, classifier FID "
                        f"{cell(result, 'metrics/fid_ratio_to_floor', _decimals(1, 'x'))} its floor")
        elif metrics["model"] == "vae":
            measured = (f"test -ELBO {cell(result, 'metrics/test_neg_elbo')} nats, importance-weighted "
                        f"{nll_name(metrics)} {cell(result, 'metrics/test_nll_importance_weighted')}")
        else:
            measured = (f"held-out {cell(result, 'metrics/held_out_bits_per_char', _decimals(3))} bits/char "
                        f"(perplexity {cell(result, 'metrics/held_out_perplexity')})")
        measured_on = f" ({result['measured_on']})" if "measured_on" in result else ""
        rows.append(f"| {name}{seeds_note(result, shown)} | `{result['command']}` | {measured} | "
                    f"{_training_time(result)}{measured_on} |")
    rows.append("")
    cpu = machine_info.get("cpu_model", machine_info["processor"])
    rows.append(f"Made by `python reproduce.py`, last on {machine_info['date']}: {machine_info['cpus']} CPU cores "
                f"({cpu}, {machine_info['gpus']} GPUs), Python {machine_info['python']}, "
                f"TensorFlow {machine_info['tensorflow']}, Keras {machine_info['keras']}."
                + (" Rows with no day and CPU beside their time were measured earlier, on a 2-core machine whose "
                   "CPU was not recorded." if any("measured_on" not in result for result in results.values())
                   else ""))
    return "\n".join(rows)


def text_comparison_table(results):
    """The text models on one corpus: held-out bits per character and the training seconds it took."""
    shown = several_seeds(results, TEXT_COMPARISON["runs"].values())
    rows = ["| model | command | held-out bits/char | training time | training chars/s |",
            "| --- | --- | --- | --- | --- |"]
    for label, name in TEXT_COMPARISON["runs"].items():
        result = results[name]
        rows.append(f"| {label}{seeds_note(result, shown)} | `{result['command']}` | "
                    f"{cell(result, 'metrics/held_out_bits_per_char', _decimals(3))} | {_training_time(result)} | "
                    f"{cell(result, 'samples_per_sec_last_epoch', '{:,.0f}'.format)} |")
    return "\n".join(rows)


def plot_text_comparison(runs, path):
    """Held-out bits per character after each epoch against the training seconds so far, one line per model."""
    from training import figures

    figure, axis = figures.plt.subplots(figsize=(6.4, 4.2))
    for label, name in TEXT_COMPARISON["runs"].items():
        history = run_files.read_history(os.path.join(runs, name))
        axis.plot([row["wall_seconds"] for row in history], [row["test_bits_per_char"] for row in history],
                  marker="o", markersize=3, label=label)
    axis.set_xlabel("training seconds")
    axis.set_ylabel("held-out bits per character")
    axis.set_title("pydoc: LSTM and Transformer at train.py's defaults", fontsize=10)
    axis.grid(alpha=0.3)
    axis.legend()
    figure.tight_layout()
    with run_files.atomic_path(path) as partial:
        figure.savefig(partial, dpi=110, format="png")
    figures.plt.close(figure)


def replace_between_markers(text, name, content):
    start, end = f"<!-- reproduce:{name} -->", f"<!-- /reproduce:{name} -->"
    if start not in text or end not in text:
        return text, False
    before, rest = text.split(start, 1)
    _, after = rest.split(end, 1)
    return f"{before}{start}\n{content}\n{end}{after}", True


def write_tables(results, machine_info, out, update_pages):
    """results.md under `out`; with update_pages, the tables between markers in every page (see pages())."""
    tables = {"summary": summary_table(results, machine_info), "gan": gan_table(results), "vae": vae_table(results)}
    for name in ("lstm_pydoc", "lstm_tang", "transformer_pydoc", "transformer_tang"):
        generated = results.get(name, {}).get("generated") or []
        generated = [generated] if isinstance(generated, dict) else generated  # results.json before the poems
        if generated:
            key = name.split("_")[1] if name.startswith("lstm_") else name  # the LSTM's keep their old names
            tables[key] = "\n\n".join(f"`{one['command']}`:\n\n```\n{one['text']}\n```"
                                                      for one in generated)
    if any("verse" in results.get(name, {}).get("metrics", {}) for name in VERSE_RUNS.values()):
        tables["verse"] = verse_table(results)
    if all(name in results for name in TEXT_COMPARISON["runs"].values()):
        tables["text_comparison"] = text_comparison_table(results)
    path = os.path.join(out, "results.md")
    run_files.write_atomic(path, "\n\n".join(tables.values()) + "\n")
    print(f"tables: {os.path.relpath(path, REPO)}")
    if update_pages:
        for page in pages():
            if os.path.abspath(page) == os.path.abspath(path):
                continue
            with open(page, encoding="utf-8") as handle:
                text = handle.read()
            replaced = []
            for name, content in tables.items():
                text, found = replace_between_markers(text, name, content)
                if found:
                    replaced.append(name)
            if replaced:
                run_files.write_atomic(page, text)
                print(f"rewrote the {', '.join(replaced)} table(s) in {os.path.relpath(page, REPO)}")


def expected_wall_time(quick, chosen, previous, seeds=1):
    """What to expect: the chosen experiments' training commands as long as they took in the last results
    (the evaluations add a little), or the whole run's usual time; each of `seeds` as long again."""
    if quick:
        return "a few minutes" if seeds == 1 else f"a few minutes for each of {seeds} seeds"
    recorded = [previous.get("experiments", {}).get(name, {}).get("command_seconds") for name in chosen]
    if chosen and None not in recorded:
        return f"over {seeds * sum(recorded) / 60:.0f} minutes (its training commands in the last results.json)"
    return f"about {seeds * EXPECTED_MINUTES} minutes on a 2-core CPU for everything"


def main(argv=None):
    args = resolve(sys.argv[1:] if argv is None else argv)
    if args.tables_only:
        report = run_files.read_json(os.path.join(args.out, "results.json"))
        write_tables(report["experiments"], report["machine"], args.out, update_pages=args.update_pages)
        return
    runs = os.path.join(args.out, "runs") if args.quick else os.path.join(REPO, "outputs", "reproduce")
    figures_dir = os.path.join(args.out, "figures")
    os.makedirs(figures_dir, exist_ok=True)
    os.makedirs(runs, exist_ok=True)
    results_path = os.path.join(args.out, "results.json")
    previous = run_files.read_json(results_path) if os.path.isfile(results_path) else {}
    asked = {name for name, spec in EXPERIMENTS.items() if spec["group"] in args.only or name in args.only}
    results = {name: value for name, value in previous.get("experiments", {}).items() if name not in asked}
    chosen = [name for name in EXPERIMENTS if name in asked and not (args.quick and name in QUICK_SKIPS)]
    seeds = [None] if args.seeds == 1 else list(range(args.seeds))  # None: the commands as the docs type them
    print(f"reproduce: {', '.join(args.only)}{' (quick)' if args.quick else ''}"
          f"{f', seeds 0 to {args.seeds - 1}' if args.seeds > 1 else ''}; runs in "
          f"{os.path.relpath(runs, REPO)}, figures in {os.path.relpath(figures_dir, REPO)}; expected wall time "
          f"{expected_wall_time(args.quick, chosen, previous, args.seeds)}")
    started = time.perf_counter()
    with open(os.path.join(runs, "reproduce.log"), "w", encoding="utf-8") as log:  # every command's output
        transcript = Transcript(log, prefix_lines=args.jobs > 1)
        pool = concurrent.futures.ThreadPoolExecutor(max_workers=args.jobs)
        futures = {pool.submit(run_experiment, name, EXPERIMENTS[name], args, runs, figures_dir, transcript,
                               seed): (name, seed) for name in chosen for seed in seeds}
        per_seed = {}
        try:
            for future in concurrent.futures.as_completed(futures):
                per_seed[futures[future]] = future.result()  # a failed command's exit (status 2) comes out here
        finally:
            pool.shutdown(wait=True, cancel_futures=True)  # after a failure, start nothing more
        for name in chosen:
            results[name] = combine_seeds([per_seed[name, seed] for seed in seeds])
    results = {name: results[name] for name in EXPERIMENTS if name in results}  # the README's order
    if all(name in chosen for name in TEXT_COMPARISON["runs"].values()):
        comparison = os.path.join(figures_dir, TEXT_COMPARISON["figure"])
        plot_text_comparison(runs, comparison)
        print(f"figure: {os.path.relpath(comparison, REPO)}")
    # TensorFlow, only now that the runs are done; its start-up log (CUDA probing on a CPU machine) says
    # nothing about them.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    from training.distribute import describe_machine

    machine_info = describe_machine()
    report = {"machine": machine_info, "quick": args.quick, "wall_seconds": round(time.perf_counter() - started),
              "experiments": results}
    # Not run_files.write_json: that sorts the keys, and the experiments keep the README's order here.
    run_files.write_atomic(results_path, json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    print(f"results: {os.path.relpath(results_path, REPO)}")
    write_tables(results, machine_info, args.out, update_pages=args.update_pages)
    print(f"reproduce: done in {report['wall_seconds'] / 60:.1f} minutes")


if __name__ == "__main__":
    main()
