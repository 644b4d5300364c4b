"""What CPU (and GPU driver) this machine has, read from /proc and the environment without starting any backend:
the pipeline reads it before Keras is imported, when the Keras backend is still to be chosen."""
from __future__ import annotations

import math
import os
import platform
from pathlib import Path


def cgroup_cpu_limit() -> int | None:
    """CPUs allowed by a cgroup quota (containers, CI runners), or None without a quota."""
    quota_files = [(Path("/sys/fs/cgroup/cpu.max"), None),
                   (Path("/sys/fs/cgroup/cpu/cpu.cfs_quota_us"), Path("/sys/fs/cgroup/cpu/cpu.cfs_period_us"))]
    for quota_file, period_file in quota_files:
        try:
            if period_file is None:
                quota, period = quota_file.read_text().split()[:2]
            else:
                quota, period = quota_file.read_text().strip(), period_file.read_text().strip()
            if quota in ("max", "-1"):
                return None
            return max(1, math.ceil(int(quota) / int(period)))
        except (OSError, ValueError):
            continue
    return None


def visible_cores() -> int:
    """CPU cores this process may use: its affinity mask, capped by a cgroup CPU quota.

    TensorFlow sizes its thread pools from the host's cores, which oversubscribes a container
    limited to fewer; this count is what `configure` uses instead.
    """
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count() or 1
    limit = cgroup_cpu_limit()
    return min(cores, limit) if limit else cores


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith(("model name", "hardware", "cpu model")):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def nvidia_gpu_present() -> bool:
    """Whether the machine has an NVIDIA driver loaded (whatever the backend sees)."""
    return Path("/proc/driver/nvidia/version").exists()


def nvidia_gpu_count() -> int:
    """NVIDIA GPUs the driver lists, read without starting a backend (JAX would take most of each GPU's memory
    in the process that asks it)."""
    folder = Path("/proc/driver/nvidia/gpus")
    return len(list(folder.iterdir())) if folder.is_dir() else 0


def cpu_has_flag(flag: str) -> bool:
    """Whether /proc/cpuinfo lists `flag`, e.g. amx_bf16 (Intel AMX tiles) or avx512_bf16 (AMD Zen 4, Intel)."""
    try:
        return any(line.startswith("flags") and f" {flag}" in f"{line} "
                   for line in Path("/proc/cpuinfo").read_text().splitlines())
    except OSError:
        return False


# oneDNN's ISA cap (its own `ONEDNN_MAX_CPU_ISA`, read by oneDNN when TensorFlow starts), from the lowest up: a
# cap below AVX512_CORE_BF16 leaves oneDNN no bfloat16 instructions, below AVX512_CORE_AMX no AMX tiles.
ONEDNN_ISAS = ("SSE41", "AVX", "AVX2", "AVX2_VNNI", "AVX2_VNNI_2", "AVX512_CORE", "AVX512_CORE_VNNI",
                "AVX512_CORE_BF16", "AVX512_CORE_FP16", "AVX10_1_512", "AVX512_CORE_AMX", "AVX10_1_512_AMX",
                "AVX512_CORE_AMX_FP16", "AVX10_1_512_AMX_FP16")


def onednn_allows(isa: str) -> bool:
    """Whether oneDNN may use `isa` under the process's `ONEDNN_MAX_CPU_ISA` (unset, ALL or DEFAULT: any)."""
    cap = os.environ.get("ONEDNN_MAX_CPU_ISA", "ALL").strip().upper()
    if cap in ("", "ALL", "DEFAULT") or cap not in ONEDNN_ISAS:
        return True
    return ONEDNN_ISAS.index(cap) >= ONEDNN_ISAS.index(isa)


TENSORFLOW_ONEDNN_FEATURES = ("avx512_vnni", "avx512_bf16", "avx_vnni", "amx_tile", "amx_int8", "amx_bf16")
"""The CPU flags for which TensorFlow turns its oneDNN kernels on by default on Linux (its `DefaultOneDnnPolicy`,
tensorflow/core/util/port.cc); on other x86 CPUs, the AVX2-only class included, it runs Eigen's kernels."""
ONEDNN_SWITCH = "TF_ENABLE_ONEDNN_OPTS"
"""TensorFlow's own switch for its oneDNN kernels, read once when TensorFlow first asks."""


def onednn_switch_default() -> str | None:
    """The value of `ONEDNN_SWITCH` this project starts TensorFlow with where nobody set one: "1" on a Linux CPU
    with AVX2, so that the AVX2-only class gets oneDNN's kernels, which TensorFlow leaves off there by default
    (measured on the AVX2 approximation: the Baseline 1.19x faster with XLA, 1.9x without; docs/performance.md);
    None elsewhere (TensorFlow's own default, unchanged: on for CPUs with `TENSORFLOW_ONEDNN_FEATURES`)."""
    return "1" if platform.system() == "Linux" and cpu_has_flag("avx2") else None


def tensorflow_onednn_on() -> bool:
    """Whether TensorFlow runs its oneDNN kernels in a process started with this environment: `ONEDNN_SWITCH`
    where set to a value TensorFlow reads (0, 1, false, true), else TensorFlow's default rule on Linux."""
    value = os.environ.get(ONEDNN_SWITCH, "").strip().lower()
    if value in ("1", "true", "0", "false"):
        return value in ("1", "true")
    return platform.system() == "Linux" and any(cpu_has_flag(flag) for flag in TENSORFLOW_ONEDNN_FEATURES)


def cpu_facts(engine: str) -> dict:
    """What `helpers.runtime.device.device_facts` says of the host for a Keras backend `engine`, read without starting it:
    device type ("gpu" where the NVIDIA driver lists GPUs, else "cpu"), GPUs (by count only), visible cores, CPU
    model, the bfloat16 instructions oneDNN may use, and whether TensorFlow's oneDNN kernels are on (`onednn`)."""
    gpus = nvidia_gpu_count()
    return {"device_type": "gpu" if gpus else "cpu", "backend": engine, "gpus": [{"name": "NVIDIA GPU"}] * gpus,
            "cores": visible_cores(), "cpu_model": cpu_model(),
            "cpu_amx_bf16": cpu_has_flag("amx_bf16") and onednn_allows("AVX512_CORE_AMX"),
            "cpu_avx512_bf16": cpu_has_flag("avx512_bf16") and onednn_allows("AVX512_CORE_BF16"),
            "onednn": engine == "tensorflow" and tensorflow_onednn_on()}


def cpu_bfloat16_pays(facts: dict) -> bool:
    """Whether oneDNN's bfloat16 kernels beat float32 + XLA on this CPU process (docs/performance.md): with AMX
    tiles always; with AVX512-BF16 only in a one-core process, since those kernels gain nothing from a second
    core while XLA's float32 code does. Those kernels are TensorFlow's: never on JAX, whose CPU code is XLA's."""
    return facts["device_type"] == "cpu" and facts.get("backend", "tensorflow") == "tensorflow" and bool(
        facts.get("cpu_amx_bf16") or (facts.get("cpu_avx512_bf16") and facts.get("cores") == 1))
