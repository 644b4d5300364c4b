"""Train, evaluate and record one Table 1 entry: `run(name, data, profile, seed)`.

A run builds the entry's split (stored, shared by all runs on the same data), applies the profile's
caps, trains with the entry's model/loss/optimizer/augmentation, evaluates the held-out test split
(competition mIoU, mIoU over classes 1–4, per-class IoU, confusion matrix), predicts the competition
`test_set` and — where hidden test labels exist (the synthetic default) — scores its public and private
parts like the leaderboard. Predictions follow the entry's `inference` settings (foreground-only argmax, flip
TTA). An entry that trains nothing of its own, or soft-votes K members, is a *predictor*: it runs its trainer's
members (`helpers.configs.experiments.trainer`, `member_seeds`; each planned with its place in the ensemble,
`experiments.Member`) and scores their ensemble. A self-training entry first runs its teacher (its parent, at the row's
seed) and adds the teacher's confident test-set predictions to the training split. The steps hand each other the
dataclasses of `helpers.run.steps`. It writes one JSON record per run (atomically), with the history and the best
model beside it. A finished record is reused unless `force=True` (its leaderboard re-scored when the hidden labels
differ: `rescore_leaderboard`); a run trains in the run folder's `staging/` and replaces the finished files only
when complete (`_promote`), and an interrupted run resumes from its last finished epoch (Keras `BackupAndRestore`
in `staging/backup`), its record marked `training.resumed` with the seconds of every part summed.

    from helpers.run.train import run
    record = run("Network 3", profile="smoke", seed=0)
"""
from __future__ import annotations

import contextlib
import csv
import hashlib
import json
import math
import os
import platform
import shutil
import socket
import time
from dataclasses import replace
from pathlib import Path

import keras
import numpy as np

import helpers
from helpers.configs import experiments
from helpers.configs import profiles
from helpers.data.augment import blend_big_rocks, geometric_augmenter
from helpers.data.dataset import make_dataset
from helpers.data.hidden_labels import load_test_labels
from helpers.data.loading import MarsData, load_mars
from helpers.data.splits import make_split
from helpers.model.callbacks import DynamicLossWeights, LearningRateLog, training_callbacks
from helpers.model.flops import TRAINING_FACTOR, forward_flops
from helpers.model.losses import class_weights_from_masks, combined_loss, term_metrics
from helpers.model.metrics import MONITOR, PRIMARY, best_constant_score, miou_fg, scores, training_metrics
from helpers.model.models import build_model, count_params
from helpers.model.optim import make_optimizer, patience_for, schedule_lengths
from helpers.predict import decoding
from helpers.predict.inference import predict_labels
from helpers.predict.leaderboard import score_parts
from helpers.predict.submission import write_submission
from helpers.run import claims, progress
from helpers.run.records import all_records, code_fingerprint, read_record, run_dir, run_key
from helpers.run.steps import Built, Evaluation, Member, Options, Plan, Prepared
from helpers.runtime import backend
from helpers.runtime.determinism import set_determinism
from helpers.runtime.device import configure, describe_device, multi_worker, nvidia_gpu_count, scope
from helpers.runtime.files import write_json_atomic

FINAL_ENTRY = "Final Model"
IMPROVED_ENTRY = "Improved"


def _cap(indices: np.ndarray, limit: int | None, rng: np.random.Generator) -> np.ndarray:
    """A seeded random subset of `limit` indices (all of them when limit is None), kept in file order."""
    if limit is None or len(indices) <= limit:
        return indices
    return np.sort(rng.choice(indices, size=limit, replace=False))


SCORED_SUBSET_SEED = 0
"""Seed of the profile's caps on the validation and test parts: one subset for every row and run seed."""


def _digest(indices: np.ndarray) -> str:
    return hashlib.sha256(np.asarray(indices, dtype=np.int64).tobytes()).hexdigest()[:12]


def prepare_arrays(settings: dict, profile: dict, data: MarsData, seed: int) -> Prepared:
    """Train/val/test arrays for a run: the shared split, the profile's caps, then blending if asked.

    Every row is validated and tested on the same images (the clean split's, capped by one fixed draw); only
    its training part depends on the row ("all" adds the aliens) and the run's seed (the cap's draw). The
    budget is the same for every run: `steps_per_epoch` batches per epoch, from the size of the clean training
    part (`budget`), however large the row's own training split (blending, aliens, pseudo-labels)."""
    split = make_split(data, variant=settings["data"]["split"])
    reference = make_split(data, variant="clean")
    parts = {"train": _cap(split.train, profile["max_train"], np.random.default_rng(seed)),
             **{part: _cap(getattr(split, part), profile[f"max_{part}"],
                           np.random.default_rng([SCORED_SUBSET_SEED, k]))
                for k, part in enumerate(("val", "test"))}}
    arrays = {part: (data.train_images[idx], data.train_masks[idx]) for part, idx in parts.items()}
    reference_images = len(reference.train) if profile["max_train"] is None else min(len(reference.train),
                                                                                     profile["max_train"])
    info = {"split": split.variant, "split_sizes": split.sizes(), "used": {p: int(len(i)) for p, i in parts.items()},
            "scored": {"test_split": {"images": int(len(parts["test"])), "digest": _digest(parts["test"])},
                       "val_split": {"images": int(len(parts["val"])), "digest": _digest(parts["val"])},
                       "leaderboard_images": profile["test_set_limit"]},
            "budget": budget(reference_images, profile["batch_size"])}
    if settings["data"]["blend"]:
        images, masks, blend_info = blend_big_rocks(*arrays["train"], attempts_per_source=profile["blend_attempts"],
                                                    seed=seed)
        arrays["train"] = (images, masks)
        info["blending"] = blend_info
        info["used"]["train_after_blending"] = int(len(images))
    return Prepared(arrays=arrays, indices=parts, info=info)


