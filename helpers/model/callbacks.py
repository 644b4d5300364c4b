"""Training callbacks: dynamic loss weights, a loud stop on NaN, a time budget, and the standard set for every run.

`training_callbacks(run_dir)` gives the set each run uses: early stopping on the validation
competition mIoU (restoring the best weights), a CSV log, resumption after an interruption
(`BackupAndRestore`) and `StopOnNaN`. Callbacks that write into the epoch logs (such as
`DynamicLossWeights`) go in `extra`, so they run before the CSV logger and History records them.
"""
import math
import time
import warnings
from pathlib import Path

import keras

from helpers.configs.constants import MONITOR
from helpers.model.losses import CombinedLoss
from helpers.runtime import backend


def _log_value(logs, key, what):
    if key not in logs:
        raise ValueError(
            f"DynamicLossWeights needs {what} {key!r} in the epoch logs, which hold {sorted(logs)}: "
            "pass validation_data to fit and compile with helpers.model.metrics.training_metrics(), or set the key."
        )
    return float(logs[key])


class DynamicLossWeights(keras.callbacks.Callback):
    """Re-weight a `CombinedLoss` at each epoch end from the validation scores (the report's rule).

    If mIoU (`miou_key`) < `miou_threshold`, add `step` to each `boosted` term's weight; if accuracy
    (`accuracy_key`) > `accuracy_threshold`, multiply each `decayed` term's weight by `factor`.
    Renormalising keeps the sum of the adapted terms' weights (boosted + decayed present in the
    loss) at its value before the update; other terms (e.g. class_limit) keep their weights.
    The weights in force during an epoch are written into its logs as `w_<term>` for every term. On JAX,
    whose compiled steps bake the weights in, a change has the train and test steps traced again.
    `loss` defaults to the model's compiled loss. The weights live in the loss, not in the model's
    variables: `BackupAndRestore` does not restore them, so a resumed run restarts from the
    compiled weights.
    """

    def __init__(
        self,
        loss: CombinedLoss | None = None,
        *,
        miou_key: str = MONITOR,
        accuracy_key: str = "val_accuracy",
        miou_threshold: float = 0.5,
        accuracy_threshold: float = 0.75,
        step: float = 0.05,
        factor: float = 0.9,
        boosted: tuple[str, ...] = ("dice", "focal", "boundary"),
        decayed: tuple[str, ...] = ("ce",),
        renormalise: bool = True,
    ):
        super().__init__()
        if loss is not None and not isinstance(loss, CombinedLoss):
            raise ValueError(f"loss must be a helpers.model.losses.CombinedLoss, got {type(loss).__name__}.")
        if step < 0 or not factor > 0:
            raise ValueError(f"step={step} must be >= 0 and factor={factor} > 0.")
        self.loss = loss
        self.miou_key, self.accuracy_key = miou_key, accuracy_key
        self.miou_threshold, self.accuracy_threshold = float(miou_threshold), float(accuracy_threshold)
        self.step, self.factor = float(step), float(factor)
        self.boosted, self.decayed = tuple(boosted), tuple(decayed)
        self.renormalise = renormalise

    def on_train_begin(self, logs=None):
        if self.loss is None:
            if not isinstance(self.model.loss, CombinedLoss):
                raise ValueError(
                    f"the model's loss is {type(self.model.loss).__name__}, not a CombinedLoss: "
                    "compile with helpers.model.losses.combined_loss(...) or pass loss= explicitly."
                )
            self.loss = self.model.loss

    def updated_weights(self, weights: dict[str, float], miou: float, accuracy: float) -> dict[str, float]:
        """The rule itself, on plain floats: the next epoch's weights."""
        new = dict(weights)
        if miou < self.miou_threshold:
            for name in self.boosted:
                if name in new:
                    new[name] += self.step
        if accuracy > self.accuracy_threshold:
            for name in self.decayed:
                if name in new:
                    new[name] *= self.factor
        adapted = [name for name in new if name in self.boosted + self.decayed]
        new_sum = sum(new[name] for name in adapted)
        if self.renormalise and new_sum > 0:
            scale = sum(weights[name] for name in adapted) / new_sum
            for name in adapted:
                new[name] *= scale
        return new

    def on_epoch_end(self, epoch, logs=None):
        if logs is None:
            raise ValueError("DynamicLossWeights received no epoch logs: run it inside model.fit.")
        weights = self.loss.term_weights
        for name, value in weights.items():
            logs[f"w_{name}"] = value
        miou = _log_value(logs, self.miou_key, "the mean IoU")
        accuracy = _log_value(logs, self.accuracy_key, "the accuracy")
        new = self.updated_weights(weights, miou, accuracy)
        self.loss.set_term_weights(new)
        if new != weights and backend.stateless_steps():
            self.model.make_train_function(force=True)  # JAX baked the old weights into the traced steps
            self.model.make_test_function(force=True)


