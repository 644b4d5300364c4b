"""The Kaggle kernel: one self-contained notebook that trains the Final Model (or the Improved model) and
writes `submission.csv`.

    python -m helpers.kaggle bundle [--out dist/kaggle] [--profile full] [--seed 0] [--user NAME]
                                    [--model final|improved] [--members K] [--no-tta] [--no-self-training]
    python -m helpers.kaggle check [--out reports] [--model final|improved]

writes `<out>/mars-terrain-final-model.ipynb` (`--model improved`: `mars-terrain-improved-model.ipynb`) and
`<out>/kernel-metadata.json` (competition
`an-2-dl-2024-2025-homework-2`, GPU on, internet off), ready for `kaggle kernels push -p <out>`.

The notebook carries the whole `helpers` package — every module of `helpers/` at any depth and the
`helpers/data/assets/*` files, as one base64 zip — so it needs nothing beyond Kaggle's own image
(TensorFlow/Keras, numpy, scikit-learn, OpenCV). Everything is embedded because that is simpler than tracking
what the train path imports; the modules it does not use (`study/`, `data/synthetic`) are never imported, so
papermill and seaborn are not needed. Its cells: parameters (PROFILE, SEED, TIME_BUDGET_S, INPUT_DIR,
OUTPUT_DIR) → environment check → unpack the package to `<OUTPUT_DIR>/mars_helpers/helpers/`, first on
`sys.path`, and print the devices, strategy and precision →
find `mars_for_students.npz` anywhere under INPUT_DIR → `run("Final Model", data, PROFILE, SEED,
save_test_set=True)` with every output under OUTPUT_DIR (`MARS_REPORTS`) → copy the run's submission to
`<OUTPUT_DIR>/submission.csv`, validate it with `read_submission` → `kernel_summary.json`.

Kaggle's GPU image is older than this project's pins (in December 2026: Python 3.12, TensorFlow 2.20, Keras
3.13, NumPy 2.0; `requirements-kaggle.txt`). `python -m helpers.kaggle check` (`make kaggle-check`, in a venv
of those versions) runs the bundled kernel headless in the smoke profile on a fake `/kaggle/input` and reads
its submission back strictly. The check cell probes features rather than version numbers
(`compatibility_problems`), before `helpers` is imported, and stops the kernel with a list of what is
missing: the Final Model's path needs the `dtype` argument of `keras.losses.Loss` (Keras 3.4); augmentation
entries need `keras.layers.Pipeline` and augmentation layers that take `{"images", "segmentation_masks"}`
dicts (Keras 3.6-3.7). Training runs under `helpers.runtime.device.strategy()` (MirroredStrategy over Kaggle's two
T4s, mixed float16) and stops at `TIME_BUDGET_S` (`helpers.model.callbacks.TimeBudget`), an hour under Kaggle's
12-hour limit, so the best epoch is still restored and the submission written.
"""
from __future__ import annotations

import argparse
import base64
import hashlib
import inspect
import io
import json
import re
import sys
import zipfile
from pathlib import Path

from helpers.data.loading import REAL_FILENAME, find_under
from helpers.runtime.paths import PACKAGE_DIR, REPO_ROOT, package_files

COMPETITION = "an-2-dl-2024-2025-homework-2"
MODELS = {"final": "Final Model", "improved": "Improved"}  # --model -> the entry the kernel trains
TITLES = {"final": "Mars Terrain Final Model", "improved": "Mars Terrain Improved Model"}
PLACEHOLDER_USER = "your-kaggle-username"
DEFAULT_OUT = REPO_ROOT / "dist" / "kaggle"
DATA_FILENAME = REAL_FILENAME
SUMMARY_FILENAME = "kernel_summary.json"
KAGGLE_RUN_LIMIT_S = 12 * 3600  # a Kaggle GPU session's run-time limit
TIME_BUDGET_S = KAGGLE_RUN_LIMIT_S - 3600  # default training budget: an hour for set-up, prediction and the CSV
_ZIP_DATE = (1980, 1, 1, 0, 0, 0)  # fixed timestamps: the same sources give the same bundle
_USER = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*")


