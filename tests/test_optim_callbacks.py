"""helpers.model.optim and helpers.model.callbacks: schedules by hand, the dynamic-weight rule, resuming and NaN stops."""
import csv
import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from helpers.configs.experiments import FINAL_MIX
from helpers.model import losses, metrics
from helpers.model.callbacks import DynamicLossWeights, StopOnNaN, training_callbacks
from helpers.model.optim import OPTIMIZER_NAMES, make_learning_rate, make_optimizer, patience_for, schedule_lengths
from helpers.runtime import backend

SHAPE = (12, 16)


def lr_curve(name: str, steps_per_epoch: int, epochs: int, **kwargs) -> np.ndarray:
    """The learning rate `make_optimizer(name, ...)` trains with at each step 0 .. steps_per_epoch * epochs - 1, as
    float64: its `make_learning_rate` (keywords lr, warmup_epochs), a float or a Keras schedule, read step by step."""
    rate = make_learning_rate(name, steps_per_epoch=steps_per_epoch, epochs=epochs, **kwargs)
    steps = steps_per_epoch * epochs
    if not isinstance(rate, keras.optimizers.schedules.LearningRateSchedule):
        return np.full(steps, rate, dtype=np.float64)
    per_step = backend.compile_function(lambda step: keras.ops.map(rate, step), jit_compile=False)  # one step a call
    return keras.ops.convert_to_numpy(per_step(keras.ops.arange(steps, dtype="int32"))).astype(np.float64)


def tiny_model(activation="relu"):
    inputs = keras.Input((*SHAPE, 1))
    hidden = keras.layers.Conv2D(4, 3, padding="same", activation=activation)(inputs)
    return keras.Model(inputs, keras.layers.Conv2D(5, 1, activation="softmax")(hidden))


def structured_data(n=8, seed=0):
    """Images whose grey level encodes the class of the pixel, plus the pipeline's per-pixel weights."""
    rng = np.random.default_rng(seed)
    y = np.zeros((n, *SHAPE), dtype="int32")
    for i in range(n):
        cut = rng.integers(3, SHAPE[1] - 3)
        y[i, :, :cut], y[i, :, cut:] = rng.choice(5, size=2, replace=False)
    x = (y[..., None] / 4 + rng.normal(0, 0.05, (*y.shape, 1))).astype("float32")
    weight = losses.class_weights_from_masks(np.concatenate([y.ravel(), np.arange(5)]))[y]
    return x, y, weight


def dataset(x, y, weight, batch_size=4):
    return tf.data.Dataset.from_tensor_slices((x, y, weight)).batch(batch_size)


@pytest.mark.parametrize(
    "name, optimizer_class",
    [
        ("adamw", keras.optimizers.AdamW),
        ("adamw_warmup_cosine", keras.optimizers.AdamW),
        ("adamw_restarts", keras.optimizers.AdamW),
        ("lion_plateau", keras.optimizers.Lion),
        ("sgd", keras.optimizers.SGD),
    ],
)
def test_make_optimizer_builds_each_named_optimizer(name, optimizer_class):
    optimizer, callbacks = make_optimizer(name, steps_per_epoch=4, epochs=10, weight_decay=1e-4)
    assert type(optimizer) is optimizer_class
    assert optimizer.clipnorm == 1.0 and optimizer.weight_decay == 1e-4
    assert [type(c) for c in callbacks] == ([keras.callbacks.ReduceLROnPlateau] if name == "lion_plateau" else [])
    if name == "sgd":
        assert optimizer.nesterov and optimizer.momentum == 0.9


def test_unknown_optimizer_raises_value_error_listing_names():
    with pytest.raises(ValueError, match=", ".join(OPTIMIZER_NAMES)):
        make_optimizer("adam", steps_per_epoch=1, epochs=1)
    with pytest.raises(ValueError, match="warmup_epochs"):
        make_optimizer("adamw_warmup_cosine", steps_per_epoch=1, epochs=3, warmup_epochs=3)


