"""Device settings: decisions per device, flags that turn each off, and a mirrored training step on 2 logical CPUs.

Anything touching TensorFlow's process-wide state (thread pools, logical devices, the global
dtype policy) runs in a fresh subprocess, since those settings are fixed once the runtime starts.
"""
import json
import subprocess
import sys
import textwrap

import pytest

from helpers.runtime import cpu
from helpers.runtime.device import choose_settings, device_facts, visible_cores

CPU = {"device_type": "cpu", "backend": "tensorflow", "gpus": [], "tpu_cores": 0, "cores": 6, "cpu_model": "Test CPU", "replicas": 1,
       "op_determinism": False}
H100 = {"name": "NVIDIA H100 80GB HBM3", "compute_capability": (9, 0)}
P100 = {"name": "Tesla P100-PCIE-16GB", "compute_capability": (6, 0)}


def test_cpu_with_amx_bf16_trains_in_bfloat16_without_xla():
    amx = choose_settings({**CPU, "cpu_amx_bf16": True})
    assert amx["mixed_precision"] == "mixed_bfloat16" and amx["jit_compile"] is False
    assert choose_settings({**CPU, "cpu_amx_bf16": True}, mixed_precision=False)["jit_compile"] is True
    assert choose_settings({**CPU, "cpu_amx_bf16": False})["mixed_precision"] == "float32"


def _gpu_facts(*gpus):
    return {**CPU, "device_type": "gpu", "gpus": list(gpus), "replicas": len(gpus)}


def _run_fresh(code, timeout=120):
    """Run `code` in a new Python process; its last stdout line is a JSON result."""
    completed = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                               timeout=timeout)
    assert completed.returncode == 0, completed.stderr[-3000:]
    return json.loads(completed.stdout.strip().splitlines()[-1])


def test_auto_choices_per_device():
    cpu = choose_settings(CPU)
    assert cpu == {"device": "CPU: 6 cores, Test CPU (AVX2 only)", "device_type": "cpu", "replicas": 1,
                   "jit_compile": True,
                   "mixed_precision": "float32", "onednn": False, "intra_op_threads": 6, "inter_op_threads": 2}
    assert choose_settings(_gpu_facts(H100))["jit_compile"] is True
    h100 = choose_settings(_gpu_facts(H100, H100))
    assert h100["mixed_precision"] == "mixed_float16" and h100["replicas"] == 2
    assert h100["device"] == "GPU: 2 × NVIDIA H100 80GB HBM3 (compute capability 9.0); host CPU: 6 cores, Test CPU"
    assert choose_settings(_gpu_facts(P100))["mixed_precision"] == "float32"
    assert choose_settings(_gpu_facts(H100, P100))["mixed_precision"] == "float32"
    tpu = choose_settings({**CPU, "device_type": "tpu", "tpu_cores": 8, "replicas": 8})
    assert tpu["mixed_precision"] == "mixed_bfloat16" and tpu["device"].startswith("TPU: 8 cores")
    assert choose_settings({**CPU, "cores": 1})["inter_op_threads"] == 1
    deterministic = choose_settings({**CPU, "op_determinism": True})
    assert deterministic["intra_op_threads"] == 6 and deterministic["inter_op_threads"] == 1


def test_xla_is_off_where_keras_cannot_use_it():
    for facts, blocker in [(_gpu_facts(H100, H100), "multi-device"), ({**CPU, "replicas": 2}, "multi-device"),
                           ({**CPU, "device_type": "tpu", "tpu_cores": 8, "replicas": 8}, "multi-device"),
                           ({**CPU, "op_determinism": True}, "op determinism")]:
        assert choose_settings(facts)["jit_compile"] is False
        with pytest.raises(ValueError, match=blocker):
            choose_settings(facts, xla=True)


