"""TensorFlow against JAX on this machine: the Baseline's training throughput on each Keras backend, side by side.

    python -m benchmarks.backends [--fast] [--isa native|avx2] [--out DIR]

Workload: the Baseline at the default profile's width and batch, float32, on synthetic images (`helpers.data.synthetic`),
trained with the project's backend-neutral pieces (`benchmarks.backend_child`): on TensorFlow compiled with the XLA
choice of `helpers.runtime.device.configure` (on for one CPU device in float32, off in a one-core process
with oneDNN's kernels on) over tf.data, on JAX jitted by Keras over
numpy batches (`ArrayBatches`). Keras fixes its backend at first import, so every measurement is a fresh process
with `KERAS_BACKEND` set; the JAX processes report whether TensorFlow was ever imported (it must not be).

Two layouts: `all_cores`, one process on every core; `per_core`, one worker per core, each pinned to its core
(`os.sched_setaffinity`), all at once, their timed epochs held together by a barrier after the warm-up epoch, rates
summed. Throughput is images/s of an epoch, the median over the epochs after the first (the warm-up), as in
`benchmarks.training`; with several rounds, the median over rounds. TensorFlow and JAX alternate within each round
and swap order from one round to the next, so drift in the machine's load hits both. Each figure is also given in
GFLOP/s (a training step ≈ `helpers.model.flops.TRAINING_FACTOR` × the forward FLOPs) and as a fraction of the float32
matmul peak measured in the same environment (`benchmarks.timing.matmul_gflops`).

`--isa avx2` approximates the common AVX2-only laptop class on a newer CPU: every child runs with
ONEDNN_MAX_CPU_ISA=AVX2 (TensorFlow's oneDNN kernels), XLA_FLAGS=--xla_cpu_max_isa=AVX2 (XLA's code on both
backends) and OPENBLAS_CORETYPE=Haswell (numpy's BLAS in the peak), in float32 (which every run here uses; no
bfloat16 mixed precision). `native` removes those caps. Writes `bench_backends.json` and `bench_backends.md` to
`--out` (default: reports/). `--fast` shrinks everything to check the script in a couple of minutes; its figures
mean nothing. `make bench` runs it (native ISA) as part of `benchmarks.run`.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from helpers.configs.constants import BACKENDS

ROOT = Path(__file__).resolve().parents[1]
LAYOUTS = ("all_cores", "per_core")
LAYOUT_NAMES = {"all_cores": "one process, every core", "per_core": "one worker per core (pinned), summed"}
FULL = {"images": 512, "batch_size": None, "repeats": 3, "rounds": 2, "peak_size": 4096, "timeout_s": 3600}
"""Full size: 512 images an epoch, 1 + 3 epochs a process, 2 rounds; batch None = the default profile's (32)."""
FAST = {"images": 8, "batch_size": 4, "repeats": 1, "rounds": 1, "peak_size": 512, "timeout_s": 600}
ISA_CAPS = {"ONEDNN_MAX_CPU_ISA": "AVX2", "OPENBLAS_CORETYPE": "Haswell"}
XLA_ISA_FLAG = "--xla_cpu_max_isa"
ISAS = ("native", "avx2")


def child_env(backend: str, isa: str, base: dict) -> dict:
    """The environment of a child: `base` with KERAS_BACKEND set and the ISA caps of `isa` set ("avx2") or removed
    ("native"), other XLA_FLAGS kept."""
    if backend not in BACKENDS or isa not in ISAS:
        raise ValueError(f"backend must be one of {BACKENDS} and isa one of {ISAS}, got {backend!r}, {isa!r}")
    env = {key: value for key, value in base.items() if key not in ISA_CAPS}
    flags = [flag for flag in env.get("XLA_FLAGS", "").split() if not flag.startswith(XLA_ISA_FLAG)]
    if isa == "avx2":
        env.update(ISA_CAPS)
        flags.append(f"{XLA_ISA_FLAG}=AVX2")
    env["XLA_FLAGS"] = " ".join(flags)
    if not env["XLA_FLAGS"]:
        del env["XLA_FLAGS"]
    env["KERAS_BACKEND"] = backend
    return env


def schedule(rounds: int) -> list[tuple[int, str, str]]:
    """(round, layout, backend) in run order: each layout's two backends back to back, the order of the backends
    swapped every round, so slow drift of the machine's load falls on both alike."""
    order = []
    for round_ in range(rounds):
        backends = BACKENDS if round_ % 2 == 0 else BACKENDS[::-1]
        order += [(round_, layout, backend) for layout in LAYOUTS for backend in backends]
    return order


