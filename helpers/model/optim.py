"""Optimizers of the study by name, built from Keras optimizers, schedules and callbacks only.

Names (report, section 3 and Network 5):

- "adamw": AdamW at a constant learning rate (the original's default).
- "adamw_warmup_cosine": AdamW with a real warm-up: the rate rises linearly from 0 to `lr` over
  `warmup_epochs`, then follows a cosine down to 0 over the remaining epochs. (The original passed a
  warm-up target below the initial rate, so its "warm-up" was a linear decrease.)
- "adamw_restarts": AdamW with cosine decay and warm restarts (SGDR, each cycle twice as long as the one
  before): two whole cycles, a third of the run then two thirds, so the run restarts once and ends at the
  floor whatever its length.
- "lion_plateau": Lion at a float rate plus a `ReduceLROnPlateau` callback that halves it when the
  monitored validation score has not risen for `plateau_patience` epochs (pass one that fits the run:
  `schedule_lengths`; Keras's ReduceLROnPlateau raises with a schedule, hence the float). Lion usually
  wants a rate 3-10x smaller than AdamW: pass it as `lr`.
- "sgd": SGD, momentum 0.9, Nesterov, cosine decay to 0 over the run (usually wants a larger `lr`).

All use decoupled weight decay `weight_decay` and gradient clipping `clipnorm`.

The schedule policy, every profile alike, lives here too: `schedule_lengths` (warm-up and plateau patience
that fit a run's length) and `patience_for` (a run on a planned schedule is not stopped early).
"""
import keras
import numpy as np

from helpers.configs.constants import MONITOR

OPTIMIZER_NAMES = ("adamw", "adamw_warmup_cosine", "adamw_restarts", "lion_plateau", "sgd")
RESTART_T_MUL = 2.0
"""Each warm-restart cycle is this many times as long as the one before (SGDR's usual doubling)."""


def schedule_lengths(epochs: int) -> dict:
    """Warm-up and plateau patience for a run of `epochs` epochs, so every schedule fits the run it is in.

    Warm-up: 1 epoch in runs of up to 10 epochs, then 1 epoch per 10, at most 5 (never 0, and always shorter
    than the run). Plateau patience (Lion + ReduceLROnPlateau): a quarter of the run, at least 1 and at most
    10, so a plateau can cut the rate within the run. Warm restarts run two whole cycles (a third of the run,
    then two thirds) and end at the floor (`make_learning_rate`); cosine decays reach their floor at the last
    planned epoch (see `patience_for`)."""
    return {"warmup_epochs": max(1, min(5, epochs // 10, epochs - 1)) if epochs > 1 else 0,
            "plateau_patience": max(1, min(10, epochs // 4))}


SCHEDULED_OPTIMIZERS = ("adamw_warmup_cosine", "adamw_restarts", "sgd")


def patience_for(optimizer: str, epochs: int, patience: int) -> int:
    """Early-stopping patience: the profile's, except that a run on a planned schedule (warm-up + cosine,
    restarts, SGD's cosine) always runs to its last planned epoch, where its rate reaches the floor;
    EarlyStopping then only restores the best epoch's weights. This is the rule for every profile."""
    return epochs if optimizer in SCHEDULED_OPTIMIZERS else patience


def _check_positive_int(name, value):
    if not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name}={value!r} must be a positive integer.")


def make_learning_rate(
    name: str,
    *,
    steps_per_epoch: int,
    epochs: int,
    lr: float = 1e-3,
    warmup_epochs: int = 5,
) -> float | keras.optimizers.schedules.LearningRateSchedule:
    """The learning rate `make_optimizer(name, ...)` uses: a float or a Keras schedule (per step)."""
    if name not in OPTIMIZER_NAMES:
        raise ValueError(f"unknown optimizer {name!r}: valid names are {', '.join(OPTIMIZER_NAMES)}.")
    _check_positive_int("steps_per_epoch", steps_per_epoch)
    _check_positive_int("epochs", epochs)
    if not lr > 0:
        raise ValueError(f"lr={lr} must be positive.")
    total_steps = steps_per_epoch * epochs
    if name in ("adamw", "lion_plateau"):
        return float(lr)
    if name == "adamw_warmup_cosine":
        if not 0 <= warmup_epochs < epochs:
            raise ValueError(f"warmup_epochs={warmup_epochs} must lie in 0..epochs-1 (epochs={epochs}).")
        warmup_steps = warmup_epochs * steps_per_epoch
        return keras.optimizers.schedules.CosineDecay(
            initial_learning_rate=0.0 if warmup_steps else lr,
            decay_steps=total_steps - warmup_steps,
            warmup_target=lr if warmup_steps else None,
            warmup_steps=warmup_steps,
        )
    if name == "adamw_restarts":  # cycles T/3 and 2T/3: the second ends at the run's last step
        return keras.optimizers.schedules.CosineDecayRestarts(
            initial_learning_rate=lr, first_decay_steps=total_steps / (1 + RESTART_T_MUL), t_mul=RESTART_T_MUL,
            m_mul=1.0)
    return keras.optimizers.schedules.CosineDecay(initial_learning_rate=lr, decay_steps=total_steps)


def make_optimizer(
    name: str,
    *,
    steps_per_epoch: int,
    epochs: int,
    lr: float = 1e-3,
    weight_decay: float = 0.004,
    clipnorm: float | None = 1.0,
    warmup_epochs: int = 5,
    monitor: str = MONITOR,
    plateau_factor: float = 0.5,
    plateau_patience: int = 10,
) -> tuple[keras.optimizers.Optimizer, list[keras.callbacks.Callback]]:
    """(optimizer, callbacks the optimizer needs) for one of `OPTIMIZER_NAMES`.

    `epochs` is the planned run length that sets the decay; early stopping may end a run sooner.
    Pass the callbacks to `fit` together with the others.
    """
    learning_rate = make_learning_rate(
        name,
        steps_per_epoch=steps_per_epoch,
        epochs=epochs,
        lr=lr,
        warmup_epochs=warmup_epochs,
    )
    common = {"learning_rate": learning_rate, "weight_decay": weight_decay, "clipnorm": clipnorm}
    if name == "lion_plateau":
        plateau = keras.callbacks.ReduceLROnPlateau(
            monitor=monitor, mode="max", factor=plateau_factor, patience=plateau_patience, min_lr=lr / 100
        )
        return keras.optimizers.Lion(**common), [plateau]
    if name == "sgd":
        return keras.optimizers.SGD(momentum=0.9, nesterov=True, **common), []
    return keras.optimizers.AdamW(**common), []