def budget(reference_images: int, batch_size: int) -> dict:
    """The optimizer steps of one epoch, the same for every run of a profile: one pass over the clean training
    part (`reference_images`). A run whose training split is larger (aliens kept, blending, self-training) takes
    the same steps, so it sees each of its images fewer times, never more steps."""
    return {"reference_images": int(reference_images), "batch_size": int(batch_size),
            "steps_per_epoch": max(1, math.ceil(reference_images / batch_size))}


def _history_from_csv(path: Path) -> dict[str, list[float]]:
    """The whole history, across resumptions (the CSV log is appended to; Keras's History is not)."""
    if not path.exists():
        return {}
    with path.open() as handle:
        rows = list(csv.DictReader(handle))
    return {key: [float(row[key]) for row in rows if row.get(key) not in (None, "")] for key in (rows[0] if rows else {})}


def _versions() -> dict:
    """The backend Keras ran and the versions of what decided the numbers."""
    engine = backend.name()
    return {"backend": engine, "python": platform.python_version(),
            engine: __import__(engine).__version__, "keras": keras.__version__, "numpy": np.__version__,
            "helpers": helpers.__version__}


def plan(name: str, data: MarsData, profile: dict, seed: int = 0, overrides: dict | None = None,
         member: Member | None = None) -> Plan:
    """Step 1: what decides run `name`, before any tensor exists: settings (the entry's, then `overrides`),
    profile (resolved: `helpers.configs.profiles.resolve`), key, folder, lengths, and its role: "row",
    "predictor" (scores an ensemble of its trainer's runs) or "member" (one model of an ensemble, `member` its
    place there: trained alone, never a row of its own)."""
    settings = experiments.resolve(name)
    if overrides:
        settings = experiments.merge(settings, overrides)
    if member is not None:
        settings = experiments.merge(settings, {"inference": {"members": 1}})
    members = settings["inference"]["members"]
    if isinstance(members, bool) or not isinstance(members, int) or members < 1:
        raise ValueError(f"inference members={members!r} must be a positive integer (the seeds soft-voted)")
    if member is not None:  # the first member with the entry's own settings is the row's own run
        role = "member" if member.index > 0 or settings != experiments.merge(
            experiments.resolve(name), overrides or {}) else "row"
    else:
        role = "predictor" if members > 1 or experiments.trainer(name) != name else "row"
    code = code_fingerprint()
    key = run_key(settings, profile, seed, data.source.fingerprint, code)
    epochs = max(1, round(profile["epochs"] * settings["train"]["epochs_scale"]))
    patience = max(1, round(profile["patience"] * settings["train"]["patience_scale"]))
    return Plan(name=name, entry=experiments.get_entry(name), settings=settings, profile=profile, seed=seed, role=role,
                member=member, key=key, code=code, folder=run_dir(name, key), epochs=epochs,
                patience=patience_for(settings["optimizer"]["name"], epochs, patience))


def build(run_plan: Plan, prepared: Prepared, *, callbacks=(), device: dict | None = None) -> Built:
    """Step 2: datasets, model, loss, optimizer and callbacks of a planned run, compiled inside the strategy
    `helpers.runtime.device.scope()` gives (call `helpers.runtime.device.configure` first, or pass its result as `device`)."""
    settings, prof, seed = run_plan.settings, run_plan.profile, run_plan.seed
    device = device or configure(threads=False, xla=prof["xla"])
    (x_train, y_train), (x_val, y_val) = prepared.arrays["train"], prepared.arrays["val"]
    loss_settings = settings["loss"]
    class_weights = None
    if loss_settings["class_weights"] is not None:
        class_weights = class_weights_from_masks(y_train, cap=loss_settings["class_weights"].get("cap"))
    augment = geometric_augmenter(**settings["augment"], seed=seed) if settings["augment"] else None
    batch_size = prof["batch_size"]
    train_ds = make_dataset(x_train, y_train, batch_size=batch_size, class_weights=class_weights, shuffle=True,
                            augment=augment, seed=seed, repeat=True)
    steps_per_epoch = prepared.info["budget"]["steps_per_epoch"]
    val_ds = make_dataset(x_val, y_val, batch_size=batch_size)
    epochs = run_plan.epochs
    eager = prof["run_eagerly"]
    with scope():
        model = build_model(**settings["model"], width=prof["width"])
        loss = combined_loss(loss_settings["terms"], ignore_class=loss_settings["ignore_class"])
        optimizer, optimizer_callbacks = make_optimizer(
            settings["optimizer"]["name"], lr=settings["optimizer"]["lr"],
            steps_per_epoch=steps_per_epoch, epochs=epochs, **schedule_lengths(epochs))
        model.compile(optimizer=optimizer, loss=loss, metrics=training_metrics(),
                      weighted_metrics=term_metrics(loss), run_eagerly=eager, jit_compile=device["jit_compile"] and not eager)
    lr_log = LearningRateLog()
    extra = [lr_log, *optimizer_callbacks, *([DynamicLossWeights(loss)] if loss_settings["dynamic"] else [])]
    return Built(model=model, loss=loss, train_ds=train_ds, val_ds=val_ds, class_weights=class_weights,
                 lr_log=lr_log, device=device, epochs=epochs, train_images=len(x_train),
                 steps_per_epoch=steps_per_epoch, batch_size=batch_size,
                 callbacks=training_callbacks(run_plan.folder, patience=run_plan.patience, extra=[*extra, *callbacks]))


