"""One measurement of `benchmarks.backends`, run in a fresh process whose `KERAS_BACKEND` fixes the backend.

    python -m benchmarks.backend_child train DATA.npz OUT.json --batch-size B --repeats R
                                       [--core C --barrier DIR --workers N]
    python -m benchmarks.backend_child peak OUT.json --size N [--no-bfloat16]

`train`: the Baseline at the default profile's width in float32, trained for 1 + R epochs on the images of
DATA.npz with the project's own pieces (`build_model`, `combined_loss`, `training_metrics`, `make_optimizer`,
`make_dataset`: tf.data on TensorFlow, numpy `ArrayBatches` on JAX), compiled with `configure`'s XLA choice.
With `--core` the process first pins itself to that core (before Keras, TensorFlow or JAX start their
thread pools, so `configure` sizes TensorFlow's pools to one core); with `--barrier` it waits after the warm-up
epoch until all `--workers` workers are warm, so their timed epochs run at the same time.
`peak`: the float32 matmul peak of `benchmarks.timing.matmul_gflops` (TensorFlow and numpy) in this environment,
with `helpers.runtime.device`'s description and CPU class under this environment's oneDNN cap and without it.
Both write a JSON object to OUT.json, with `tensorflow_imported`: whether TensorFlow was in `sys.modules` at the end.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

BARRIER_TIMEOUT_S = 1800


def _wait_at_barrier(folder: Path, name: str, workers: int) -> float:
    """Mark `name` ready in `folder` and wait until `workers` are; the wall time (time.time()) of release."""
    (folder / f"ready-{name}").write_text("")
    started = time.monotonic()
    while len(list(folder.glob("ready-*"))) < workers:
        if time.monotonic() - started > BARRIER_TIMEOUT_S:
            raise RuntimeError(f"barrier: the other workers were not warm after {BARRIER_TIMEOUT_S} s")
        time.sleep(0.01)
    return time.time()


def _backend_version(name: str) -> str:
    if name == "tensorflow":
        import tensorflow as tf

        return tf.__version__
    import jax

    return jax.__version__


def train(args) -> dict:
    """Images/s of the Baseline's training epochs in this process (see the module docstring)."""
    import keras
    import numpy as np

    from benchmarks.timing import EpochTimer, rate
    from helpers.configs.experiments import resolve
    from helpers.configs.profiles import get_profile
    from helpers.data.dataset import make_dataset
    from helpers.model.flops import TRAINING_FACTOR, forward_flops
    from helpers.model.losses import class_weights_from_masks, combined_loss
    from helpers.model.metrics import training_metrics
    from helpers.model.models import build_model
    from helpers.model.optim import make_optimizer
    from helpers.runtime import backend
    from helpers.runtime.device import choose_settings, configure, cpu_class, device_facts

    # float32 always (the benchmark's workload); XLA and the thread pools as the project decides for this process.
    settings = configure(mixed_precision=False)
    facts = device_facts()
    # No `keras.utils.set_random_seed`: it imports TensorFlow wherever it is installed, and speed does not depend
    # on the initial weights' values.
    with np.load(args.data) as data:
        images, masks = data["images"], data["masks"]
    entry, width = resolve("Baseline"), get_profile("default")["width"]
    epochs = 1 + args.repeats
    model = build_model(**entry["model"], width=width)
    # The Baseline's AdamW runs at a constant rate: no warm-up or plateau lengths
    # (`helpers.model.optim.schedule_lengths`) to pass.
    optimizer, extra_callbacks = make_optimizer(entry["optimizer"]["name"], lr=entry["optimizer"]["lr"],
                                                steps_per_epoch=math.ceil(len(images) / args.batch_size),
                                                epochs=epochs)
    loss_settings = entry["loss"]
    loss = combined_loss(loss_settings["terms"], ignore_class=loss_settings["ignore_class"])
    model.compile(optimizer=optimizer, loss=loss,
                  metrics=training_metrics(), jit_compile=settings["jit_compile"])
    class_weights = (None if loss_settings["class_weights"] is None
                     else class_weights_from_masks(masks, cap=loss_settings["class_weights"].get("cap")))
    batches = make_dataset(images, masks, batch_size=args.batch_size, class_weights=class_weights, shuffle=True, seed=0)
    timer, window = EpochTimer(), {}

    class Barrier(keras.callbacks.Callback):
        """After the warm-up epoch: wait for the other workers (if any), then note when the timed epochs start."""

        def on_epoch_end(self, epoch, logs=None):
            if epoch == 0:
                window["start"] = (_wait_at_barrier(Path(args.barrier), str(args.core), args.workers)
                                   if args.barrier else time.time())

    model.fit(batches, epochs=epochs, callbacks=[timer, Barrier(), *extra_callbacks], verbose=0)
    window["end"] = time.time()
    name = backend.name()
    return {
        **rate(len(images), timer.seconds), "backend": name, "backend_version": _backend_version(name),
        "keras_version": keras.__version__, "core": args.core, "affinity": sorted(os.sched_getaffinity(0)),
        "width": width, "batch_size": args.batch_size, "dtype_policy": keras.mixed_precision.global_policy().name,
        "jit_compile_asked": settings["jit_compile"], "jit_compile": bool(model.jit_compile),
        "intra_op_threads": settings["intra_op_threads"], "inter_op_threads": settings["inter_op_threads"],
        "threads_applied": settings["threads_applied"], "onednn": settings["onednn"],
        "input_pipeline": "tf.data" if hasattr(batches, "element_spec") else type(batches).__name__,
        "forward_flops": forward_flops(model), "training_factor": TRAINING_FACTOR,
        "device": settings["device"], "cpu_class": cpu_class(facts), "cores_visible": facts["cores"],
        "project_auto_policy": choose_settings(facts)["mixed_precision"], "timed_window": window,
    }


