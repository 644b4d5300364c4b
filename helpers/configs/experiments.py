"""Table 1 as data: one declarative entry per row, each "parent(s) + the delta the report names".

Every entry quotes the report sentence it implements (`report`) and says which reading it takes where the
report is ambiguous (`reading`). `resolve(name)` gives the full settings of a row: the defaults, then the
deltas of all its ancestors in order (first parent's line first), then its own delta — so "Network 3
improves on Network 1 and Network 2" inherits the clean data of Network 1 *and* the channels of
Network 2, while abandoned rows (Networks 4, 7, 10) pass nothing on. A new experiment is one new entry.

Settings (all plain data):
- data: split variant ("all" = the 2615 images, "clean" = aliens removed), big-rock blending on/off;
- model: keyword arguments of `helpers.model.models.build_model`;
- loss: named terms and weights (`helpers.model.losses.combined_loss`), the class the terms ignore (None =
  every pixel counts; 0 = background ignored), class weights from the pixel distribution (cap = the
  "refinement"), dynamic re-weighting on/off;
- optimizer: a name of `helpers.model.optim.make_optimizer` and its peak learning rate (Lion takes ~10× less
  than AdamW, as its authors advise; SGD ~10× more);
- augment: geometric augmentation settings or None;
- train: epochs/patience scale factors applied to the run profile (1 for every Table 1 row: every trained row,
  member and student takes the profile's optimizer steps; only the "2x steps" ablations scale them);
- inference: how a trained model predicts: `classes` ("all", or "foreground": argmax over classes 1-4 only,
  never class 0), flip test-time augmentation (`tta`), and `members`, the seeds soft-voted in an ensemble;
- self_training: None, or a second round that adds the confident pixels of the model's own predictions on
  the competition test set as labels (`threshold`: the least probability kept; `images`: how many test images,
  as a multiple of the training split's size).

Entries whose delta only changes `inference` train nothing: they predict with the models of the nearest
ancestor that trains (`trainer`). An entry with `members` K > 1 soft-votes K runs of its trainer at seeds
`member_seeds(seed, K)`. The report's entries (`TABLE1`) carry the report's two scores (`reported`); the
"beyond the report" entries (`IMPROVED`) carry none. The report's entries name the notebook sections that show
them (`sections`, keys of `SECTIONS`); ablations name the entry they vary (`varies`) and the section that shows
them (`section`). Nothing here imports TensorFlow.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass


FEATURES = ["threshold", "edges", "laplacian", "wavelet"]
FINAL_MIX = {"dice": 1.0, "focal": 0.1, "ce": 3.0, "class_limit": 0.1, "boundary": 0.1}
"""The original final loss mix (Network 9 on): term name -> weight (`helpers.model.losses.combined_loss`)."""

DEFAULTS = {
    "data": {"split": "all", "blend": False},
    "model": {"arch": "unet", "channels": [], "norm": "batch", "initializer": "glorot_uniform",
              "se": False, "dilated_bottleneck": False},
    "loss": {"terms": {"ce": 1.0}, "ignore_class": None, "class_weights": None, "dynamic": False},
    "optimizer": {"name": "adamw", "lr": 1e-3},
    "augment": None,
    "train": {"epochs_scale": 1.0, "patience_scale": 1.0},
    "inference": {"classes": "all", "tta": False, "members": 1},
    "self_training": None,
}

ENTRIES = [
    {"name": "Baseline", "reported": {"test": 32.81, "kaggle": 32.459}, "parents": [], "delta": {},
     "sections": ["alien_removal", "channels_or_augmentation"],
     "report": "Baseline Network was a standard UNet (2 downsampling, 2 upsampling blocks, 128-sized bottleneck) "
               "trained on the complete dataset (2118 images).",
     "reading": "All 2615 images (aliens kept), split 2117/236/262; plain sparse cross-entropy over all five "
                "classes; AdamW lr 1e-3, clipnorm 1.0 (the original's optimizer)."},
    {"name": "Network 1", "reported": {"test": 23.89, "kaggle": 37.051}, "parents": ["Baseline"], "delta": {"data": {"split": "clean"}},
     "sections": ["alien_removal", "channels_one_at_a_time", "class_weights"],
     "report": "Network 1 improves on Baseline Network by training the model on the dataset filtered as "
               "described above.",
     "reading": "Baseline on the 2505 images left after removing the 110 shared-mask (alien) images."},
    {"name": "Network 2", "reported": {"test": 42.68, "kaggle": 44.082}, "parents": ["Baseline"], "delta": {"model": {"channels": FEATURES}},
     "sections": ["channels_or_augmentation", "class_weights"],
     "report": "Network 2 improves on Baseline Network by adding channels that filter information about the "
               "image; particularly, we added thresholding, edge detection, laplacian and wavelet filters.",
     "reading": "Baseline (unfiltered data, as the original's 2117/236 split shows) with all four feature "
                "channels; the one-at-a-time ablation lives in notebook 02."},
    {"name": "Network 3", "reported": {"test": 39.9, "kaggle": 46.326}, "parents": ["Network 1", "Network 2"],
     "delta": {"loss": {"class_weights": {"cap": 10.0}}},
     "sections": ["class_weights", "optimizers"],
     "report": "Network 3 improves on Network 1 and Network 2 with an optimizer that weights classes "
               "differently based on their frequency (computed on pixel distribution).",
     "reading": "Clean data + feature channels + per-pixel 'balanced' class weights from the training pixel "
                "distribution, capped at 10 (the 'class weight refinement'; big rock is ~151 uncapped)."},
    {"name": "Network 4", "reported": {"test": 66.6, "kaggle": 39.675}, "parents": ["Network 1"],
     "delta": {"augment": {"flip": "horizontal_and_vertical", "translate": 0.1, "zoom": 0.1}},
     "sections": ["channels_or_augmentation"],
     "report": "Network 4 tried to improve on Network 2 by adding a geometric augmentation pipeline, as "
               "mentioned above, rather than adding channels.",
     "reading": "Network 2 with the channels replaced by on-the-fly flips/translation/zoom of the training "
                "split only, on the clean data (the original's 4058/451 counts come from the filtered set; "
                "its offline augmentation leaked into validation, ours does not)."},
    {"name": "Network 5", "reported": {"test": 47.0, "kaggle": 46.967}, "parents": ["Network 3"], "delta": {"optimizer": {"name": "adamw_warmup_cosine"}},
     "sections": ["optimizers"],
     "report": "Network 5 improves on Network 3 by implementing a learning rate warm-up and Cosine Decay "
               "schedule to the AdamW optimizer.",
     "reading": "A real linear warm-up to the peak lr, then cosine decay (the original's 'warm-up' went "
                "down). SGD, Lion + ReduceLROnPlateau and warm restarts are compared in notebook 04."},
    {"name": "Network 6", "reported": {"test": 42.86, "kaggle": 48.459}, "parents": ["Network 3"],
     "delta": {"model": {"arch": "dual_unet", "kind": "twin", "fusion": "concat"}},
     "sections": ["final_rows"],
     "report": "Network 6 adapts the architecture from Network 3 and implements a Dual UNet architecture.",
     "reading": "Two identical baseline UNets on the same channels, softmax maps concatenated → 1×1 conv "
                "softmax (the original's fusion); Network 3's optimizer (no schedule)."},
    {"name": "Network 7", "reported": {"test": 49.08, "kaggle": 48.267}, "parents": ["Network 6"], "delta": {"model": {"norm": "group"}},
     "sections": ["final_rows"],
     "report": "Network 7 implements adaptive normalization. It failed on performance metrics and was abandoned.",
     "reading": "Network 6 with BatchNorm replaced by GroupNorm, as the original did: 8 groups at full "
                "width, the same channels per group at narrower widths (helpers.model.models.group_norm_groups); the "
                "λ·x + μ·BN(x) adaptive form is available as norm='adaptive'."},
    {"name": "Network 8", "reported": {"test": 49.04, "kaggle": 50.731}, "parents": ["Network 6"],
     "delta": {"model": {"kind": "global_local", "fusion": "concat"}},
     "sections": ["final_rows", "fusion"],
     "report": "Network 8 improves on Network 6 by making the two parallel UNet architectures differ: one tries "
               "to implement a global point of view over the data, the other one acts locally. [...] To combine "
               "the output, we empirically established that concatenation works best.",
     "reading": "Global = 4 levels 32-256 + 512 bottleneck on the feature channels; Local = the baseline on the "
                "raw image; concatenation fusion. Addition, continuation-then-addition and gated fusion are "
                "compared in notebook 05."},
    {"name": "Network 9", "reported": {"test": 62.99, "kaggle": 61.984}, "parents": ["Network 8", "Network 5"],
     "delta": {"loss": {"terms": dict(FINAL_MIX), "ignore_class": 0, "dynamic": True}},
     "sections": ["loss_weights", "final_rows", "longer_training"],
     "report": "Network 9 integrates the learning rate schedule from Network 5, by adding losses based on domain "
               "knowledge and weights established either by hyperparameter sweep (class limit loss) or an "
               "adaptive procedure (cross-entropy, focal, dice loss).",
     "reading": "Network 8 + warm-up/cosine AdamW + the original final mix (1.0 dice + 0.1 focal + 3.0 CE "
                "ignoring background + 0.1 class-limit + 0.1 boundary) with the dynamic re-weighting rule "
                "applied each epoch; the low-pass term is tried in notebook 03."},
    {"name": "Network 10", "reported": {"test": 50.43, "kaggle": 49.736}, "parents": ["Network 9"],
     "delta": {"model": {"se": True, "dilated_bottleneck": True}},
     "sections": ["final_rows", "longer_training"],
     "report": "Network 10 implements inside the Network 9 architecture the Squeeze-Excitation block and dilated "
               "convolutions. We tried making the training longer, but if failed on performance metrics and "
               "was abandoned.",
     "reading": "Network 9 with dilated bottlenecks (rates 1, 2, 4, 8) followed by SE (reduction 16), on the same "
                "budget as every row; the 'longer training' is its own comparison in notebook 05 (Networks 9 and "
                "10, each at 1x and 2x the steps), never a silent part of this row."},
    {"name": "Final Model", "reported": {"test": 61.76, "kaggle": 64.91}, "parents": ["Network 9"],
     "delta": {"model": {"initializer": "he_normal"}, "data": {"blend": True}},
     "sections": ["final_rows"],
     "report": "Final Model improves on Network 9 by adding He weights and image/mask blending.",
     "reading": "Network 9 with HeNormal initialisation and the training split expanded by Poisson blending of "
                "big-rock regions (one attempt per image + 25 per big-rock source)."},
]

TABLE1 = [entry["name"] for entry in ENTRIES]

BEYOND_THE_REPORT = "beyond the report"
SELF_TRAINING_THRESHOLD = 0.9
"""Least softmax probability of a pseudo-labelled pixel. Chosen once, before any run, and not tuned: high enough
that most kept pixels are right, low enough to keep a useful share of them for models trained 8 epochs."""

# The best teams' moves (issue: "Beyond the report"), each entry one step on the previous; the last is `Improved`.
IMPROVED = [
    {"name": "Improved (0) clean, Final's schedule", "parents": ["Baseline"], "track": BEYOND_THE_REPORT,
     "delta": {"data": {"split": "clean"}, "optimizer": {"name": "adamw_warmup_cosine"}},
     "step": "the track's start: the Baseline UNet on the Final Model's clean split and warm-up + cosine schedule",
     "reading": "The Baseline with the aliens out of its training part and the Final Model's AdamW warm-up + "
                "cosine, so that every later step is compared on the Final Model's data and schedule."},
    {"name": "Improved (a) focal, no background", "parents": ["Improved (0) clean, Final's schedule"],
     "track": BEYOND_THE_REPORT,
     "delta": {"loss": {"terms": {"focal": 1.0}, "ignore_class": 0, "class_weights": {"cap": 10.0}}},
     "step": "background out of every loss term; focal loss with inverse-frequency class weights capped at 10",
     "reading": "The (0) UNet trained on focal loss alone, pixels labelled background left out of the loss "
                "(the moves of the UNet + SE and Multipath UNet teams)."},
    {"name": "Improved (b) never class 0", "parents": ["Improved (a) focal, no background"],
     "track": BEYOND_THE_REPORT, "delta": {"inference": {"classes": "foreground"}},
     "step": "argmax over classes 1-4 only at inference (class 0 is never predicted)",
     "reading": "The (a) model, predicting argmax over soil, bedrock, sand and big rock: the starter-kit metric "
                "counts class 0 with IoU 0 as soon as a labelled pixel is predicted 0."},
    {"name": "Improved (c) flips", "parents": ["Improved (b) never class 0"], "track": BEYOND_THE_REPORT,
     "delta": {"augment": {"flip": "horizontal_and_vertical", "translate": 0.0, "zoom": 0.0}},
     "step": "horizontal and vertical flips as the only augmentation",
     "reading": "(b) trained on randomly flipped images (no translation or zoom), as the Multipath UNet team did."},
    {"name": "Improved (d) SE bottleneck", "parents": ["Improved (c) flips"], "track": BEYOND_THE_REPORT,
     "delta": {"model": {"se": True}}, "step": "a Squeeze-Excitation block after the bottleneck",
     "reading": "(c) with Squeeze-Excitation (reduction 16) on the bottleneck."},
    {"name": "Improved (e) flip TTA", "parents": ["Improved (d) SE bottleneck"], "track": BEYOND_THE_REPORT,
     "delta": {"inference": {"tta": True}}, "step": "flip test-time augmentation (mean of the 4 flips' softmax)",
     "reading": "The (d) model, predicting the mean softmax of the image and its three flips, each flipped back."},
    {"name": "Improved (f) ensemble", "parents": ["Improved (e) flip TTA"], "track": BEYOND_THE_REPORT,
     "delta": {"inference": {"members": 2}}, "step": "a soft vote of 2 seeds (each with flip TTA)",
     "reading": "The mean softmax of two (d) models trained from different seeds, each with flip TTA; two keep "
                "the default study on 2 CPU cores (the Kaggle kernel takes --members K)."},
    {"name": "Improved", "parents": ["Improved (f) ensemble"], "track": BEYOND_THE_REPORT,
     "delta": {"self_training": {"threshold": SELF_TRAINING_THRESHOLD, "images": 1.0}},
     "step": "self-training: a second round on the confident pixels of (f)'s own test-set predictions",
     "reading": "Each member retrained from scratch on the training split plus as many competition test images "
                "(a seeded draw), labelled by (f)'s ensemble where its probability is at least the threshold and "
                "left unlabelled (class 0, out of the loss) elsewhere. No test label is used; transductive."},
]

# Extra runs the notebooks use for ablations: each varies one entry (a row of its section, or an ablation before it)
# and is shown in one notebook section; each quotes the report, or is marked beyond it (`track`, `step`).
ABLATIONS = [
    *[{"name": f"Network 1 + {'+'.join(FEATURES[:i + 1])}", "varies": "Network 1",
       "delta": {"model": {"channels": FEATURES[:i + 1]}}, "section": "channels_one_at_a_time",
       "report": "They were added in an incremental fashion (that is, one by one, by monitoring performance).",
       "reading": "Channels added one at a time on the clean data (notebook 02)."} for i in range(len(FEATURES))],
    *[{"name": f"Network 5 / {opt}", "varies": "Network 5", "delta": {"optimizer": {"name": opt, "lr": lr}},
       "section": "optimizers",
       "report": "Together with this, we also tested SGD, Lion with Reduce on Plateau, and learning rate "
                 "Warm-Restarts.", "reading": f"Network 5 with optimizer '{opt}' (notebook 04)."}
      for opt, lr in (("adamw_restarts", 1e-3), ("lion_plateau", 1e-4), ("sgd", 1e-2))],  # constant AdamW: Network 3
    *[{"name": f"Network 8 / {fusion}", "varies": "Network 8", "delta": {"model": {"fusion": fusion}},
       "section": "fusion",
       "report": "In order to combine the two outputs given by the subnets we consider different techniques: "
                 "concatenation, addition, continuation and addition and fusion mechanism.",
       "reading": f"Network 8 with '{fusion}' fusion (notebook 05)."} for fusion in ("add", "continue_add", "gated")],
    *[{"name": f"{row} / 2x steps", "varies": row, "delta": {"train": {"epochs_scale": 2.0, "patience_scale": 2.0}},
       "section": "longer_training",
       "report": "We tried making the training longer, but if failed on performance metrics and was abandoned.",
       "reading": f"{row} trained for twice the optimizer steps of every other run (notebook 05)."}
      for row in ("Network 9", "Network 10")],
    {"name": "Final Model + flip TTA", "varies": "Final Model", "delta": {"inference": {"tta": True}},
     "section": "improved_track", "track": BEYOND_THE_REPORT, "step": "the Final Model with Improved (e)'s flip TTA",
     "reading": "The Final Model's own models predicting with flip TTA, as Improved (e) does (notebook 06)."},
    {"name": "Final Model + flip TTA + 2-seed vote", "varies": "Final Model + flip TTA",
     "delta": {"inference": {"members": 2}}, "section": "improved_track", "track": BEYOND_THE_REPORT,
     "step": "the Final Model with Improved (f)'s flip TTA and 2-seed soft vote",
     "reading": "A soft vote of two Final Models (seeds s and s + 1000), each with flip TTA, as Improved (f) does: "
                "the Final Model given the track's inference moves, so training moves are measured apart."},
    {"name": "Network 9 / fixed weights", "varies": "Network 9", "delta": {"loss": {"dynamic": False}},
     "section": "loss_weights",
     "report": "Some loss weights are established before-hand by setting their weight as fixed, while other "
               "were chosen with a dynamical rule based on accuracy and mean_iou metrics.",
     "reading": "Network 9 with the final mix kept fixed (notebook 03)."},
    {"name": "Network 9 + low-pass", "varies": "Network 9",
     "delta": {"loss": {"terms": {**FINAL_MIX, "low_pass": 0.1}}}, "section": "loss_weights",
     "report": "We also tested a low-pass metric without performance improvement.",
     "reading": "Network 9 with a low-pass term of weight 0.1 added (notebook 03)."},
]

# The notebook sections, in notebook order. A section's rows are the Table 1 rows that name it (`sections`), in
# Table 1's order, then the ablations that name it (`section`), in ABLATIONS' order. The one exception is the
# Improved track's section, which shows the whole track (`rows`), from the row it starts from to the row it must
# beat. So a new row, Improved step or ablation is one entry, and joins its sections from there.
SECTIONS = {
    "alien_removal": {"notebook": "01_eda_and_aliens", "title": "Removing the aliens"},
    "channels_one_at_a_time": {"notebook": "02_feature_channels", "title": "Channels one at a time"},
    "channels_or_augmentation": {"notebook": "02_feature_channels", "title": "Channels or augmentation"},
    "class_weights": {"notebook": "03_loss_design", "title": "Class weights"},
    "loss_weights": {"notebook": "03_loss_design", "title": "Loss mix and dynamic weights"},
    "optimizers": {"notebook": "04_optimizers", "title": "Optimizers and schedules"},
    "final_rows": {"notebook": "05_final_training", "title": "Networks 6-10 and the Final Model"},
    "fusion": {"notebook": "05_final_training", "title": "Fusion of the two subnets"},
    "longer_training": {"notebook": "05_final_training", "title": "Longer training: Networks 9 and 10 at 1x and 2x"},
    "improved_track": {"notebook": "06_beyond_the_report", "title": "The Improved track, step by step",
                       "rows": ["Baseline", *[entry["name"] for entry in IMPROVED], "Final Model"]},
}

_BY_NAME = {entry["name"]: entry for entry in ENTRIES + IMPROVED + ABLATIONS}


def get_entry(name: str) -> dict:
    if name not in _BY_NAME:
        raise ValueError(f"unknown experiment {name!r}: choose one of {', '.join(_BY_NAME)}")
    return _BY_NAME[name]


def parents(name: str) -> list[str]:
    """The entries `name` builds on: its `parents`, or for an ablation the entry it `varies`."""
    entry = get_entry(name)
    return list(entry["parents"]) if "parents" in entry else [entry["varies"]]


def section_rows(key: str) -> list[str]:
    """The rows (not ablations) of notebook section `key`: the Table 1 rows that name it, in Table 1's order, or
    the section's own `rows` (the Improved track's)."""
    if key not in SECTIONS:
        raise ValueError(f"unknown section {key!r}: choose one of {', '.join(SECTIONS)}")
    if "rows" in SECTIONS[key]:
        return list(SECTIONS[key]["rows"])
    return [entry["name"] for entry in ENTRIES if key in entry["sections"]]


def comparison(key: str) -> list[str]:
    """The rows a notebook section compares under `key` (see SECTIONS): its rows, then its ablations."""
    return section_rows(key) + [a["name"] for a in ABLATIONS if a["section"] == key]


def pairs(key: str) -> list[tuple[str, str]]:
    """(row, parent) for every row of section `key` whose parent is also in the section: what each step changed."""
    rows = comparison(key)
    return [(name, parent) for name in rows for parent in parents(name) if parent in rows]


def notebook_runs(notebooks: list[str] | None = None) -> list[str]:
    """Every entry the notebooks named or numbered by `notebooks` (e.g. ["06"]; default: all) show, each once,
    in section order."""
    chosen = [key for key, spec in SECTIONS.items()
              if notebooks is None or any(spec["notebook"].startswith(prefix) for prefix in notebooks)]
    if not chosen:
        known = sorted({spec["notebook"] for spec in SECTIONS.values()})
        raise ValueError(f"no notebook section matches {notebooks}: choose from {', '.join(known)}")
    return list(dict.fromkeys(name for key in chosen for name in comparison(key)))


def reported(name: str) -> tuple[float, float] | None:
    """The report's (test, Kaggle) mIoU of a Table 1 row, in percent; None for an entry the report has not."""
    scores = get_entry(name).get("reported")
    return None if scores is None else (scores["test"], scores["kaggle"])