def fit(built: Built, verbose: int | str = "auto") -> float:
    """Step 3: `model.fit` on the built datasets and callbacks (restores the best epoch); seconds taken."""
    started = time.perf_counter()
    built.model.fit(built.train_ds, validation_data=built.val_ds, epochs=built.epochs,
                    steps_per_epoch=built.steps_per_epoch, callbacks=built.callbacks, verbose=verbose, shuffle=False)
    return time.perf_counter() - started


def _prediction_options(prof: dict, inference: dict) -> dict:
    """How a run's models predict: its inference settings, decoded twice from one pass (own, foreground)."""
    return {"batch_size": prof["batch_size"] * 4, "run_eagerly": prof["run_eagerly"], "tta": inference["tta"],
            "classes": (inference["classes"], "foreground")}


def _score_leaderboard(labels_path, own: np.ndarray, foreground: np.ndarray, limit: int | None) -> dict | None:
    """Leaderboard-style scores of the first `limit` test images (all: None), the same subset for every row."""
    if not labels_path:
        return None
    return score_parts(load_test_labels(labels_path), own[:limit], foreground=foreground[:limit])


def score_models(models: list, run_plan: Plan, prepared: Prepared, data: MarsData, save_test_set: bool) -> Evaluation:
    """Score `models` (one, or an ensemble's members) on the held-out split (predictions saved) and on the
    profile's leaderboard subset of the competition test set (the first `test_set_limit` images, the same for
    every row; hidden labels where they exist). Each score twice, from one forward pass: the primary `miou_fg`
    (foreground argmax) and the starter-kit metric under the row's own inference settings ("Kaggle-style").
    With `save_test_set`, the whole test set is predicted, saved and written as the Kaggle CSV."""
    folder, prof = run_plan.folder, run_plan.profile
    options = _prediction_options(prof, run_plan.settings["inference"])
    started = time.perf_counter()
    x_test, y_test = prepared.arrays["test"]
    test_pred, test_fg = predict_labels(models, x_test, **options)
    np.savez_compressed(folder / "test_split_predictions.npz", indices=prepared.indices["test"],
                        y_true=y_test, y_pred=test_pred, y_pred_foreground=test_fg)
    limit = prof["test_set_limit"]
    test_set = data.test_images if save_test_set or limit is None else data.test_images[:limit]
    test_set_pred, test_set_fg = predict_labels(models, test_set, **options)
    if save_test_set:
        np.savez_compressed(folder / "test_set_predictions.npz", y_pred=test_set_pred)
        write_submission(test_set_pred, folder / "submission.csv")
    return Evaluation(test={**scores(y_test, test_pred), PRIMARY: miou_fg(y_test, test_fg)},
                      leaderboard=_score_leaderboard(data.source.labels_path, test_set_pred, test_set_fg, limit),
                      constant_baseline={"val": best_constant_score(prepared.arrays["val"][1]),
                                         "test": best_constant_score(y_test)},
                      eval_seconds=time.perf_counter() - started)


def evaluate(run_plan: Plan, built: Built, prepared: Prepared, data: MarsData, save_test_set: bool) -> Evaluation:
    """Step 4: save the model, then `score_models` it."""
    built.model.save(run_plan.folder / "best.keras")
    return score_models([built.model], run_plan, prepared, data, save_test_set)


def entry_facts(name: str) -> dict:
    """What a record says of its entry: parents, and the report's sentence and our reading, or the track's step."""
    entry = experiments.get_entry(name)
    return {"parents": experiments.parents(name),
            **{key: entry[key] for key in ("report", "reading", "step", "track") if key in entry}}


def make_record(run_plan: Plan, built: Built, prepared: Prepared, data: MarsData, train_seconds: float,
                evaluation: Evaluation) -> dict:
    """Step 5: the run's JSON record (written by `run`): what ran, its history and its scores."""
    history = _history_from_csv(run_plan.folder / "history.csv")
    monitor = MONITOR
    epochs_run = len(history.get("loss", []))
    class_weights = built.class_weights
    return {
        "status": "finished", "name": run_plan.name, "key": run_plan.key, "code": run_plan.code,
        "seed": run_plan.seed, "role": run_plan.role, "profile": run_plan.profile,
        "entry": entry_facts(run_plan.name),
        "settings": run_plan.settings, "data": data.source.to_dict(), "prepared": prepared.info,
        "class_weights": None if class_weights is None else [float(w) for w in class_weights],
        "model": {"params": count_params(built.model), "width": run_plan.profile["width"]},
        "training": {"epochs_planned": run_plan.epochs, "epochs_run": epochs_run, "patience": run_plan.patience,
                     **schedule_lengths(run_plan.epochs),
                     "steps_per_epoch": built.steps_per_epoch, "batch_size": built.batch_size,
                     "steps": built.steps_per_epoch * epochs_run,
                     "images_seen": built.steps_per_epoch * epochs_run * built.batch_size,
                     "train_split_images": built.train_images, "monitor": monitor,
                     "best_epoch": int(np.argmax(history[monitor])) + 1 if history.get(monitor) else None,
                     "best_val_miou_fg": max(history[monitor]) if history.get(monitor) else None,
                     "seconds": train_seconds,
                     "images_per_second": built.steps_per_epoch * built.batch_size * max(1, epochs_run)
                     / train_seconds,
                     "learning_rate_per_step": built.lr_log.steps},
        "history": history,
        **evaluation.fields(),
        "device": built.device, "device_name": describe_device(), "versions": _versions(),
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "finished_epoch": time.time(),
        "worker": {"host": socket.gethostname(), "pid": os.getpid()},
    }


