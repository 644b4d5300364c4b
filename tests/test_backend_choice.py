"""`helpers.run.backend_choice.choose`: the Keras backend a pipeline trains with, decided before Keras starts. The
speed probes are replaced by hand-made figures (the real probe is tested in test_projection.py)."""
import json
import sys

import pytest

from helpers.run import backend_choice


@pytest.fixture
def before_keras(monkeypatch):
    """This process as the pipeline's is when it chooses: Keras not yet imported, no KERAS_BACKEND."""
    monkeypatch.delitem(sys.modules, "keras", raising=False)
    monkeypatch.delenv("KERAS_BACKEND", raising=False)
    monkeypatch.setattr(backend_choice, "installed", lambda: ["tensorflow", "jax"])
    monkeypatch.setattr(backend_choice, "layouts", lambda engine: {"tensorflow": [1, 2], "jax": [2]}[engine])
    probed = []

    def probe(profile, workers, engine):
        probed.append((engine, workers))
        # images/s of one worker: TF 130 alone on both cores, 2 x 66 = 132 on one core each (within 5 %: the default
        # layout stays), JAX 2 x 60 = 120
        rate = {("tensorflow", 1): 130.0, ("tensorflow", 2): 66.0, ("jax", 2): 60.0}[engine, workers]
        return {"images_per_second": rate, "startup_seconds": 5.0, "mixed_precision": "float32", "jit_compile": True}

    monkeypatch.setattr("helpers.run.projection.probe_like_a_worker", probe)
    return probed


def test_the_probe_compares_each_backend_in_its_own_layout_and_the_choice_is_kept(before_keras, tmp_path):
    choice = backend_choice.choose("default", tmp_path)
    assert before_keras == [("tensorflow", 1), ("tensorflow", 2), ("jax", 2)]
    assert (choice["backend"], choice["workers"]) == ("tensorflow", 1)  # JAX's 120 img/s is not more than 5 % faster
    assert choice["probe"]["total_images_per_second"] == 130.0
    line = backend_choice.describe(choice)
    assert line.startswith("Keras backend: tensorflow on 1 worker(s) (measured faster here now; probe: tensorflow 130 "
                           "img/s on 1 worker(s), tensorflow 132 img/s on 2 worker(s), jax 120 img/s on 2 worker(s)")
    stored = json.loads((tmp_path / "backend.json").read_text())
    assert stored["backend"] == "tensorflow" and stored["profile"] == "default"
    again = backend_choice.choose("default", tmp_path)  # a rerun reuses the choice (its records name the backend)
    assert (again["backend"], again["workers"]) == ("tensorflow", 1) and "measured faster here on" in again["why"]
    assert len(before_keras) == 3 and "probe" not in again  # the projection then probes anew
    backend_choice.choose("smoke", tmp_path)  # another profile measures again
    assert len(before_keras) == 6


def test_another_layout_or_jax_wins_only_beyond_the_margin(before_keras, tmp_path, monkeypatch):
    rates = {("tensorflow", 1): 100.0, ("tensorflow", 2): 53.0, ("jax", 2): 50.0}
    monkeypatch.setattr("helpers.run.projection.probe_like_a_worker",
                        lambda profile, workers, engine: {"images_per_second": rates[engine, workers],
                                                          "startup_seconds": 1.0})
    choice = backend_choice.choose("default", tmp_path)  # TF on one core each: 106 against 100, 6 % faster
    assert (choice["backend"], choice["workers"]) == ("tensorflow", 2)
    rates["jax", 2] = 56.0  # 112 against TF's best 106: 5.7 % faster
    assert backend_choice.choose("smoke", tmp_path)["backend"] == "jax"


def test_a_request_or_keras_own_variable_decides_without_a_probe(before_keras, tmp_path, monkeypatch):
    monkeypatch.setattr(backend_choice, "installed", lambda: pytest.fail("a request looks up the other backend too"))
    looked_up = []
    monkeypatch.setattr(backend_choice, "_importable", lambda engine: looked_up.append(engine) or True)
    assert backend_choice.choose("default", tmp_path, "jax") == {"backend": "jax", "why": "as asked"}
    monkeypatch.setenv("KERAS_BACKEND", "tensorflow")
    assert backend_choice.choose("default", tmp_path)["backend"] == "tensorflow"
    assert looked_up == ["jax", "tensorflow"]  # under JAX nothing even looks for TensorFlow
    assert before_keras == [] and not (tmp_path / "backend.json").exists()
    monkeypatch.setattr(backend_choice, "installed", lambda: ["tensorflow", "jax"])
    with pytest.raises(ValueError, match=r"^Keras backend 'torch' is not available here: choose one of tensorflow, jax$"):
        backend_choice.choose("default", tmp_path, "torch")


def test_a_failed_probe_or_a_single_install_leaves_the_other(before_keras, tmp_path, monkeypatch):
    def probe(profile, workers, engine):
        if engine == "jax":
            raise RuntimeError("the speed probe failed: boom")
        return {"images_per_second": 10.0, "startup_seconds": 1.0}

    monkeypatch.setattr("helpers.run.projection.probe_like_a_worker", probe)
    choice = backend_choice.choose("default", tmp_path)
    assert choice["backend"] == "tensorflow" and "the jax probe failed" in choice["why"] and choice["workers"] == 2
    monkeypatch.setattr(backend_choice, "installed", lambda: ["jax"])
    assert backend_choice.choose("smoke", tmp_path)["backend"] == "jax"


def test_a_process_that_already_runs_keras_keeps_its_backend(tmp_path):
    import keras

    assert backend_choice.choose("default", tmp_path)["backend"] == keras.backend.backend()
    other = "jax" if keras.backend.backend() == "tensorflow" else "tensorflow"
    with pytest.raises(ValueError, match="start a fresh process"):
        backend_choice.choose("default", tmp_path, other)


def test_a_backend_an_import_hook_refuses_counts_as_absent(monkeypatch):
    class Refuse:
        def find_spec(self, name, path=None, target=None):
            if name == "refused_backend":
                raise ImportError("refused")
            return None

    monkeypatch.setattr(sys, "meta_path", [Refuse(), *sys.meta_path])
    assert backend_choice._importable("refused_backend") is False
    assert backend_choice._importable("numpy") is True
