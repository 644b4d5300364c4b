"""helpers.configs.experiments (Table 1 as parent + delta entries) and helpers.configs.profiles."""
import re
from pathlib import Path

import pytest

from helpers.configs import experiments
from helpers.configs.experiments import ABLATIONS, ENTRIES, FINAL_MIX, IMPROVED, TABLE1, lineage, resolve
from helpers.configs.profiles import PROFILES, get_profile
from helpers.model.losses import TERM_NAMES
from helpers.model.models import build_model
from helpers.model.optim import OPTIMIZER_NAMES

SEED_REPORT = Path(__file__).resolve().parents[2] / "shared" / "seed" / "000_e8166fa02d470a4f.txt"


def test_rows_in_the_reports_order():
    assert TABLE1 == ["Baseline"] + [f"Network {i}" for i in range(1, 11)] + ["Final Model"]
    assert all(experiments.reported(name) for name in TABLE1)
    assert experiments.names()[-len(IMPROVED):] == [entry["name"] for entry in IMPROVED]


def test_inheritance_follows_the_report():
    net3 = resolve("Network 3")
    assert net3["data"]["split"] == "clean"  # from Network 1
    assert net3["model"]["channels"] == experiments.FEATURES  # from Network 2
    assert net3["loss"]["class_weights"] == {"cap": 10.0}
    assert resolve("Network 2")["data"]["split"] == "all"
    assert resolve("Network 4")["model"]["channels"] == [] and resolve("Network 4")["augment"]["flip"]
    net9 = resolve("Network 9")
    assert (net9["model"]["arch"], net9["model"]["kind"], net9["model"]["fusion"]) == ("dual_unet", "global_local", "concat")
    assert net9["optimizer"]["name"] == "adamw_warmup_cosine"  # from Network 5
    assert net9["loss"]["terms"] == FINAL_MIX and net9["loss"]["dynamic"] and net9["loss"]["ignore_class"] == 0
    assert net9["model"]["norm"] == "batch"  # Network 7 (abandoned) passes nothing on
    final = resolve("Final Model")
    assert final["model"]["initializer"] == "he_normal" and final["data"]["blend"]
    assert not final["model"]["se"] and not final["model"]["dilated_bottleneck"]  # Network 10 abandoned
    assert lineage("Network 9") == ["Baseline", "Network 1", "Network 2", "Network 3", "Network 6", "Network 8",
                                    "Network 5", "Network 9"]


def test_every_entry_is_buildable_and_named_by_valid_settings():
    for entry in ENTRIES + IMPROVED + ABLATIONS:
        settings = resolve(entry["name"])
        assert set(settings["loss"]["terms"]) <= set(TERM_NAMES)
        assert settings["optimizer"]["name"] in OPTIMIZER_NAMES
        assert (entry.get("report") or entry.get("step")) and entry["reading"]
        build_model(**settings["model"], width=0.125)


@pytest.mark.skipif(not SEED_REPORT.exists(), reason="the seed report lies in ../shared beside the checkout")
def test_each_entry_quotes_the_report():
    text = " ".join(SEED_REPORT.read_text().split())
    for entry in ENTRIES + ABLATIONS:
        if entry.get("track") == experiments.BEYOND_THE_REPORT:
            assert "report" not in entry and entry["step"], entry["name"]
            continue
        for fragment in entry["report"].split(" [...] "):
            assert " ".join(fragment.split()) in text, entry["name"]


def test_unknown_names_are_refused():
    with pytest.raises(ValueError, match="unknown experiment 'Network 11'"):
        resolve("Network 11")
    with pytest.raises(ValueError, match="unknown profile 'fast'"):
        get_profile("fast")


def test_profiles_share_their_keys():
    keys = {frozenset(p) for p in PROFILES.values()}
    assert len(keys) == 1
    assert get_profile("full")["width"] == 1.0 and get_profile("full")["batch_size"] == 64


def test_every_ablation_names_the_entry_it_varies_and_its_notebook_section():
    from helpers.configs.experiments import SECTIONS, comparison, pairs, section_rows
    from helpers.study.pipeline import notebooks

    stems = {nb.stem for nb in notebooks()}
    assert all(spec["notebook"] in stems for spec in SECTIONS.values())
    for entry in ENTRIES:  # a report row names its sections, each once and each a known one
        assert entry["sections"] and len(set(entry["sections"])) == len(entry["sections"]), entry["name"]
        assert set(entry["sections"]) <= set(SECTIONS), entry["name"]
    assert not any("sections" in entry for entry in IMPROVED + ABLATIONS)
    for ablation in ABLATIONS:
        assert set(ablation) >= {"varies", "section"} and "parents" not in ablation, ablation["name"]
        before = comparison(ablation["section"])[:comparison(ablation["section"]).index(ablation["name"])]
        assert ablation["varies"] in before, ablation["name"]
        assert ablation["name"] not in section_rows(ablation["section"])
        assert (ablation["name"], ablation["varies"]) in pairs(ablation["section"])
    covered = {name for key in SECTIONS for name in comparison(key)}
    assert set(experiments.names(include_ablations=True)) == covered == set(experiments.notebook_runs())
    assert pairs("fusion") == [(f"Network 8 / {m}", "Network 8") for m in ("add", "continue_add", "gated")]
    assert comparison("final_rows") == ["Network 6", "Network 7", "Network 8", "Network 9", "Network 10", "Final Model"]
    assert comparison("improved_track") == ["Baseline", *[e["name"] for e in IMPROVED], "Final Model",
                                            "Final Model + flip TTA", "Final Model + flip TTA + 2-seed vote"]
    assert ("Network 3", "Network 1") in pairs("class_weights") and ("Network 3", "Network 2") in pairs("class_weights")
    with pytest.raises(ValueError, match="no notebook section matches"):
        experiments.notebook_runs(["07"])


def test_the_report_s_numbers_live_on_each_entry():
    assert experiments.reported("Final Model") == (61.76, 64.910)
    assert all(experiments.reported(entry["name"]) is None for entry in IMPROVED + ABLATIONS)
    assert not hasattr(experiments, "REPORTED")  # one place only: the entries


@pytest.mark.skipif(not SEED_REPORT.exists(), reason="the seed report lies in ../shared beside the checkout")
def test_the_report_s_numbers_are_the_report_s_table_1():
    """Every row's (test, Kaggle) mIoU is the one the report's Table 1 prints ("Model<TAB>test<TAB>kaggle")."""
    row = re.compile(r"^(Baseline|Network \d+|Final Model)\t(\d+(?:\.\d+)?)\t(\d+(?:\.\d+)?)$")
    printed = {m[1]: (float(m[2]), float(m[3])) for m in map(row.match, SEED_REPORT.read_text().splitlines()) if m}
    assert list(printed) == TABLE1
    assert {name: experiments.reported(name) for name in TABLE1} == printed


def test_old_records_settings_gain_the_new_keys_at_their_defaults():
    old = {k: v for k, v in resolve("Final Model").items() if k not in ("inference", "self_training")}
    assert experiments.with_defaults(old) == resolve("Final Model")
