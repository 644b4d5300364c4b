"""helpers.study.table's checks on hand-made records (no training): did-not-learn, identical predictions, seeds, ranks."""
import csv
import hashlib
import math

import numpy as np
import pytest

from helpers.configs.experiments import TABLE1, reported, resolve
from helpers.model.metrics import best_constant_score
from helpers.run.records import code_fingerprint, run_dir
from helpers.study import table
from helpers.study.notebook import summary

Y_TRUE = np.kron(np.array([[[1, 1, 2, 3]]]), np.ones((64, 32), dtype=np.uint8)).repeat(2, axis=0)  # (2, 64, 128)


def fake_record(name, seed=0, *, test=0.5, best_val=0.6, constant=0.25, y_pred=None, settings=None, code=None,
                history=None, scored=("d" * 12, None), images_seen=48):
    """A finished-run record with the fields the table reads; saves test-split predictions when given."""
    key = hashlib.sha256(f"{name}/{seed}".encode()).hexdigest()[:12]
    record = {"status": "finished", "name": name, "key": key, "seed": seed, "finished_at": "2024-01-01T00:00:00",
              "code": code or code_fingerprint(),
              "profile": {"name": "smoke", "width": 0.25, "batch_size": 8, "epochs": 1, "patience": 1, "max_train": 1,
                          "max_val": 1, "max_test": 2, "test_set_limit": None},
              "data": {"kind": "synthetic", "path": "/x/smoke.npz", "fingerprint": "f" * 16},
              "settings": settings or resolve(name), "device_name": "cpu",
              "history": {"val_miou_fg": history or [best_val, best_val]},
              "training": {"best_val_miou_fg": best_val, "epochs_run": 2, "seconds": 1.0, "images_seen": images_seen},
              "prepared": {"scored": {"test_split": {"images": 2, "digest": scored[0]}, "leaderboard_images": scored[1]},
                           "budget": {"steps_per_epoch": 3, "batch_size": 8, "reference_images": 24}},
              "model": {"params": 10},
              "test": {"miou_fg": test, "competition_miou": test, "miou_1_4": test}, "leaderboard": None}
    if constant is not None:
        record["constant_baseline"] = {"val": {"score": constant, "class_id": 1, "per_class": [0, constant, 0, 0, 0]},
                                       "test": best_constant_score(Y_TRUE)}
    if y_pred is not None:
        folder = run_dir(name, key)
        folder.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(folder / "test_split_predictions.npz", indices=np.arange(2), y_true=Y_TRUE, y_pred=y_pred)
    return record


def prediction(seed):
    return np.random.default_rng(seed).integers(0, 5, Y_TRUE.shape).astype(np.uint8)


def test_did_not_learn_unchecked_and_identical_predictions(isolated_dirs):
    chosen = {
        "Baseline": [fake_record("Baseline", y_pred=prediction(0))],
        "Network 1": [fake_record("Network 1", best_val=0.25, y_pred=prediction(1))],  # = the constant: no
        "Network 2": [fake_record("Network 2", constant=None, y_pred=prediction(2))],  # old record
        "Network 3": [fake_record("Network 3", y_pred=prediction(0))],  # Baseline's predictions, other settings
        "Network 4": [fake_record("Network 4", settings=resolve("Baseline"), y_pred=prediction(0))],  # same settings
    }
    flags = table.flags(chosen)
    assert flags["Network 1"] == [table.DID_NOT_LEARN]
    assert flags["Network 2"] == [table.UNCHECKED]
    assert flags["Baseline"] == ["identical predictions to Network 3"]
    assert flags["Network 3"] == ["identical predictions to Baseline, Network 4"]
    assert flags["Network 4"] == ["identical predictions to Network 3"]  # not to Baseline: same settings
    assert table.learned(chosen["Baseline"][0]) is True and table.learned(chosen["Network 2"][0]) is None
    two_seeds = {"Network 1": {0: fake_record("Network 1", 0), 1: fake_record("Network 1", 1, best_val=0.1)}}
    assert table.flags(two_seeds)["Network 1"] == [f"{table.DID_NOT_LEARN} (1 of 2 seeds)"]
    assert summary(chosen).loc["Network 1", "flags"] == table.DID_NOT_LEARN


