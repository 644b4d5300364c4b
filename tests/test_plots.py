"""helpers.study.plots: epoch axes tick whole epochs; figures draw what the run logged."""
import matplotlib

matplotlib.use("Agg")
import numpy as np
import pytest

from helpers.study import plots


def _record(epochs):
    history = {"val_competition_miou": list(np.linspace(0.1, 0.3, epochs)),
               **{f"{prefix}{term}": list(np.linspace(1.0, 0.5, epochs)) for prefix in ("term_", "val_term_")
                  for term in ("ce", "dice")}}
    return {"name": "Network 9", "history": history, "seed": 0}


@pytest.mark.parametrize("epochs", [1, 2, 6, 40])
def test_epoch_axes_tick_whole_epochs_only(epochs):
    fig = plots.curves({"Network 9": [_record(epochs)]})
    ticks = [t for t in fig.axes[0].get_xticks() if fig.axes[0].get_xlim()[0] <= t <= fig.axes[0].get_xlim()[1]]
    assert ticks and all(float(t).is_integer() for t in ticks), ticks


def test_loss_terms_draws_each_logged_term_for_training_and_validation():
    fig = plots.loss_terms(_record(3))
    train_ax, val_ax = fig.axes[:2]
    assert sorted(line.get_label() for line in train_ax.lines) == ["ce", "dice"]
    assert sorted(line.get_label() for line in val_ax.lines) == ["ce", "dice"]
    np.testing.assert_allclose(train_ax.lines[0].get_xdata(), [1, 2, 3])


def test_before_after_shows_every_example_in_four_rows():
    images = np.zeros((3, 64, 128), np.float32)
    masks = np.zeros((3, 64, 128), np.uint8)
    fig = plots.before_after(images, masks, images + 0.5, masks + 1)
    assert len(fig.axes) == 12
