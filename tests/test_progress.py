"""helpers.run.progress: places, ETA shared by workers, and a run logged once however often it is reused."""
from helpers.run import progress


def test_eta_is_the_mean_run_time_times_the_runs_left_shared_by_the_workers():
    lines = ["[1/5] A (seed 0): training", "    A (seed 0): trained in 120 s; best val mIoU 20.0 (epoch 3), test mIoU 19.0",
             "[2/5] B (seed 0): training"]
    assert "ETA ≈ 6 min more for 3 runs not started" in progress.eta(lines, 5, None, workers=1)
    assert "ETA ≈ 3 min more for 3 runs not started" in progress.eta(lines, 5, None, workers=2)


def test_a_run_is_logged_once_and_reuses_after_that_are_only_printed(tmp_path, monkeypatch, capsys):
    log = tmp_path / "progress.log"
    log.write_text("")
    monkeypatch.setenv("MARS_PROGRESS_LOG", str(log))
    monkeypatch.setenv("MARS_PROGRESS_TOTAL", "3")
    progress.announce("Baseline", 0, "training")
    progress.announce("Network 1", 0, "training")
    progress.announce("Baseline", 0, "reused (another worker trained it)")
    progress.announce("Network 2", 0, "reused")
    logged = log.read_text().splitlines()
    assert [line.split(" —")[0] for line in logged] == ["[1/3] Baseline (seed 0): training",
                                                        "[2/3] Network 1 (seed 0): training",
                                                        "[3/3] Network 2 (seed 0): reused"]
    assert "[2/3] Baseline (seed 0): reused" in capsys.readouterr().out  # the notebook still shows it


def test_epoch_lines_name_their_run(capsys):
    line = progress.EpochLine(8, "Network 6 (seed 1)")
    line.on_epoch_begin(2)
    line.on_epoch_end(2, {"val_miou_fg": 0.241})
    assert capsys.readouterr().out.startswith("    Network 6 (seed 1) epoch 3/8: val mIoU 24.1 (")