def test_table_shows_flags_and_the_constant_predictor(isolated_dirs):
    records = [fake_record(name, test=0.1 + 0.05 * i, y_pred=prediction(i)) for i, name in enumerate(TABLE1)
               if name != "Network 4"]
    records[1] = fake_record("Network 1", best_val=0.2, test=0.15, y_pred=prediction(1))
    paths = table.write_table(profile="smoke", records=records, out_dir=isolated_dirs / "out")
    text = paths["md"].read_text()
    line = next(row for row in text.splitlines() if row.startswith("| Network 1 |"))
    assert line.endswith(f"| {table.DID_NOT_LEARN} |") and "| 15.00 |" in line
    assert next(row for row in text.splitlines() if row.startswith("| Baseline |")).endswith("| 1 |  |")
    assert next(row for row in text.splitlines() if row.startswith("| Network 4 |")).count(table.MISSING) == 8
    constant = 100 * best_constant_score(Y_TRUE)["score"]
    assert f"Best constant predictor on the test split: {constant:.2f} (soil everywhere)" in text
    assert "Scored on: 1 test split(s) and leaderboard subset(s) for every row" in text
    assert "3 steps of 8 images per epoch" in text
    assert (f"Rows below twice the best constant predictor ({2 * constant:.2f}) on the primary score: "
            "Baseline, Network 1, Network 2, Network 3." in text)
    assert "Spearman ρ" in text and "untuned" in text
    with paths["csv"].open() as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == len(table.ROWS) and rows[1]["Flags"] == table.DID_NOT_LEARN and rows[0]["Flags"] == ""


def test_improved_rows_stand_below_the_final_model_beyond_the_report_and_members_are_not_rows(isolated_dirs):
    improved = fake_record("Improved", test=0.6)
    member = {**fake_record("Improved", 0, test=0.9), "key": "m" * 12, "role": "member"}
    second = fake_record("Improved (d) SE bottleneck", 1000, test=0.9)  # an ensemble member's own seed
    records = [fake_record("Final Model", test=0.5), improved, member, second]
    chosen = table.select_records(records, profile="smoke", fingerprint=None, seeds=None)
    assert chosen["Improved"] == {0: improved} and "Improved (d) SE bottleneck" not in chosen
    text = table.write_table(profile="smoke", records=records, out_dir=isolated_dirs / "out")["md"].read_text()
    lines = [row for row in text.splitlines() if row.startswith("| ")]
    names = [row.split(" | ")[0][2:] for row in lines[1:]]
    assert names.index("Improved (beyond the report)") > names.index("Final Model")
    row = next(r for r in lines if r.startswith("| Improved (beyond the report) |"))
    assert "| 60.00 |" in row and "| — | — |" in row
    assert "beyond the report" in text and "not the report's" in text


def test_constant_score_from_saved_predictions_for_old_records(isolated_dirs):
    record = fake_record("Baseline", constant=None, y_pred=prediction(0))
    assert table.constant_test_score(record) == best_constant_score(Y_TRUE)
    assert table.constant_test_score(fake_record("Network 1", constant=None)) is None


def test_difference_is_real_only_beyond_twice_the_spread_of_paired_differences():
    assert not table.difference_is_real([0.5], [0.1])  # one pair: never
    assert not table.difference_is_real([0.50, 0.52, 0.48], [0.49, 0.45, 0.53])  # diffs .01 .07 -.05
    assert table.difference_is_real([0.60, 0.61, 0.59], [0.40, 0.42, 0.41])
    assert not table.difference_is_real([0.5, 0.7], [0.45, 0.5])  # mean .125 < 2 x std .106
    # Paired: seeds that move both rows alike do not hide a steady gain (unpaired stds are 0.1 a side).
    assert table.difference_is_real([0.5, 0.7, 0.6], [0.45, 0.66, 0.54])


def test_compare_pairs_seeds_and_names_the_spread_it_beat(isolated_dirs):
    one = {"Baseline": [fake_record("Baseline", test=0.4)], "Network 1": [fake_record("Network 1", test=0.5)],
           "Network 2": [fake_record("Network 2", test=0.43)]}
    line = table.compare(one, "Network 1", "Baseline")
    spread = table.SEED_SPREAD["std"]
    assert 3 <= 2 * spread < 10, "the fake rows below straddle twice the measured spread"
    assert "+10.00 points" in line and f": real, +10.00 > 2 x {spread:.2f} (one seed: the seed spread measured" in line
    assert f": not a finding, +3.00 <= 2 x {spread:.2f}" in table.compare(one, "Network 2", "Baseline")
    seeds = {name: [fake_record(name, s, test=t + 0.05 * s) for s in range(3)]
             for name, t in (("Baseline", 0.4), ("Network 1", 0.42))}
    assert ": real, +2.00 > 2 x 0.00 (std of the 3 paired differences)" in table.compare(seeds, "Network 1", "Baseline")
    seeds["Network 1"][0] = fake_record("Network 1", 0, test=0.42, best_val=0.1)
    assert "Network 1 did not learn (1 of 3 seeds)" in table.compare(seeds, "Network 1", "Baseline")