def test_each_flag_turns_its_setting_off():
    gpu = _gpu_facts(H100)
    assert choose_settings(gpu, xla=False)["jit_compile"] is False
    assert choose_settings(gpu, mixed_precision=False)["mixed_precision"] == "float32"
    off = choose_settings(gpu, threads=False)
    assert off["intra_op_threads"] is None and off["inter_op_threads"] is None
    assert choose_settings(gpu, threads=3)["intra_op_threads"] == 3
    assert choose_settings(CPU, mixed_precision="mixed_bfloat16")["mixed_precision"] == "mixed_bfloat16"


@pytest.mark.parametrize("flags", [{"xla": "yes"}, {"mixed_precision": True}, {"mixed_precision": "float16"},
                                   {"threads": 0}, {"threads": True}, {"threads": 2.5}])
def test_bad_flags_are_rejected(flags):
    with pytest.raises(ValueError, match="is not understood"):
        choose_settings(CPU, **flags)


FRESH_PROCESS = """
    import json, warnings
    import numpy as np, keras, tensorflow as tf
    from helpers.runtime import device
    threading = tf.config.threading
    result = {"off": device.configure(xla=False, mixed_precision=False, threads=False)}
    result["off_state"] = [threading.get_intra_op_parallelism_threads(), keras.mixed_precision.global_policy().name]
    device.configure(mixed_precision="mixed_bfloat16", threads=False)
    result["bf16_policy"] = keras.mixed_precision.global_policy().name
    result["auto"] = device.configure()
    result["auto_state"] = [threading.get_intra_op_parallelism_threads(),
                            threading.get_inter_op_parallelism_threads(), keras.mixed_precision.global_policy().name]
    result["describe"] = device.describe_device()
    result["summary_one"] = device.strategy_summary()

    result["names"] = device.split_cpu(2)
    settings = result["mirrored"] = device.configure()
    result["summary_two"] = device.strategy_summary()  # before strategy(): it must not need the runtime
    strategy = device.strategy()
    result["strategy"], result["replicas"] = type(strategy).__name__, strategy.num_replicas_in_sync
    with strategy.scope():
        inputs = keras.Input((64, 128, 1))
        hidden = keras.layers.Conv2D(4, 3, padding="same", activation="relu")(inputs)
        outputs = keras.layers.Conv2D(5, 1, activation="softmax")(hidden)
        model = keras.Model(inputs, outputs)
        model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", jit_compile=settings["jit_compile"])
    rng = np.random.default_rng(0)
    x, y = rng.random((8, 64, 128, 1), dtype=np.float32), rng.integers(0, 5, (8, 64, 128))
    before = [w.copy() for w in model.get_weights()]
    result["loss"] = model.fit(x, y, batch_size=8, epochs=1, verbose=0).history["loss"][0]
    result["changed"] = any(not np.array_equal(a, b) for a, b in zip(before, model.get_weights()))

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result["late"] = device.configure(threads=1)
    result["late_warnings"] = [str(w.message) for w in caught]
    try:
        device.split_cpu(3)
        result["late_split"] = "no error"
    except RuntimeError as error:
        result["late_split"] = str(error)
    print(json.dumps(result))
"""


@pytest.fixture(scope="module")
def fresh_process():
    """One new process runs configure's flags, then split_cpu(2) + strategy() + a training step (saves a TF start)."""
    return _run_fresh(FRESH_PROCESS)


@pytest.mark.slow
def test_configure_applies_its_choices_on_this_cpu_machine(fresh_process):
    result = fresh_process
    cores = visible_cores()
    auto = result["auto"]
    assert auto["device_type"] == "cpu" and auto["device"] == result["describe"]
    assert auto["device"].startswith(f"CPU: {cores} cores, ")
    # AMX bfloat16 CPUs train in bfloat16 without XLA, others in float32 with XLA (helpers.runtime.device).
    policy = "mixed_bfloat16" if device_facts()["cpu_amx_bf16"] else "float32"
    assert auto["replicas"] == 1 and auto["jit_compile"] is (policy == "float32") and auto["mixed_precision"] == policy
    assert auto["intra_op_threads"] == cores and auto["inter_op_threads"] == min(2, cores)
    assert auto["threads_applied"] is True
    assert result["auto_state"] == [cores, min(2, cores), policy]
    off = result["off"]
    assert off["jit_compile"] is False and off["mixed_precision"] == "float32" and off["threads_applied"] is False
    assert result["off_state"] == [0, "float32"]
    assert result["bf16_policy"] == "mixed_bfloat16"
    assert result["late"]["threads_applied"] is False
    assert any("already initialised" in warning for warning in result["late_warnings"])