class KernelError(ValueError):
    """The kernel cannot run or the bundle cannot be made; the message names the problem and the fix."""


def compatibility_problems(uses_augmentation: bool = False) -> list[str]:
    """What this Python/Keras lacks for the kernel, one line each (empty when everything is there).

    Self-contained (imports inside, no `helpers` import): the kernel runs this function's source before
    unpacking `helpers`, whose import would already fail on an image without Keras 3.
    """
    import importlib
    import inspect
    import platform
    import sys

    problems = []
    if sys.version_info < (3, 10):
        problems.append(f"Python {platform.python_version()}: helpers needs Python 3.10 or newer")
    for module in ("numpy", "tensorflow", "cv2", "sklearn"):
        try:
            importlib.import_module(module)
        except ImportError as exc:
            problems.append(f"{module} cannot be imported ({exc})")
    try:
        import keras
    except ImportError as exc:
        return [*problems, f"keras cannot be imported ({exc})"]
    version = keras.__version__
    if int(version.split(".")[0]) < 3:
        return [*problems, f"Keras {version}: Keras 3 is needed (TensorFlow 2.16 or newer ships it)"]
    if keras.backend.backend() != "tensorflow":
        problems.append(f"Keras backend {keras.backend.backend()!r}: set KERAS_BACKEND=tensorflow")
    if "dtype" not in inspect.signature(keras.losses.Loss.__init__).parameters:
        problems.append(f"Keras {version}: keras.losses.Loss takes no dtype argument, which helpers.model.losses "
                        "passes (added in Keras 3.4)")
    if uses_augmentation:
        if not hasattr(keras.layers, "Pipeline"):
            problems.append(f"Keras {version}: no keras.layers.Pipeline, which helpers.data.augment uses "
                            "(it came with the image-layer rework of Keras 3.6-3.7)")
        else:
            import numpy as np

            zeros = np.zeros((1, 4, 4, 1), "float32")
            batch = {"images": zeros, "segmentation_masks": zeros}
            try:
                moved = keras.layers.RandomFlip("horizontal", seed=0)(batch, training=True)
            except Exception as exc:  # noqa: BLE001 - any failure means the feature is missing
                moved = exc
            if not (isinstance(moved, dict) and "segmentation_masks" in moved):
                problems.append(f"Keras {version}: augmentation layers do not take {{'images', 'segmentation_masks'}} "
                                "dicts, which helpers.data.augment uses (they came with Keras 3.6-3.7)")
    return problems


def library_versions() -> dict[str, str]:
    """Python and library versions and the GPUs TensorFlow sees (self-contained, like `compatibility_problems`)."""
    import importlib
    import platform

    versions = {"python": platform.python_version()}
    for module in ("tensorflow", "keras", "numpy", "cv2", "sklearn"):
        try:
            versions[module] = importlib.import_module(module).__version__
        except ImportError:
            versions[module] = "missing"
    try:
        import tensorflow as tf

        versions["gpus"] = ", ".join(gpu.name for gpu in tf.config.list_physical_devices("GPU")) or "none"
    except ImportError:
        versions["gpus"] = "unknown"
    return versions


def find_competition_file(input_dir) -> Path:
    """The first `mars_for_students.npz` (sorted paths) anywhere under `input_dir`, e.g. /kaggle/input."""
    root = Path(input_dir)
    if not root.is_dir():
        raise KernelError(f"input folder {root} does not exist: attach the competition data "
                          f"(Add Input → Competitions → {COMPETITION}) or set INPUT_DIR")
    found = find_under(root, DATA_FILENAME)
    if found is None:
        raise KernelError(f"no {DATA_FILENAME} under {root}: attach the competition data "
                          f"(Add Input → Competitions → {COMPETITION}) or set INPUT_DIR to the folder holding it")
    return found


