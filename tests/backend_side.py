"""One side of tests/test_backends.py, run as a script in a fresh process whose `KERAS_BACKEND` fixes the backend.

    python tests/backend_side.py INPUTS.npz OUT.npz [--weights-from TF_OUT.npz] [--no-tensorflow] [--no-xla]

Reads the shared inputs, computes the feature channels, the Final Model's five-term loss and one training step
of the Baseline and the Final Model, and writes every number to OUT.npz. With `--weights-from` both models
start from the weights another side saved (`<row>/initial/<i>`) instead of their own initialisation. With
`--no-tensorflow`, importing TensorFlow raises ImportError in this process (a finder placed first on
`sys.meta_path`, before Keras or helpers are imported). `--no-xla` compiles the TensorFlow steps without XLA
(JAX always compiles with XLA).
"""
import argparse
import importlib.abc
import sys


class _NoTensorFlow(importlib.abc.MetaPathFinder):
    """Refuse `tensorflow` and its submodules, as on a machine without TensorFlow."""

    def find_spec(self, name, path=None, target=None):
        if name == "tensorflow" or name.startswith("tensorflow."):
            raise ImportError(f"{name} is made unimportable in this test process")
        return None


ROWS = {"Baseline": "baseline", "Final Model": "final"}
WIDTH = 0.125
STEP_LR, ADAM_EPSILON = 1.0, 1.0
"""The row's own optimizer (AdamW, with its schedule, weight decay and clipnorm) at peak rate 1 and epsilon 1, so
the first step moves each weight by g / (|g| + 1) + decay, about its gradient. At the study's settings (rate 1e-3,
Keras's epsilon 1e-7) the first step is +-1e-3 for any gradient above ~1e-6: a small gradient whose sign float
rounding decides then moves by +-1e-3 either way (TensorFlow with XLA against TensorFlow without flips as many
as TensorFlow against JAX), and a step of 1e-3 x g would sit at the float32 resolution of the weights."""


def _tensorflow_blocked() -> bool:
    try:
        import tensorflow  # noqa: F401
    except ImportError:
        return True
    return False


def _train_one_step(row: str, data, initial, jit_compile: bool) -> dict:
    """Build `row` at WIDTH, start from `initial` weights (or its own), compile as the study does and take one
    `train_on_batch` step on the shared batch; the weights before and after, and the step's loss."""
    import keras
    import numpy as np

    from helpers.configs.experiments import resolve
    from helpers.model.losses import class_weights_from_masks, combined_loss
    from helpers.model.models import build_model
    from helpers.model.optim import make_optimizer

    settings = resolve(row)
    keras.utils.set_random_seed(0)
    model = build_model(**settings["model"], width=WIDTH)
    if initial is not None:
        model.set_weights(initial)
    loss_settings = settings["loss"]
    loss = combined_loss(loss_settings["terms"], ignore_class=loss_settings["ignore_class"])
    # steps_per_epoch=1, epochs=2, no warm-up: the first step runs at the peak rate (a warm-up would start at 0).
    optimizer, _ = make_optimizer(settings["optimizer"]["name"], lr=STEP_LR, steps_per_epoch=1, epochs=2,
                                  warmup_epochs=0)
    optimizer.epsilon = ADAM_EPSILON
    model.compile(optimizer=optimizer, loss=loss, jit_compile=jit_compile)
    labels = data["train_labels"]
    if loss_settings["class_weights"] is None:
        sample_weight = np.ones(labels.shape, np.float32)
    else:
        sample_weight = class_weights_from_masks(labels, cap=loss_settings["class_weights"]["cap"])[labels]
    before = [keras.ops.convert_to_numpy(w) for w in model.weights]
    logs = model.train_on_batch(data["train_images"], labels, sample_weight=sample_weight, return_dict=True)
    after = [keras.ops.convert_to_numpy(w) for w in model.weights]
    return {"model": model, "loss": loss, "sample_weight": sample_weight, "step_loss": float(logs["loss"]),
            "before": before, "after": after, "paths": [w.path for w in model.weights]}