def stale_record(run_plan: Plan, data: MarsData) -> dict | None:
    """The newest finished record of the same run (settings, profile, seed, data) made by other code, if any."""
    same = {"profile": run_plan.profile, "seed": run_plan.seed}
    candidates = [record for record in all_records() if record["name"] == run_plan.name
                  and record.get("code") != run_plan.code and record["data"]["fingerprint"] == data.source.fingerprint
                  and experiments.with_defaults(record["settings"]) == run_plan.settings
                  and all(record.get(key) == value for key, value in same.items())]
    return max(candidates, key=lambda record: record["finished_at"], default=None)


def _fresh(record: dict | None, options: Options) -> bool:
    """Whether a finished record is to be kept: always without `force`; with `kept_since`, when finished after it."""
    if record is None:
        return False
    if not options.force:
        return True
    return options.kept_since is not None and record.get("finished_epoch", 0.0) >= options.kept_since


STAGING = "staging"
"""A run trains in `<run folder>/staging/` beside the finished record it may replace (`--force`, a resumed run)."""


class RunInterrupted(KeyboardInterrupt):
    """Ctrl-C (or another KeyboardInterrupt) during a run's training; the message says where the rerun resumes."""


def _backed_up_epochs(staging: Path) -> int:
    """Epochs finished and saved in the staging folder's Keras backup (0 when there is none)."""
    try:
        return int(json.loads((staging / "backup" / "training_metadata.json").read_text())["epoch"])
    except (OSError, ValueError, KeyError, TypeError):
        return 0


def _prepare_staging(folder: Path) -> tuple[Path, list[dict]]:
    """The staging folder, ready to train in, and the parts trained there before ([] for a fresh start).

    A staging folder with a Keras backup is resumed (its history and parts are kept); anything else left there
    (a run killed before its first epoch ended, or during evaluation) is cleared. A backup in the run folder
    itself (written by code from before staging) is moved into staging and resumed."""
    staging = folder / STAGING
    if not (staging / "backup").is_dir() and (folder / "backup").is_dir():
        staging.mkdir(parents=True, exist_ok=True)
        for name in ("backup", "history.csv"):
            if (folder / name).exists():
                os.replace(folder / name, staging / name)
    if not (staging / "backup").is_dir():
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        return staging, []
    try:
        parts = json.loads((staging / PARTS).read_text())
    except (OSError, ValueError):
        parts = []
    return staging, parts if isinstance(parts, list) else []


PARTS = "parts.json"


class _PartClock(keras.callbacks.Callback):
    """Keeps `<staging>/parts.json` ([{"from_epoch", "seconds"}] per part of a run) up to date at each epoch's
    end, so a killed part's seconds count in the record of the run that finishes it."""

    def __init__(self, staging: Path, parts: list[dict], from_epoch: int):
        super().__init__()
        self.path, self.parts, self.from_epoch = staging / PARTS, parts, from_epoch

    def on_train_begin(self, logs=None):
        self.started = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        part = {"from_epoch": self.from_epoch, "seconds": time.perf_counter() - self.started}
        write_json_atomic(self.path, [*self.parts, part])


def _promote(folder: Path) -> None:
    """Replace the finished run in `folder` by the complete one in its staging folder: each file moved over its old
    namesake with `os.replace` (atomic), the record last, then the old run's other files removed. Until the record
    moves, readers see the old record; a promotion cut short is finished by the next `run` (the staged record
    is still there)."""
    staging = folder / STAGING
    shutil.rmtree(staging / "backup", ignore_errors=True)
    (staging / PARTS).unlink(missing_ok=True)
    new = {path.name for path in staging.iterdir()}
    for path in sorted(staging.iterdir()):
        if path.name != "record.json":
            target = folder / path.name
            if target.is_dir():
                shutil.rmtree(target)
            os.replace(path, target)
    os.replace(staging / "record.json", folder / "record.json")
    for path in folder.iterdir():
        if path.name not in new | {claims.CLAIM, STAGING}:
            shutil.rmtree(path) if path.is_dir() else path.unlink()
    shutil.rmtree(staging, ignore_errors=True)


def _labels_current(record: dict, data: MarsData) -> bool:
    """Whether the record's leaderboard scores were computed against `data`'s hidden labels (same content
    fingerprint, or no labels on either side)."""
    return record["data"].get("labels_fingerprint") == data.source.labels_fingerprint and (
        data.source.labels_fingerprint is not None or record.get("leaderboard") is None)


