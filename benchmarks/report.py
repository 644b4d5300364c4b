"""`reports/bench.md` from the results `benchmarks.run` collected: tables, ratios against the targets, FLOP bounds."""
from __future__ import annotations

import json
from pathlib import Path

from benchmarks import backends
from helpers.model.flops import TRAINING_FACTOR
from helpers.predict.inference import BATCH_SIZES, choose_inference_settings
from helpers.runtime.device import choose_settings
from helpers.runtime.paths import reports_dir

TEST_SET_IMAGES = 10022
TARGETS = {"training": 3.4, "network9_cost": 2.0, "prediction_and_csv": 3.0, "table1_minutes": 60}


def _table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def _verdict(value: float, target: float) -> str:
    return f"**{value:.2f}×** (target ≥ {target}×: {'reached' if value >= target else 'NOT reached'})"


def _training(results: dict) -> str:
    device, peak = results["device"], results["peak_gflops"]
    rows, notes = [], []
    for name, runs in results["training"].items():
        step_flops = TRAINING_FACTOR * results["training_flops"][name]
        for way, run in runs.items():
            achieved = run["per_second"] * step_flops / 1e9
            epochs = ", ".join(f"{seconds:.1f}" for seconds in run["seconds"])
            rows.append([name, way.replace("_", " "), run["width"], run["batch_size"], run["mixed_precision"],
                         "on" if run["jit_compile"] else "off", run["items"], epochs, f"{run['per_second']:.2f}",
                         f"{achieved:.1f}", f"{achieved / peak:.0%}", device])
        ratio = runs["ours"]["per_second"] / runs["peer"]["per_second"]
        line = (f"- {name}: ours / peer = " + (_verdict(ratio, TARGETS["training"]) if name == "Baseline"
                                                 else f"**{ratio:.2f}×**")
                + f"; a training step costs {step_flops / 1e9:.3f} GFLOP per image, so ours runs at "
                  f"{runs['ours']['per_second'] * step_flops / 1e9:.0f} GFLOP/s.")
        for way in runs:
            if way.startswith("ours_"):
                line += (f" Ours with {runs[way].get('label', way[5:])} ({runs[way]['mixed_precision']}, XLA "
                         f"{'on' if runs[way]['jit_compile'] else 'off'}): "
                         f"{runs['ours']['per_second'] / runs[way]['per_second']:.2f}× slower than ours.")
        notes.append(line)
    training = results["training"]
    if "Baseline" in training and "Network 9" in training:
        cost = training["Baseline"]["ours"]["per_second"] / training["Network 9"]["ours"]["per_second"]
        flop_ratio = results["training_flops"]["Network 9"] / results["training_flops"]["Baseline"]
        notes.append(f"- Network 9 costs **{cost:.2f}×** the Baseline per image (target ≤ {TARGETS['network9_cost']}×: "
                     f"{'reached' if cost <= TARGETS['network9_cost'] else 'NOT reached'}); its forward pass has "
                     f"{flop_ratio:.2f}× the Baseline's FLOPs (two UNets and the feature channels), which bounds the "
                     "ratio from below unless the larger net runs nearer the peak.")
    header = ["model", "way", "width", "batch", "dtype", "XLA", "images / epoch", "epoch seconds (warm-up first)",
              "images/s (median)", "GFLOP/s", "of float32 peak", "device"]
    return _table(header, rows) + "\n\n" + "\n".join(notes)