@pytest.mark.slow
def test_mirrored_training_step_on_two_logical_cpus(fresh_process):
    result = fresh_process
    assert result["names"] == ["/device:CPU:0", "/device:CPU:1"]
    assert result["strategy"] == "MirroredStrategy"
    assert result["replicas"] == 2
    assert result["mirrored"]["replicas"] == 2 and result["mirrored"]["jit_compile"] is False
    assert result["changed"] and result["loss"] > 0
    assert "came too late" in result["late_split"]


@pytest.mark.slow
def test_strategy_summary_names_devices_strategy_replicas_and_policy(fresh_process):
    one, two = fresh_process["summary_one"], fresh_process["summary_two"]
    assert one.startswith(f"devices: {fresh_process['describe']}; strategy: the default strategy over 1 replica(s); ")
    assert "no GPU or TPU found: training on one device, the CPU" in one
    assert f"strategy: {fresh_process['strategy']} over {fresh_process['replicas']} replica(s)" in two
    assert f"precision: {fresh_process['mirrored']['mixed_precision']}" in two


def test_a_gpu_tensorflow_cannot_see_is_said_once(monkeypatch):
    from helpers.runtime import device

    monkeypatch.setattr(device, "nvidia_gpu_present", lambda: True)
    monkeypatch.setattr(device, "device_facts", lambda: {**CPU, "cpu_amx_bf16": False})
    monkeypatch.setattr(device.keras.mixed_precision, "set_global_policy", lambda policy: None)
    with pytest.warns(RuntimeWarning, match="GPU=1"):
        device.configure(threads=False)


def test_avx512_bf16_trains_in_bfloat16_only_in_a_one_core_process():
    one_core = choose_settings({**CPU, "cores": 1, "cpu_avx512_bf16": True})
    assert one_core["mixed_precision"] == "mixed_bfloat16" and one_core["jit_compile"] is False
    two_cores = choose_settings({**CPU, "cores": 2, "cpu_avx512_bf16": True})
    assert two_cores["mixed_precision"] == "float32" and two_cores["jit_compile"] is True


def test_pipeline_uses_one_worker_per_core_only_where_one_core_workers_train_in_bfloat16(monkeypatch):
    from helpers.run import backend_choice
    from helpers.runtime import device

    for flags, expected in (({"cpu_avx512_bf16": True}, 6), ({"cpu_amx_bf16": True}, 6), ({}, 1)):
        monkeypatch.setattr(device, "device_facts", lambda flags=flags: {**CPU, **flags})
        assert backend_choice.default_workers() == expected, flags
    monkeypatch.setattr(device, "device_facts", lambda: _gpu_facts(H100, H100))
    assert backend_choice.default_workers() == 2


def test_onednn_isa_cap_hides_the_bfloat16_kernels_it_forbids(monkeypatch):
    """ONEDNN_MAX_CPU_ISA=AVX2 (the AVX2-only class approximated on a newer CPU) means float32 and one
    worker, as on that class; AVX512_CORE_BF16 keeps AVX512-BF16 but not AMX; unset keeps whatever the CPU has."""
    from helpers.runtime import device

    monkeypatch.setattr(cpu, "cpu_has_flag", lambda flag: True)
    for cap, amx, bf16, named in (("AVX2", False, False, "AVX2 only"), ("avx512_core_bf16", False, True, "AVX512-BF16"),
                                  ("AVX512_CORE_AMX", True, True, "AMX"), (None, True, True, "AMX")):
        if cap is None:
            monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
        else:
            monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", cap)
        facts = device.device_facts()
        assert (facts["cpu_amx_bf16"], facts["cpu_avx512_bf16"], device.cpu_class(facts)) == (amx, bf16, named), cap
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    assert device.choose_settings(device.device_facts())["mixed_precision"] == "float32"