def kernel_summary(record: dict, submission, rows: int, budget) -> dict:
    """What the kernel ran and left, as JSON-ready data: where `helpers` came from, versions, scores, submission,
    and whether the `TimeBudget` callback `budget` cut training."""
    import helpers

    modules = {name: getattr(module, "__file__", None) for name, module in sorted(sys.modules.items())
               if name == "helpers" or name.startswith("helpers.")}
    return {"helpers_file": helpers.__file__, "helpers_modules": modules, "versions": record["versions"],
            "device": record["device_name"], "profile": record["profile"]["name"], "seed": record["seed"],
            "data": record["data"], "run_key": record["key"], "training": {
                k: record["training"][k] for k in ("epochs_run", "best_epoch", "best_val_miou_fg", "seconds")},
            "test": {k: record["test"][k] for k in ("miou_fg", "competition_miou", "miou_1_4", "per_class_iou")},
            "leaderboard": record["leaderboard"], "submission": str(submission), "submission_rows": int(rows),
            "time_budget": {"seconds": budget.seconds, "stopped": budget.stopped,
                            "stopped_after_epoch": budget.stopped_after_epoch}}


def kernel_run(model: str = "final", members: int | None = None, tta: bool | None = None,
               self_training: bool | None = None) -> tuple[str, dict | None]:
    """(entry, overrides) the kernel trains for `model`: "final" (the report's Final Model) or "improved" (the
    Improved track's last step; `members` seeds soft-voted, flip `tta`, `self_training` off = its step (f)).
    None keeps the entry's own setting."""
    from helpers.configs.experiments import parents

    if model not in MODELS:
        raise KernelError(f"model {model!r} is not known: use one of {', '.join(MODELS)}")
    if model == "final":
        if (members, tta, self_training) != (None, None, None):
            raise KernelError("members, TTA and self-training are options of the improved model: pass "
                              "--model improved, or drop them")
        return MODELS["final"], None
    if members is not None and (isinstance(members, bool) or not isinstance(members, int) or members < 1):
        raise KernelError(f"members must be a positive number of seeds, got {members!r}")
    entry = MODELS["improved"] if self_training in (None, True) else parents(MODELS["improved"])[0]
    inference = {key: value for key, value in (("members", members), ("tta", tta)) if value is not None}
    return entry, ({"inference": inference} if inference else None)


def package_archive(package_dir=PACKAGE_DIR) -> bytes:
    """A zip of the whole package, its modules at any depth and its assets (`package_files`; paths `helpers/...`),
    byte-identical for the same sources."""
    package_dir = Path(package_dir)
    files = package_files(package_dir)
    if not (package_dir / "__init__.py").is_file():
        raise KernelError(f"{package_dir} is not the helpers package (no __init__.py): bundle from the repository")
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for path in files:
            info = zipfile.ZipInfo(f"helpers/{path.relative_to(package_dir).as_posix()}", date_time=_ZIP_DATE)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            archive.writestr(info, path.read_bytes(), compresslevel=9)
    return buffer.getvalue()


def _check_seed(seed) -> int:
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise KernelError(f"seed must be a non-negative integer, got {seed!r}")
    return seed


def _check_user(user: str) -> str:
    if not isinstance(user, str) or not _USER.fullmatch(user):
        raise KernelError(f"Kaggle username {user!r} is not valid: pass the name in your profile URL, "
                          "letters, digits, '-' or '_' (e.g. --user jane-doe)")
    return user


_DESCRIPTIONS = {
    "final": "the study's **Final Model** (global/local dual UNet on the image and its threshold, edge, Laplacian "
             "and Haar-wavelet channels; HeNormal init; big-rock Poisson blending; the report's loss mix with dynamic "
             "weights; AdamW with warm-up and cosine decay)",
    "improved": "the **Improved** model, beyond the report (a UNet with an SE bottleneck on focal loss without "
                "background, flips, argmax over classes 1-4, flip TTA, a soft vote of MEMBERS seeds and, unless "
                "SELF_TRAINING is False, a second round on its own confident test-set predictions: transductive)",
}

_INTRO = """# Mars terrain segmentation — {title} → `submission.csv`

Trains {description} on `mars_for_students.npz`, predicts the whole test set and writes
`{output}/submission.csv` for competition `{competition}`.

Generated by `python -m helpers.kaggle bundle --profile {profile}` from the project's `helpers` package
(version {version}), which is embedded below: nothing is installed or downloaded. Outputs: the run folder under
`{output}/runs/` (record, history, best model, test-set predictions), `submission.csv` and `{summary}`.
Profiles: `smoke` (seconds, a check), `default` (the 2-core study profile; tens of minutes on a GPU), `full` (the report's settings; on a GPU, hours at most)."""

