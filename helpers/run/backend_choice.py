"""Which Keras backend a run trains with, decided before Keras is imported (Keras fixes its backend then): the one
asked for, else the faster one on this machine by measurement. Nothing here imports Keras.

`choose` takes, in order: an explicit request (`--backend`, or Keras's own `KERAS_BACKEND`); the backend of a
Keras already imported in this process; the choice stored in the outputs folder by an earlier run of the same
profile (so a rerun reuses its records, which the backend keys); the only backend installed; else a speed probe of
each backend in the layouts worth trying (`layouts`: the pipeline's default worker count, and one worker per core;
`helpers.run.projection.probe_like_a_worker`: one worker's images/s times the workers), the faster layout of each
(the default unless another is more than `TIE` faster) and `faster_backend`'s rule between them. The choice and its figures are stored in
`backend.json` in the outputs folder.
"""
from __future__ import annotations

import importlib.util
import json
import os
import sys
import time
from pathlib import Path

from helpers.configs.constants import BACKENDS


PIPELINE_LAYOUT = "per_core"
"""The `benchmarks.backends` layout `faster_backend` reads by default: one worker process per core."""
TIE = 0.05
"""JAX is chosen only when it is more than this much faster than TensorFlow (a relative margin)."""


def faster_backend(measured: dict, *, layout: str = PIPELINE_LAYOUT, tie: float = TIE) -> str:
    """The Keras backend to train with on the machine `measured` describes (what `python -m benchmarks.backends`
    writes to bench_backends.json: `measured["rates"][layout][backend]` = images/s, summed over the workers).

    Rule: the backend with more images/s in `layout` (by default one worker per core, the pipeline's layout), but
    JAX only when it beats TensorFlow by more than `tie` (5 %): within that margin the two are not told apart on
    a shared machine, and TensorFlow, Kaggle's default and the backend everything runs on, wins the tie.
    A `--fast` measurement (`measured["fast"]`) is refused: its figures only check the script. Pure: reads the
    dict, measures nothing. One-line ValueError for a measurement it cannot read."""
    if not 0 <= tie < 1:
        raise ValueError(f"tie={tie!r} must be a relative margin in [0, 1)")
    if measured.get("fast"):
        raise ValueError("this is a --fast measurement, whose figures only check the script: "
                         "run `python -m benchmarks.backends` without --fast")
    rates = (measured.get("rates") or {}).get(layout)
    if not isinstance(rates, dict) or any(backend not in rates for backend in BACKENDS):
        raise ValueError(f"the measurement has no images/s of {' and '.join(BACKENDS)} in layout {layout!r} "
                         f"(expected measured['rates'][{layout!r}][backend], as benchmarks.backends writes)")
    for backend in BACKENDS:
        value = rates[backend]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0 or value == float("inf"):
            raise ValueError(f"images/s of {backend} in {layout!r} must be a positive finite number, got {value!r}")
    return "jax" if rates["jax"] > (1 + tie) * rates["tensorflow"] else "tensorflow"


def _importable(engine: str) -> bool:
    """Whether `engine` can be imported here (found, not imported)."""
    try:
        return importlib.util.find_spec(engine) is not None
    except (ImportError, ValueError):  # an import hook that refuses it
        return False


def installed() -> list[str]:
    """The backends importable here, in `BACKENDS` order."""
    return [engine for engine in BACKENDS if _importable(engine)]


def default_workers(facts: dict | None = None) -> int:
    """One worker per GPU; on a CPU machine one per core where a one-core worker trains in bfloat16
    (`helpers.runtime.device.cpu_bfloat16_pays`: those kernels do not use a second core) or runs on JAX (one-core JAX
    processes sum to more than one JAX process on every core; docs/performance.md), else 1 (TensorFlow's
    float32 + XLA uses every core, so one-core workers would lose)."""
    from helpers.runtime.cpu import cpu_bfloat16_pays

    if facts is None:  # the backend's own view (GPUs it can use); `helpers.runtime.cpu.cpu_facts` before Keras starts
        from helpers.runtime.device import device_facts

        facts = device_facts()
    if facts["gpus"]:
        return len(facts["gpus"])
    per_core = facts.get("backend") == "jax" or cpu_bfloat16_pays({**facts, "cores": 1})
    return facts["cores"] if per_core else 1


