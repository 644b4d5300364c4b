"""The notebooks' figures, each a function returning a matplotlib Figure (saved with `Context.save_fig`)."""
from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.colors import ListedColormap
from matplotlib.ticker import MaxNLocator

from helpers.configs.constants import CLASS_NAMES, MONITOR, NUM_CLASSES, PRIMARY

CLASS_COLORS = ("#000000", "#b5651d", "#7f7f7f", "#f2d16b", "#d62728")  # background, soil, bedrock, sand, big rock
MASK_CMAP = ListedColormap(CLASS_COLORS)
MASK_STYLE = {"cmap": MASK_CMAP, "vmin": 0, "vmax": NUM_CLASSES - 1, "interpolation": "nearest"}


def _off(ax) -> None:
    ax.set_xticks([])
    ax.set_yticks([])


def epoch_axis(ax) -> None:
    """Label the x axis "epoch" with whole-number ticks only, also for a run of one or two epochs."""
    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
    low, high = ax.get_xlim()
    if high - low < 2:  # a one-epoch run: matplotlib would tick 0.95, 1.00, 1.05
        ax.set_xticks(np.arange(np.ceil(low), np.floor(high) + 1))


def class_legend(fig) -> None:
    handles = [plt.Rectangle((0, 0), 1, 1, color=c) for c in CLASS_COLORS]
    fig.legend(handles, CLASS_NAMES, loc="lower center", ncol=NUM_CLASSES, frameon=False)


def samples(images, masks, indices, *, titles=None, predictions=None):
    """Columns of image / mask (/ prediction) for the chosen indices."""
    rows = 2 if predictions is None else 3
    fig, axes = plt.subplots(rows, len(indices), figsize=(2.2 * len(indices), 1.3 * rows + 0.6), squeeze=False)
    for col, i in enumerate(indices):
        axes[0, col].imshow(images[i], cmap="gray", vmin=0, vmax=1)
        axes[0, col].set_title(titles[col] if titles else f"#{i}", fontsize=8)
        axes[1, col].imshow(masks[i], **MASK_STYLE)
        if predictions is not None:
            axes[2, col].imshow(predictions[i], **MASK_STYLE)
        for ax in axes[:, col]:
            _off(ax)
    axes[0, 0].set_ylabel("image")
    axes[1, 0].set_ylabel("mask")
    if predictions is not None:
        axes[2, 0].set_ylabel("prediction")
    class_legend(fig)
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    return fig


def class_balance(masks):
    """Pixel share per class, images containing each class, and labelled classes per image."""
    pixels = np.bincount(masks.ravel(), minlength=NUM_CLASSES) / masks.size
    present = np.stack([(masks == c).any(axis=(1, 2)) for c in range(NUM_CLASSES)], axis=1)
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.2))
    axes[0].bar(CLASS_NAMES, 100 * pixels, color=CLASS_COLORS, edgecolor="k")
    axes[0].set_ylabel("% of pixels")
    axes[1].bar(CLASS_NAMES, present.sum(axis=0), color=CLASS_COLORS, edgecolor="k")
    axes[1].set_ylabel("images containing the class")
    per_image = present[:, 1:].sum(axis=1)
    axes[2].hist(per_image, bins=np.arange(-0.5, 5), rwidth=0.8)
    axes[2].set_xlabel("labelled classes per image")
    axes[2].set_ylabel("images")
    for ax in axes[:2]:
        ax.tick_params(axis="x", rotation=30)
    fig.tight_layout()
    return fig


def grey_histograms(images, masks):
    """Grey-level distribution of each class's pixels: how much intensity alone separates them."""
    fig, ax = plt.subplots(figsize=(7, 3.2))
    for c in range(NUM_CLASSES):
        values = images[masks == c]
        if values.size:
            ax.hist(values, bins=64, range=(0, 1), density=True, histtype="step", lw=2, color=CLASS_COLORS[c],
                    label=CLASS_NAMES[c])
    ax.set_xlabel("grey level")
    ax.set_ylabel("density")
    ax.legend()
    fig.tight_layout()
    return fig