def rescore_leaderboard(record: dict, data: MarsData, *, claimed: bool = False, wait: bool = True) -> dict:
    """The record, its leaderboard scored again against `data`'s labels when they are not the ones it was scored
    with (`_labels_current`), and saved.

    The run key leaves the labels out on purpose: they decide no trained weight, so a run folder holds one model
    whatever labels score it. The leaderboard scores are keyed instead by the labels' content fingerprint, kept in
    the record's `data.labels_fingerprint`: a reused record scored with other labels (or none) is re-scored from
    its models' predictions of the same leaderboard subset, never passed on as is."""
    if _labels_current(record, data):
        return record
    folder = run_dir(record["name"], record["key"])
    with contextlib.nullcontext() if claimed else claims.claimed(folder, wait=wait):
        leaderboard = None
        if data.source.labels_path:
            prof, limit = record["profile"], record["profile"]["test_set_limit"]
            images = data.test_images if limit is None else data.test_images[:limit]
            own, foreground = predict_labels(load_models(record), images,
                                             **_prediction_options(prof, record["settings"]["inference"]))
            leaderboard = _score_leaderboard(data.source.labels_path, own, foreground, limit)
        record = {**record, "leaderboard": leaderboard,
                  "data": {**record["data"], "labels_path": data.source.labels_path,
                           "labels_fingerprint": data.source.labels_fingerprint}}
        write_json_atomic(folder / "record.json", record)
    progress.say(f"    {record['name']} (seed {record['seed']}): leaderboard re-scored with the labels "
                 f"{data.source.labels_path or '(none)'}")
    return record


def run(name: str, data: MarsData | None = None, profile="default", seed: int = 0, *, options: Options | None = None,
        save_test_set: bool | None = None, overrides: dict | None = None) -> dict:
    """Train/evaluate entry `name` (see `helpers.configs.experiments`) and return its record (reused if finished).

    `profile` is a name of `helpers.configs.profiles` or a dict of the same keys, checked here once
    (`profiles.resolve`). `options`
    (`helpers.run.steps.Options`) say how this run, its teacher and its ensemble's members are treated:
    `force` retrains where a finished record exists (`kept_since`: unless the record finished after that
    `time.time()`); `reuse_stale` (default: the `MARS_REUSE_STALE=1` environment variable) returns a record trained
    by older code when none exists for the current code (`stale_record`; the table marks such rows); `wait=False`
    raises `claims.RunBusy` for a run another worker holds instead of waiting for it; `verbose` and `callbacks`
    go to every `fit`. The run is claimed (`helpers.run.claims`) before anything is written, and `force` never
    deletes a folder someone else holds. The other two concern this run alone: with `save_test_set` (default:
    only for the Final Model and the Improved model) the whole competition test set is predicted and saved, and
    its Kaggle CSV written as `submission.csv` in the run folder; `overrides` changes the entry's settings for
    this call (e.g. {"inference": {"members": 3}}).
    The steps plan -> build -> fit -> evaluate -> make_record are public, for benchmarks and notebooks; they pass
    the dataclasses of `helpers.run.steps`.
    """
    data = data if data is not None else load_mars()
    options = options or Options()
    if options.reuse_stale is None:
        options = replace(options, reuse_stale=os.environ.get("MARS_REUSE_STALE") == "1")
    run_plan = plan(name, data, profiles.resolve(profile), seed, overrides)
    return _run(run_plan, data, options, save_test_set, overrides)


def _run(run_plan: Plan, data: MarsData, options: Options, save_test_set: bool | None,
         overrides: dict | None) -> dict:
    """`run` of a planned run: its record, reused or trained (its teacher first, or its members for a predictor)."""
    name, seed, folder = run_plan.name, run_plan.seed, run_plan.folder
    record_path = folder / "record.json"
    promoting = (folder / STAGING / "record.json").exists()  # a promotion cut short: finish it under the claim
    if not promoting and _fresh(record := read_record(record_path), options):
        progress.announce(name, seed, "reused")
        return rescore_leaderboard(record, data, wait=options.wait)
    if options.reuse_stale and not options.force and (stale := stale_record(run_plan, data)) is not None:
        progress.announce(name, seed, "reused (trained by older code)")
        return rescore_leaderboard(stale, data, wait=options.wait)
    if save_test_set is None:
        save_test_set = name in SUBMITTED_ENTRIES and run_plan.role != "member"
    if run_plan.role == "predictor":
        return _run_predictor(run_plan, data, save_test_set, options, overrides)
    teacher = None
    if run_plan.settings["self_training"]:  # the teacher first, outside this run's claim
        teacher = _run(plan(experiments.parents(name)[0], data, run_plan.profile, run_plan.row_seed), data, options,
                       save_test_set=False, overrides=None)
    # Under MultiWorkerMirroredStrategy every worker trains this same run together: no claim between them.
    together = multi_worker()
    with contextlib.nullcontext() if together else claims.claimed(folder, wait=options.wait):
        if (folder / STAGING / "record.json").exists():
            _promote(folder)
        record = read_record(record_path)
        if _fresh(record, options):
            progress.announce(name, seed, "reused (another worker trained it)")
            return rescore_leaderboard(record, data, claimed=True)
        # Train beside the finished record (if any): it is replaced only once the new run is complete.
        staging, parts = _prepare_staging(folder)
        staged = replace(run_plan, folder=staging)
        done = _backed_up_epochs(staging)
        progress.announce(name, seed, f"resuming from epoch {done + 1}" if done else "training")
        set_determinism(seed, enabled=run_plan.profile["deterministic"])
        device = configure(threads=False, xla=run_plan.profile["xla"])
        prepared = prepare_arrays(run_plan.settings, run_plan.profile, data, seed)
        if teacher is not None:
            prepared = add_pseudo_labels(prepared, teacher, run_plan, data)
        lines = progress.EpochLine(run_plan.epochs, f"{name} (seed {seed})")
        built = build(staged, prepared, device=device,
                      callbacks=[claims.Heartbeat(folder), lines, _PartClock(staging, parts, done), *options.callbacks])
        try:
            part_seconds = fit(built, options.verbose)
        except KeyboardInterrupt:
            done = _backed_up_epochs(staging)
            raise RunInterrupted(f"{name} (seed {seed}) interrupted after {done} of {run_plan.epochs} epochs; "
                                 f"the same command resumes from epoch {done + 1}") from None
        parts = [*parts, {"from_epoch": done, "seconds": part_seconds}]
        train_seconds = sum(part["seconds"] for part in parts)
        evaluation = evaluate(staged, built, prepared, data, save_test_set)
        record = make_record(staged, built, prepared, data, train_seconds, evaluation)
        record["training"].update({"resumed": len(parts) > 1, "parts": parts})  # seconds: all parts summed
        write_json_atomic(staging / "record.json", record)
        _promote(folder)
        progress.finished(name, seed, train_seconds, record)
    return record