_PARAMETERS = '''PROFILE = "{profile}"  # smoke | default | full (the report's settings)
SEED = {seed}  # one training run per seed
MODEL = "{model}"  # final (the report's Final Model) | improved (beyond the report)
MEMBERS = {members}  # improved: seeds soft-voted (None: the entry's)
TTA = {tta}  # improved: flip test-time augmentation (None: the entry's, on)
SELF_TRAINING = {self_training}  # improved: the self-training round (None: the entry's, on)
TIME_BUDGET_S = {budget}  # training stops here (best epoch restored), leaving time to predict and write the CSV
INPUT_DIR = "/kaggle/input"  # searched recursively for mars_for_students.npz
OUTPUT_DIR = "/kaggle/working"  # submission.csv, the run folder and kernel_summary.json go here'''

_CHECK = '''{compatibility_problems}

{library_versions}

for library, version in library_versions().items():
    print(f"{{library:>10}}: {{version}}")
PROBLEMS = compatibility_problems(uses_augmentation={uses_augmentation})
for problem in PROBLEMS:
    print("MISSING:", problem)
if PROBLEMS:
    raise RuntimeError("this image lacks what the kernel needs (listed above): in the Kaggle editor choose "
                       "Settings → Environment → 'Always use latest environment' and run again")'''

_ARCHIVE = '''# The helpers package ({n_files} files: its modules and assets), zipped and base64-encoded.
HELPERS_ZIP_SHA256 = "{sha256}"
HELPERS_ZIP_BASE64 = "{blob}"'''

_UNPACK = '''import base64, hashlib, io, os, shutil, sys, zipfile
from pathlib import Path

archive = base64.b64decode(HELPERS_ZIP_BASE64)
if hashlib.sha256(archive).hexdigest() != HELPERS_ZIP_SHA256:
    raise RuntimeError("the embedded helpers archive is damaged: bundle again with `python -m helpers.kaggle bundle`")
OUTPUT = Path(OUTPUT_DIR).resolve()
HELPERS_ROOT = OUTPUT / "mars_helpers"
shutil.rmtree(HELPERS_ROOT / "helpers", ignore_errors=True)
with zipfile.ZipFile(io.BytesIO(archive)) as bundle:
    bundle.extractall(HELPERS_ROOT)
sys.path.insert(0, str(HELPERS_ROOT))
for name in [name for name in sys.modules if name == "helpers" or name.startswith("helpers.")]:
    del sys.modules[name]  # a rerun in the same session imports the fresh copy

os.environ["MARS_REPORTS"] = str(OUTPUT)  # records, run folders
os.environ["MARS_DATA_DIR"] = str(OUTPUT / "mars_data")  # the stored split
os.environ["MARS_KAGGLE_INPUT"] = str(INPUT_DIR)
os.environ.pop("MARS_DATA", None)

import helpers

if not Path(helpers.__file__).resolve().is_relative_to(HELPERS_ROOT):
    raise RuntimeError(f"imported helpers from {helpers.__file__}, not the embedded copy in {HELPERS_ROOT}")
print(f"helpers {helpers.__version__} from {helpers.__file__}")

from helpers.runtime.device import strategy_summary

print(strategy_summary())'''

_DATA = '''from helpers.data.loading import load_mars
from helpers.kaggle.bundle import find_competition_file

DATA_PATH = find_competition_file(INPUT_DIR)
data = load_mars(DATA_PATH)
print(data)'''

