"""Run profiles: how much data, width and time a run gets. Plain data; the table states the profile used.

- `smoke`: for tests — every row trains on a handful of images for one epoch with tiny models.
- `quick`: the default main job (`make table1`) — the whole Table 1 and the notebooks' ablations
  (23 runs) on 2 CPU cores: models at quarter width, 192 training images, 3 epochs. Graph tracing and
  compilation, not the images, dominate its time on a CPU (see reports/bench.md). Its numbers are far
  below the report's and say little about the ranking; they show the pipeline end to end.
- `full`: the report's settings — full data and width, batch 64, up to 300 epochs with early stopping
  (patience 30) on the validation competition mIoU. Meant for a GPU or a Kaggle kernel.

`max_*` cap the number of images used from each split (None = all); `test_set_limit` caps the images of
the competition test set that are predicted and scored leaderboard-style (the Final Model's submission
always covers the whole test set). `deterministic` makes CPU reruns bit-identical (`helpers.determinism`)
at the price of XLA, which Keras turns off under op determinism: on for smoke runs, off where speed counts.
`xla` is passed to `helpers.device.configure` ("auto": on for one device, CPU included; False: off).
`run_eagerly` skips graph tracing, which costs more than a handful of smoke-sized steps.
"""
from __future__ import annotations

PROFILES = {
    "smoke": {"width": 0.125, "batch_size": 8, "epochs": 1, "patience": 1, "max_train": 24, "max_val": 8,
              "max_test": 8, "test_set_limit": 16, "blend_attempts": 2,
              "deterministic": True, "run_eagerly": True, "xla": False},
    "quick": {"width": 0.25, "batch_size": 32, "epochs": 3, "patience": 3, "max_train": 192, "max_val": 64,
              "max_test": 128, "test_set_limit": 256, "blend_attempts": 5,
              "deterministic": False, "run_eagerly": False, "xla": "auto"},
    "full": {"width": 1.0, "batch_size": 64, "epochs": 300, "patience": 30, "max_train": None, "max_val": None,
             "max_test": None, "test_set_limit": None, "blend_attempts": 25,
             "deterministic": False, "run_eagerly": False, "xla": "auto"},
}


def get_profile(name: str) -> dict:
    """A copy of the named profile's settings, with its name."""
    if name not in PROFILES:
        raise ValueError(f"unknown profile {name!r}: use one of {', '.join(PROFILES)}")
    return {"name": name, **PROFILES[name]}