def channel_stack(image, stack, names):
    """One image's feature channels side by side (stack: (H, W, C) as produced by FeatureChannels)."""
    fig, axes = plt.subplots(1, stack.shape[-1], figsize=(2.4 * stack.shape[-1], 1.8), squeeze=False)
    for k, ax in enumerate(axes[0]):
        ax.imshow(stack[..., k], cmap="gray")
        ax.set_title(names[k], fontsize=8)
        _off(ax)
    fig.tight_layout()
    return fig


def curves(records: dict, key: str = MONITOR, ylabel: str | None = None):
    """Per-epoch history `key` of each run (first seed), one line per entry."""
    fig, ax = plt.subplots(figsize=(7, 3.4))
    for name, runs in records.items():
        values = runs[0]["history"].get(key)
        if values:
            ax.plot(np.arange(1, len(values) + 1), values, marker="o", ms=3, label=name)
    epoch_axis(ax)
    ax.set_ylabel(ylabel or key)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def score_bars(records: dict, path=("test", PRIMARY), label="test mIoU (foreground argmax)"):
    """Mean (± std over seeds) of one score per entry."""
    names = list(records)
    values = [[_get(r, path) for r in runs] for runs in records.values()]
    means = [100 * np.mean(v) if v else np.nan for v in values]
    stds = [100 * np.std(v, ddof=1) if len(v) > 1 else 0 for v in values]
    fig, ax = plt.subplots(figsize=(max(5, 1.1 * len(names)), 3.4))
    ax.bar(range(len(names)), means, yerr=stds, color="tab:blue")
    ax.set_xticks(range(len(names)), names, rotation=30, ha="right", fontsize=8)
    ax.set_ylabel(f"{label} (%)")
    fig.tight_layout()
    return fig


def _get(record: dict, path) -> float:
    node = record
    for key in path:
        node = node[key]
    return float(node)


def logged_lr_curves(records_by_name: dict):
    """The learning rate each run really used at every step (`LearningRateLog`), first seed, per epoch."""
    fig, ax = plt.subplots(figsize=(7, 3.2))
    for name, records in records_by_name.items():
        record = records[0]
        values = record["training"].get("learning_rate_per_step") or []
        if not values:
            continue
        steps_per_epoch = len(values) / max(1, record["training"]["epochs_run"])
        ax.plot(np.arange(len(values)) / steps_per_epoch, values,
                label=f"{name} ({record['settings']['optimizer']['name']})")
    ax.set_ylabel("learning rate")
    epoch_axis(ax)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def loss_weights(record: dict):
    """The loss-term weights logged each epoch (`w_<term>` history keys)."""
    fig, ax = plt.subplots(figsize=(6, 3))
    for key, values in sorted(record["history"].items()):
        if key.startswith("w_"):
            ax.plot(np.arange(1, len(values) + 1), values, marker="o", ms=3, label=key[2:])
    epoch_axis(ax)
    ax.set_ylabel("weight")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def loss_terms(record: dict):
    """Each loss term's value per epoch, before its weight (`term_<name>` / `val_term_<name>` history keys,
    logged by `helpers.model.losses.LossTermMean`), on the training and the validation split."""
    history = record["history"]
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.2), sharey=True)
    for ax, prefix, title in zip(axes, ("term_", "val_term_"), ("training", "validation")):
        for key, values in sorted(history.items()):
            if key.startswith(prefix):
                ax.plot(np.arange(1, len(values) + 1), values, marker="o", ms=3, label=key[len(prefix):])
        ax.set_title(f"{record['name']}: loss terms, {title}", fontsize=9)
        epoch_axis(ax)
        ax.legend(fontsize=7)
    axes[0].set_ylabel("term value (unweighted)")
    fig.tight_layout()
    return fig