def _prediction(results: dict) -> str:
    device, peak = results["device"], results["peak_gflops"]
    inference, csv = results["inference"], results["csv"]
    rows = []
    for name, runs in inference.items():
        flops = results["flops"][name]
        for way, run in runs.items():
            measured = run["items"] == TEST_SET_IMAGES
            seconds = run["seconds"] if measured else TEST_SET_IMAGES / run["per_second"]
            rows.append([name, "ours (`helpers.predict.inference`)" if way == "ours" else "peer (`model.predict` + argmax)",
                         run["batch_size"], "on" if run["jit_compile"] else "off", run["items"],
                         f"{run['per_second']:.1f}", f"{seconds:.0f}" + ("" if measured else " (extrapolated)"),
                         f"{run['warmup_seconds']:.1f}", f"{run['per_second'] * flops / 1e9:.1f}", device])
    table = _table(["model", "way", "batch", "XLA", "images timed", "images/s", f"s for {TEST_SET_IMAGES}",
                    "warm-up s", "GFLOP/s", "device"], rows)

    sweep = _table(["XLA", "batch", "images", "images/s", "compile s", "device"],
                   [["on" if r["jit_compile"] else "off", r["batch_size"], r["items"], f"{r['per_second']:.1f}",
                     f"{r['warmup_seconds']:.1f}", device] for r in results["inference_sweep"]])

    pandas_seconds = TEST_SET_IMAGES / csv["pandas"]["rows_per_second"]
    csv_table = _table(["writer", "rows timed", "rows/s", f"s for {TEST_SET_IMAGES} rows", "device"], [
        ["ours (`helpers.predict.submission.write_submission`)", csv["ours"]["rows"], f"{csv['ours']['rows_per_second']:.0f}",
         f"{csv['ours']['seconds'] * TEST_SET_IMAGES / csv['ours']['rows']:.1f}", device],
        ["pandas `DataFrame(...).to_csv`", csv["pandas"]["rows"], f"{csv['pandas']['rows_per_second']:.0f}",
         f"{pandas_seconds:.0f} (extrapolated from {csv['pandas']['rows']} rows)", device]])

    ours, peer = inference["Baseline"]["ours"], inference["Baseline"]["peer"]
    csv_seconds = csv["ours"]["seconds"] * TEST_SET_IMAGES / csv["ours"]["rows"]
    ours_total = ours["seconds"] * TEST_SET_IMAGES / ours["items"] + ours["warmup_seconds"] + csv_seconds
    peer_total = TEST_SET_IMAGES / peer["per_second"] + peer["warmup_seconds"] + pandas_seconds
    floor = TEST_SET_IMAGES * results["flops"]["Baseline"] / (peak * 1e9)
    summary = (
        f"Baseline prediction + CSV for the {TEST_SET_IMAGES} test images: peer "
        f"{TEST_SET_IMAGES / peer['per_second']:.0f} s + {pandas_seconds:.0f} s = {peer_total:.0f} s; ours "
        f"{ours_total:.0f} s (compile included) → {_verdict(peer_total / ours_total, TARGETS['prediction_and_csv'])}.\n\n"
        f"FLOP bound: {results['flops']['Baseline'] / 1e9:.3f} GFLOP per image × {TEST_SET_IMAGES} images at the "
        f"measured matmul peak of {peak:.0f} GFLOP/s = {floor:.0f} s of convolutions alone; with our CSV "
        f"({csv_seconds:.1f} s) no implementation on this device can beat {peer_total / (floor + csv_seconds):.2f}× "
        f"the peer way. Our inference runs at {ours['per_second'] * results['flops']['Baseline'] / 1e9 / peak:.0%} "
        f"of that peak. The two ways' labels differ on {round((1 - peer['label_agreement']) * peer['items'] * 8192)} "
        f"of the {peer['items'] * 8192} pixels they share (XLA rounds differently near ties).")
    target = TARGETS["prediction_and_csv"]
    if peer_total / ours_total < target:
        needed = TEST_SET_IMAGES / (peer_total / target - csv_seconds - ours["warmup_seconds"])
        summary += (f"\n\nThe {target}× target would need {needed:.0f} images/s = "
                    f"{needed * results['flops']['Baseline'] / 1e9:.0f} GFLOP/s, {needed * results['flops']['Baseline'] / 1e9 / peak:.0%} "
                    f"of the peak, from the convolutions alone; ours reach "
                    f"{ours['per_second'] * results['flops']['Baseline'] / 1e9 / peak:.0%} and TensorFlow's own "
                    f"matmul {results['matmul_gflops']['tensorflow'] / peak:.0%}, so the gap is the CPU kernels' "
                    f"efficiency, not the pipeline around them (no Python work is left per image).")
    return "\n\n".join([table, summary, "Inference choices (Baseline on a subset; batch = the balanced size "
                                          "`predict_labels` used for the batch size asked):", sweep, csv_table])