def lscpu_model() -> str:
    """The "Model name" line of `lscpu` (or /proc/cpuinfo's "model name"), or "unknown"."""
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=30).stdout
        for line in out.splitlines():
            if line.strip().lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except (OSError, subprocess.SubprocessError):
        pass
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


def _run_children(jobs: list[tuple[list[str], dict, str]], folder: Path, timeout_s: float) -> list[dict]:
    """Start every (argv, env, label) job at once, wait for all, return their JSON results in order; a failed
    child raises RuntimeError naming it, with the end of its stderr."""
    started, folder = [], Path(tempfile.mkdtemp(prefix="run-", dir=folder))
    for i, (argv, env, label) in enumerate(jobs):
        log = open(folder / f"child-{i}.log", "w")
        out = folder / f"child-{i}.json"
        process = subprocess.Popen([sys.executable, "-m", "benchmarks.backend_child", *argv, str(out)], cwd=ROOT,
                                   env=env, stdout=log, stderr=subprocess.STDOUT)
        started.append((process, log, out, label))
    deadline, failures, results = time.monotonic() + timeout_s, [], []
    for process, log, out, label in started:
        try:
            code = process.wait(timeout=max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            process.kill()
            code = process.wait()
            failures.append(f"{label} ran past {timeout_s:.0f} s")
        log.close()
        if code != 0 and not failures:
            tail = (folder / log.name).read_text(errors="replace").strip().splitlines()[-15:]
            failures.append(f"{label} failed with exit code {code}:\n" + "\n".join(tail))
        if not failures:
            results.append(json.loads(out.read_text()))
    if failures:
        for process, *_ in started:
            if process.poll() is None:
                process.kill()
                process.wait()
        raise RuntimeError("benchmarks.backends: " + failures[0])
    return results


def _write_data(path: Path, n: int) -> None:
    """Synthetic training images (float32 in [0, 1]) and masks of the real shape, as `benchmarks.run` makes them."""
    from helpers.data import synthetic

    arrays = synthetic.generate(n_train=max(n, 8), n_test=2, seed=0)["training_set"][:n]
    np.savez(path, images=(arrays[:, 0] / 255).astype(np.float32), masks=arrays[:, 1].astype(np.uint8))


def _overlap(workers: list[dict]) -> float:
    """Share of the longest timed span during which every worker was timing (1 = fully simultaneous)."""
    starts = [w["timed_window"]["start"] for w in workers]
    ends = [w["timed_window"]["end"] for w in workers]
    longest = max(end - start for start, end in zip(starts, ends))
    return max(0.0, min(ends) - max(starts)) / longest if longest > 0 else 1.0


def measure(*, fast: bool = False, isa: str = "native", say=print) -> dict:
    """Run the whole comparison (see the module docstring) in child processes; the results as a JSON-able dict."""
    if isa not in ISAS:
        raise ValueError(f"isa must be one of {ISAS}, got {isa!r}")
    sizes = dict(FAST if fast else FULL)
    if sizes["batch_size"] is None:
        from helpers.configs.profiles import get_profile

        sizes["batch_size"] = get_profile("default")["batch_size"]
    cores = sorted(os.sched_getaffinity(0))
    started, started_at = time.perf_counter(), time.strftime("%Y-%m-%d %H:%M:%S %Z")
    results = {"fast": fast, "isa": isa, "sizes": sizes, "cores": cores, "lscpu_model": lscpu_model(),
               "isa_env": {key: child_env("jax", isa, {}).get(key) for key in (*ISA_CAPS, "XLA_FLAGS")},
               "started_at": started_at, "runs": []}
    with tempfile.TemporaryDirectory(prefix="bench-backends-") as tmp:
        folder = Path(tmp)
        data = folder / "data.npz"
        _write_data(data, sizes["images"])
        say(f"[backends] {len(cores)} cores ({results['lscpu_model']}), ISA {isa}: measuring the float32 matmul peak")
        peak_argv = ["peak", "--size", str(sizes["peak_size"]), *(["--no-bfloat16"] if isa == "avx2" else [])]
        results["peak"] = _run_children([(peak_argv,
                                          child_env("tensorflow", isa, os.environ), "the peak child")],
                                        folder, sizes["timeout_s"])[0]
        say(f"[backends] float32 peak {results['peak']['peak_gflops']:.0f} GFLOP/s ({results['peak']['peak_from']}); "
            f"device: {results['peak']['device']}")
        train = ["train", str(data), "--batch-size", str(sizes["batch_size"]), "--repeats", str(sizes["repeats"])]
        for run_index, (round_, layout, backend) in enumerate(schedule(sizes["rounds"])):
            env = child_env(backend, isa, os.environ)
            if layout == "all_cores":
                jobs = [(train, env, f"the {backend} child ({layout})")]
            else:
                barrier = folder / f"barrier-{run_index}"
                barrier.mkdir()
                jobs = [([*train, "--core", str(core), "--barrier", str(barrier), "--workers", str(len(cores))], env,
                         f"the {backend} worker on core {core}") for core in cores]
            workers = _run_children(jobs, folder, sizes["timeout_s"])
            run = {"round": round_, "layout": layout, "backend": backend, "workers": workers,
                   "per_second": sum(w["per_second"] for w in workers),
                   "overlap": _overlap(workers) if len(workers) > 1 else 1.0}
            results["runs"].append(run)
            say(f"[backends] round {round_ + 1}, {backend}, {LAYOUT_NAMES[layout]}: {run['per_second']:.2f} images/s "
                f"(epochs {[w['seconds'] for w in workers]} s, first = warm-up; XLA "
                f"{'on' if workers[0]['jit_compile'] else 'off'}, {workers[0]['dtype_policy']}, "
                f"{workers[0]['input_pipeline']}; TensorFlow imported: {workers[0]['tensorflow_imported']})")
    results.update(summarise(results["runs"], results["peak"]["peak_gflops"]))
    results["seconds"] = time.perf_counter() - started
    return results


def summarise(runs: list[dict], peak_gflops: float) -> dict:
    """Per layout and backend: images/s (median over rounds of each round's summed rate), GFLOP/s, fraction of the
    peak, the JAX / TensorFlow ratio, and whether any JAX process imported TensorFlow."""
    flops = {w["training_factor"] * w["forward_flops"] for run in runs for w in run["workers"]}
    if len(flops) != 1:
        raise ValueError(f"the children counted different training FLOPs per image: {sorted(flops)}")
    per_image = flops.pop()
    rates, table = {}, []
    for layout in LAYOUTS:
        for backend in BACKENDS:
            chosen = [run for run in runs if run["layout"] == layout and run["backend"] == backend]
            if not chosen:
                raise ValueError(f"no {backend} run in the {layout} layout")
            rate = statistics.median(run["per_second"] for run in chosen)
            rates.setdefault(layout, {})[backend] = rate
            gflops = rate * per_image / 1e9
            first = chosen[0]["workers"][0]
            table.append({"backend": backend, "layout": layout, "processes": len(chosen[0]["workers"]),
                          "per_second": rate, "rounds": [run["per_second"] for run in chosen], "gflops": gflops,
                          "of_peak": gflops / peak_gflops, "jit_compile": first["jit_compile"],
                          "dtype_policy": first["dtype_policy"], "input_pipeline": first["input_pipeline"],
                          "min_overlap": min(run["overlap"] for run in chosen)})
    ratios = {layout: rates[layout]["jax"] / rates[layout]["tensorflow"] for layout in LAYOUTS}
    jax_imported_tf = any(w["tensorflow_imported"] for run in runs if run["backend"] == "jax" for w in run["workers"])
    return {"training_flops_per_image": per_image, "peak_gflops": peak_gflops, "rates": rates, "table": table,
            "ratios": ratios, "tensorflow_imported_in_jax": jax_imported_tf}


def _table(header: list[str], rows: list[list]) -> str:
    return "\n".join(["| " + " | ".join(header) + " |", "|" + "---|" * len(header),
                      *("| " + " | ".join(str(cell) for cell in row) + " |" for row in rows)])


def section(results: dict) -> str:
    """The comparison as Markdown (the body of bench_backends.md and of its section in reports/bench.md)."""
    from helpers.run.backend_choice import faster_backend

    peak, first = results["peak"], results["runs"][0]["workers"][0]
    tf_run = next(run["workers"][0] for run in results["runs"] if run["backend"] == "tensorflow")
    jax_run = next(run["workers"][0] for run in results["runs"] if run["backend"] == "jax")
    rows = [[row["backend"], LAYOUT_NAMES[row["layout"]], row["processes"], f"{row['per_second']:.2f}",
             ", ".join(f"{rate:.2f}" for rate in row["rounds"]), f"{row['gflops']:.1f}", f"{row['of_peak']:.1%}",
             "on" if row["jit_compile"] else "off", row["dtype_policy"], f"`{row['input_pipeline']}`",
             f"{row['min_overlap']:.0%}" if row["processes"] > 1 else "–"] for row in results["table"]]
    ratios = "; ".join(f"{LAYOUT_NAMES[layout]}: **{ratio:.2f}×**" for layout, ratio in results["ratios"].items())
    if results["fast"]:
        verdict = "not applied to a `--fast` run."
    else:
        verdict = f"**{faster_backend(results)}**."
    sizes = results["sizes"]
    return f"""Device: {peak['device']} (`cpu_class`: {peak['cpu_class']}; without ISA caps: {peak['native_device']}); `lscpu` model name: {results['lscpu_model']}; ISA: **{results['isa']}** (child environment: {', '.join(f'{k}={v}' for k, v in results['isa_env'].items() if v) or 'no caps'}). TensorFlow {tf_run['backend_version']}, JAX {jax_run['backend_version']}, Keras {first['keras_version']}.

Baseline at width {first['width']}, batch {sizes['batch_size']}, float32, {sizes['images']} synthetic images an epoch, 1 + {sizes['repeats']} epochs a process (the first is the warm-up), {sizes['rounds']} round(s), TensorFlow and JAX alternating. A training step costs {results['training_flops_per_image'] / 1e9:.3f} GFLOP per image ({first['training_factor']}× the forward pass); float32 matmul peak in the same environment: **{peak['peak_gflops']:.0f} GFLOP/s** ({peak['peak_from']}; {', '.join(f'{k} {v:.0f}' for k, v in peak['matmul_gflops'].items())}). TensorFlow compiles with XLA as `helpers.runtime.device.configure` decides for one CPU device in float32 (on, except in a one-core process with oneDNN's kernels on) and sizes its thread pools to the process's cores; JAX jits every step (Keras on JAX always does). The project's own dtype choice on this device would be {first['project_auto_policy']} (not measured here: float32 only).

{_table(['backend', 'layout', 'processes', 'images/s (median)', 'per round', 'GFLOP/s', 'of peak', 'XLA', 'dtype', 'input', 'timed together'], rows)}

JAX / TensorFlow: {ratios}. TensorFlow imported in a JAX process: **{'yes' if results['tensorflow_imported_in_jax'] else 'no'}**. Backend picked by `helpers.run.backend_choice.faster_backend` (one worker per core; JAX only if more than 5 % faster): {verdict}"""


def markdown(results: dict) -> str:
    """bench_backends.md."""
    fast = ("\n> **`--fast` run: tiny image counts and one repeat; these figures only check the script.**\n"
            if results["fast"] else "")
    return f"""# TensorFlow against JAX
{fast}
Written by `{results['command']}` on {results['started_at']}, {results['seconds'] / 60:.1f} min in all. Raw figures: `bench_backends.json`.

{section(results)}
"""


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.backends", description=__doc__.splitlines()[0])
    parser.add_argument("--fast", action="store_true", help="tiny image counts and repeats (checks the script only)")
    parser.add_argument("--isa", choices=ISAS, default="native",
                        help="avx2: cap oneDNN, XLA and OpenBLAS at AVX2 (the AVX2-only laptop class)")
    parser.add_argument("--out", help="folder for bench_backends.json and .md (default: reports/)")
    args = parser.parse_args(argv)
    if args.out is not None and Path(args.out).exists() and not Path(args.out).is_dir():
        parser.error(f"--out {args.out} exists and is not a folder")
    try:
        results = measure(fast=args.fast, isa=args.isa, say=lambda line: print(line, flush=True))
    except RuntimeError as error:
        print(error, file=sys.stderr)
        return 1
    results["command"] = " ".join(["python -m benchmarks.backends", *(argv if argv is not None else sys.argv[1:])])
    from helpers.runtime.paths import reports_dir

    out = reports_dir() if args.out is None else Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "bench_backends.json").write_text(json.dumps(results, indent=1) + "\n")
    (out / "bench_backends.md").write_text(markdown(results))
    print(f"wrote {out / 'bench_backends.md'} ({results['seconds']:.0f} s in all)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