class StopOnNaN(keras.callbacks.Callback):
    """Stop training as soon as the running loss is NaN or infinite, saying where and what to try.

    Like `keras.callbacks.TerminateOnNaN`, but by default it raises `FloatingPointError` (so a
    notebook or pipeline cannot carry on with a broken model) with the epoch, batch and likely
    fixes; with `raise_error=False` it only stops training and warns. `message` keeps the text.
    """

    def __init__(self, raise_error: bool = True):
        super().__init__()
        self.raise_error = raise_error
        self.message = None
        self._epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is None or math.isfinite(float(loss)):
            return
        self.model.stop_training = True
        self.message = (
            f"training loss became {float(loss)} in epoch {self._epoch + 1} (as the progress bar counts), "
            f"batch {batch + 1}: training stopped. Likely fixes: lower the learning rate or keep clipnorm=1.0; "
            "check the images and sample weights for NaN/inf and that masks hold class ids 0..4."
        )
        if self.raise_error:
            raise FloatingPointError(self.message)
        warnings.warn(self.message, RuntimeWarning, stacklevel=2)


class TimeBudget(keras.callbacks.Callback):
    """Stop training before a wall-clock budget runs out, so the run still restores its best epoch and predicts.

    Keras has no such callback. It stops at an epoch's end when the next epoch, as long as the longest so far,
    would overrun `seconds` (counted from the start of the first training it sees: one budget serves several fits),
and after any batch once the budget is spent.
    `EarlyStopping(restore_best_weights=True)` then restores the best epoch at the end of training as usual.
    `stopped` and `stopped_after_epoch` (1-based) say whether and where it cut the run; `clock` is for tests.
    """

    def __init__(self, seconds: float, clock=time.monotonic):
        super().__init__()
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not seconds > 0:
            raise ValueError(f"the time budget must be a positive number of seconds, got {seconds!r}")
        self.seconds, self.clock = float(seconds), clock
        self.started, self.longest_epoch = None, 0.0
        self.stopped, self.stopped_after_epoch = False, None

    def on_train_begin(self, logs=None):
        if self.started is None:  # one budget for every fit it is passed to (an ensemble's members)
            self.started = self.clock()
        self._epoch_started = self.clock()
        self.stopped, self.stopped_after_epoch = False, None

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch, self._epoch_started = epoch, self.clock()

    def _stop(self, epoch):
        self.model.stop_training = True
        if not self.stopped:
            self.stopped, self.stopped_after_epoch = True, epoch + 1

    def on_train_batch_end(self, batch, logs=None):
        if self.clock() - self.started >= self.seconds:
            self._stop(self._epoch)

    def on_epoch_end(self, epoch, logs=None):
        now = self.clock()
        self.longest_epoch = max(self.longest_epoch, now - self._epoch_started)
        if now - self.started + self.longest_epoch > self.seconds:
            self._stop(epoch)


def training_callbacks(
    run_dir,
    *,
    monitor: str = MONITOR,
    mode: str = "max",
    patience: int = 30,
    backup: bool = True,
    extra: tuple | list = (),
) -> list[keras.callbacks.Callback]:
    """Callbacks for one run in `run_dir`: `extra`, StopOnNaN, EarlyStopping, CSVLogger, BackupAndRestore.

    EarlyStopping watches `monitor` (mode max, restore_best_weights=True). The CSV log is
    `run_dir/history.csv`; it is appended to when `run_dir/backup` exists (a resumed run) and
    started afresh otherwise. With `backup`, an interrupted `fit` called again with the same
    `run_dir` resumes after the last finished epoch, optimizer state included; the backup is
    deleted when training ends normally. EarlyStopping's patience count restarts on resume.
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    backup_dir = run_dir / "backup"
    resuming = backup and backup_dir.exists()
    callbacks = [
        *extra,
        StopOnNaN(),
        keras.callbacks.EarlyStopping(monitor=monitor, mode=mode, patience=patience, restore_best_weights=True),
        keras.callbacks.CSVLogger(str(run_dir / "history.csv"), append=resuming),
    ]
    if backup:
        callbacks.append(keras.callbacks.BackupAndRestore(str(backup_dir)))
    return callbacks


class LearningRateLog(keras.callbacks.Callback):
    """Log the learning rate the optimizer really used: per epoch into the logs (`learning_rate`, the
    rate of the epoch's first step, so a one-epoch warm-up shows as 0 then the peak) and per step in
    `steps` (read it after `fit`). Taken from the optimizer itself, schedule or float alike, so plots
    show the schedule that ran, ReduceLROnPlateau's cuts included."""

    def __init__(self):
        super().__init__()
        self.steps: list[float] = []
        self._epoch_rate = None

    def _rate(self) -> float:
        optimizer = self.model.optimizer
        rate = optimizer.learning_rate
        if callable(rate) and not hasattr(rate, "numpy"):
            rate = rate(optimizer.iterations)
        return float(keras.ops.convert_to_numpy(rate))

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch_rate = None

    def on_train_batch_begin(self, batch, logs=None):
        rate = self._rate()
        self.steps.append(rate)
        if self._epoch_rate is None:
            self._epoch_rate = rate

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["learning_rate"] = self._epoch_rate if self._epoch_rate is not None else self._rate()
