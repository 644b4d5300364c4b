"""`benchmarks.backends` (TensorFlow against JAX) and `helpers.run.backend_choice.faster_backend`: the pure parts on hand-made
inputs (child environments, run order, summary, report, the rule), the command line's one-line errors, and one
tiny training child per backend (slow: two fresh processes, about a minute on 2 cores)."""
import json
import os
from pathlib import Path

import numpy as np
import pytest

from benchmarks import backends
from helpers.run.backend_choice import faster_backend
from conftest import run_module

def test_child_env_sets_or_removes_the_isa_caps():
    base = {"PATH": "/bin", "XLA_FLAGS": "--xla_dump_to=/tmp/x --xla_cpu_max_isa=AVX512", "ONEDNN_MAX_CPU_ISA": "AVX"}
    avx2 = backends.child_env("jax", "avx2", base)
    assert avx2["KERAS_BACKEND"] == "jax" and avx2["PATH"] == "/bin"
    assert avx2["ONEDNN_MAX_CPU_ISA"] == "AVX2" and avx2["OPENBLAS_CORETYPE"] == "Haswell"
    assert avx2["XLA_FLAGS"].split() == ["--xla_dump_to=/tmp/x", "--xla_cpu_max_isa=AVX2"]
    native = backends.child_env("tensorflow", "native", base)
    assert native["KERAS_BACKEND"] == "tensorflow" and native["XLA_FLAGS"] == "--xla_dump_to=/tmp/x"
    assert "ONEDNN_MAX_CPU_ISA" not in native and "OPENBLAS_CORETYPE" not in native
    assert "XLA_FLAGS" not in backends.child_env("jax", "native", {"XLA_FLAGS": "--xla_cpu_max_isa=AVX2"})
    assert base["ONEDNN_MAX_CPU_ISA"] == "AVX", "the caller's environment is left alone"
    with pytest.raises(ValueError, match="isa"):
        backends.child_env("jax", "sse", {})


def test_schedule_interleaves_the_backends_and_swaps_their_order():
    order = backends.schedule(2)
    assert order == [(0, "all_cores", "tensorflow"), (0, "all_cores", "jax"), (0, "per_core", "tensorflow"),
                     (0, "per_core", "jax"), (1, "all_cores", "jax"), (1, "all_cores", "tensorflow"),
                     (1, "per_core", "jax"), (1, "per_core", "tensorflow")]


def _worker(backend, per_second, start=0.0, end=10.0):
    return {"per_second": per_second, "seconds": [5.0, 1.0], "forward_flops": 1_000_000_000, "training_factor": 3,
            "jit_compile": True, "dtype_policy": "float32", "input_pipeline": "tf.data" if backend == "tensorflow"
            else "ArrayBatches", "tensorflow_imported": backend == "tensorflow",
            "timed_window": {"start": start, "end": end},
            "backend_version": "x", "keras_version": "3", "width": 0.25, "project_auto_policy": "float32"}


def _runs():
    """Two rounds: all cores TF 10 then 14, JAX 20 then 22; per core TF 2 × 6 then 2 × 7, JAX 2 × 5 then 2 × 5."""
    rates = {("all_cores", "tensorflow"): ([10.0], [14.0]), ("all_cores", "jax"): ([20.0], [22.0]),
             ("per_core", "tensorflow"): ([6.0, 6.0], [7.0, 7.0]), ("per_core", "jax"): ([5.0, 5.0], [5.0, 5.0])}
    runs = []
    for round_, layout, backend in backends.schedule(2):
        workers = [_worker(backend, rate, start=i, end=10.0) for i, rate in enumerate(rates[layout, backend][round_])]
        runs.append({"round": round_, "layout": layout, "backend": backend, "workers": workers,
                     "per_second": sum(w["per_second"] for w in workers),
                     "overlap": backends._overlap(workers) if len(workers) > 1 else 1.0})
    return runs