def _backends(results: dict) -> str:
    """The backend comparison's section; a line saying it is missing from results written before it existed."""
    if "backends_error" in results:
        return "Failed in this run:\n\n```\n" + results["backends_error"] + "\n```"
    if "backends" not in results:
        return "Not measured in this run (`python -m benchmarks.backends` measures it on its own)."
    return ("The same Baseline training in fresh processes, one per backend and layout "
            "(`python -m benchmarks.backends` for the details and `--isa avx2`).\n\n" + backends.section(results["backends"]))


def _pipelines(results: dict) -> str:
    lines = []
    smoke = results.get("smoke_pipeline")
    if smoke:
        lines.append(f"- Smoke pipeline (`python -m helpers.study.pipeline --profile smoke` on a synthetic set of "
                     f"{smoke['data']['n_train']} training / {smoke['data']['n_test']} test images, into a temp "
                     f"folder): **{smoke['seconds']:.0f} s** wall, exit code {smoke['returncode']}, peak memory "
                     f"{smoke['peak_memory_mb']:.0f} MiB, on "
                     f"{results['device']}.")
    else:
        lines.append("- Smoke pipeline: not measured in this run (it is optional, about 5 minutes on 2 cores: "
                     "`python -m benchmarks.run --with-pipeline`).")
    lead = reports_dir() / "bench_pipeline.json"
    if lead.is_file():
        lead_run = json.loads(lead.read_text())
        minutes = lead_run["total_seconds"] / 60
        lines.append(f"- Quick Table 1 (the lead's measurement, `{lead.name}`): **{minutes:.1f} min** in the "
                     f"{lead_run['profile']} profile on {lead_run['device']}, finished {lead_run['finished_at']} "
                     f"(target ≤ {TARGETS['table1_minutes']} min: "
                     f"{'reached' if minutes <= TARGETS['table1_minutes'] else 'NOT reached'}).")
    else:
        lines.append("- Quick Table 1: not measured in this run (no `reports/bench_pipeline.json`).")
    return "\n".join(lines)


def _memory(results: dict) -> str:
    rows = [[f"this process, after {part}", f"{mb:.0f}", results["device"]] for part, mb in results["memory"].items()]
    if results.get("smoke_pipeline"):
        rows.append(["smoke pipeline (child process and its notebook kernels)",
                     f"{results['smoke_pipeline']['peak_memory_mb']:.0f}", results["device"]])
    return _table(["peak resident memory of", "MiB", "device"], rows)


def _choices() -> str:
    """The per-device decisions as the code makes them (`choose_settings`, `choose_inference_settings`)."""
    cpu = {"device_type": "cpu", "gpus": [], "tpu_cores": 0, "cores": 2, "cpu_model": "", "replicas": 1}
    gpu = {**cpu, "device_type": "gpu", "gpus": [{"name": "", "compute_capability": (8, 0)}]}
    train = {kind: choose_settings(facts) for kind, facts in (("cpu", cpu), ("gpu", gpu))}
    infer = {kind: choose_inference_settings(facts) for kind, facts in (("cpu", cpu), ("gpu", gpu))}
    on = lambda flag: "on" if flag else "off"  # noqa: E731
    return _table(["choice", "CPU (2 cores)", "one GPU, compute capability ≥ 7 (not measured)", "turned off by"], [
        ["XLA in training", on(train["cpu"]["jit_compile"]), on(train["gpu"]["jit_compile"]),
         "`configure(xla=False)`, `--xla off`"],
        ["mixed precision", train["cpu"]["mixed_precision"], train["gpu"]["mixed_precision"],
         "`configure(mixed_precision=False)`, `--mixed-precision off`"],
        ["thread pools (intra/inter)", f"{train['cpu']['intra_op_threads']}/{train['cpu']['inter_op_threads']}",
         "cores/2", "`configure(threads=False)`, `--threads off`"],
        ["XLA in inference", on(infer["cpu"]["jit_compile"]), on(infer["gpu"]["jit_compile"]),
         "`predict_labels(..., jit_compile=False)`"],
        ["inference batch", infer["cpu"]["batch_size"], infer["gpu"]["batch_size"],
         "`predict_labels(..., batch_size=N)`"]])


