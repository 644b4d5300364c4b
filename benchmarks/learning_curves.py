"""Learning curves that decide the default profile's epoch budget: `python -m benchmarks.learning_curves`.

Trains a cheap and an expensive Table 1 row on their whole training splits for `--epochs` epochs (the default
profile's width and batch, or each of `--batch B ...`; early stopping off) and plots each epoch's validation mIoU beside the best constant
predictor's. Writes `reports/learning_curves.png` and `.json` (per-epoch scores, seconds, epochs to reach 90 %
and 95 % of the best score). Runs are ordinary records (profile name "curves"), reused when finished.
"""
from __future__ import annotations

import argparse
import itertools
import json

import numpy as np

from helpers.configs.profiles import get_profile
from helpers.data.loading import load_mars
from helpers.run.steps import Options
from helpers.run.train import run
from helpers.runtime.paths import reports_dir

ROWS = ("Baseline", "Network 9")


def epochs_to(curve: list[float], share: float) -> int | None:
    """First epoch (1-based) whose score reaches `share` of the curve's best."""
    best = max(curve)
    return next((i + 1 for i, v in enumerate(curve) if v >= share * best), None)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.learning_curves", description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=24)
    parser.add_argument("--rows", nargs="+", default=list(ROWS))
    parser.add_argument("--batch", type=int, nargs="+", help="batch sizes to compare (default: the default profile's)")
    args = parser.parse_args(argv)
    data = load_mars()
    default = get_profile("default")
    batches = args.batch or [default["batch_size"]]
    results = {}
    for name, batch in itertools.product(args.rows, batches):
        profile = {**default, "name": "curves", "epochs": args.epochs, "patience": args.epochs, "test_set_limit": 64,
                   "batch_size": batch}
        record = run(name, data, profile, seed=0, options=Options(verbose=2))
        curve = record["history"]["val_competition_miou"]
        label = name if len(batches) == 1 else f"{name}, batch {batch}"
        results[label] = {"val_competition_miou": curve, "train_competition_miou": record["history"].get("competition_miou"),
                          "constant_val": record["constant_baseline"]["val"]["score"], "batch_size": batch,
                          "seconds": record["training"]["seconds"], "test": record["test"]["competition_miou"],
                          "epochs_to_90": epochs_to(curve, 0.90), "epochs_to_95": epochs_to(curve, 0.95)}
        print(json.dumps({label: {k: v for k, v in results[label].items() if "miou" not in k}}))
    out = reports_dir()
    out.mkdir(parents=True, exist_ok=True)
    (out / "learning_curves.json").write_text(json.dumps({"profile": {**default, "name": "curves", "epochs": args.epochs},
                                                          "batches": batches, "rows": results}, indent=1))
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from helpers.study import plots

    fig, ax = plt.subplots(figsize=(7, 4))
    for name, res in results.items():
        epochs = np.arange(1, len(res["val_competition_miou"]) + 1)
        line, = ax.plot(epochs, np.array(res["val_competition_miou"]) * 100, label=f"{name} (val)")
        ax.axhline(res["constant_val"] * 100, color=line.get_color(), ls=":", lw=1)
    ax.set(ylabel="val mIoU (starter kit), %",
           title=f"Learning curves, {data.source.kind} data (dotted: best constant predictor)")
    plots.epoch_axis(ax)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "learning_curves.png", dpi=120)
    print(f"wrote {out / 'learning_curves.png'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
