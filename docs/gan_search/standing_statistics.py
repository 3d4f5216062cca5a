"""The averaged generator's BatchNorm statistics, before and after: each generator snapshot of a GAN run
measured twice from the same noise, with the statistics it was saved with and with standing statistics
(training/gan.py: standing_statistics) measured for its weights.

    python docs/gan_search/standing_statistics.py RUN_DIR [EVERY]

EVERY: measure the snapshots whose epoch is a multiple of it (default 12), and the last. A snapshot saved
before standing statistics existed holds the raw generator's statistics: the "raw" column. One saved since
holds standing statistics already, and both columns agree.
"""

import json
import os
import sys

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, REPO)

import datasets  # noqa: E402
from evaluation import classifier as digit_classifier  # noqa: E402
from evaluation import gan as gan_evaluation  # noqa: E402
from models import gan as gan_models  # noqa: E402
from training.gan import list_snapshots, standing_noise, standing_statistics  # noqa: E402


def measures(two_headed_classifier, generator, reference):
    quality = gan_evaluation.sample_quality(two_headed_classifier, gan_evaluation.generate(generator, 1000, 0),
                                            reference)
    return (f"{quality['confident_fraction']:.1%}, {quality['effective_classes']:.2f}, "
            f"{quality[gan_evaluation.FID_KEY] / reference.floor:.2f}x")


def main(run_dir, every=12):
    with open(os.path.join(run_dir, "config.json"), encoding="utf-8") as handle:
        settings = json.load(handle)["settings"]
    data = datasets.load_for("gan", settings["data"])
    two_headed_classifier = digit_classifier.with_features(digit_classifier.load_or_train(data)[0])
    reference = gan_evaluation.fid_reference(two_headed_classifier, data, 1000, 0)
    generator, _ = gan_models.build_pair(settings["arch"], settings["noise_dim"], settings.get("info_code", 0))
    snapshots = list_snapshots(run_dir)
    print("| epoch | saved statistics: confident, effective classes, FID / floor | standing statistics |")
    print("| --- | --- | --- |")
    for epoch, path in snapshots:
        if epoch % every and epoch != snapshots[-1][0]:
            continue
        generator.load_weights(path)
        saved = measures(two_headed_classifier, generator, reference)
        standing_statistics(generator, standing_noise(settings["noise_dim"], settings["seed"]))
        print(f"| {epoch} | {saved} | {measures(two_headed_classifier, generator, reference)} |", flush=True)


if __name__ == "__main__":
    main(sys.argv[1], *map(int, sys.argv[2:]))
