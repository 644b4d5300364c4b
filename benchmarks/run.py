"""Run every benchmark in one process, print each figure as it comes, write `reports/bench.md` (and `bench.json`).

    python -m benchmarks.run [--fast] [--with-pipeline] [--xla auto|off] [--mixed-precision auto|off]
                             [--threads auto|off] [--out DIR]

`make bench` runs it with the defaults: about 12 minutes on 2 CPU cores before the TensorFlow/JAX comparison
(`benchmarks.backends`, each measurement in fresh processes; its own `bench_backends.*` files are written by
`python -m benchmarks.backends`, here its figures go into bench.md and bench.json). `--with-pipeline` adds the smoke
pipeline's wall time (about 5 more minutes there, so it is optional). `--fast` shrinks every image count and
repeat to check the script in a few minutes (its figures mean little). The other flags turn the per-device
choices of `helpers.runtime.device.configure` off one by one, to measure what each is worth.
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from benchmarks import backends, prediction, report, timing, training
from benchmarks.smoke_pipeline import smoke_pipeline_seconds
from helpers.configs.experiments import resolve
from helpers.configs.profiles import get_profile
from helpers.data import dataset, synthetic
from helpers.model import flops
from helpers.model.models import build_model
from helpers.runtime.device import configure
from helpers.runtime.paths import reports_dir

FULL = {
    "train": {"Baseline": {"images": 512, "batch_size": 32, "repeats": 3},
              "Network 9": {"images": 256, "batch_size": 32, "repeats": 2}},
    "test_images": 10022, "peer_predict_images": 1024, "final_predict_images": 256,
    "sweep_images": 192, "sweep_batch_sizes": {True: (16, 32, 64, 128), False: (32, 64)}, "pandas_rows": 300,
}
FAST = {
    "train": {"Baseline": {"images": 8, "batch_size": 4, "repeats": 1},
              "Network 9": {"images": 4, "batch_size": 4, "repeats": 1}},
    "test_images": 200, "peer_predict_images": 64, "final_predict_images": 16,
    "sweep_images": 32, "sweep_batch_sizes": {True: (16, 32), False: (32,)}, "pandas_rows": 20,
}
MODELS = ("Baseline", "Final Model")


def _say(line: str) -> None:
    print(line, flush=True)


def _training_data(n: int):
    """Synthetic training images (float32 in [0, 1]) and masks of the real shape and class mix."""
    arrays = synthetic.generate(n_train=max(n, 8), n_test=2, seed=0)["training_set"][:n]
    return (arrays[:, 0] / 255).astype("float32"), arrays[:, 1].astype("uint8")


def _benchmark_training(sizes, settings, results, device):
    """Each entry of `sizes["train"]` at the default profile's width: ours, peer, and for the Baseline ours with
    the other dtype/XLA choice (float32 + XLA where the device picked bfloat16, else without XLA) and with
    tf.data's autotuner on (`helpers.data.dataset.TF_DATA_AUTOTUNE`)."""
    results["training"] = {}
    for name, size in sizes["train"].items():
        images, masks = _training_data(size["images"])
        kwargs = {"batch_size": size["batch_size"], "repeats": size["repeats"]}
        runs = {"ours": training.ours(name, images, masks, device=settings, **kwargs)}
        if name == "Baseline":
            policy = keras.mixed_precision.global_policy().name
            other = ({**settings, "mixed_precision": "float32", "jit_compile": True} if policy != "float32"
                     else {**settings, "jit_compile": not settings["jit_compile"]})
            keras.mixed_precision.set_global_policy(other["mixed_precision"])
            runs["ours_" + ("float32_xla" if policy != "float32" else "other_xla")] = {
                **training.ours(name, images, masks, device=other, **kwargs),
                "label": "the other dtype/XLA choice"}
            keras.mixed_precision.set_global_policy(policy)
            dataset.TF_DATA_AUTOTUNE = True
            try:
                runs["ours_autotune"] = {**training.ours(name, images, masks, device=settings, **kwargs),
                                         "label": "tf.data's autotuner on"}
            finally:
                dataset.TF_DATA_AUTOTUNE = False
        runs["peer"] = training.peer(name, images, masks, **kwargs)
        results["training"][name] = runs
        for way, run in runs.items():
            _say(f"[{device}] training {name} (width {run['width']}), {way} ({run['mixed_precision']}, XLA "
                 f"{'on' if run['jit_compile'] else 'off'}): {run['per_second']:.2f} images/s "
                 f"(batch {run['batch_size']}, epochs {run['seconds']} s, first = warm-up)")