def test_warmup_cosine_rises_linearly_from_zero_then_follows_the_cosine():
    steps_per_epoch, epochs, warmup_epochs, lr = 4, 10, 2, 1e-3
    curve = lr_curve("adamw_warmup_cosine", steps_per_epoch, epochs, lr=lr, warmup_epochs=warmup_epochs)
    warmup = warmup_epochs * steps_per_epoch
    decay = (epochs - warmup_epochs) * steps_per_epoch
    step = np.arange(steps_per_epoch * epochs)
    by_hand = np.where(
        step < warmup, lr * step / warmup, lr * 0.5 * (1 + np.cos(np.pi * np.minimum(step - warmup, decay) / decay))
    )
    np.testing.assert_allclose(curve, by_hand, rtol=1e-5, atol=1e-10)
    assert curve[0] == 0 and np.all(np.diff(curve[: warmup + 1]) > 0) and np.all(np.diff(curve[warmup:]) < 0)
    assert curve.max() == pytest.approx(lr)


def test_restarts_jump_back_up_and_sgd_and_adamw_curves():
    restarts = lr_curve("adamw_restarts", 4, 12, lr=1e-3)
    jumps = np.flatnonzero(np.diff(restarts) > 0) + 1
    np.testing.assert_array_equal(jumps, [16])  # two cycles: 16 then 32 of the run's 48 steps
    assert restarts[0] == restarts[16] == pytest.approx(1e-3)
    by_hand = 0.5e-3 * (1 + np.cos(np.pi * (47 - 16) / 32))
    assert restarts[-1] == pytest.approx(by_hand, rel=1e-5) and restarts[-1] < 0.01 * 1e-3
    sgd = lr_curve("sgd", 4, 5, lr=0.01)
    np.testing.assert_allclose(sgd, 0.005 * (1 + np.cos(np.pi * np.arange(20) / 20)), rtol=1e-5)
    np.testing.assert_array_equal(lr_curve("adamw", 2, 3, lr=3e-4), np.full(6, 3e-4))


def test_lion_plateau_halves_a_float_rate_when_the_score_stalls():
    optimizer, [plateau] = make_optimizer("lion_plateau", steps_per_epoch=2, epochs=20, lr=1e-4, plateau_patience=2)
    model = tiny_model()
    model.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy")
    plateau.set_model(model)
    plateau.on_train_begin()
    for epoch, score in enumerate([0.30, 0.40, 0.39, 0.40]):
        plateau.on_epoch_end(epoch, {"val_miou_fg": score})
    assert float(optimizer.learning_rate) == pytest.approx(5e-5)


def test_dynamic_rule_by_hand():
    rule = DynamicLossWeights(losses.combined_loss(FINAL_MIX))
    new = rule.updated_weights(FINAL_MIX, miou=0.3, accuracy=0.8)
    raw = {"dice": 1.05, "focal": 0.15, "ce": 2.7, "boundary": 0.15}
    scale = (1.0 + 0.1 + 3.0 + 0.1) / sum(raw.values())
    for name, value in raw.items():
        assert new[name] == pytest.approx(value * scale)
    assert new["class_limit"] == 0.1
    assert rule.updated_weights(FINAL_MIX, miou=0.6, accuracy=0.5) == FINAL_MIX


def test_dynamic_weights_need_the_logged_scores():
    rule = DynamicLossWeights(losses.combined_loss(FINAL_MIX))
    with pytest.raises(ValueError, match="val_miou_fg"):
        rule.on_epoch_end(0, {"loss": 1.0, "accuracy": 0.5})


def test_compiled_train_step_uses_new_loss_weights():
    x, y, weight = structured_data(4)
    loss = losses.combined_loss(FINAL_MIX)
    model = tiny_model()
    model.compile(optimizer=keras.optimizers.SGD(0.0), loss=loss, metrics=metrics.training_metrics(), jit_compile=True)
    first = model.train_on_batch(x, y, sample_weight=weight, return_dict=True)["loss"]
    loss.set_term_weights({"dice": 3.0, "ce": 0.5})
    second = model.train_on_batch(x, y, sample_weight=weight, return_dict=True)["loss"]
    by_hand = float(loss(y, model.predict_on_batch(x), weight))
    assert second == pytest.approx(by_hand, rel=1e-4) and abs(second - first) > 1e-3