def test_summarise_sums_workers_takes_the_median_over_rounds_and_scales_by_the_peak():
    summary = backends.summarise(_runs(), peak_gflops=100.0)
    assert summary["rates"] == {"all_cores": {"tensorflow": 12.0, "jax": 21.0},
                                "per_core": {"tensorflow": 13.0, "jax": 10.0}}
    assert summary["ratios"] == pytest.approx({"all_cores": 21 / 12, "per_core": 10 / 13})
    assert summary["training_flops_per_image"] == 3_000_000_000
    row = next(r for r in summary["table"] if r["layout"] == "per_core" and r["backend"] == "tensorflow")
    assert row["processes"] == 2 and row["rounds"] == [12.0, 14.0]
    assert row["gflops"] == pytest.approx(39.0) and row["of_peak"] == pytest.approx(0.39)
    assert row["min_overlap"] == pytest.approx(0.9)  # the second worker started 1 s into a 10 s span
    assert summary["tensorflow_imported_in_jax"] is False


def test_summarise_refuses_children_that_disagree_on_the_flops():
    runs = _runs()
    runs[1]["workers"][0]["forward_flops"] = 2
    with pytest.raises(ValueError, match="different training FLOPs"):
        backends.summarise(runs, peak_gflops=100.0)


def test_markdown_has_a_row_per_backend_and_layout_the_ratios_and_the_rule():
    runs = _runs()
    peak = {"peak_gflops": 100.0, "peak_from": "numpy", "matmul_gflops": {"numpy": 100.0, "tensorflow": 50.0},
            "device": "CPU: 2 cores, X (AVX2 only)", "cpu_class": "AVX2 only", "native_device": "CPU: 2 cores, X (AMX)"}
    results = {"fast": False, "isa": "avx2", "sizes": {"images": 512, "batch_size": 32, "repeats": 3, "rounds": 2},
               "lscpu_model": "X", "isa_env": {"ONEDNN_MAX_CPU_ISA": "AVX2"}, "peak": peak, "runs": runs,
               "command": "python -m benchmarks.backends --isa avx2", "started_at": "now", "seconds": 60.0,
               **backends.summarise(runs, 100.0)}
    text = backends.markdown(results)
    table = [line for line in text.splitlines() if line.startswith("| tensorflow") or line.startswith("| jax")]
    assert len(table) == 4
    assert "| 13.00 | 12.00, 14.00 | 39.0 | 39.0% |" in text
    assert "**1.75×**" in text and "**0.77×**" in text
    assert "picked by `helpers.run.backend_choice.faster_backend`" in text and "**tensorflow**." in text
    assert "ONEDNN_MAX_CPU_ISA=AVX2" in text and "cpu_class`: AVX2 only" in text
    assert "--fast" not in text
    fast = backends.markdown({**results, "fast": True})
    assert "`--fast` run" in fast and "not applied to a `--fast` run" in fast


def _measured(tf, jax, layout="per_core", **extra):
    return {"rates": {layout: {"tensorflow": tf, "jax": jax}, "all_cores": {"tensorflow": 1.0, "jax": 99.0}}, **extra}


@pytest.mark.parametrize("tf, jax, expected", [
    (100.0, 120.0, "jax"),          # 20 % faster
    (100.0, 105.5, "jax"),          # just past the 5 % margin
    (100.0, 104.9, "tensorflow"),   # a tie: within 5 %
    (100.0, 100.0, "tensorflow"),
    (100.0, 60.0, "tensorflow"),
])
def test_faster_backend_prefers_jax_only_beyond_the_tie_margin(tf, jax, expected):
    assert faster_backend(_measured(tf, jax)) == expected


def test_faster_backend_reads_the_layout_asked_and_the_margin_given():
    measured = _measured(100.0, 104.0)
    assert faster_backend(measured) == "tensorflow"
    assert faster_backend(measured, layout="all_cores") == "jax"
    assert faster_backend(measured, tie=0.0) == "jax"