_TRAIN = '''from helpers.model.callbacks import TimeBudget
from helpers.kaggle.bundle import kernel_run
from helpers.run.steps import Options
from helpers.run.train import run

ENTRY, OVERRIDES = kernel_run(MODEL, MEMBERS, TTA, SELF_TRAINING)
budget = TimeBudget(TIME_BUDGET_S)  # one budget for every model the entry trains
record = run(ENTRY, data, PROFILE, SEED, options=Options(verbose=2, callbacks=(budget,)), save_test_set=True,
             overrides=OVERRIDES)
if budget.stopped:
    print(f"time budget of {TIME_BUDGET_S:g} s reached: training stopped after epoch {budget.stopped_after_epoch}; "
          "the best epoch so far was restored")
training = record["training"]
print(f"{ENTRY}: {training['epochs_run']} epochs in {training['seconds']:.0f} s on {record['device_name']}; "
      f"held-out test split: competition mIoU {record['test']['competition_miou']:.4f}, "
      f"mIoU 1-4 {record['test']['miou_1_4']:.4f}")'''

_SUBMIT = '''from helpers.kaggle.bundle import SUMMARY_FILENAME, kernel_summary
from helpers.predict.submission import read_submission
from helpers.run.records import run_dir
from helpers.runtime.files import write_json_atomic

SUBMISSION = OUTPUT / "submission.csv"
shutil.copyfile(run_dir(record["name"], record["key"]) / "submission.csv", SUBMISSION)
ids, predicted = read_submission(SUBMISSION, n_images=len(data.test_images))
write_json_atomic(OUTPUT / SUMMARY_FILENAME, kernel_summary(record, SUBMISSION, len(ids), budget))
shares = [f"{(predicted == c).mean():.1%}" for c in range(5)]
print(f"{SUBMISSION}: {len(ids)} rows, valid; predicted class shares (0..4): {', '.join(shares)}")'''


def build_notebook(profile: str = "full", seed: int = 0, model: str = "final", members: int | None = None,
                   tta: bool | None = None, self_training: bool | None = None):
    """The kernel notebook (an `nbformat` v4 node, no outputs) with `profile`, `seed`, `model` and the improved
    model's options as parameter defaults."""
    import nbformat
    from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

    import helpers
    from helpers.configs import profiles
    from helpers.configs.experiments import resolve
    entry, overrides = kernel_run(model, members, tta, self_training)
    profiles.resolve(profile)  # the bundle's profile, checked once; the kernel's run resolves its PROFILE parameter
    seed = _check_seed(seed)
    archive = package_archive()
    with zipfile.ZipFile(io.BytesIO(archive)) as listing:
        n_files = len(listing.namelist())
    cells = [
        new_markdown_cell(_INTRO.format(output="/kaggle/working", competition=COMPETITION, profile=profile,
                                        title=entry if model == "final" else "Improved model",
                                        description=_DESCRIPTIONS[model],
                                        version=helpers.__version__, summary=SUMMARY_FILENAME)),
        new_code_cell(_PARAMETERS.format(profile=profile, seed=seed, budget=TIME_BUDGET_S, model=model,
                                         members=members, tta=tta, self_training=self_training),
                      metadata={"tags": ["parameters"]}),
        new_markdown_cell("## Environment\nLibrary versions, then a check that this image has every feature the "
                          "kernel uses (it stops here, saying what is missing, on an image that is too old)."),
        new_code_cell(_CHECK.format(compatibility_problems=inspect.getsource(compatibility_problems).strip(),
                                    library_versions=inspect.getsource(library_versions).strip(),
                                    uses_augmentation=bool(resolve(entry)["augment"]))),
        new_markdown_cell("## The `helpers` package\nEmbedded as one zip; unpacked into `OUTPUT_DIR/mars_helpers/` "
                          "and imported from there, ahead of any installed copy."),
        new_code_cell(_ARCHIVE.format(n_files=n_files, sha256=hashlib.sha256(archive).hexdigest(),
                                      blob=base64.b64encode(archive).decode("ascii"))),
        new_code_cell(_UNPACK),
        new_markdown_cell("## Data\nThe first `mars_for_students.npz` found anywhere under `INPUT_DIR`."),
        new_code_cell(_DATA),
        new_markdown_cell(f"## Train the {'Final Model' if model == 'final' else 'Improved model'}\nThe profile sets data caps, width, epochs and patience; early "
                          "stopping watches the validation competition mIoU and restores the best weights. The "
                          "whole competition test set is predicted at the end."),
        new_code_cell(_TRAIN),
        new_markdown_cell("## Submission\nCopied to `OUTPUT_DIR/submission.csv` and read back strictly (header, "
                          "ids 0..N-1 in order, 8192 class ids per row); a summary of the run goes beside it."),
        new_code_cell(_SUBMIT),
    ]
    notebook = new_notebook(cells=cells, metadata={
        "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
        "language_info": {"name": "python"}})
    nbformat.validate(notebook)
    return notebook


