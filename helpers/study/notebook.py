"""What every notebook's first cells call: versions and device, the run context, `save_fig`, recorded results.

    from helpers.study.notebook import setup, start
    setup()                                     # versions, device, plotting defaults
    ctx = start("01_eda_and_aliens", **parameters(globals()))   # the cell tagged `parameters` -> the run context
    ctx.save_fig(fig, "class_shares")           # -> reports/figures/01_eda_and_aliens/class_shares.png
    records = ctx.run(["Baseline", "Network 1"])
    ctx.record_runs(records)                    # -> reports/results/01_eda_and_aliens.json, every seed

`PARAMETERS` is the one list of the notebooks' parameters and their defaults: each notebook's `parameters`
cell declares exactly these, `helpers.study.pipeline` injects them, and the tests check both against it.
"""
from __future__ import annotations

import os
import platform
from dataclasses import dataclass, field
from pathlib import Path

from helpers.configs.constants import PRIMARY
from helpers.runtime.paths import reports_dir

FIG_DPI = 120

PARAMETERS = {"DATA_PATH": None, "LABELS_PATH": None, "PROFILE": "default", "SEEDS": 1, "REPORTS_DIR": None,
              "FORCE": False}
"""Name -> default of every notebook parameter (see the module docstring)."""


class ParameterError(ValueError):
    """A notebook parameter of the wrong type or value; shown as its one line, in JupyterLab and papermill too."""

    def _render_traceback_(self):  # IPython shows this instead of the traceback
        return [f"ParameterError: {self}"]


_TRUE, _FALSE = ("true", "yes", "1"), ("false", "no", "0")