@pytest.mark.parametrize("measured, message", [
    ({"rates": {}}, "no images/s"),
    ({"rates": {"per_core": {"tensorflow": 1.0}}}, "no images/s"),
    (_measured(0.0, 1.0), "positive finite"),
    (_measured(1.0, float("nan")), "positive finite"),
    (_measured(1.0, "fast"), "positive finite"),
    (_measured(1.0, 2.0, fast=True), "--fast"),
])
def test_faster_backend_refuses_what_it_cannot_read(measured, message):
    with pytest.raises(ValueError, match=message):
        faster_backend(measured)


def test_faster_backend_refuses_a_margin_outside_0_to_1():
    with pytest.raises(ValueError, match="tie"):
        faster_backend(_measured(1.0, 2.0), tie=1.5)


def test_command_line_errors_are_one_line(tmp_path):
    bad_isa = run_module("benchmarks.backends", "--isa", "sse", timeout=120)
    assert bad_isa.returncode == 2 and "invalid choice: 'sse'" in bad_isa.stderr.strip().splitlines()[-1]
    (tmp_path / "file").write_text("")
    bad_out = run_module("benchmarks.backends", "--out", str(tmp_path / "file"), timeout=120)
    assert bad_out.returncode == 2 and bad_out.stderr.strip().splitlines()[-1].endswith("exists and is not a folder")


@pytest.mark.slow
def test_one_tiny_training_child_per_backend(tmp_path):
    """A TensorFlow and a JAX child at once (`_run_children`), each pinned to its own core where there are two,
    train 4 images for 1 + 1 epochs through a one-worker barrier; the JAX process never imports TensorFlow."""
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "data.npz", images=rng.random((4, 64, 128), dtype=np.float32),
             masks=rng.integers(0, 5, (4, 64, 128)).astype(np.uint8))
    cores = sorted(os.sched_getaffinity(0))
    jobs = []
    for i, backend in enumerate(backends.BACKENDS):
        (tmp_path / f"barrier-{backend}").mkdir()
        argv = ["train", str(tmp_path / "data.npz"), "--batch-size", "4", "--repeats", "1",
                "--core", str(cores[i % len(cores)]), "--barrier", str(tmp_path / f"barrier-{backend}"),
                "--workers", "1"]
        jobs.append((argv, backends.child_env(backend, "native", os.environ), backend))
    results = backends._run_children(jobs, tmp_path, timeout_s=300)
    for i, (backend, result) in enumerate(zip(backends.BACKENDS, results)):
        assert result["backend"] == backend and result["affinity"] == [cores[i % len(cores)]]
        assert result["cores_visible"] == 1
        assert result["per_second"] > 0 and len(result["seconds"]) == 2 and result["items"] == 4
        # one core: XLA unless TensorFlow runs oneDNN's kernels (helpers.runtime.device)
        assert result["dtype_policy"] == "float32" and result["jit_compile"] is not result["onednn"]
        assert result["input_pipeline"] == ("tf.data" if backend == "tensorflow" else "ArrayBatches")
        assert result["forward_flops"] > 0 and result["timed_window"]["end"] >= result["timed_window"]["start"]
        assert result["tensorflow_imported"] is (backend == "tensorflow")
    assert results[0]["intra_op_threads"] == 1 and results[0]["threads_applied"] is True
    assert results[0]["forward_flops"] == results[1]["forward_flops"]


def test_a_failing_child_is_named_with_its_stderr(tmp_path):
    job = (["train", str(tmp_path / "missing.npz"), "--batch-size", "4", "--repeats", "1"],
           backends.child_env("jax", "native", os.environ), "the jax child")
    with pytest.raises(RuntimeError, match=r"the jax child failed with exit code 1:(.|\n)*missing\.npz"):
        backends._run_children([job], tmp_path, timeout_s=300)