SUBMITTED_ENTRIES = (FINAL_ENTRY, IMPROVED_ENTRY)


def load_models(record: dict) -> list[keras.Model]:
    """The trained models behind a record: its own `best.keras`, or its members' for a predictor."""
    from helpers.model.models import load_model

    members = record.get("members") or [{"name": record["name"], "key": record["key"]}]
    return [load_model(run_dir(m["name"], m["key"]) / "best.keras") for m in members]


def add_pseudo_labels(prepared: Prepared, teacher: dict, run_plan: Plan, data: MarsData) -> Prepared:
    """Self-training: `prepared` with a seeded draw of competition test images (seed: the row's, `row_seed`)
    appended to its training split, labelled by the teacher's models (with its inference settings) where their
    probability is at least the threshold, 0 (out of the loss) elsewhere. Cached in the teacher's folder; no test
    label is read."""
    config, seed = run_plan.settings["self_training"], run_plan.row_seed
    x_train, y_train = prepared.arrays["train"]
    chosen = decoding.pool(len(data.test_images), len(x_train), config["images"], seed)
    cache = run_dir(teacher["name"], teacher["key"]) / f"pseudo_labels_{config['threshold']:g}_{len(chosen)}_{seed}.npz"
    if cache.exists():
        with np.load(cache) as saved:
            labels = saved["labels"]
    else:
        inference, prof = teacher["settings"]["inference"], run_plan.profile
        labels = predict_labels(load_models(teacher), data.test_images[chosen], batch_size=prof["batch_size"] * 4,
                                run_eagerly=prof["run_eagerly"], tta=inference["tta"], classes="foreground",
                                threshold=config["threshold"])
        np.savez_compressed(cache, indices=chosen, labels=labels)
    train = (np.concatenate([x_train, data.test_images[chosen]]),
             np.concatenate([y_train, labels.astype(y_train.dtype)]))
    info = {**prepared.info, "self_training": {"teacher": teacher["name"], "teacher_key": teacher["key"],
                                               "images": int(len(chosen)), "threshold": config["threshold"],
                                               "labelled_share": float((labels > 0).mean())},
            "used": {**prepared.info["used"], "train_after_self_training": int(len(train[0]))}}
    return replace(prepared, arrays={**prepared.arrays, "train": train}, info=info)


def _run_predictor(run_plan: Plan, data: MarsData, save_test_set: bool, options: Options,
                   overrides: dict | None) -> dict:
    """A predictor entry: its trainer's member runs (trained or reused), then their ensemble scored with the
    entry's inference settings; one record, with the members' keys, beside its predictions."""
    name, seed, settings = run_plan.name, run_plan.seed, run_plan.settings
    source = experiments.trainer(name)
    member_overrides = {k: v for k, v in (overrides or {}).items() if k != "inference"} or None
    # save_test_set=None: the role decides, so the row's own run (the first member, role "row") writes the same files
    # (a submitted entry's test-set predictions and CSV) whichever trains it first, the row or its predictor
    members = [_run(plan(source, data, run_plan.profile, s, member_overrides, Member(of_seed=seed, index=index)), data,
                    options, save_test_set=None, overrides=member_overrides)
               for index, s in enumerate(experiments.member_seeds(seed, settings["inference"]["members"]))]
    folder, record_path = run_plan.folder, run_plan.folder / "record.json"
    with claims.claimed(folder, wait=options.wait):
        if (folder / STAGING / "record.json").exists():
            _promote(folder)
        if _fresh(record := read_record(record_path), options):
            return rescore_leaderboard(record, data, claimed=True)
        progress.announce(name, seed, f"predicting with {len(members)} model(s) of {source}")
        prepared = prepare_arrays(settings, run_plan.profile, data, seed)
        staging, _ = _prepare_staging(folder)  # scored beside the finished record, which it replaces when complete
        evaluation = score_models(load_models({"members": [{"name": m["name"], "key": m["key"]} for m in members]}),
                                  replace(run_plan, folder=staging), prepared, data, save_test_set)
        first = members[0]
        record = {**{k: first[k] for k in ("history", "class_weights", "model", "device", "device_name", "versions")},
                  "status": "finished", "name": name, "key": run_plan.key, "code": run_plan.code, "seed": seed,
                  "role": "predictor", "profile": run_plan.profile,
                  "entry": entry_facts(name),
                  "settings": settings, "data": data.source.to_dict(), "prepared": prepared.info,
                  "members": [{"name": m["name"], "key": m["key"], "seed": m["seed"],
                               "test_miou_fg": m["test"][PRIMARY]} for m in members],
                  "training": {**first["training"], "seconds": sum(m["training"]["seconds"] for m in members),
                               "members": len(members)},
                  **evaluation.fields(),
                  "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "finished_epoch": time.time(),
                  "worker": {"host": socket.gethostname(), "pid": os.getpid()}}
        write_json_atomic(staging / "record.json", record)
        _promote(folder)
        progress.finished(name, seed, record["training"]["seconds"], record)
    return record


