"""The run's projected time: the models it will train, the FLOPs it counts, and the speed probe."""
import math

import keras
import pytest

from helpers.configs import experiments
from helpers.configs.profiles import get_profile
from helpers.model.flops import forward_flops


def test_forward_flops_match_a_hand_count():
    """A 3x3 convolution, 1 -> 2 channels on a 4x4 image ('same'): 16 positions × 2 filters × 9 multiply-adds;
    then a Dense 2 -> 3 at each of the 16 positions."""
    inputs = keras.Input((4, 4, 1))
    hidden = keras.layers.Conv2D(2, 3, padding="same")(inputs)
    model = keras.Model(inputs, keras.layers.Dense(3)(hidden))
    assert forward_flops(model) == 2 * 16 * 2 * 9 + 2 * 16 * 2 * 3


def test_the_walk_names_every_model_notebook_06_trains_once_teachers_first():
    walked = experiments.trainings(experiments.notebook_runs(["06"]), 1)
    assert walked == [("Baseline", 0, False), ("Improved (0) clean, Final's schedule", 0, False),
                      ("Improved (a) focal, no background", 0, False), ("Improved (c) flips", 0, False),
                      ("Improved (d) SE bottleneck", 0, False), ("Improved (d) SE bottleneck", 1000, True),
                      ("Improved", 0, True), ("Improved", 1000, True),
                      ("Final Model", 0, False), ("Final Model", 1000, True)]
    two = experiments.trainings(experiments.notebook_runs(["06"]), 2)
    assert len(two) == 20 and len(set(two)) == 20 and ("Improved (d) SE bottleneck", 1001, True) in two


def test_work_counts_training_validation_and_scoring_images(smoke_data, smoke_records):
    """Hand count for the smoke profile: 3 × (steps × batch) training images, one validation pass per epoch, the
    test split and the leaderboard subset (the whole test set for the submitted Final Model); a finished record
    is not projected again unless forced."""
    from helpers.data.splits import make_split
    from helpers.model.models import build_model
    from helpers.run.train import work

    profile = get_profile("smoke")
    split = make_split(smoke_data, variant="clean")
    steps = math.ceil(min(len(split.train), profile["max_train"]) / profile["batch_size"])
    val, test = min(len(split.val), profile["max_val"]), min(len(split.test), profile["max_test"])
    n_test = len(smoke_data.test_images)
    assert work(["Baseline"], 1, profile, smoke_data) == []  # smoke_records trained it
    for name, predicted in (("Baseline", test + min(profile["test_set_limit"], n_test)), ("Final Model", test + n_test)):
        (job,) = work([name], 1, profile, smoke_data, force=True)
        flops = forward_flops(build_model(**experiments.resolve(name)["model"], width=profile["width"]))
        expected = flops * (3 * steps * profile["batch_size"] + val + predicted) / 1e9
        assert (job["name"], job["seed"]) == (name, 0) and job["gflop"] == pytest.approx(expected)


def test_longest_first_orders_runs_by_their_remaining_work(smoke_data, smoke_records, isolated_dirs):
    """The workers' order: most GFLOP still to train first (a predictor carries its members' trainings); a
    finished run costs nothing; equal costs keep the given order. A fresh reports/ holding only the Baseline's
    finished record, so runs other tests trained do not count as finished."""
    from helpers.run.train import longest_first, plan, work
    from helpers.runtime.files import write_json_atomic

    profile = get_profile("smoke")
    write_json_atomic(plan("Baseline", smoke_data, profile, 0).folder / "record.json", smoke_records["Baseline"])
    names = ["Baseline", "Improved (b) never class 0", "Improved (a) focal, no background", "Network 9 / 2x steps"]
    cost = {job["name"]: job["gflop"] for job in work(names, 1, profile, smoke_data)}
    assert "Baseline" not in cost and cost["Network 9 / 2x steps"] > cost["Improved (a) focal, no background"]
    # (b) predicts with (a)'s model: the same work, so the given order stands; the finished Baseline goes last
    assert longest_first(names, 1, profile, smoke_data) == [
        "Network 9 / 2x steps", "Improved (b) never class 0", "Improved (a) focal, no background", "Baseline"]
    # forced, the finished Baseline counts again, by its full work
    forced = {job["name"]: job["gflop"] for job in work(names, 1, profile, smoke_data, force=True)}
    assert forced["Baseline"] > 0 and {k: forced[k] for k in cost} == pytest.approx(cost)


def test_the_probe_measures_a_positive_rate_in_a_worker_like_process():
    from helpers.run.projection import describe, probe_like_a_worker

    speed = probe_like_a_worker("smoke", workers=1)
    assert speed["images_per_second"] > 0 and speed["startup_seconds"] >= 0
    assert speed["mixed_precision"] in ("float32", "mixed_bfloat16")
    line = describe({**speed, "seconds": 600.0, "trainings": 3}, workers=2)
    assert line.startswith("projected training time on this machine: ≈ 10 min for 3 trainings on 2 worker(s)")
