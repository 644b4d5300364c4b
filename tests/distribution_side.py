"""One side of tests/test_distribution_jax.py, run as a script in a fresh JAX process (`KERAS_BACKEND=jax`, with
`XLA_FLAGS=--xla_force_host_platform_device_count=N` deciding how many host devices JAX sees).

    python tests/distribution_side.py OUT.npz CASE [CASE ...] [--weights-from ONE_DEVICE_OUT.npz] [--steps 3]

A CASE is a Table 1 entry ("Baseline"), or "MODEL_ROW:LOSS_ROW" for one entry's model and optimizer with another's
loss ("Baseline:Final Model"). With TensorFlow unimportable (`backend_side._NoTensorFlow`), builds each case's model
at `backend_side.WIDTH`, its combined loss and its optimizer (`backend_side.STEP_LR`, `backend_side.ADAM_EPSILON`)
under the process-wide distribution `helpers.runtime.device.configure` sets (as `helpers.run.train` does), and trains `--steps`
steps with `model.fit` on one fixed batch of 8 images with per-pixel sample weights. Writes to OUT.npz the devices JAX saw, the mesh of `helpers.runtime.backend.data_parallel()`,
how the variables and the batch were laid out over the devices, the loss of every step, and the initial and final
weights (BatchNorm moving statistics included), under keys `<CASE>/...`. With `--weights-from` each model starts
from the initial weights another side saved (`<CASE>/initial/<i>`) instead of its own initialisation.
"""
import argparse
import sys

from backend_side import ADAM_EPSILON, STEP_LR, WIDTH, _NoTensorFlow, _tensorflow_blocked

BATCH = 8


def _batch():
    """8 grey images in [0, 1], label maps of 16x16 blocks of classes 0..4, and per-pixel sample weights (the
    row's class weights, else 1 + the class), the same in every process."""
    import numpy as np

    rng = np.random.default_rng(24)
    images = (rng.integers(0, 256, (BATCH, 64, 128, 1)) / 255).astype(np.float32)
    labels = np.kron(rng.integers(0, 5, (BATCH, 4, 8)), np.ones((16, 16), np.int64)).astype(np.int32)
    labels[:2, :, :48] = 0  # the two halves of the batch hold different numbers of scored (non-background) pixels
    return images, labels


def _sharding(value) -> tuple[int, bool]:
    """(devices `value` lives on, whether each holds all of it)."""
    sharding = value.sharding
    return len(sharding.device_set), bool(sharding.is_fully_replicated)


def _rows(case: str) -> tuple[str, str]:
    """(the entry whose model and optimizer a case uses, the entry whose loss it uses)."""
    model_row, _, loss_row = case.partition(":")
    return model_row, loss_row or model_row


def _train(case: str, images, labels, initial, steps: int) -> dict:
    import jax
    import keras
    import numpy as np

    from helpers.configs.experiments import resolve
    from helpers.model.losses import class_weights_from_masks, combined_loss
    from helpers.model.models import build_model
    from helpers.model.optim import make_optimizer

    model_row, loss_row = _rows(case)
    settings = resolve(model_row)
    loss_settings = resolve(loss_row)["loss"]
    if loss_settings["class_weights"] is None:
        sample_weight = (1.0 + labels).astype(np.float32)
    else:
        sample_weight = class_weights_from_masks(labels, cap=loss_settings["class_weights"]["cap"])[labels]
    keras.utils.set_random_seed(0)
    model = build_model(**settings["model"], width=WIDTH)
    if initial is not None:
        model.set_weights(initial)
    loss = combined_loss(loss_settings["terms"], ignore_class=loss_settings["ignore_class"])
    optimizer, _ = make_optimizer(settings["optimizer"]["name"], lr=STEP_LR, steps_per_epoch=1, epochs=steps,
                                  warmup_epochs=0)
    optimizer.epsilon = ADAM_EPSILON
    model.compile(optimizer=optimizer, loss=loss)

    batch_layouts = []
    train_step = model.train_step

    def observed_step(state, data):
        # Reports, when the step is traced, how the images `fit` handed the compiled step are laid out.
        jax.debug.inspect_array_sharding(
            data[0], callback=lambda sharding: batch_layouts.append(
                (len(sharding.device_set), sharding.shard_shape(data[0].shape)[0])))
        return train_step(state, data)

    model.train_step = observed_step
    initial_weights = [keras.ops.convert_to_numpy(w.value) for w in model.weights]
    history = model.fit(images, labels, sample_weight=sample_weight, batch_size=BATCH, epochs=steps, shuffle=False,
                        verbose=0)
    if not batch_layouts:
        raise RuntimeError("the compiled train step never traced its batch")
    variable_layouts = np.array([_sharding(w.value) for w in model.weights + optimizer.variables])
    return {"loss": np.array(history.history["loss"]), "paths": np.array([w.path for w in model.weights]),
            "initial": initial_weights, "final": [keras.ops.convert_to_numpy(w.value) for w in model.weights],
            "batch_layout": np.array(batch_layouts[0]), "variable_layouts": variable_layouts}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("out")
    parser.add_argument("cases", nargs="+")
    parser.add_argument("--weights-from")
    parser.add_argument("--steps", type=int, default=3)
    args = parser.parse_args(argv)
    sys.meta_path.insert(0, _NoTensorFlow())

    import jax
    import numpy as np

    import keras

    from helpers.runtime import backend
    from helpers.runtime.device import configure

    configure(threads=False, mixed_precision=False)  # as a training run: JAX's data parallelism process-wide
    distribution = keras.distribution.distribution()
    out = {"backend": backend.name(), "jax_devices": len(jax.devices()),
           "mesh_shape": np.array(distribution.device_mesh.shape if distribution is not None else (), np.int64)}
    images, labels = _batch()
    given = dict(np.load(args.weights_from)) if args.weights_from else None
    for case in args.cases:
        initial = None
        if given is not None:
            if f"{case}/paths" not in given:
                raise SystemExit(f"{args.weights_from} holds no weights for {case!r}")
            initial = [given[f"{case}/initial/{i}"] for i in range(len(given[f"{case}/paths"]))]
        result = _train(case, images, labels, initial, args.steps)
        for key in ("loss", "paths", "batch_layout", "variable_layouts"):
            out[f"{case}/{key}"] = result[key]
        for i, (before, after) in enumerate(zip(result["initial"], result["final"])):
            out[f"{case}/initial/{i}"], out[f"{case}/final/{i}"] = before, after
    out["tensorflow_imported"] = "tensorflow" in sys.modules
    out["tensorflow_blocked"] = _tensorflow_blocked()
    np.savez(args.out, **out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