MACHINE_SHAPE = "NvidiaTeslaT4"  # Kaggle's "GPU T4 x2"; without it a push lands on the default P100
IMAGE_PINNING = "latest"  # run on Kaggle's newest environment, not the one the kernel was first created with


def kernel_metadata(user: str = PLACEHOLDER_USER, model: str = "final") -> dict:
    """`kernel-metadata.json` for `kaggle kernels push`: private notebook on two T4 GPUs and the newest image,
    internet off, the competition's data attached; one kernel per model."""
    title = TITLES[model]
    slug = title.lower().replace(" ", "-")
    return {"id": f"{_check_user(user)}/{slug}", "title": title, "code_file": f"{slug}.ipynb",
            "language": "python", "kernel_type": "notebook", "is_private": True, "enable_gpu": True,
            "machine_shape": MACHINE_SHAPE, "docker_image_pinning_type": IMAGE_PINNING,
            "enable_internet": False, "competition_sources": [COMPETITION], "dataset_sources": [],
            "kernel_sources": []}


def bundle(out=DEFAULT_OUT, profile: str = "full", seed: int = 0, user: str = PLACEHOLDER_USER, model: str = "final",
           members: int | None = None, tta: bool | None = None, self_training: bool | None = None) -> dict[str, Path]:
    """Write the kernel notebook and its `kernel-metadata.json` into `out`; returns both paths."""
    import nbformat

    kernel_run(model, members, tta, self_training)  # refuse bad options before anything is written
    metadata = kernel_metadata(user, model)
    notebook = build_notebook(profile, seed, model, members, tta, self_training)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    notebook_path = out / metadata["code_file"]
    nbformat.write(notebook, notebook_path)
    metadata_path = out / "kernel-metadata.json"
    metadata_path.write_text(json.dumps(metadata, indent=2) + "\n")
    return {"notebook": notebook_path, "metadata": metadata_path}


def fake_kaggle_input(root) -> tuple[Path, Path]:
    """A small synthetic `mars_for_students.npz` (300 training, 48 test images) under `root`, laid out like
    `/kaggle/input/<competition>/`; returns (data path, hidden test labels path)."""
    from helpers.data import synthetic

    return synthetic.write(Path(root) / COMPETITION / DATA_FILENAME, n_train=300, n_test=48, seed=3)


def execute_kernel(notebook, input_dir, output_dir, executed, **parameters) -> None:
    """Run the kernel notebook headless with papermill in a fresh `python3` kernel of this interpreter, in
    `output_dir`, as Kaggle would; `parameters` override the parameters cell (PROFILE, SEED, TIME_BUDGET_S)."""
    import papermill

    Path(output_dir).mkdir(parents=True, exist_ok=True)
    papermill.execute_notebook(str(notebook), str(executed), kernel_name="python3", cwd=str(output_dir),
                               parameters={"INPUT_DIR": str(input_dir), "OUTPUT_DIR": str(output_dir), **parameters},
                               progress_bar=False, extra_arguments=["--IPKernelApp.log_level=CRITICAL"])