def test_controls_refuse_other_test_images_and_a_rising_row_against_a_plateau(isolated_dirs):
    rising = [0.1, 0.2, 0.3, 0.4]  # the last quarter beats the rest by 10 points
    assert table.still_rising(fake_record("Network 1", history=rising))
    assert not table.still_rising(fake_record("Network 1", history=[0.1, 0.4, 0.405, 0.41]))  # +1 point: plateau
    assert table.still_rising(fake_record("Network 1", history=[0.5])) is None
    chosen = {"Baseline": [fake_record("Baseline", test=0.3, history=[0.2, 0.3, 0.3, 0.3])],
              "Network 1": [fake_record("Network 1", test=0.6, history=rising)],
              "Network 2": [fake_record("Network 2", test=0.6, scored=("e" * 12, None))],
              "Network 3": [fake_record("Network 3", test=0.6, history=[0.2, 0.3, 0.3, 0.3], images_seen=96)]}
    assert table.flags(chosen)["Network 1"] == [table.RISING]
    line = table.compare(chosen, "Network 1", "Baseline")
    assert ": not compared," in line and "Network 1 still rising, the other at its plateau" in line
    line = table.compare(chosen, "Network 2", "Baseline")
    assert ": not compared," in line and "scored on different test images" in line
    line = table.compare(chosen, "Network 3", "Baseline")  # a budget difference is stated, not hidden
    assert ": real," in line and "images seen differ (Network 3: [96], Baseline: [48])" in line
    assert not table.beats(chosen, "Network 1", "Baseline")["beats"]


def test_rank_vs_report_orders_rows_and_gives_spearman(isolated_dirs):
    # Our scores in the report's test order exactly: ρ = 1 against its test column.
    chosen = {name: [fake_record(name, test=reported(name)[0] / 100)] for name in TABLE1}
    ranks = table.rank_vs_report(chosen)
    assert ranks["n"] == len(TABLE1) and ranks["spearman_test"] == pytest.approx(1.0)
    best = min(ranks["rows"], key=lambda r: r["our rank"])
    assert best["Model"] == max(TABLE1, key=lambda n: reported(n)[0]) and best["report test rank"] == 1
    reverse = {name: [fake_record(name, test=1 - reported(name)[0] / 100)] for name in TABLE1}
    assert table.rank_vs_report(reverse)["spearman_test"] == pytest.approx(-1.0)
    few = table.rank_vs_report({n: chosen[n] for n in TABLE1[:2]})
    assert few["n"] == 2 and math.isnan(few["spearman_test"])
    table.rank_plot(ranks)


def test_records_of_older_code_are_flagged_and_today_s_win():
    old = {**fake_record("Baseline", test=0.9, code="0" * 12), "finished_at": "2025-01-01T00:00:00"}
    today = fake_record("Baseline", test=0.4)
    chosen = table.select_records([old, today], profile="smoke", fingerprint=None, seeds=None)
    assert chosen["Baseline"][0] is today, "a record of today's code wins over a newer one of older code"
    assert table.STALE not in table.flags(chosen)["Baseline"]
    alone = table.select_records([old], profile="smoke", fingerprint=None, seeds=None)
    assert table.STALE in table.flags(alone)["Baseline"]


def test_the_header_says_how_many_runs_trained_side_by_side():
    from helpers.study.table import _most_at_once

    def run(start, seconds):
        return {"finished_epoch": start + seconds + 5.0, "eval_seconds": 5.0, "training": {"seconds": seconds}}

    assert _most_at_once([run(0, 10), run(10, 10), run(20, 10)]) == 1  # one after the other (notebook kernels)
    assert _most_at_once([run(0, 10), run(2, 10), run(12, 10), run(13, 3)]) == 2  # two workers
    assert _most_at_once([]) == 1
    # a soft vote's record sums its members' seconds without training at its own moment: not a third process
    vote = dict(run(0, 30), role="predictor")
    assert _most_at_once([run(0, 10), run(2, 10), vote]) == 2


@pytest.mark.parametrize("text, problem", [
    ("null", "holds null"), ("[]", "holds list"), ('{"name": "Baseline"}', 'no "status" field'),
    (None, "without a valid 'data' field"),
])
def test_malformed_records_are_skipped_with_one_warning_on_stderr(isolated_dirs, capfd, text, problem):
    import json
    import os
    import stat

    from conftest import run_module
    from helpers.run.records import runs_dir
    from helpers.runtime.files import write_json_atomic

    good = fake_record("Baseline")
    write_json_atomic(runs_dir() / "good" / "record.json", good)
    umask = os.umask(0)
    os.umask(umask)
    mode = stat.S_IMODE((runs_dir() / "good" / "record.json").stat().st_mode)
    assert mode == 0o666 & ~umask, "the mode open() gives a new file (0644 under umask 022), not the temporary's 0600"
    bad = runs_dir() / "bad" / "record.json"
    bad.parent.mkdir()
    bad.write_text(text if text is not None else json.dumps({k: v for k, v in good.items() if k != "data"}))
    result = run_module("helpers.study.table", "--profile", "smoke", "--out", str(isolated_dirs / "out"))
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr[-2000:]
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and str(bad) in warnings[0] and problem in warnings[0], warnings
    assert "warning:" not in result.stdout
    assert "| Baseline | 50.00 |" in result.stdout, "the good record is still used"