def trainer(name: str) -> str:
    """The nearest entry up the first-parent line (itself included) whose delta changes more than `inference`:
    the entry whose trained models `name` predicts with."""
    while set(get_entry(name)["delta"]) <= {"inference"} and parents(name):
        name = parents(name)[0]
    return name


MEMBER_SEED_STRIDE = 1000


def member_seeds(seed: int, members: int) -> list[int]:
    """Seeds of an ensemble's members: the run's own seed first, then seed + 1000, seed + 2000, ..."""
    return [seed + MEMBER_SEED_STRIDE * i for i in range(members)]


@dataclass(frozen=True)
class Member:
    """A run's place in an ensemble, stated rather than read off its seed: model `index` (0 first) of the
    predictor run at seed `of_seed`. It trains at `member_seeds(of_seed, ...)[index]`; a self-trained member's
    teacher trains at `of_seed`, the predictor's own seed."""

    of_seed: int
    index: int


def models(runs: list[str], seeds: int) -> list[tuple[str, int, Member | None]]:
    """(entry, seed, member) of every model that `runs` × seeds 0..seeds-1 train, each once, teachers before
    their students: a predictor trains its trainer at the member seeds (`member`: its place in the ensemble;
    None for a model trained as a row or a teacher), a self-trained student its teacher's models first. The same
    walk `helpers.run.train.run` takes, without training anything (for the run's projected time)."""
    found: dict[tuple[str, int], Member | None] = {}

    def visit(name: str, seed: int, member: Member | None = None) -> None:
        settings = resolve(name)
        if member is None and (settings["inference"]["members"] > 1 or trainer(name) != name):
            for index, each in enumerate(member_seeds(seed, settings["inference"]["members"])):
                visit(trainer(name), each, Member(of_seed=seed, index=index))
            return
        if settings["self_training"]:
            visit(parents(name)[0], seed if member is None else member.of_seed)
        found.setdefault((name, seed), member)

    for seed in range(seeds):
        for name in runs:
            visit(name, seed)
    return [(name, seed, member) for (name, seed), member in found.items()]