def check(out=None, model: str = "final") -> dict:
    """`make kaggle-check`: bundle the kernel, run it in the smoke profile on a fake Kaggle input with this
    interpreter's libraries, read its submission back strictly; writes `<out>/kaggle_check.json` (default
    reports/) and the executed notebook beside it, and returns the same facts (`passed`, `problem`)."""
    import os
    import tempfile
    import time

    from helpers import held_stderr
    from helpers.predict.submission import read_submission
    from helpers.runtime.paths import reports_dir

    out = Path(out) if out is not None else reports_dir()
    out.mkdir(parents=True, exist_ok=True)
    suffix = "" if model == "final" else f"_{model}"
    executed = out / f"kaggle_check{suffix}.ipynb"
    with held_stderr():  # CUDA probing lines on a CPU machine
        versions = library_versions()
    result = {"checked_at": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "versions": versions,
              "problems": compatibility_problems(uses_augmentation=True), "passed": False, "problem": None}
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        fake_kaggle_input(root / "input")
        paths = bundle(root / "dist", profile="smoke", model=model)
        saved = {name: os.environ.pop(name) for name in ("MARS_DATA", "MARS_DATA_DIR", "MARS_REPORTS",
                                                         "MARS_KAGGLE_INPUT", "TF_CPP_MIN_LOG_LEVEL") if name in os.environ}
        os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"  # the kernel's C++ start-up lines
        try:
            execute_kernel(paths["notebook"], root / "input", root / "working", executed, PROFILE="smoke")
            ids, _ = read_submission(root / "working" / "submission.csv", n_images=48)
            summary = json.loads((root / "working" / SUMMARY_FILENAME).read_text())
            result.update(passed=True, submission_rows=len(ids), kernel_versions=summary["versions"],
                          test_competition_miou=summary["test"]["competition_miou"])
        except Exception as exc:  # noqa: BLE001 - the check reports any failure in one line
            first_line = (str(exc).strip().splitlines() or [type(exc).__name__])[-1]
            result["problem"] = f"{type(exc).__name__}: {first_line[:300]} (see {executed})"
        finally:
            os.environ.pop("TF_CPP_MIN_LOG_LEVEL")
            os.environ.update(saved)
    result["seconds"] = round(time.perf_counter() - started, 1)
    result["model"] = model
    (out / f"kaggle_check{suffix}.json").write_text(json.dumps(result, indent=1) + "\n")
    return result


def main(argv=None) -> int:
    """`python -m helpers.kaggle bundle ...`: write the kernel; bad arguments print one line and return 2."""
    parser = argparse.ArgumentParser(prog="python -m helpers.kaggle", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    command = commands.add_parser("bundle", help="write the kernel notebook and kernel-metadata.json")
    command.add_argument("--out", default=str(DEFAULT_OUT), help="output folder (default: dist/kaggle)")
    command.add_argument("--profile", default="full", help="profile the kernel runs: smoke, default or full (default)")
    command.add_argument("--seed", type=int, default=0, help="training seed (default 0)")
    command.add_argument("--user", default=PLACEHOLDER_USER, help="your Kaggle username, for the kernel id")
    command.add_argument("--model", default="final", choices=list(MODELS),
                         help="final (the report's Final Model, default) or improved (beyond the report)")
    command.add_argument("--members", type=int, help="improved: seeds soft-voted (default: the entry's)")
    command.add_argument("--no-tta", dest="tta", action="store_false", default=None, help="improved: no flip TTA")
    command.add_argument("--no-self-training", dest="self_training", action="store_false", default=None,
                         help="improved: skip the self-training round (the track's step f)")
    checking = commands.add_parser("check", help="run the smoke kernel headless with this interpreter's libraries")
    checking.add_argument("--out", help="folder for kaggle_check.json and the executed notebook (default: reports/)")
    checking.add_argument("--model", default="final", choices=list(MODELS), help="the kernel to check")
    args = parser.parse_args(argv)
    if args.command == "check":
        result = check(args.out, args.model)
        versions = ", ".join(f"{name} {version}" for name, version in result["versions"].items())
        print(f"kaggle check ({versions}): " + (f"passed in {result['seconds']:.0f} s, a valid {result['submission_rows']}"
              "-row submission" if result["passed"] else f"FAILED: {result['problem']}"))
        return 0 if result["passed"] else 1
    try:
        paths = bundle(args.out, args.profile, args.seed, args.user, args.model, args.members, args.tta,
                       args.self_training)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    size = paths["notebook"].stat().st_size / 1024
    print(f"notebook: {paths['notebook']} ({size:.0f} KiB)\nmetadata: {paths['metadata']}")
    if args.user == PLACEHOLDER_USER:
        print(f"next: put your Kaggle username in {paths['metadata'].name} (or bundle again with --user NAME), then")
    print(f"      kaggle kernels push -p {paths['metadata'].parent}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