def layouts(engine: str) -> list[int]:
    """Worker counts worth probing for `engine`, the pipeline's default first (`default_workers`):
    on a CPU machine also one worker per core, which may beat one process on every core even in float32 (measured
    1.13x for TensorFlow on the AVX2 approximation, docs/performance.md); with GPUs one worker per GPU only."""
    from helpers.runtime.cpu import cpu_facts

    facts = cpu_facts(engine)
    default = default_workers(facts)
    return [default] if facts["gpus"] or default == facts["cores"] else [default, facts["cores"]]


def choose(profile_name: str, out_dir: Path, requested: str | None = None) -> dict:
    """{"backend", "why", and after a probe "workers" (the layout to train in), "probe" (its figures) and "probes"
    (per backend, each layout tried: the probe, workers, images/s in all)}; a one-line ValueError for a backend
    this project does not run or this machine lacks."""
    if "keras" in sys.modules:  # its backend is fixed, whatever is asked or measured
        running = sys.modules["keras"].backend.backend()
        if requested and requested != running:
            raise ValueError(f"Keras already runs {running} in this process, so it cannot train with {requested}: "
                             f"start a fresh process")
        return {"backend": running, "why": "the Keras already imported here"}
    requested = requested or os.environ.get("KERAS_BACKEND") or None
    if requested:  # only the backend asked for is looked up: under JAX nothing even looks for TensorFlow
        if requested not in BACKENDS or not _importable(requested):
            raise ValueError(f"Keras backend {requested!r} is not available here: choose one of "
                             f"{', '.join(installed()) or 'none (install tensorflow or jax)'}")
        return {"backend": requested, "why": "as asked"}
    have = installed()
    stored_path = Path(out_dir) / "backend.json"
    try:
        stored = json.loads(stored_path.read_text())
        if stored.get("profile") == profile_name and stored.get("backend") in have:
            stored.pop("probe", None)  # the projection probes anew: the time it prints is measured now
            return {**stored, "why": f"measured faster here on {stored.get('measured_at', '?')} ({stored_path})"}
    except (OSError, ValueError):
        pass
    if len(have) < 2:
        if not have:
            raise ValueError("neither TensorFlow nor JAX is installed: run `make setup` (or pip install -r "
                             "requirements.txt)")
        return {"backend": have[0], "why": "the only backend installed"}
    from helpers.run.projection import probe_like_a_worker
    from helpers.runtime.files import write_json_atomic

    probes, failed = {}, {}
    for engine in BACKENDS:
        for workers in layouts(engine):
            try:
                speed = probe_like_a_worker(profile_name, workers, engine)
            except RuntimeError as exc:
                failed[engine] = str(exc)
                break
            probes.setdefault(engine, []).append({**speed, "workers": workers,
                                                  "total_images_per_second": speed["images_per_second"] * workers})
    probes = {engine: tried for engine, tried in probes.items() if engine not in failed}
    if not probes:
        raise ValueError("no Keras backend trains here: " + "; ".join(f"{e}: {m}" for e, m in failed.items()))
    best = {engine: _fastest(tried) for engine, tried in probes.items()}
    if failed:
        engine, message = next(iter(failed.items()))
        chosen = next(iter(best))
        return {"backend": chosen, "workers": best[chosen]["workers"], "probe": best[chosen],
                "why": f"the {engine} probe failed ({message})"}
    totals = {engine: probe["total_images_per_second"] for engine, probe in best.items()}
    chosen = faster_backend({"rates": {"pipeline": totals}}, layout="pipeline")  # each in its best layout
    result = {"backend": chosen, "workers": best[chosen]["workers"], "probe": best[chosen], "profile": profile_name,
              "probes": probes,
              "measured_at": time.strftime("%Y-%m-%d %H:%M"), "rule": f"JAX, or a layout other than the default, only if more than {TIE:.0%} faster"}
    write_json_atomic(stored_path, result)
    return {**result, "why": "measured faster here now"}


def _fastest(tried: list[dict]) -> dict:
    """The default layout (first) unless another trains more than `TIE` faster."""
    best = max(tried, key=lambda probe: probe["total_images_per_second"])
    return best if best["total_images_per_second"] > (1 + TIE) * tried[0]["total_images_per_second"] else tried[0]


def describe(choice: dict) -> str:
    """One line for the terminal."""
    line = f"Keras backend: {choice['backend']}" + (f" on {choice['workers']} worker(s)" if choice.get("workers")
                                                     else "") + f" ({choice['why']}"
    if choice.get("probes"):
        line += "; probe: " + ", ".join(f"{engine} {p['total_images_per_second']:.0f} img/s on {p['workers']} worker(s)"
                                        for engine, tried in choice["probes"].items() for p in tried)
        line += f"; {choice['rule']}"
    return line + ")"