def work(runs: list[str], seeds: int, profile: dict, data, force: bool = False) -> list[dict]:
    """One entry per model still to train (`experiments.trainings`; `force`: finished ones too): its name, seed
    and GFLOP (`helpers.model.flops`: training steps, per-epoch validation, scoring of the test split and the
    leaderboard subset, the whole test set for a submitted row). The unit of the projected time
    (`helpers.run.projection`) and of the workers' order (`longest_first`)."""
    split = make_split(data, variant="clean")
    val, test = (len(part) if profile[f"max_{name}"] is None else min(len(part), profile[f"max_{name}"])
                 for name, part in (("val", split.val), ("test", split.test)))
    reference = len(split.train) if profile["max_train"] is None else min(len(split.train), profile["max_train"])
    steps = budget(reference, profile["batch_size"])["steps_per_epoch"]
    leaderboard = len(data.test_images) if profile["test_set_limit"] is None else min(len(data.test_images),
                                                                                     profile["test_set_limit"])
    forward: dict[str, int] = {}
    jobs = []
    for name, seed, member in experiments.models(runs, seeds):
        run_plan = plan(name, data, profile, seed, member=member)
        if not force and (read_record(run_plan.folder / "record.json") or {}).get("status") == "finished":
            continue
        model = json.dumps(run_plan.settings["model"], sort_keys=True)
        if model not in forward:
            forward[model] = forward_flops(build_model(**run_plan.settings["model"], width=profile["width"]))
        submitted = name in SUBMITTED_ENTRIES and member is None
        predicted = (test + (len(data.test_images) if submitted else leaderboard)) * (
            4 if run_plan.settings["inference"]["tta"] else 1)
        images = TRAINING_FACTOR * run_plan.epochs * steps * profile["batch_size"] + run_plan.epochs * val
        jobs.append({"name": name, "seed": seed, "gflop": forward[model] * (images + predicted) / 1e9})
    return jobs


def longest_first(runs: list[str], seeds: int, profile: dict, data, force: bool = False) -> list[str]:
    """`runs` ordered by the work each still needs (`work`: its trainings, teachers and ensemble members
    included, in GFLOP; `force`: finished ones too), most first; equal ones keep their order. Workers that take
    the next free run of this list finish close together, since the last runs they start are short ones (the
    notebooks' order left one worker idle for ~9 of the default study's last 11 min: docs/performance.md)."""
    cost = {(job["name"], job["seed"]): job["gflop"] for job in work(runs, seeds, profile, data, force)}
    remaining = {name: sum(cost.get((each, seed), 0.0) for each, seed, _ in experiments.trainings([name], seeds))
                 for name in runs}
    return sorted(runs, key=lambda name: -remaining[name])


def run_all(data: MarsData, profile: dict, seeds: int = 1, *, force: bool = False, verbose: int | str = 2,
            poll_seconds: float = 5.0, names: list[str] | None = None) -> list[dict]:
    """Every run the notebooks show (or `names`) for seeds 0..seeds-1 in `profile` (resolved:
    `helpers.configs.profiles.resolve`), the longest first (`longest_first`),
    skipping runs other workers hold (an ensemble's members included) and coming back to them, until each has a
    finished record. Start several at once on one reports folder to share the work."""
    started = time.time()
    names = experiments.notebook_runs() if names is None else names
    names = longest_first(names, seeds, profile, data, force)  # the workers then finish close together
    todo = [(name, seed) for seed in range(seeds) for name in names]
    done: dict[tuple, dict] = {}
    while todo:
        waiting = []
        for name, seed in todo:
            try:
                done[(name, seed)] = run(name, data, profile, seed, options=Options(
                    force=force, kept_since=started if force else None, verbose=verbose, wait=False))
                trained = done[(name, seed)].get("worker", {}).get("pid") == os.getpid()
                print(f"[worker {os.getpid()}] {name} (seed {seed}): {'trained' if trained else 'reused'}", flush=True)
            except claims.RunBusy:
                waiting.append((name, seed))
        todo = waiting
        if todo:
            time.sleep(poll_seconds)
    return list(done.values())