def test_a_one_core_tensorflow_process_with_onednn_trains_without_xla():
    """oneDNN's kernels beat XLA's code in a one-core float32 process (docs/performance.md); with two cores, without
    oneDNN, on JAX or when XLA is asked for, XLA stays as before."""
    one_core = {**CPU, "cores": 1, "onednn": True}
    settings = choose_settings(one_core)
    assert settings["jit_compile"] is False and settings["mixed_precision"] == "float32" and settings["onednn"] is True
    assert choose_settings({**one_core, "cores": 2})["jit_compile"] is True
    assert choose_settings({**one_core, "onednn": False})["jit_compile"] is True
    assert choose_settings({**one_core, "backend": "jax", "onednn": False})["jit_compile"] is True
    assert choose_settings(one_core, xla=True)["jit_compile"] is True
    assert choose_settings(_gpu_facts(H100))["onednn"] is False


@pytest.mark.parametrize("switch, flags, on", [
    ("1", (), True), ("true", (), True), ("0", ("amx_bf16", "amx_tile"), False), ("False", ("avx512_vnni",), False),
    (None, ("avx2",), False), (None, ("avx2", "avx512_bf16"), True), (None, ("avx2", "avx_vnni"), True),
    ("maybe", ("avx2",), False)])  # a value TensorFlow cannot read: its default
def test_tensorflow_onednn_on_reads_the_switch_else_tensorflows_default_rule(monkeypatch, switch, flags, on):
    monkeypatch.setattr(cpu.platform, "system", lambda: "Linux")
    monkeypatch.setattr(cpu, "cpu_has_flag", lambda flag: flag in flags)
    if switch is None:
        monkeypatch.delenv(cpu.ONEDNN_SWITCH, raising=False)
    else:
        monkeypatch.setenv(cpu.ONEDNN_SWITCH, switch)
    assert cpu.tensorflow_onednn_on() is on
    assert cpu.cpu_facts("tensorflow")["onednn"] is on and cpu.cpu_facts("jax")["onednn"] is False


def test_the_onednn_switch_defaults_to_on_only_on_linux_cpus_with_avx2(monkeypatch):
    for system, flags, expected in (("Linux", ("avx2",), "1"), ("Linux", (), None), ("Darwin", ("avx2",), None)):
        monkeypatch.setattr(cpu.platform, "system", lambda system=system: system)
        monkeypatch.setattr(cpu, "cpu_has_flag", lambda flag, flags=flags: flag in flags)
        assert cpu.onednn_switch_default() == expected, (system, flags)


@pytest.mark.slow
@pytest.mark.parametrize("switch", [None, "0"])
def test_importing_helpers_starts_tensorflow_with_onednn_unless_told_otherwise(switch):
    """Unset, `helpers` sets TensorFlow's switch before TensorFlow starts (on Linux with AVX2), and TensorFlow's own
    answer follows; a user's value is kept and obeyed."""
    import os

    env = {key: value for key, value in os.environ.items() if key != cpu.ONEDNN_SWITCH}
    if switch is not None:
        env[cpu.ONEDNN_SWITCH] = switch
    code = textwrap.dedent("""
        import json, os
        import helpers
        from helpers.runtime import cpu
        import tensorflow as tf
        from tensorflow.python.util import _pywrap_util_port
        print(json.dumps([os.environ.get(cpu.ONEDNN_SWITCH), _pywrap_util_port.IsMklEnabled(),
                          cpu.tensorflow_onednn_on(), cpu.onednn_switch_default()]))
    """)
    completed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert completed.returncode == 0, completed.stderr[-2000:]
    value, tensorflow_says, we_say, default = json.loads(completed.stdout.strip().splitlines()[-1])
    assert value == (switch or default)
    assert tensorflow_says is we_say
    if switch == "0":
        assert tensorflow_says is False
    elif default == "1":
        assert tensorflow_says is True