def _benchmark_prediction(sizes, results, device, jit_compile):
    rng = np.random.default_rng(0)
    test_images = rng.random((sizes["test_images"], 64, 128), dtype=np.float32)
    baseline = build_model(**resolve("Baseline")["model"])

    sweep = []
    for xla in (True, False):
        for batch_size in sizes["sweep_batch_sizes"][xla]:
            run = prediction.ours(baseline, test_images[:sizes["sweep_images"]], batch_size=batch_size,
                                  jit_compile=xla)
            run.pop("labels")
            sweep.append(run)
            _say(f"[{device}] inference sweep, Baseline, XLA {xla}, batch {batch_size}: "
                 f"{run['per_second']:.1f} images/s")
    results["inference_sweep"] = sweep

    ours = prediction.ours(baseline, test_images, jit_compile=jit_compile)
    labels = ours.pop("labels")
    _say(f"[{device}] inference Baseline, ours, {ours['items']} images: {ours['per_second']:.1f} images/s, "
         f"{ours['seconds']:.1f} s (+ {ours['warmup_seconds']:.1f} s compile)")
    peer = prediction.peer(baseline, test_images[:sizes["peer_predict_images"]])
    agree = float((peer.pop("labels") == labels[:peer["items"]]).mean())
    _say(f"[{device}] inference Baseline, peer (model.predict + argmax), {peer['items']} images: "
         f"{peer['per_second']:.1f} images/s; labels agree with ours on {agree:.5%} of pixels")
    final = build_model(**resolve("Final Model")["model"])
    final_ours = prediction.ours(final, test_images[:sizes["final_predict_images"]], jit_compile=jit_compile)
    final_ours.pop("labels")
    _say(f"[{device}] inference Final Model, ours, {final_ours['items']} images: "
         f"{final_ours['per_second']:.1f} images/s")
    results["inference"] = {"Baseline": {"ours": ours, "peer": {**peer, "label_agreement": agree}},
                            "Final Model": {"ours": final_ours}}

    csv_ours = prediction.csv_ours(labels)
    csv_pandas = prediction.csv_pandas(labels, sizes["pandas_rows"])
    results["csv"] = {"ours": csv_ours, "pandas": csv_pandas}
    _say(f"[{device}] submission CSV, ours: {csv_ours['rows']} rows in "
         f"{csv_ours['seconds']:.2f} s ({csv_ours['rows_per_second']:.0f} rows/s); pandas to_csv: "
         f"{csv_pandas['rows_per_second']:.0f} rows/s on {csv_pandas['rows']} rows")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__.splitlines()[0])
    parser.add_argument("--fast", action="store_true", help="tiny image counts and repeats (checks the script only)")
    parser.add_argument("--with-pipeline", action="store_true", help="also time the smoke pipeline (~5 min on 2 cores)")
    parser.add_argument("--xla", choices=("auto", "off"), default="auto", help="XLA in training and inference (auto: per device)")
    parser.add_argument("--mixed-precision", choices=("auto", "off"), default="auto")
    parser.add_argument("--threads", choices=("auto", "off"), default="auto")
    parser.add_argument("--out", help="folder for bench.md and bench.json (default: reports/)")
    args = parser.parse_args(argv)
    off = lambda value: False if value == "off" else "auto"  # noqa: E731
    # First, before TensorFlow runs an op: thread pools and the dtype policy are fixed from then on.
    settings = configure(xla=off(args.xla), mixed_precision=off(args.mixed_precision), threads=off(args.threads))
    keras.utils.set_random_seed(0)
    sizes = FAST if args.fast else FULL
    device = settings["device"]
    started = time.perf_counter()
    results = {"device": device, "settings": settings, "fast": args.fast, "sizes": sizes,
               "command": " ".join(["python -m benchmarks.run", *(argv if argv is not None else sys.argv[1:])]),
               "versions": {"python": platform.python_version(), "tensorflow": tf.__version__,
                            "keras": keras.__version__},
               "started_at": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "memory": {}}
    _say(f"device: {device}; settings: {json.dumps(settings)}")

    results["matmul_gflops"] = timing.matmul_gflops(1024 if args.fast else 4096)
    results["peak_gflops"] = max(v for k, v in results["matmul_gflops"].items() if "bfloat16" not in k)
    results["flops"] = {name: flops.forward_flops(build_model(**resolve(name)["model"])) for name in MODELS}
    width = get_profile("default")["width"]
    results["training_flops"] = {name: flops.forward_flops(build_model(**resolve(name)["model"], width=width))
                                 for name in sizes["train"]}
    _say(f"[{device}] float32 matmul GFLOP/s: " + ", ".join(f"{k} {v:.0f}" for k, v in results["matmul_gflops"].items())
         + "; forward GFLOP per image: "
         + ", ".join(f"{n} {f / 1e9:.3f}" for n, f in results["flops"].items()))
    results["memory"]["setup"] = timing.peak_memory_mb()

    _benchmark_training(sizes, settings, results, device)
    results["memory"]["training"] = timing.peak_memory_mb()
    _benchmark_prediction(sizes, results, device, jit_compile="auto" if args.xla == "auto" else False)
    results["memory"]["prediction"] = timing.peak_memory_mb()
    # TensorFlow against JAX, in child processes (a backend is fixed per process); this process waits meanwhile.
    try:
        results["backends"] = backends.measure(fast=args.fast, isa="native", say=_say)
    except RuntimeError as error:  # a failed child loses this part only, not the figures above
        results["backends_error"] = str(error)
        _say(str(error))
    results["seconds_without_pipeline"] = time.perf_counter() - started

    if args.with_pipeline:
        results["smoke_pipeline"] = smoke_pipeline_seconds()
        smoke = results["smoke_pipeline"]
        _say(f"[{device}] smoke pipeline: {smoke['seconds']:.0f} s, exit code {smoke['returncode']}, "
             f"peak memory {smoke['peak_memory_mb']:.0f} MiB")
    results["seconds"] = time.perf_counter() - started
    _say(f"peak memory of this process (maxrss, MiB) after each part: "
         f"{json.dumps({part: round(mb) for part, mb in results['memory'].items()})}")

    out = reports_dir() if args.out is None else Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "bench.json").write_text(json.dumps(results, indent=1, default=str) + "\n")
    (out / "bench.md").write_text(report.markdown(results, out))
    _say(f"wrote {out / 'bench.md'} ({results['seconds']:.0f} s in all)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