def _flag(name: str, value) -> bool:
    """A boolean parameter: a bool, 0/1, or the strings true/false, yes/no, 1/0 (any case; papermill passes
    `-p FORCE false` as the string "false", which must not count as true)."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in _TRUE + _FALSE:
        return value.strip().lower() in _TRUE
    raise ParameterError(f"{name}={value!r} is not true or false: pass True/False (papermill: -p {name} True)")


def _count(name: str, value) -> int:
    """A positive integer parameter, or a string of digits naming one."""
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ParameterError(f"{name}={value!r} is not a positive whole number: pass e.g. {name}=3 "
                             f"(papermill: -p {name} 3)")
    return value


def _path(name: str, value) -> str | None:
    if value is None or (isinstance(value, os.PathLike)):
        return None if value is None else os.fspath(value)
    if not isinstance(value, str) or not value.strip() or value.strip() == "None":
        raise ParameterError(f"{name}={value!r} is not a path: pass a file or folder path as a string, or None")
    return value


def typed_parameters(params: dict) -> dict:
    """Every parameter of `PARAMETERS` checked and typed (missing ones take their defaults), before any work: an
    unknown name, a wrong type or value raises `ParameterError` in one line naming the parameter and the fix.
    PROFILE, a name, comes back resolved (`helpers.configs.profiles.resolve`: its settings, with its name)."""
    from helpers.configs import profiles

    unknown = sorted(set(params) - set(PARAMETERS))
    if unknown:
        raise ParameterError(f"unknown notebook parameter(s) {', '.join(unknown)}: the parameters are "
                             f"{', '.join(PARAMETERS)}")
    values = {**PARAMETERS, **params}
    name = values["PROFILE"]
    try:
        profile = profiles.resolve(name) if isinstance(name, str) else None  # a name: papermill passes strings
    except ValueError:
        profile = None
    if profile is None:
        raise ParameterError(f"PROFILE={name!r} is not a profile: pass one of {', '.join(profiles.PROFILES)}")
    return {"DATA_PATH": _path("DATA_PATH", values["DATA_PATH"]),
            "LABELS_PATH": _path("LABELS_PATH", values["LABELS_PATH"]), "PROFILE": profile,
            "SEEDS": _count("SEEDS", values["SEEDS"]), "REPORTS_DIR": _path("REPORTS_DIR", values["REPORTS_DIR"]),
            "FORCE": _flag("FORCE", values["FORCE"])}


def parameters(namespace: dict) -> dict:
    """The notebook parameters defined in `namespace` (a notebook's `globals()`), for `start(**...)`."""
    return {name: namespace[name] for name in PARAMETERS if name in namespace}


def setup() -> None:
    """Print library versions and the device; set plotting defaults (the same first cell everywhere)."""
    import keras
    import matplotlib
    import numpy as np
    import seaborn as sns

    from helpers.runtime import backend
    from helpers.runtime.device import describe_device, device_facts

    engine = backend.name()
    print(f"Python {platform.python_version()}, Keras {keras.__version__} on {engine} "
          f"{__import__(engine).__version__}, NumPy {np.__version__}, Matplotlib {matplotlib.__version__}")
    print(f"Device: {describe_device()}")
    if not device_facts()["gpus"]:
        print("No GPU: the default profile is sized for 2 CPU cores; use PROFILE='full' on a GPU or Kaggle.")
    sns.set_theme(context="notebook", style="whitegrid")
    matplotlib.rcParams.update({"figure.dpi": 80, "savefig.dpi": FIG_DPI, "image.cmap": "gray"})


@dataclass
class Context:
    """Everything a notebook needs after its parameters: the data, profile (resolved), seeds and output folders."""

    notebook: str
    data: object
    profile: dict
    seeds: int
    force: bool = False
    results: dict = field(default_factory=dict)

    @property
    def figures_dir(self) -> Path:
        return reports_dir() / "figures" / self.notebook

    def save_fig(self, fig, name: str) -> Path:
        """Save a matplotlib figure as reports/figures/<notebook>/<name>.png at a fixed resolution, stamped
        "synthetic data" when the data is the generator's."""
        self.figures_dir.mkdir(parents=True, exist_ok=True)
        path = self.figures_dir / f"{name}.png"
        if self.data.source.is_synthetic and not getattr(fig, "_stamped", False):
            fig.text(0.995, 0.003, "synthetic data", ha="right", va="bottom", fontsize=7, color="tab:red", alpha=0.8)
            fig._stamped = True
        fig.savefig(path, dpi=FIG_DPI, bbox_inches="tight")
        return path

    def run(self, names: list[str], *, verbose: int | None = None, **kwargs) -> dict[str, list[dict]]:
        """Train (or reuse) each named entry for every seed; {name: [record per seed]}. `kwargs` go to
        `helpers.run.train.run` (`save_test_set`, `overrides`)."""
        from helpers.run.steps import Options
        from helpers.run.train import run

        # helpers.run.progress prints each run's place, one line per epoch and the ETA; in JupyterLab Keras's progress
        # bar runs too, under the pipeline (papermill) not: its lines would only repeat the epoch lines.
        if verbose is None:
            verbose = 0 if os.environ.get("MARS_PROGRESS_LOG") else 1
        options = Options(force=self.force, verbose=verbose)
        return {name: [run(name, self.data, self.profile, seed, options=options, **kwargs)
                       for seed in range(self.seeds)] for name in names}

    def record_runs(self, records: dict[str, list[dict]], **extra) -> Path:
        """Store every run of `records` ({name: [record per seed]}, as `run` returns): each seed's test and
        leaderboard scores, their mean over seeds and the table's flags, plus any `extra` results."""
        from helpers.study.table import flags

        row_flags = flags(records)

        mean = _mean_over_seeds
        results = {name: {"seeds": [{"seed": run["seed"], "test": run["test"], "leaderboard": run.get("leaderboard")}
                                    for run in runs],
                          "mean": {"test_miou_fg": mean(runs, "test", PRIMARY),
                                   "lb_public_miou_fg": mean(runs, "leaderboard", "public", PRIMARY),
                                   "lb_private_miou_fg": mean(runs, "leaderboard", "private", PRIMARY),
                                   "test_kaggle_style": mean(runs, "test", "competition_miou")},
                          "flags": row_flags[name]}
                   for name, runs in records.items()}
        return self.record({**results, **extra})

    def record(self, results: dict) -> Path:
        """Store the notebook's key numbers as JSON (reports/results/<notebook>.json)."""
        from helpers.runtime.files import write_json_atomic

        self.results.update(results)
        path = reports_dir() / "results" / f"{self.notebook}.json"
        write_json_atomic(path, {"notebook": self.notebook, "profile": self.profile["name"], "seeds": self.seeds,
                                 "data": self.data.source.to_dict(), "results": self.results})
        return path


def start(notebook: str, **params) -> Context:
    """Apply the parameters cell (keywords named as in `PARAMETERS`; missing ones take its defaults), each
    checked and typed first (`typed_parameters`): output folder, data (labelled real/synthetic), profile and seeds."""
    values = typed_parameters(params)
    data_path, labels_path, reports = values["DATA_PATH"], values["LABELS_PATH"], values["REPORTS_DIR"]
    profile, seeds, force = values["PROFILE"], values["SEEDS"], values["FORCE"]
    from helpers.data.loading import load_mars

    if reports:
        os.environ["MARS_REPORTS"] = str(reports)
    if profile["deterministic"]:
        from helpers.runtime.determinism import set_determinism

        set_determinism(0)  # before TensorFlow runs an op: its thread pools are fixed then
    data = load_mars(data_path, labels_path)
    print(f"Data: {data.source.label()} — {len(data.train_images)} training and {len(data.test_images)} test images")
    if data.source.is_synthetic:
        print("NOTE: synthetic data — every number below describes the generator, not the competition data.")
    print(f"Profile: {profile['name']}; seeds: {seeds}; outputs in {reports_dir()}")
    return Context(notebook=notebook, data=data, profile=profile, seeds=seeds, force=force)


def _dig(node, path):
    """node[path[0]][path[1]]...; None where a level is missing."""
    for key in path:
        node = node.get(key) if isinstance(node, dict) else None
    return node


def _mean_over_seeds(runs: list[dict], *path) -> float | None:
    """Mean of the value at `path` over the runs that have one; None when none has."""
    values = [float(v) for v in (_dig(run, path) for run in runs) if v is not None]
    return sum(values) / len(values) if values else None


def summary(records: dict):
    """A DataFrame with one row per entry: scores (mean over seeds, %; the primary `miou_fg` first, then the
    starter-kit metric under the entry's own inference), parameters, epochs, images seen, time and the
    `helpers.study.table.flags` ("did not learn", "identical predictions to …"; empty = every check passed)."""
    import pandas as pd

    from helpers.study.table import flags

    row_flags = flags(records)

    def mean(runs, *path):
        value = _mean_over_seeds(runs, *path)
        return None if value is None else round(100 * value, 2)

    rows = []
    for name, runs in records.items():
        rows.append({"entry": name, "seeds": len(runs),
                     "test mIoU": mean(runs, "test", PRIMARY),
                     "LB public": mean(runs, "leaderboard", "public", PRIMARY),
                     "LB private": mean(runs, "leaderboard", "private", PRIMARY),
                     "test, Kaggle-style": mean(runs, "test", "competition_miou"),
                     "params": runs[0]["model"]["params"], "epochs": runs[0]["training"]["epochs_run"],
                     "images seen": runs[0]["training"].get("images_seen"),
                     "train s": round(runs[0]["training"]["seconds"], 1), "flags": "; ".join(row_flags[name])})
    return pd.DataFrame(rows).set_index("entry")


def loss_examples(mask, seed: int = 0) -> dict:
    """Hand-made softmax predictions of one mask, each with one kind of error, to show what a loss term rewards.

    'truth' (softened one-hot), 'blurred' (9×9 box blur: soft boundaries), 'noisy boundary' (15 % of pixels
    switched to a random labelled class) and 'extra class' (a band of big rock added): (64, 128, 5) arrays.
    """
    import numpy as np
    from scipy.ndimage import uniform_filter

    rng = np.random.default_rng(seed)
    eye = np.eye(5, dtype=np.float32)
    onehot = eye[mask]
    noisy = eye[np.where(rng.random(mask.shape) < 0.15, rng.integers(1, 5, mask.shape), mask)]
    extra = onehot.copy()
    extra[:, :40] = eye[4]
    blurred = uniform_filter(onehot, size=(9, 9, 1), mode="nearest")
    cases = {"truth": onehot, "blurred": blurred / blurred.sum(-1, keepdims=True), "noisy boundary": noisy,
             "extra class": extra}
    return {name: 0.9 * p + 0.1 / 5 for name, p in cases.items()}