@pytest.mark.slow
def test_two_epochs_with_final_mix_and_dynamic_weights_log_changing_weights(tmp_path):
    keras.utils.set_random_seed(0)
    x, y, weight = structured_data(8)
    model = tiny_model()
    loss = losses.combined_loss(FINAL_MIX)
    optimizer, optimizer_callbacks = make_optimizer("adamw_warmup_cosine", steps_per_epoch=2, epochs=2, warmup_epochs=1)
    model.compile(optimizer=optimizer, loss=loss, metrics=metrics.training_metrics())  # XLA: see the train-step test
    callbacks = training_callbacks(tmp_path, extra=[DynamicLossWeights(accuracy_threshold=0.0)]) + optimizer_callbacks
    data = dataset(x, y, weight)
    history = model.fit(data, validation_data=data, epochs=2, callbacks=callbacks, shuffle=False, verbose=0)
    logged = history.history
    assert logged["w_dice"][0] == 1.0 and logged["w_dice"][1] > 1.0  # mIoU < 0.5 after one epoch
    assert logged["w_ce"][1] < 3.0
    assert logged["w_class_limit"] == [0.1, 0.1]
    sums = [sum(logged[f"w_{name}"][epoch] for name in ("dice", "focal", "ce", "boundary")) for epoch in (0, 1)]
    assert sums[1] == pytest.approx(sums[0], rel=1e-6)
    with open(tmp_path / "history.csv") as f:
        rows = list(csv.DictReader(f))
    assert [float(row["w_dice"]) for row in rows] == pytest.approx(logged["w_dice"])
    evaluated = model.evaluate(dataset(x, y, weight), return_dict=True, verbose=0)  # metrics stay unweighted
    predicted = model.predict(x, verbose=0).argmax(-1)
    assert evaluated["competition_miou"] == pytest.approx(metrics.competition_miou(y, predicted), abs=1e-5)
    assert evaluated["miou_1_4"] == pytest.approx(metrics.miou_1_4(y, predicted), abs=1e-5)


class FailAtEpoch(keras.callbacks.Callback):
    def __init__(self, epoch):
        super().__init__()
        self.epoch = epoch

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == self.epoch:
            raise RuntimeError("simulated interruption")


@pytest.mark.slow
def test_backup_resumes_after_the_last_finished_epoch(tmp_path):
    x, y, _ = structured_data(4)
    model = tiny_model()
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=metrics.training_metrics())
    fit = dict(x=x, y=y, validation_data=(x, y), epochs=4, verbose=0)
    with pytest.raises(RuntimeError, match="simulated"):
        model.fit(callbacks=training_callbacks(tmp_path) + [FailAtEpoch(2)], **fit)
    assert (tmp_path / "backup").exists()
    resumed = model.fit(callbacks=training_callbacks(tmp_path), **fit)
    assert resumed.epoch == [2, 3]
    assert int(model.optimizer.iterations) == 4
    with open(tmp_path / "history.csv") as f:
        assert [int(row["epoch"]) for row in csv.DictReader(f)] == [0, 1, 2, 3]
    assert not (tmp_path / "backup").exists()


def test_training_callbacks_monitor_the_primary_score(tmp_path):
    callbacks = training_callbacks(tmp_path, patience=7)
    early = next(c for c in callbacks if isinstance(c, keras.callbacks.EarlyStopping))
    assert (early.monitor, early.patience, early.restore_best_weights) == ("val_miou_fg", 7, True)
    assert early.mode == "max"
    assert any(isinstance(c, keras.callbacks.BackupAndRestore) for c in callbacks)
    assert any(isinstance(c, StopOnNaN) for c in callbacks)
    assert not any(isinstance(c, keras.callbacks.BackupAndRestore) for c in training_callbacks(tmp_path, backup=False))


def test_nan_loss_stops_with_epoch_batch_and_fixes():
    x, y, _ = structured_data(8)
    x[5, 0, 0, 0] = np.nan  # second batch of the first epoch
    with pytest.raises(FloatingPointError, match=r"nan in epoch 1 .*batch 2.*lower the learning rate"):
        tiny_model_fit(x, y, StopOnNaN())
    quiet = StopOnNaN(raise_error=False)
    with pytest.warns(RuntimeWarning, match="epoch 1"):
        history = tiny_model_fit(x, y, quiet)
    assert len(history.epoch) == 1 and not math.isfinite(history.history["loss"][0])