def before_after(images, masks, new_images, new_masks, *, labels=("before", "after")):
    """Columns of examples, rows image / mask before and after a transformation (augmentation, blending)."""
    count = len(images)
    fig, axes = plt.subplots(4, count, figsize=(2.2 * count, 5.8), squeeze=False)
    for col in range(count):
        for row, (picture, style) in enumerate([(images[col], {"cmap": "gray", "vmin": 0, "vmax": 1}),
                                                (masks[col], MASK_STYLE),
                                                (new_images[col], {"cmap": "gray", "vmin": 0, "vmax": 1}),
                                                (new_masks[col], MASK_STYLE)]):
            axes[row, col].imshow(np.squeeze(picture), **style)
            _off(axes[row, col])
    for row, text in enumerate([f"{labels[0]}: image", "mask", f"{labels[1]}: image", "mask"]):
        axes[row, 0].set_ylabel(text, fontsize=8)
    class_legend(fig)
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    return fig


def confusion(cm, title: str = ""):
    """Row-normalised confusion matrix (rows = true class)."""
    cm = np.asarray(cm, dtype=float)
    rows = cm.sum(axis=1, keepdims=True)
    norm = np.divide(cm, rows, out=np.zeros_like(cm), where=rows > 0)
    fig, ax = plt.subplots(figsize=(4.6, 4))
    ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    for (i, j), value in np.ndenumerate(norm):
        ax.text(j, i, f"{value:.2f}", ha="center", va="center", fontsize=8, color="white" if value > 0.5 else "black")
    ax.set_xticks(range(NUM_CLASSES), CLASS_NAMES, rotation=30, ha="right")
    ax.set_yticks(range(NUM_CLASSES), CLASS_NAMES)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title, fontsize=9)
    ax.grid(False)
    fig.tight_layout()
    return fig


