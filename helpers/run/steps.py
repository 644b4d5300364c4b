"""What the steps of a run hand each other (`helpers.run.train`): plan -> prepare -> build -> fit -> evaluate ->
record, each step's result one small dataclass. Nothing here computes; the record is still the JSON dict
`helpers.run.train.make_record` writes.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from helpers.configs.experiments import Member


@dataclass(frozen=True)
class Plan:
    """Step 1 (`train.plan`): what decides a run, before any tensor exists."""

    name: str
    """The entry (`helpers.configs.experiments`)."""
    entry: dict
    """Its entry as declared (parents, delta, report sentence ...)."""
    settings: dict
    """Its resolved settings: the entry's, then the call's overrides (and one member for an ensemble's model)."""
    profile: dict
    """The resolved profile (`helpers.configs.profiles.resolve`), with its name."""
    seed: int
    """The seed every random stream of the run starts from (an ensemble's member: its own member seed)."""
    role: str
    """As the record states it: "row", "predictor" (scores an ensemble of its trainer's runs) or "member" (one
    model of an ensemble that is not also a row's own run)."""
    member: Member | None
    """Its place in an ensemble when it is trained as one of its models; None otherwise."""
    key: str
    """The run key (`helpers.run.records.run_key`): settings, profile, seed, data and code."""
    code: str
    """The code fingerprint in the key."""
    folder: Path
    """Where the run's files go (its run folder, or the staging folder inside it while it trains)."""
    epochs: int
    """Planned epochs: the profile's, scaled by the entry."""
    patience: int
    """Epochs without a better validation score before stopping (`helpers.model.optim.patience_for`)."""

    @property
    def row_seed(self) -> int:
        """The seed of the row this run serves: its own, or the predictor's for an ensemble's member. A
        self-trained student's teacher trains at it, and its pseudo-labels are drawn with it."""
        return self.seed if self.member is None else self.member.of_seed


@dataclass(frozen=True)
class Prepared:
    """`train.prepare_arrays`: the run's images and masks, and what the record says of them."""

    arrays: dict[str, tuple[Any, Any]]
    """{"train", "val", "test"}: (images, masks), after the profile's caps, blending and pseudo-labels."""
    indices: dict[str, Any]
    """{"train", "val", "test"}: the training-file indices each part was drawn from."""
    info: dict
    """The record's `prepared` field: split, sizes used, scored subsets' digests, budget, blending,
    self-training."""


@dataclass(frozen=True)
class Built:
    """Step 2 (`train.build`): a compiled model and everything `fit` and the record need from the build."""

    model: Any
    """The compiled Keras model."""
    loss: Any
    """Its combined loss (its terms' weights may move: `DynamicLossWeights`)."""
    train_ds: Any
    """The repeating, shuffled training dataset."""
    val_ds: Any
    """The validation dataset."""
    class_weights: Any
    """Per-class pixel weights from the training masks, or None."""
    lr_log: Any
    """The `LearningRateLog` callback: the learning rate of every step."""
    device: dict
    """`helpers.runtime.device.configure`'s facts (precision, XLA)."""
    epochs: int
    """Epochs to fit."""
    train_images: int
    """Images in the training split."""
    steps_per_epoch: int
    """Optimizer steps per epoch (the profile's budget)."""
    batch_size: int
    """Images per step."""
    callbacks: list
    """Every callback of `fit`: the run's own, then the caller's."""


@dataclass(frozen=True)
class Evaluation:
    """Step 4 (`train.score_models`): the run's scores, four fields of its record."""

    test: dict
    """Held-out test split: the starter-kit metrics and the primary `miou_fg`."""
    leaderboard: dict | None
    """Public/private leaderboard-style scores of the profile's test-set subset; None without hidden labels."""
    constant_baseline: dict
    """The best constant prediction's score on the validation and test splits."""
    eval_seconds: float
    """Seconds the scoring took."""

    def fields(self) -> dict:
        """The record's fields, in the record's order."""
        return {"test": self.test, "leaderboard": self.leaderboard, "constant_baseline": self.constant_baseline,
                "eval_seconds": self.eval_seconds}


@dataclass(frozen=True)
class Options:
    """How `train.run` treats every run it reaches: the entry's own, its teacher's and its ensemble's members'."""

    force: bool = False
    """Retrain even where a finished record exists."""
    kept_since: float | None = None
    """With `force`: keep the records finished at or after this `time.time()` (another worker's, trained in the
    same forced session: `train.run_all`)."""
    reuse_stale: bool | None = None
    """Return a record trained by older code when none exists for the current code (`train.stale_record`);
    None: as the `MARS_REUSE_STALE=1` environment variable says (`train.run` decides it once, for every run it
    reaches)."""
    wait: bool = True
    """Wait for a run another worker holds; False: raise `helpers.run.claims.RunBusy`."""
    verbose: int | str = "auto"
    """Keras `fit`'s verbosity."""
    callbacks: tuple = ()
    """Extra Keras callbacks for every `fit`."""