def tiny_model_fit(x, y, callback):
    model = tiny_model("tanh")  # oneDNN's ReLU maps NaN to 0 on some CPUs; tanh carries it through
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    return model.fit(x, y, batch_size=4, epochs=3, callbacks=[callback], verbose=0)


def _profile_lengths():
    """Every run length a profile plans: its epochs, and twice them (the "2x steps" ablations)."""
    from helpers.configs.experiments import ABLATIONS, resolve
    from helpers.configs.profiles import PROFILES

    scales = sorted({resolve(a["name"])["train"]["epochs_scale"] for a in ABLATIONS} | {1.0})
    return sorted({max(1, round(p["epochs"] * scale)) for p in PROFILES.values() for scale in scales} | {2, 4})


@pytest.mark.parametrize("epochs", _profile_lengths())
def test_schedules_fit_the_run_they_are_in(epochs):
    lengths, steps = schedule_lengths(epochs), 40
    assert 0 <= lengths["warmup_epochs"] < epochs, "a warm-up never lasts the whole run"
    assert lengths["warmup_epochs"] >= 1 or epochs == 1, "a warm-up lasts at least one epoch where the run has two"
    rates = {k: v for k, v in lengths.items() if k == "warmup_epochs"}
    warm = lr_curve("adamw_warmup_cosine", steps, epochs, lr=1e-3, **rates)
    ramp = warm[:lengths["warmup_epochs"] * steps]
    assert np.all(np.diff(ramp) > 0) and warm[len(ramp)] == pytest.approx(1e-3)
    assert warm[-1] < 0.01 * 1e-3, "the cosine reaches its floor at the run's last step"
    assert patience_for("adamw_warmup_cosine", epochs, 1) == epochs, "scheduled runs are not stopped early"
    restarts = lr_curve("adamw_restarts", steps, epochs, lr=1e-3)
    jumps = np.flatnonzero(np.diff(restarts) > 0) + 1
    assert len(jumps) == 1 and restarts[jumps[0]] > 0.95e-3, "two whole cycles: one restart, back up to the peak"
    assert restarts[-1] < 0.01 * 1e-3, "warm restarts end at the floor"
    if epochs >= 2:
        assert lengths["plateau_patience"] < epochs, "a plateau cut can fire within the run"


def test_time_budget_stops_before_the_epoch_that_would_overrun_and_the_best_epoch_is_restored():
    from helpers.model.callbacks import TimeBudget

    ticks = iter(range(0, 10_000, 5))  # every clock reading is 5 s after the previous one
    budget = TimeBudget(60, clock=lambda: float(next(ticks)))
    x = np.zeros((8, 4), "float32")
    y = np.zeros((8, 1), "float32")
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    best = keras.callbacks.EarlyStopping(monitor="loss", patience=99, restore_best_weights=True)
    history = model.fit(x, y, batch_size=4, epochs=50, verbose=0, callbacks=[budget, best])
    # Readings: train begin at 0 s, then per epoch: begin, two batch ends, end. Epoch k (from 1) ends at
    # 20k s and lasted 15 s, so it stops once 20k + 15 > 60: after epoch 3.
    assert budget.stopped and budget.stopped_after_epoch == 3 and len(history.history["loss"]) == 3
    assert best.best_weights is not None


def test_time_budget_spent_mid_epoch_stops_after_that_batch():
    from helpers.model.callbacks import TimeBudget

    ticks = iter(range(0, 10_000, 5))
    budget = TimeBudget(1, clock=lambda: float(next(ticks)))
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    seen = []
    logger = keras.callbacks.LambdaCallback(on_train_batch_end=lambda batch, logs: seen.append(batch))
    model.fit(np.zeros((40, 4), "float32"), np.zeros((40, 1), "float32"), batch_size=4, epochs=3, verbose=0,
              callbacks=[budget, logger])
    assert budget.stopped_after_epoch == 1 and seen == [0]
    with pytest.raises(ValueError, match="positive number of seconds"):
        TimeBudget(0)