def _dynamic_weights_reach_the_step(step: dict, data) -> dict:
    """After `DynamicLossWeights` changes the loss weights, the compiled test step's loss is the loss under the
    new weights (on JAX the step bakes the weights in when traced, so the callback must have it traced again)."""
    import keras
    import numpy as np

    from helpers.model.callbacks import DynamicLossWeights

    model, loss = step["model"], step["loss"]
    x, y, w = data["train_images"], data["train_labels"], step["sample_weight"]
    stale = float(model.test_on_batch(x, y, sample_weight=w))  # traces the test step with the compiled weights
    callback = DynamicLossWeights(loss)
    callback.set_model(model)
    callback.on_train_begin()
    before = loss.term_weights
    callback.on_epoch_end(0, {"val_miou_fg": 0.1, "val_accuracy": 0.9})  # boosts dice/focal/boundary, decays ce
    fresh = float(model.test_on_batch(x, y, sample_weight=w))
    direct = float(keras.ops.convert_to_numpy(loss(y, model(x, training=False), sample_weight=w)))
    return {"stale": stale, "fresh": fresh, "direct": direct,
            "weights_before": np.array(list(before.values())), "weights_after": np.array(list(loss.term_weights.values()))}


def _fit_on_the_pipeline(model, data) -> dict:
    """One `fit` step on what `helpers.data.dataset.make_dataset` gives this backend (numpy batches on JAX)."""
    from helpers.data.dataset import make_dataset

    dataset = make_dataset(data["train_images"][..., 0], data["train_labels"], batch_size=8, shuffle=True,
                           repeat=True, class_weights=[0.5, 1.0, 2.0, 3.0, 10.0])
    history = model.fit(dataset, steps_per_epoch=1, epochs=1, verbose=0)
    return {"fit/pipeline": type(dataset).__name__, "fit/loss": history.history["loss"][0]}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("inputs")
    parser.add_argument("out")
    parser.add_argument("--weights-from")
    parser.add_argument("--no-tensorflow", action="store_true")
    parser.add_argument("--no-xla", action="store_true")
    args = parser.parse_args(argv)
    if args.no_tensorflow:
        sys.meta_path.insert(0, _NoTensorFlow())

    import keras
    import numpy as np

    import helpers  # noqa: F401
    from helpers.configs.experiments import FINAL_MIX
    from helpers.model import callbacks, metrics, optim
    from helpers.model.layers import FEATURE_CHANNELS, FeatureChannels
    from helpers.model.losses import class_weights_from_masks, combined_loss
    from helpers.predict import ensemble, inference, decoding, tta
    from helpers.runtime import backend  # noqa: F401

    data = dict(np.load(args.inputs))
    ops = keras.ops
    out = {"backend": backend.name()}

    layer = FeatureChannels(FEATURE_CHANNELS)
    out["channels"] = ops.convert_to_numpy(layer(data["images"]))
    compiled = backend.compile_function(lambda x: layer(x), jit_compile=True)
    out["channels_compiled"] = ops.convert_to_numpy(compiled(ops.convert_to_tensor(data["images"])))

    loss = combined_loss(FINAL_MIX, ignore_class=0)
    labels, probs = data["loss_labels"], data["loss_probs"]
    weights = class_weights_from_masks(labels, cap=10.0)[labels]
    out["loss"] = float(ops.convert_to_numpy(loss(labels, probs, sample_weight=weights)))
    for name, value in loss.term_values(labels, probs, sample_weight=weights).items():
        out[f"term_{name}"] = float(ops.convert_to_numpy(value))

    initial = dict(np.load(args.weights_from)) if args.weights_from else None
    for row, key in ROWS.items():
        start = None if initial is None else [initial[f"{key}/initial/{i}"] for i in range(len(
            [k for k in initial if k.startswith(f"{key}/initial/")]))]
        step = _train_one_step(row, data, start, jit_compile=not args.no_xla)
        out[f"{key}/loss"] = step["step_loss"]
        out[f"{key}/paths"] = np.array(step["paths"])
        for i, (before, after) in enumerate(zip(step["before"], step["after"])):
            out[f"{key}/initial/{i}"], out[f"{key}/after/{i}"] = before, after
        if key == "baseline" and not backend.is_tensorflow():
            out.update(_fit_on_the_pipeline(step["model"], data))
        if key == "final":
            if backend.stateless_steps():  # TensorFlow reads them at every call (tests/test_optim_callbacks.py)
                for name, value in _dynamic_weights_reach_the_step(step, data).items():
                    out[f"dynamic/{name}"] = value
            labels_out = inference.predict_labels(step["model"], data["train_images"][..., 0], tta=True,
                                                  classes=("all", "foreground"))
            out["predicted_all"], out["predicted_foreground"] = labels_out

    out["tensorflow_imported"] = "tensorflow" in sys.modules
    out["tensorflow_blocked"] = _tensorflow_blocked()
    np.savez(args.out, **out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