def markdown(results: dict, out: Path) -> str:
    """The whole report as Markdown."""
    settings = results["settings"]
    inference_xla = choose_inference_settings({"device_type": settings["device_type"]})["jit_compile"]
    flops = ", ".join(f"{name} {value / 1e9:.3f}" for name, value in results["flops"].items())
    fast = ("\n> **`--fast` run: tiny image counts and one repeat; these figures only check the script.**\n"
            if results["fast"] else "")
    return f"""# Benchmarks
{fast}
Written by `{results['command']}` on {results['started_at']}, {results['seconds'] / 60:.1f} min in all ({results['seconds_without_pipeline'] / 60:.1f} min without the optional smoke pipeline); TensorFlow {results['versions']['tensorflow']}, Keras {results['versions']['keras']}, Python {results['versions']['python']}. Raw figures: `{out.name}/bench.json`.

**Device: {results['device']}.** Every figure below was measured on it, in one run. No GPU was lent to this task: **GPU figures: not measured.** On a shared virtual machine the same timing varies from run to run (the epoch seconds below show the spread within this run); read single figures and the ratios built on them with that in mind.

Settings `helpers.runtime.device.configure` chose for this device: XLA {'on' if settings['jit_compile'] else 'off'}, dtype policy {settings['mixed_precision']}, intra-/inter-op threads {settings['intra_op_threads']}/{settings['inter_op_threads']}; `helpers.predict.inference` chooses batch {BATCH_SIZES[settings['device_type']]} with XLA {'on' if inference_xla else 'off'}. Inputs are synthetic images of the real shape (64×128) for full-width models; speed does not depend on the pixel values.

## Device peak and work per image

Measured float32 peak: **{results['peak_gflops']:.0f} GFLOP/s**, the better of two 4096×4096 matmuls (best of 3): numpy's BLAS {results['matmul_gflops']['numpy']:.0f} GFLOP/s, TensorFlow's own CPU matmul {results['matmul_gflops']['tensorflow']:.0f} GFLOP/s; TensorFlow's bfloat16 matmul: {results['matmul_gflops'].get('tensorflow_bfloat16', float('nan')):.0f} GFLOP/s. Forward GFLOP per image (Conv2D and Dense multiply-adds × 2, `helpers/model/flops.py`): {flops}; a training step costs about {TRAINING_FACTOR}× the forward pass.

## Training throughput (the project's pipeline against the plain peer way, same process)

Same model (the default profile's width), loss, optimizer, metrics and batch both ways; *ours* = the very path `helpers.run.train.run` trains with (`train.plan` → `train.build` → `train.fit`: tf.data input, `helpers.runtime.device.strategy()`'s scope, the dtype and XLA choice of `configure`, the run's callbacks); *peer* = float32, numpy arrays into `model.fit`, `jit_compile=False`. Images/s of one epoch, median over the epochs after the first (the warm-up, with tracing and compilation). Both share the process and its thread pools (TensorFlow sizes its default pools by the schedulable CPUs, 2 here, as `configure` does).

{_training(results)}

## TensorFlow against JAX (the Keras backends, `benchmarks.backends`)

{_backends(results)}

## Inference and the submission CSV

{_prediction(results)}

## Pipelines

{_pipelines(results)}

## Peak memory (`resource.getrusage` maxrss)

{_memory(results)}

## Beyond one device

The training path above runs inside `helpers.runtime.device.strategy()`: the default strategy here (one CPU),
MirroredStrategy over several GPUs or over CPUs split with `helpers.runtime.device.split_cpu`, TPUStrategy on a
TPU. `configure` turns XLA off under a multi-device strategy (Keras cannot compile across replicas).
A mirrored training step on 2 logical CPUs is exercised by `tests/test_device.py`; no multi-device
throughput was measured (one CPU device, no accelerator lent).

## What is chosen per device, and the flags that turn it off

{_choices()}
"""


def main() -> int:
    """`python -m benchmarks.report`: rewrite reports/bench.md from reports/bench.json (no new measurement),
    e.g. once the lead's `bench_pipeline.json` exists."""
    out = reports_dir()
    results = json.loads((out / "bench.json").read_text())
    (out / "bench.md").write_text(markdown(results, out))
    print(f"wrote {out / 'bench.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
