"""Run profiles: how much data, width and time a run gets. Plain data; the table states the profile used.

- `smoke`: for tests and the 5-minute look — every row trains on a handful of images for one epoch with tiny
  models; it checks the machinery, its numbers mean nothing.
- `default`: the main job (`make table1`) — the whole Table 1 and the notebooks' ablations on 2 CPU cores:
  quarter-width models, every row on its whole training split, batch 32, and one budget for every trained
  row, ablation, ensemble member and student: `epochs` epochs of the same optimizer steps (an epoch is one
  pass over the clean training part, `helpers.run.train.budget`; a larger split gets fewer passes). Network 10's
  "longer training" is a comparison of its own (the "2x steps" ablations). Measured learning curves
  (`python -m benchmarks.learning_curves`, docs/training.md) set what the budget should be; where it is cut
  to fit 2 CPU cores in 2 hours, `budget_note` says so in the table's header.
- `full`: the report's settings — full data and width, batch 64, up to 120 epochs with early stopping
  (patience 30) on the validation competition mIoU. Meant for a GPU or a Kaggle kernel.

The rule for schedules, every profile alike (`helpers.model.optim.schedule_lengths`, `patience_for`): a warm-up
lasts at least one epoch; a cosine reaches its floor at the run's last planned step, and a run on such a
schedule is not stopped early (EarlyStopping only restores its best epoch); warm restarts run two whole cycles
and end at the floor; a plateau cut can fire within the run (patience a quarter of it). Constant-rate
optimizers stop early after `patience` epochs without a better validation score (never within the default's
budget, where patience = epochs, so every run takes its whole budget).

`max_*` cap the number of images used from each split (None = all; validation and test by one fixed draw, the
same for every row); `test_set_limit`: the leaderboard-style scores of every row use the first that many
images of the competition test set (None = all; the Final Model's submission still covers the whole set). `deterministic` makes CPU reruns bit-identical (`helpers.runtime.determinism`)
at the price of XLA, which Keras turns off under op determinism: on for smoke runs, off where speed counts.
`xla` is passed to `helpers.runtime.device.configure` ("auto": on for one device unless bfloat16 runs on a CPU;
False: off). `run_eagerly` skips graph tracing, which costs more than a handful of smoke-sized steps.
"""
from __future__ import annotations

PROFILES = {
    "smoke": {"width": 0.125, "batch_size": 8, "epochs": 1, "patience": 1, "max_train": 24, "max_val": 8,
              "max_test": 8, "test_set_limit": 16, "blend_attempts": 2,
              "deterministic": True, "run_eagerly": True, "xla": False, "budget_note": None},
    "default": {"width": 0.25, "batch_size": 32, "epochs": 8, "patience": 8, "max_train": None, "max_val": None,
                "max_test": None, "test_set_limit": 1024, "blend_attempts": 5,
                "deterministic": False, "run_eagerly": False, "xla": "auto", "budget_note": None},
    "full": {"width": 1.0, "batch_size": 64, "epochs": 120, "patience": 30, "max_train": None, "max_val": None,
             "max_test": None, "test_set_limit": None, "blend_attempts": 25,
             "deterministic": False, "run_eagerly": False, "xla": "auto", "budget_note": None},
}


def get_profile(name: str) -> dict:
    """A copy of the named profile's settings, with its name."""
    if not isinstance(name, str) or name not in PROFILES:
        raise ValueError(f"unknown profile {name!r}: use one of {', '.join(PROFILES)}")
    return {"name": name, **PROFILES[name]}


def resolve(profile: str | dict) -> dict:
    """The profile a run uses, checked once where it comes in (the command lines, the notebook parameters, a
    Python caller of `helpers.run.train.run`): a name of `PROFILES` (`get_profile`), or a dict with a name and
    every setting a profile has (a copy). What it returns is what the inner functions take."""
    if not isinstance(profile, dict):
        return get_profile(profile)
    missing = [key for key in ("name", *PROFILES["default"]) if key not in profile]
    if missing:
        raise ValueError(f"profile {profile.get('name', '(no name)')!r} lacks {', '.join(missing)}: a profile dict "
                         f"needs a name and every setting the profiles here have")
    return dict(profile)