def per_class_iou(records: dict):
    """Per-class test IoU of each entry (first seed), grouped by class."""
    names = list(records)
    fig, ax = plt.subplots(figsize=(8, 3.4))
    width = 0.8 / max(1, len(names))
    for k, name in enumerate(names):
        ious = records[name][0]["test"]["per_class_iou"]  # {class name: IoU or None}
        values = [np.nan if ious[c] is None else ious[c] for c in CLASS_NAMES]
        ax.bar(np.arange(NUM_CLASSES) + k * width, 100 * np.nan_to_num(values), width, label=name)
    ax.set_xticks(np.arange(NUM_CLASSES) + 0.4 - width / 2, CLASS_NAMES)
    ax.set_ylabel("test IoU (%)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def per_class_heatmap(records: dict):
    """Test IoU (%) of every entry (rows, first seed) for every class (columns); blank: class absent."""
    names = list(records)
    values = np.array([[np.nan if (v := records[n][0]["test"]["per_class_iou"][c]) is None else 100 * v
                        for c in CLASS_NAMES] for n in names])
    fig, ax = plt.subplots(figsize=(6.5, 0.42 * len(names) + 1.2))
    ax.imshow(values, cmap="viridis", vmin=0, vmax=100, aspect="auto")
    for (i, j), value in np.ndenumerate(values):
        if not np.isnan(value):
            ax.text(j, i, f"{value:.0f}", ha="center", va="center", fontsize=8, color="white" if value < 50 else "black")
    ax.set_xticks(range(NUM_CLASSES), CLASS_NAMES)
    ax.set_yticks(range(len(names)), names, fontsize=8)
    ax.set_title("test IoU per class (%)", fontsize=9)
    ax.grid(False)
    fig.tight_layout()
    return fig


def confusion_grid(records: dict, columns: int = 4):
    """Row-normalised test confusion matrix (rows = true class) of every entry (first seed)."""
    names = list(records)
    rows = -(-len(names) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(2.6 * columns, 2.5 * rows), squeeze=False)
    short = [name[:4] for name in CLASS_NAMES]
    for ax, name in zip(axes.flat, names):
        cm = np.asarray(records[name][0]["test"]["confusion_matrix"], dtype=float)
        total = cm.sum(axis=1, keepdims=True)
        ax.imshow(np.divide(cm, total, out=np.zeros_like(cm), where=total > 0), cmap="Blues", vmin=0, vmax=1)
        ax.set_title(name, fontsize=8)
        ax.set_xticks(range(NUM_CLASSES), short, fontsize=6)
        ax.set_yticks(range(NUM_CLASSES), short, fontsize=6)
        ax.grid(False)
    for ax in list(axes.flat)[len(names):]:
        ax.axis("off")
    fig.supxlabel("predicted", fontsize=8)
    fig.supylabel("true", fontsize=8)
    fig.tight_layout()
    return fig


def prediction_grid(records: dict, images, run_folder, count: int = 5):
    """The same held-out test images with their mask and each entry's prediction, read from the run folders'
    `test_split_predictions.npz` (`run_folder(record)` gives a folder). Images in every entry's test split come
    first, then those in the most; a blank cell: that image is not in the entry's test split."""
    saved = {name: np.load(Path(run_folder(runs[0])) / "test_split_predictions.npz") for name, runs in records.items()}
    position = {name: {int(i): k for k, i in enumerate(s["indices"])} for name, s in saved.items()}
    shared = {}
    for where in position.values():
        for index in where:
            shared[index] = shared.get(index, 0) + 1
    chosen = sorted(shared, key=lambda index: (-shared[index], index))[:count]
    fig, axes = plt.subplots(len(chosen), len(saved) + 2, figsize=(1.5 * (len(saved) + 2), 0.9 * len(chosen) + 0.9),
                             squeeze=False)
    for row, index in enumerate(chosen):
        axes[row, 0].imshow(images[index], cmap="gray", vmin=0, vmax=1)
        owner = next(name for name in saved if index in position[name])
        axes[row, 1].imshow(saved[owner]["y_true"][position[owner][index]], **MASK_STYLE)
        for col, (name, s) in enumerate(saved.items(), start=2):
            if index in position[name]:
                axes[row, col].imshow(s["y_pred"][position[name][index]], **MASK_STYLE)
        axes[row, 0].set_ylabel(f"#{index}", fontsize=7)
    for col, title in enumerate(["image", "mask", *saved]):
        axes[0, col].set_title(title, fontsize=7, rotation=20)
    for ax in axes.flat:
        _off(ax)
    class_legend(fig)
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    return fig


def step_gains(records: dict, paths=(("test", PRIMARY), ("leaderboard", "private", PRIMARY)),
               labels=("test split", "LB private")):
    """One group of bars per entry, in the given order (a track of steps): mean ± std over seeds of each score
    in `paths`, every seed as a dot, and above each bar its gain over the previous entry (percent points)."""
    names = list(records)
    fig, ax = plt.subplots(figsize=(max(7, 1.3 * len(names)), 4))
    width = 0.8 / len(paths)
    for k, (path, label) in enumerate(zip(paths, labels)):
        values = [[100 * v for v in (_dig(r, path) for r in runs) if v is not None] for runs in records.values()]
        means = np.array([np.mean(v) if v else np.nan for v in values])
        stds = [np.std(v, ddof=1) if len(v) > 1 else 0 for v in values]
        x = np.arange(len(names)) + (k - (len(paths) - 1) / 2) * width
        ax.bar(x, means, width, yerr=stds, capsize=3, label=label, alpha=0.85)
        for xi, v in zip(x, values):
            ax.scatter([xi] * len(v), v, color="black", s=8, zorder=3)
        for i in range(1, len(names)):
            if not np.isnan(means[i]) and not np.isnan(means[i - 1]):
                ax.annotate(f"{means[i] - means[i - 1]:+.1f}", (x[i], means[i] + stds[i]), ha="center",
                            va="bottom", fontsize=7, xytext=(0, 2), textcoords="offset points")
    ax.set_xticks(range(len(names)), names, rotation=30, ha="right", fontsize=8)
    ax.set_ylabel("mIoU, foreground argmax (%)")
    seeds = sorted({len(runs) for runs in records.values()})
    ax.set_title(f"each step's gain over the previous (mean ± std over {'/'.join(map(str, seeds))} seeds; dots: seeds)",
                 fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def _dig(node, path):
    for key in path:
        node = node.get(key) if isinstance(node, dict) else None
    return node