def trainings(runs: list[str], seeds: int) -> list[tuple[str, int, bool]]:
    """`models`, each with whether it is an ensemble's member (True) rather than its place in the ensemble."""
    return [(name, seed, member is not None) for name, seed, member in models(runs, seeds)]


def names(include_ablations: bool = False) -> list[str]:
    """Table 1's rows, then the Improved track, then (optionally) the ablations."""
    return TABLE1 + [entry["name"] for entry in IMPROVED] + ([a["name"] for a in ABLATIONS] if include_ablations else [])


def _deep_merge(base: dict, delta: dict) -> dict:
    merged = copy.deepcopy(base)
    for key, value in delta.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict) and key != "terms":
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)  # loss terms are replaced whole: a mix is one choice
    return merged


def merge(settings: dict, delta: dict) -> dict:
    """`settings` with `delta` applied as an entry's delta is (nested dicts merged, loss terms replaced whole)."""
    return _deep_merge(settings, delta)


def with_defaults(settings: dict) -> dict:
    """`settings` with the top-level keys added since it was written filled in at their defaults (old records)."""
    return {**copy.deepcopy({key: value for key, value in DEFAULTS.items() if key not in settings}), **settings}


def lineage(name: str) -> list[str]:
    """The entry's ancestors in inheritance order (depth-first, first parent first), then itself."""
    order: list[str] = []

    def visit(node: str) -> None:
        for parent in parents(node):
            visit(parent)
        if node not in order:
            order.append(node)

    visit(name)
    return order


def resolve(name: str) -> dict:
    """Full settings of an entry: defaults, then each ancestor's delta in lineage order, then its own."""
    settings = copy.deepcopy(DEFAULTS)
    for node in lineage(name):
        settings = _deep_merge(settings, get_entry(node)["delta"])
    return settings