def _spawn_workers(argv: list[str], workers: int) -> int:
    """`workers` copies of this command without `--workers`, one GPU each (CUDA_VISIBLE_DEVICES) when GPUs
    exist, else an equal share of the CPU cores each (`--cores`: each pins itself at start, so their thread
    pools follow the affinity mask; no code runs between fork and exec, which a multithreaded JAX parent forbids)."""
    import subprocess
    import sys

    gpus = nvidia_gpu_count()
    cores = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    processes = []
    for index in range(workers):
        env = dict(os.environ)
        if gpus:
            env["CUDA_VISIBLE_DEVICES"] = str(index % gpus)
        share = cores[index::workers] if len(cores) >= workers else None
        pinned = ["--cores", ",".join(map(str, share))] if share else []
        processes.append(subprocess.Popen([sys.executable, "-m", "helpers.run.train", *argv, *pinned], env=env))
    return max(process.wait() for process in processes)


def _parse_cores(text: str) -> set[int]:
    """`--cores 0,2`: a set of CPU core numbers this process may use."""
    try:
        cores = {int(part) for part in text.split(",")}
    except ValueError:
        raise ValueError(f"--cores takes core numbers separated by commas, e.g. 0,1; got {text!r}") from None
    usable = os.sched_getaffinity(0)
    if not cores <= usable:
        raise ValueError(f"--cores {text}: this process may use only cores {sorted(usable)}")
    return cores


def main(argv=None) -> int:
    """`python -m helpers.run.train NAME | --all [--workers N] [--seeds S] [--profile default] [--seed 0] [--data PATH]
    [--force]`: one run and its scores, or every row and ablation (several workers share one reports folder)."""
    import argparse
    import json
    import sys

    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="python -m helpers.run.train", description="Train one Table 1 entry, or all.")
    parser.add_argument("name", nargs="?", help=f"an experiment: {', '.join(experiments.names(include_ablations=True))}")
    parser.add_argument("--all", action="store_true", help="every run the notebooks show (Table 1, ablations, "
                                                          "the Improved track)")
    parser.add_argument("--notebooks", nargs="+", help="with --all: only the runs of these notebooks (stems)")
    parser.add_argument("--workers", type=int, help="with --all: worker processes sharing the runs (default 1)")
    parser.add_argument("--seeds", type=int, help="with --all: seeds 0..S-1 (default 1)")
    parser.add_argument("--profile", default="default")
    parser.add_argument("--seed", type=int, help="with NAME: the seed of the one run (default 0)")
    parser.add_argument("--data", help="competition-layout npz (default: load_mars search order)")
    parser.add_argument("--labels", help="hidden test labels npz (default: beside the data file)")
    parser.add_argument("--force", action="store_true", help="retrain even if a finished record exists")
    parser.add_argument("--reuse-stale", action="store_true",
                        help="reuse records trained by older code instead of retraining (the table says so)")
    parser.add_argument("--save-test-set", action="store_true", help="predict the whole test set, write submission.csv")
    parser.add_argument("--cores", help="pin this process to these CPU cores, e.g. 0 or 0,1 (what --workers gives "
                                        "each worker)")
    args = parser.parse_args(argv)
    if args.cores:  # before the backend starts its thread pools, which size themselves by the affinity mask
        try:
            os.sched_setaffinity(0, _parse_cores(args.cores))
        except ValueError as exc:
            parser.error(str(exc))
    if bool(args.name) == args.all:
        parser.error("give one experiment NAME or --all")
    # An option the chosen mode would ignore is refused, never dropped in silence.
    wrong = ([f"--{o.replace('_', '-')}" for o in ("workers", "seeds", "notebooks") if getattr(args, o) is not None]
             if args.name else ["--seed"] * (args.seed is not None) + ["--save-test-set"] * args.save_test_set)
    if wrong:
        parser.error(f"{' and '.join(wrong)} {'go' if len(wrong) > 1 else 'goes'} with "
                     + ("--all; for one run of NAME pass --seed K (run it once per seed)" if args.name
                        else "one experiment NAME, not --all; --all takes --seeds S"))
    args.workers, args.seeds, args.seed = (default if value is None else value for value, default in
                                           ((args.workers, 1), (args.seeds, 1), (args.seed, 0)))
    if args.workers < 1 or args.seeds < 1:
        parser.error("--workers and --seeds must be at least 1")
    if args.reuse_stale:
        os.environ["MARS_REUSE_STALE"] = "1"  # also for the worker processes
    try:
        profile = profiles.resolve(args.profile)  # the command line's profile, checked once
        if args.all and args.workers > 1:
            rest = [a for i, a in enumerate(argv) if a != "--workers" and (i == 0 or argv[i - 1] != "--workers")
                    and not a.startswith("--workers=")]
            return _spawn_workers(rest, args.workers)
        data = load_mars(args.data, args.labels)
        if args.all:
            records = run_all(data, profile, args.seeds, force=args.force,
                              names=experiments.notebook_runs(args.notebooks) if args.notebooks else None)
            print(json.dumps({"finished": len(records)}))
            return 0
        record = run(args.name, data, profile, args.seed, options=Options(force=args.force),
                     save_test_set=args.save_test_set or None)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:  # one line, not Python's traceback: what stopped, and what the rerun does
        print(f"interrupted: {exc}" if isinstance(exc, RunInterrupted) else "interrupted: finished runs are kept; "
              "the same command reuses them and resumes an unfinished one from its last finished epoch",
              file=sys.stderr)
        return 130
    folder = run_dir(args.name, record["key"])
    print(json.dumps({"record": str(folder / "record.json"), "test": {k: record["test"][k] for k in
                      (PRIMARY, "competition_miou")}, "leaderboard": record["leaderboard"] and {
                      part: record["leaderboard"][part].get(PRIMARY) for part in ("public", "private")}},
                     indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
