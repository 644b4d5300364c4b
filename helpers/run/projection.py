"""A long run's projected wall time on this machine, printed before it starts.

How (no library does this for us, hence this short module): a probe process, placed and configured like one
training worker (its share of the cores, `helpers.runtime.device.configure`'s precision and XLA choice, the profile's
width and batch), trains the Baseline through `helpers.run.train.build` / `fit` for two short epochs and times
them. Every model the run still has to train (`helpers.run.train.work`: finished records left out) is then
costed in FLOPs (`helpers.model.flops`: 3× the forward pass per training image, 1× per predicted image, × 4 under
flip TTA) at the probe's rate, plus the probe's start-up (tracing, compilation) once per model, shared by the
workers. Not counted: blending, pseudo-labelling and the notebooks' own minutes (a few). docs/training.md
compares projections with measured runs.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from helpers.configs import experiments
from helpers.runtime.paths import REPO_ROOT

PROBE_STEPS = 12
"""Training steps per probe epoch: enough for a steady rate, few enough to cost well under a minute."""


def probe(profile: dict, steps: int = PROBE_STEPS) -> dict:
    """Images/s of the Baseline's training steps in this process and its start-up seconds (the first epoch's
    extra time: tracing, compilation), through the run's own `build`/`fit` on random images of the data's shape."""
    import keras

    from helpers.configs.constants import IMAGE_SHAPE, NUM_CLASSES
    from helpers.run import train
    from helpers.run.steps import Plan, Prepared
    from helpers.runtime.device import configure

    device = configure(threads=False, xla=profile["xla"])
    rng = np.random.default_rng(0)
    batch = profile["batch_size"]
    images = rng.random((steps * batch, *IMAGE_SHAPE), dtype=np.float32)
    masks = rng.integers(0, NUM_CLASSES, (steps * batch, *IMAGE_SHAPE), dtype=np.uint8)
    seconds: list[float] = []

    class Clock(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.started = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            seconds.append(time.perf_counter() - self.started)

    with tempfile.TemporaryDirectory() as folder:
        run_plan = Plan(name="Baseline", entry=experiments.get_entry("Baseline"), settings=experiments.resolve("Baseline"),
                        profile=profile, seed=0, role="row", member=None, key="probe", code="probe",
                        folder=Path(folder), epochs=2, patience=2)
        prepared = Prepared(arrays={"train": (images, masks), "val": (images[:batch], masks[:batch])}, indices={},
                            info={"budget": {"steps_per_epoch": steps}})
        built = train.build(run_plan, prepared, callbacks=[Clock()], device=device)
        train.fit(built, verbose=0)
    return {"images_per_second": steps * batch / seconds[1], "startup_seconds": max(0.0, seconds[0] - seconds[1]),
            "mixed_precision": device["mixed_precision"], "jit_compile": device["jit_compile"]}


def probe_like_a_worker(profile_name: str, workers: int, engine: str | None = None) -> dict:
    """`probe` in a fresh process on one worker's share of the cores (as `helpers.run.train` places its workers), on
    Keras backend `engine` (default: this process's `KERAS_BACKEND`)."""
    cores = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    share = cores[0::workers] if workers > 1 and len(cores) >= workers else None
    pinned = [",".join(map(str, share))] if share else []  # the child pins itself: no code between fork and exec
    completed = subprocess.run([sys.executable, "-m", "helpers.run.projection", profile_name, *pinned],
                               capture_output=True, text=True, cwd=str(REPO_ROOT),
                               env={**os.environ, **({"KERAS_BACKEND": engine} if engine else {})})
    if completed.returncode:
        lines = [line for line in completed.stderr.splitlines() if line.strip()]
        raise RuntimeError(f"the speed probe failed: {lines[-1] if lines else 'no output'}")
    return json.loads(completed.stdout.strip().splitlines()[-1])


def project(runs: list[str], seeds: int, profile: dict, data, workers: int, force: bool = False,
            speed: dict | None = None) -> dict:
    """The projected seconds of training `runs` × `seeds` with `workers` processes, from one probe (`speed`, if
    one was just taken for these workers) and `work`; with the probe's figures and the (name, seed) of each model
    to train."""
    from helpers.model.flops import TRAINING_FACTOR, forward_flops
    from helpers.model.models import build_model
    from helpers.run.train import work

    jobs = work(runs, seeds, profile, data, force)
    if not jobs:
        return {"seconds": 0.0, "trainings": 0, "jobs": []}
    speed = speed or probe_like_a_worker(profile["name"], workers)
    baseline = forward_flops(build_model(**experiments.resolve("Baseline")["model"], width=profile["width"]))
    gflop_per_second = speed["images_per_second"] * TRAINING_FACTOR * baseline / 1e9
    for job in jobs:
        job["seconds"] = job["gflop"] / gflop_per_second + speed["startup_seconds"]
    return {"seconds": sum(job["seconds"] for job in jobs) / min(workers, len(jobs)), "trainings": len(jobs),
            **speed, "gflop_per_second": gflop_per_second, "jobs": [(job["name"], job["seed"]) for job in jobs],
            "job_seconds": [job["seconds"] for job in jobs]}


def describe(projection: dict, workers: int) -> str:
    """One line for the terminal: the projection and what it rests on."""
    if not projection["trainings"]:
        return "projected training time: none (every run has a finished record)"
    return (f"projected training time on this machine: ≈ {projection['seconds'] / 60:.0f} min for "
            f"{projection['trainings']} trainings on {workers} worker(s) (probe: the Baseline at "
            f"{projection['images_per_second']:.0f} img/s per worker, {projection['mixed_precision']}, "
            f"XLA {'on' if projection['jit_compile'] else 'off'}, {projection['startup_seconds']:.0f} s start-up "
            f"per model; FLOP-scaled to the other models; notebooks not included)")


def main(argv=None) -> int:
    """`python -m helpers.run.projection PROFILE [CORES]`: run the probe in this process, pinned to CORES (e.g. 0,2)
    when given, and print its JSON line."""
    from helpers.configs.profiles import resolve

    args = sys.argv[1:] if argv is None else argv
    if len(args) > 1:
        os.sched_setaffinity(0, {int(core) for core in args[1].split(",")})
    print(json.dumps(probe(resolve(args[0] if args else "default"))))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