def peak(args) -> dict:
    """The float32 matmul peak of this environment (TensorFlow's and numpy's; bfloat16 TensorFlow for reference),
    with `helpers.runtime.device`'s description and CPU class of the machine under this environment's oneDNN cap and
    without it."""
    import numpy as np

    from benchmarks.timing import matmul_gflops
    from helpers.runtime.device import cpu_class, describe_device, device_facts

    measured = matmul_gflops(args.size, bfloat16=not args.no_bfloat16)
    float32 = {way: value for way, value in measured.items() if "bfloat16" not in way}
    best = max(float32, key=float32.get)
    facts, device = device_facts(), describe_device()
    cap = os.environ.pop("ONEDNN_MAX_CPU_ISA", None)  # after the matmuls: oneDNN has read it already
    native, native_device = device_facts(), describe_device()
    if cap is not None:
        os.environ["ONEDNN_MAX_CPU_ISA"] = cap
    return {"matmul_gflops": measured, "peak_gflops": float32[best], "peak_from": best, "size": args.size,
            "numpy_version": np.__version__, "device": device, "cpu_class": cpu_class(facts),
            "native_device": native_device, "native_cpu_class": cpu_class(native)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.backend_child", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    trains = commands.add_parser("train", help="time the Baseline's training epochs")
    trains.add_argument("data", help=".npz with images (N, 64, 128) float32 in [0, 1] and masks (N, 64, 128) uint8")
    trains.add_argument("out", help="JSON file for the result")
    trains.add_argument("--batch-size", type=int, required=True)
    trains.add_argument("--repeats", type=int, required=True, help="timed epochs after the warm-up epoch")
    trains.add_argument("--core", type=int, help="pin this process to this core first")
    trains.add_argument("--barrier", help="folder where --workers workers meet after the warm-up epoch")
    trains.add_argument("--workers", type=int, default=1)
    peaks = commands.add_parser("peak", help="measure the float32 matmul peak")
    peaks.add_argument("out", help="JSON file for the result")
    peaks.add_argument("--size", type=int, default=4096, help="matrix side n (2n³ FLOPs a matmul)")
    peaks.add_argument("--no-bfloat16", action="store_true",
                       help="skip the bfloat16 matmul (oneDNN aborts on it under ONEDNN_MAX_CPU_ISA=AVX2)")
    args = parser.parse_args(argv)
    if args.command == "train":
        if args.batch_size < 1 or args.repeats < 1 or args.workers < 1:
            parser.error("--batch-size, --repeats and --workers must be positive")
        if args.core is not None:
            if args.core not in os.sched_getaffinity(0):
                parser.error(f"--core {args.core} is not among this process's cores {sorted(os.sched_getaffinity(0))}")
            os.sched_setaffinity(0, {args.core})
    elif args.size < 2:
        parser.error("--size must be at least 2")
    result = train(args) if args.command == "train" else peak(args)
    result["tensorflow_imported"] = "tensorflow" in sys.modules
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
