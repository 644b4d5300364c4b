"""Table 1 from run records alone: `reports/table1.md`, `table1.csv` and the chart `table1.png`.

Rows come in the report's order, then the Improved track ("beyond the report": rows the report has not, with no
report numbers beside them); for each row the records of the chosen profile, data fingerprint and
seeds are gathered and shown as mean ± std over seeds (a single seed shows its value). A row without a
record shows "missing" — never a number. Beside our held-out test scores and the leaderboard-style
public/private scores (where hidden test labels exist) stand the report's own two numbers, and every
table says which data and profile produced it; results on synthetic data are labelled as such.

Noise is not presented as a result (`flags`): a row whose validation mIoU never beat the best constant
predictor is marked "did not learn", and rows with different settings but byte-identical test-split
predictions are marked "identical predictions to <row>". `difference_is_real`/`compare` call a difference
real only where it exceeds the seed spread; `rank_vs_report` sets our order of the rows beside the report's.

    python -m helpers.study.table [--profile default] [--data PATH] [--seeds N] [--out reports/]
"""
from __future__ import annotations

import argparse
import csv
import hashlib
import io
import math
import sys
from pathlib import Path

import numpy as np

from helpers.configs.constants import MONITOR, PRIMARY
from helpers.configs.experiments import BEYOND_THE_REPORT, IMPROVED, MEMBER_SEED_STRIDE, TABLE1, reported
from helpers.run.records import all_records, code_fingerprint, run_dir
from helpers.runtime.paths import reports_dir

ROWS = TABLE1 + [entry["name"] for entry in IMPROVED]
"""The table's rows: the report's, then the Improved track below the Final Model, marked beyond the report."""
MISSING = "missing"
DID_NOT_LEARN = "did not learn"
STALE = "stale: trained by older code"
UNCHECKED = "learning unchecked (record has no constant baseline)"
RISING = "still rising"
RISING_WINDOW, RISING_MARGIN = 0.25, 1.0
"""The "still rising" rule: a run whose best validation `miou_fg` in the last quarter of its epochs (at least one
epoch) beats every earlier epoch's by more than 1 point is still rising, not at its plateau."""
COLUMNS = [  # (column title, path into a record): the primary score first, Kaggle-style after
    ("Test mIoU", ("test", PRIMARY)),
    ("LB public mIoU", ("leaderboard", "public", PRIMARY)),
    ("LB private mIoU", ("leaderboard", "private", PRIMARY)),
    ("Test, Kaggle-style", ("test", "competition_miou")),
    ("LB private, Kaggle-style", ("leaderboard", "private", "competition_miou")),
]
PRIMARY_PATH = ("test", PRIMARY)
SEED_SPREAD = {"std": 3.8, "measured": "2026-12-05", "code": "29e32a60c28e", "where": "docs/results.md",
               "what": "the largest std of the 3-seed paired differences between consecutive steps of the Improved "
                       "track (Baseline to Improved; test split, primary score); pairs with the Final Model reached "
                       "8.6 (its seeds scored 24.5, 25.2 and 38.5)"}
"""The spread of a one-seed difference between two rows, measured by the last multi-seed run (same seeds: the
std of their paired differences): with one seed, a difference below twice this is not called a finding
(`compare`). Replace it when a new multi-seed run is measured."""


def _value(record: dict, path: tuple) -> float | None:
    node = record
    for key in path:
        if not isinstance(node, dict) or node.get(key) is None:
            return None
        node = node[key]
    return 100.0 * float(node)


def select_records(records: list[dict], *, profile: str, fingerprint: str | None, seeds: int | None) -> dict:
    """{row name: {seed: record}} for the wanted profile, data and seeds 0..seeds-1: the newest record made by
    today's code, else the newest made by older code (flagged STALE)."""
    chosen: dict[str, dict[int, dict]] = {}
    current = code_fingerprint()
    for record in records:
        if record["profile"]["name"] != profile or record["name"] not in ROWS:
            continue
        if record.get("role") == "member" or record["seed"] >= MEMBER_SEED_STRIDE:  # one model of an ensemble
            continue
        if fingerprint and record["data"]["fingerprint"] != fingerprint:
            continue
        if seeds is not None and record["seed"] >= seeds:
            continue
        by_seed = chosen.setdefault(record["name"], {})
        older = by_seed.get(record["seed"])
        rank = lambda r: (r.get("code") == current, r["finished_at"])  # noqa: E731 -- today's code first
        if older is None or rank(record) > rank(older):
            by_seed[record["seed"]] = record
    return chosen


def _cell(values: list[float | None]) -> str:
    values = [v for v in values if v is not None]
    if not values:
        return MISSING
    if len(values) == 1:
        return f"{values[0]:.2f}"
    return f"{np.mean(values):.2f} ± {np.std(values, ddof=1):.2f}"


def _runs(value) -> list[dict]:
    """The records of one row, from {seed: record} (`select_records`) or [record per seed] (`Context.run`)."""
    return list(value.values()) if isinstance(value, dict) else list(value)


def learned(record: dict) -> bool | None:
    """Whether the best validation mIoU beat the best constant predictor's; None when the record can't tell."""
    constant = (record.get("constant_baseline") or {}).get("val")
    history = (record.get("history") or {}).get(MONITOR) or []
    best = max(history) if history else (record.get("training") or {}).get("best_val_miou_fg")
    if constant is None or best is None:
        return None
    return float(best) > float(constant["score"])


def still_rising(record: dict) -> bool | None:
    """Whether the run's validation curve was still clearly rising at its end (`RISING`'s rule); None when it
    has fewer than two epochs."""
    history = (record.get("history") or {}).get(MONITOR) or []
    if len(history) < 2:
        return None
    window = max(1, math.ceil(RISING_WINDOW * len(history)))
    return 100 * (max(history[-window:]) - max(history[:-window])) > RISING_MARGIN


def _predictions(record: dict) -> bytes | None:
    path = run_dir(record["name"], record["key"]) / "test_split_predictions.npz"
    if not path.exists():
        return None
    with np.load(path) as saved:
        y_pred = saved["y_pred"]
    return hashlib.sha256(str((y_pred.shape, y_pred.dtype)).encode() + y_pred.tobytes()).digest()


def flags(chosen: dict) -> dict[str, list[str]]:
    """{row: [flag strings]} for {row: {seed: record}} or {row: [records]}; an empty list passes every check.

    RISING ("still rising"): the validation curve had not reached its plateau (`still_rising`); such a row is
    not ranked against rows that plateaued (`compare`).
    "did not learn" (or "did not learn (k of n seeds)"): max validation mIoU <= the best constant predictor's;
    UNCHECKED: an old record without `constant_baseline`; STALE: trained by other code of helpers/ than
    today's (kept on purpose with `--reuse-stale`); "identical predictions to <row>, <row>…": the same
    seed's test-split predictions are byte-identical to those other rows', whose settings differ.
    """
    out, predictions, current = {}, {}, code_fingerprint()
    for name, value in chosen.items():
        runs = _runs(value)
        out[name] = []
        checks = [learned(r) for r in runs]
        failed = checks.count(False)
        if failed:
            out[name].append(DID_NOT_LEARN if failed == len(runs) else f"{DID_NOT_LEARN} ({failed} of {len(runs)} seeds)")
        if None in checks:
            out[name].append(UNCHECKED)
        if any(r.get("code") != current for r in runs):
            out[name].append(STALE)
        rising = [still_rising(r) for r in runs]
        if any(rising):
            count = sum(bool(v) for v in rising)
            out[name].append(RISING if count == len(runs) else f"{RISING} ({count} of {len(runs)} seeds)")
        for r in runs:
            predictions[name, r["seed"]] = (_predictions(r), r["settings"])
    order = {n: TABLE1.index(n) if n in TABLE1 else len(TABLE1) + i for i, n in enumerate(chosen)}
    for name in chosen:
        twins = {other for (row, seed), (pred, settings) in predictions.items() if row == name and pred is not None
                 for (other, other_seed), (other_pred, other_settings) in predictions.items()
                 if other != name and other_seed == seed and other_pred == pred and other_settings != settings}
        if twins:
            out[name].append("identical predictions to " + ", ".join(sorted(twins, key=order.get)))
    return out


def _scored_on(record: dict) -> tuple:
    """What a record was scored on: (test split digest, leaderboard images), None where the record predates it."""
    scored = (record.get("prepared") or {}).get("scored") or {}
    return ((scored.get("test_split") or {}).get("digest"), scored.get("leaderboard_images"))


def _images_seen(record: dict):
    return (record.get("training") or {}).get("images_seen")


def paired(chosen: dict, a: str, b: str, path: tuple = PRIMARY_PATH, factor: float = 2.0) -> dict:
    """Row `a` against row `b` on `path`, by the paired difference over their common seeds (same seed: same data
    order and initialisation). `real` when |mean difference| > `factor` x the std of the per-seed differences
    (two seeds at least); with one seed, only beyond `factor` x the measured `SEED_SPREAD`. `controls` lists what
    makes the comparison unfair (other test images or leaderboard subset, other images seen, a row still rising
    against one that plateaued); `comparable` is False when any but the budget is off, since a budget difference
    is what a "2x steps" comparison measures and is stated, not hidden."""
    runs_a, runs_b = ({r["seed"]: r for r in _runs(chosen.get(n, []))} for n in (a, b))
    seeds = sorted(set(runs_a) & set(runs_b))
    pairs = [(va, vb) for s in seeds if (va := _value(runs_a[s], path)) is not None
             and (vb := _value(runs_b[s], path)) is not None]
    diffs = [va - vb for va, vb in pairs]
    result = {"a": a, "b": b, "path": "/".join(path), "seeds": len(diffs), "factor": factor, "controls": []}
    if not diffs:
        return {**result, "real": False, "comparable": False, "why": MISSING}
    both = [runs_a[s] for s in seeds] + [runs_b[s] for s in seeds]
    if len({_scored_on(r) for r in both}) > 1:
        result["controls"].append("scored on different test images or leaderboard subsets")
    rising = {n: any(still_rising(r) for r in runs.values()) for n, runs in ((a, runs_a), (b, runs_b))}
    if rising[a] != rising[b]:
        result["controls"].append(f"{a if rising[a] else b} still rising, the other at its plateau")
    comparable = not result["controls"]
    seen = {n: sorted({_images_seen(r) for r in runs.values()}, key=str) for n, runs in ((a, runs_a), (b, runs_b))}
    if seen[a] != seen[b]:
        result["controls"].append(f"images seen differ ({a}: {seen[a]}, {b}: {seen[b]})")
    mean = float(np.mean(diffs))
    if len(diffs) >= 2:
        spread, source = float(np.std(diffs, ddof=1)), f"std of the {len(diffs)} paired differences"
    else:
        spread = SEED_SPREAD["std"]
        source = f"one seed: the seed spread measured {SEED_SPREAD['measured']} (code {SEED_SPREAD['code']})"
    real = comparable and abs(mean) > factor * spread
    return {**result, "mean_a": float(np.mean([va for va, _ in pairs])),
            "mean_b": float(np.mean([vb for _, vb in pairs])), "gain": mean, "spread": spread,
            "spread_source": source, "real": bool(real), "comparable": comparable,
            "why": f"{mean:+.2f} {'>' if real else '<='} {factor:g} x {spread:.2f} ({source})"}


def difference_is_real(values_a, values_b, factor: float = 2.0) -> bool:
    """True when the mean of the paired differences a_s − b_s (the same seeds, in order) exceeds `factor` times
    their sample std; never with fewer than two pairs."""
    d = np.asarray(values_a, dtype=float) - np.asarray(values_b, dtype=float)
    if d.size < 2:
        return False
    return bool(abs(d.mean()) > factor * d.std(ddof=1))


def _values(runs: list[dict], path: tuple) -> list[float]:
    return [v for v in (_value(r, path) for r in runs) if v is not None]


def compare(chosen: dict, a: str, b: str, path: tuple = PRIMARY_PATH) -> str:
    """One line for a notebook: a − b (percent points, paired over common seeds), whether it is a finding, and
    every control that fails (`paired`)."""
    result = paired(chosen, a, b, path)
    if result["why"] == MISSING:
        return f"{a} vs {b}: {MISSING}"
    verdict = ("real" if result["real"] else "not a finding" if result["comparable"] else "not compared")
    text = f"{a} − {b}: {result['gain']:+.2f} points ({result['path']}, {result['seeds']} seed(s)): {verdict}, {result['why']}"
    row_flags = flags({a: chosen[a], b: chosen[b]})
    notes = result["controls"] + [f"{name} {flag}" for name in (a, b) for flag in row_flags[name]
                                  if not flag.startswith(RISING)]
    return text + (f" [{'; '.join(notes)}]" if notes else "")


def beats(chosen: dict, a: str, b: str, path: tuple = PRIMARY_PATH, factor: float = 2.0) -> dict:
    """Whether row `a` beats row `b`: it leads by more than `factor` times the std of their paired difference over
    at least two common seeds, under fair controls (`paired`): the Improved track's acceptance rule."""
    result = paired(chosen, a, b, path, factor)
    if result["seeds"] < 2:
        return {**result, "beats": False, "why": result["why"] if result["why"] == MISSING else
                "fewer than two common seeds: no paired spread to beat"}
    return {**result, "beats": bool(result["real"] and result["gain"] > 0)}


def constant_test_score(record: dict) -> dict | None:
    """The best constant predictor on the record's test split: from the record, else from its saved y_true."""
    stored = (record.get("constant_baseline") or {}).get("test")
    if stored is not None:
        return stored
    path = run_dir(record["name"], record["key"]) / "test_split_predictions.npz"
    if not path.exists():
        return None
    from helpers.model.metrics import best_constant_score

    with np.load(path) as saved:
        return best_constant_score(saved["y_true"])


def rank_vs_report(chosen: dict, path: tuple = PRIMARY_PATH) -> dict:
    """Our order of the Table 1 rows (mean of `path` over seeds) beside the report's, with Spearman's ρ.

    {"rows": [{"Model", "ours", "our rank", "report test", "report test rank", "report Kaggle",
    "report Kaggle rank", "flags"}], "spearman_test", "spearman_kaggle", "n"}; rank 1 = best, ties share
    the mean rank, only rows with a result take part, ρ is NaN with fewer than 3 of them.
    """
    import warnings

    from scipy.stats import rankdata, spearmanr

    row_flags = flags(chosen)
    names = [n for n in TABLE1 if _values(_runs(chosen.get(n, [])), path)]
    ours = [float(np.mean(_values(_runs(chosen[n]), path))) for n in names]
    columns = {"ours": ours, "report test": [reported(n)[0] for n in names],
               "report Kaggle": [reported(n)[1] for n in names]}
    ranks = {k: rankdata([-v for v in values]) if names else [] for k, values in columns.items()}
    rows = [{"Model": n, "ours": round(ours[i], 2), "our rank": float(ranks["ours"][i]),
             "report test": columns["report test"][i], "report test rank": float(ranks["report test"][i]),
             "report Kaggle": columns["report Kaggle"][i], "report Kaggle rank": float(ranks["report Kaggle"][i]),
             "flags": "; ".join(row_flags.get(n, []))} for i, n in enumerate(names)]
    result = {"rows": rows, "n": len(names)}
    for key, column in (("spearman_test", "report test"), ("spearman_kaggle", "report Kaggle")):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # constant input: ρ is NaN, said so in the text
            rho = spearmanr(ours, columns[column]).statistic if len(names) >= 3 else float("nan")
        result[key] = float(rho)
    return result


def rank_plot(ranks: dict, title: str = ""):
    """Our rank against the report's test-set rank for each row (diagonal = the same order)."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.2, 4.6))
    n = max(ranks["n"], 1)
    ax.plot([1, n], [1, n], color="tab:gray", lw=1, ls="--", label="same order as the report")
    for row in ranks["rows"]:
        bad = DID_NOT_LEARN in row["flags"]
        ax.scatter(row["report test rank"], row["our rank"], color="tab:red" if bad else "tab:blue",
                   marker="x" if bad else "o")
        ax.annotate(row["Model"], (row["report test rank"], row["our rank"]), fontsize=7, xytext=(3, 3),
                    textcoords="offset points")
    ax.set_xlabel("report's rank (test mIoU, 1 = best)")
    ax.set_ylabel("our rank (test mIoU, 1 = best)")
    ax.set_title(title or f"Spearman ρ = {ranks['spearman_test']:.2f} over {ranks['n']} rows (red ×: did not learn)",
                 fontsize=9)
    ax.invert_xaxis()
    ax.invert_yaxis()
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    return fig


def build_rows(chosen: dict) -> list[dict]:
    """One dict per Table 1 row: our cells (strings), the raw values, the report's numbers and the flags."""
    row_flags = flags(chosen)
    rows = []
    for name in ROWS:
        records = list(chosen.get(name, {}).values())
        beyond = reported(name) is None
        row = {"Model": f"{name} ({BEYOND_THE_REPORT})" if beyond else name, "name": name, "seeds": len(records),
               "Flags": "; ".join(row_flags.get(name, []))}
        for title, path in COLUMNS:
            values = [_value(r, path) for r in records]
            row[title] = _cell(values)
            row["_" + title] = [v for v in values if v is not None]
        row["Report test mIoU"], row["Report Kaggle mIoU"] = ("—", "—") if beyond else (f"{v:g}" for v in reported(name))
        row["Train s"] = ", ".join(f"{r['training']['seconds']:.0f}" for r in records
                                   if r["training"].get("seconds") is not None) or MISSING
        row["Images seen"] = ", ".join(sorted({f"{_images_seen(r):,}" for r in records if _images_seen(r)})) or MISSING
        row["Epochs (best)"] = ", ".join(f"{r['training'].get('epochs_run', '?')} ({r['training'].get('best_epoch', '?')})"
                                          for r in records) or MISSING
        rows.append(row)
    return rows


def _most_at_once(records: list[dict]) -> int:
    """The most runs that trained at the same moment (from each record's finish time and training seconds).

    A predictor (a flip-TTA, soft-vote or never-class-0 entry) trains nothing itself: its seconds are its
    members', spent earlier by other processes, so it is left out."""
    events = []
    for r in records:
        if r.get("role") != "predictor" and r.get("finished_epoch") and r.get("training", {}).get("seconds"):
            end = r["finished_epoch"] - r.get("eval_seconds", 0.0)
            events += [(end - r["training"]["seconds"], 1), (end, -1)]
    running = most = 0
    for _, step in sorted(events):  # at equal times an end (-1) comes before a start (+1)
        running += step
        most = max(most, running)
    return max(1, most)


def _source_lines(chosen: dict, profile: str) -> list[str]:
    records = [r for by_seed in chosen.values() for r in by_seed.values()]
    if not records:
        return [f"Profile `{profile}`: no finished runs found — every row is missing."]
    sources = {(r["data"]["kind"], r["data"]["path"], r["data"]["fingerprint"]) for r in records}
    lines = []
    for kind, path, fingerprint in sorted(sources):
        lines.append(f"Data: **{kind}** — `{Path(path).name}` (fingerprint `{fingerprint}`).")
        if kind == "synthetic":
            lines.append("**These numbers come from the synthetic Mars generator, not the competition data: they "
                         "are not the report's results and are not comparable with its columns.**")
    prof = records[0]["profile"]
    lines.append("Profile `{name}`: width ×{width}, batch {batch_size}, {epochs} epochs of the same optimizer steps "
                 "for every trained row, member and student, early-stopping patience {patience} for constant-rate "
                 "optimizers, train/val/test capped at {max_train}/{max_val}/{max_test} images (None = all)."
                 .format(**prof) + (f" {prof['budget_note']}" if prof.get("budget_note") else ""))
    budgets = sorted({(b["steps_per_epoch"], b["batch_size"], b["reference_images"]) for r in records
                      if (b := (r.get("prepared") or {}).get("budget"))})
    lines.append("Budget: " + ("; ".join(f"{steps} steps of {batch} images per epoch (one pass over the "
                                          f"{ref} images of the clean training part)" for steps, batch, ref in budgets)
                               if budgets else "unknown (records predate the equal-steps rule)")
                 + "; a larger training split (aliens kept, blending, pseudo-labels) gets fewer passes, not more steps.")
    scored = sorted({_scored_on(r) for r in records}, key=str)
    tests = {(((r.get("prepared") or {}).get("scored") or {}).get("test_split") or {}).get("images") for r in records}
    lines.append(f"Scored on: {len(scored)} test split(s) and leaderboard subset(s) for every row "
                 + ("(one shared clean test split of " + ", ".join(str(t) for t in tests) + " images, digest "
                    + ", ".join(str(d) for d, _ in scored) + "; leaderboard: the first "
                    + ", ".join("all" if n is None else str(n) for _, n in scored) + " competition-test images)"
                    if len(scored) == 1 else "— NOT one: comparisons across them are not controlled") + ".")
    lines.append(f"Primary score: `{PRIMARY}`, mIoU over classes 1–4 on labelled pixels with the argmax over classes "
                 "1–4, which the background convention cannot move; ranks, flags and comparisons use it. "
                 "Kaggle-style: the starter-kit metric under the row's own inference (docs/study.md: ×5/4 for a "
                 "model that never predicts background).")
    devices = sorted({r.get("device_name", "?") for r in records})
    policies = sorted({r.get("device", {}).get("mixed_precision", "?") for r in records})
    backends = sorted({r.get("versions", {}).get("backend", "tensorflow") for r in records})  # older: TensorFlow
    side_by_side = _most_at_once(records)
    lines.append(f"Device(s): {'; '.join(devices)}; Keras backend {', '.join(backends)}; "
                 f"precision {', '.join(policies)}"
                 + (f"; trained by {side_by_side} processes side by side" if side_by_side > 1 else "")
                 + ". Seeds per row: mean ± sample std when more than one.")
    return lines


TITLES = (["Model"] + [t for t, _ in COLUMNS] + ["Report test mIoU", "Report Kaggle mIoU", "Images seen", "Train s",
                                                  "Epochs (best)", "seeds", "Flags"])


def note_lines(chosen: dict) -> list[str]:
    """The notes under the table: the best constant predictor's test score, the flags, the rank agreement."""
    from helpers.configs.constants import CLASS_NAMES

    constants = {}
    for record in (r for value in chosen.values() for r in _runs(value)):
        best = constant_test_score(record)
        if best is not None:
            constants.setdefault(100 * best["score"], CLASS_NAMES[best["class_id"]])
    if constants:
        lines = ["Best constant predictor on the test split: " + "; ".join(
            sorted({f"{score:.2f} ({name} everywhere)" for score, name in constants.items()})) + "."]
        floor = 2 * max(constants)
        below = [name for name in [*ROWS, *(n for n in chosen if n not in ROWS)] if name in chosen
                 and (v := _values(_runs(chosen[name]), PRIMARY_PATH)) and np.mean(v) < floor]
        lines.append(f"Rows below twice the best constant predictor ({floor:.2f}) on the primary score: "
                     + (", ".join(below) if below else "none") + ".")
    else:
        lines = ["Best constant predictor on the test split: unknown (no record or saved predictions)."]
    present = "; ".join(flag for row in flags(chosen).values() for flag in row)
    legend = [(DID_NOT_LEARN, f"*{DID_NOT_LEARN}* — the best validation mIoU never beat the best constant "
                              "predictor's, so the row's numbers are noise, not a result"),
              ("identical predictions", "*identical predictions to X* — byte-identical test-split predictions "
                                        "although the settings differ"),
              (RISING, f"*{RISING}* — the best validation score of the run's last quarter beat every earlier epoch "
                       f"by more than {RISING_MARGIN:g} point: not at its plateau, so not ranked against rows that "
                       "are"),
              (UNCHECKED, "*learning unchecked* — an old record without the constant baseline"),
              (STALE, f"*{STALE}* — the record predates today's code of helpers/ (rerun to retrain it; "
                      "`--reuse-stale` keeps such records on purpose)")]
    shown = [text for flag, text in legend if flag in present]
    lines.append("Flags: " + "; ".join(shown) + ". An empty cell passed every check." if shown else
                 "Flags: none — every row's best validation mIoU beat the best constant predictor's, no two rows "
                 "with different settings share their test predictions, and every record is today's code's.")
    ranks = rank_vs_report(chosen)
    lines.append(f"Our order vs the report's (Spearman ρ over the {ranks['n']} rows with a result): "
                 f"{ranks['spearman_test']:.2f} against its test mIoU, {ranks['spearman_kaggle']:.2f} against its "
                 "Kaggle mIoU (NaN: too few rows or all equal) — the order these runs produced, untuned. A difference "
                 "between rows is a finding only beyond twice the std of the paired per-seed differences, or with one "
                 f"seed beyond twice the seed spread measured {SEED_SPREAD['measured']} ({SEED_SPREAD['std']:g} "
                 "points, docs/results.md).")
    return lines


def to_markdown(rows: list[dict], header_lines: list[str], notes: list[str] = ()) -> str:
    titles = TITLES
    out = io.StringIO()
    out.write("# Table 1 — regenerated\n\n" + "\n".join(f"{line}  " for line in header_lines) + "\n\n")
    out.write("| " + " | ".join(titles) + " |\n|" + "---|" * len(titles) + "\n")
    for row in rows:
        out.write("| " + " | ".join(str(row[t]) for t in titles) + " |\n")
    out.write("\nScores in percent. *Test* = the shared held-out clean test split, primary score (foreground argmax); "
              "*Kaggle-style* = starter-kit `MeanIoU(5, ignore_class=0)` under the row's own inference; *LB* = "
              "leaderboard-style score of the competition test set's "
              "public/private parts (hidden labels; synthetic data only). Report columns: the seed report's "
              "Table 1. Rows marked *beyond the report* are the Improved track of notebook 06 (the best teams' "
              "moves, one step per row): not the report's, so no report numbers stand beside them; a row that "
              "soft-votes K seeds shows their summed training seconds.\n")
    out.write("".join(f"\n{line}\n" for line in notes))
    return out.getvalue()


def write_csv(rows: list[dict], path: Path) -> None:
    titles = TITLES
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(titles)
        for row in rows:
            writer.writerow([row[t] for t in titles])


def plot(rows: list[dict], path: Path, title: str, constant: float | None = None) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [r["name"] + (" *" if reported(r["name"]) is None else "") for r in rows]
    ours = [np.mean(r["_Test mIoU"]) if r["_Test mIoU"] else np.nan for r in rows]
    spread = [np.std(r["_Test mIoU"], ddof=1) if len(r["_Test mIoU"]) > 1 else 0 for r in rows]
    report = [reported(r["name"])[0] if reported(r["name"]) else np.nan for r in rows]
    x = np.arange(len(names))
    fig, ax = plt.subplots(figsize=(13, 4.4))
    bars = ax.bar(x - 0.2, ours, 0.4, yerr=spread, label="this run (test split)", color="tab:blue")
    ax.bar(x + 0.2, report, 0.4, label="report (test set)", color="tab:gray")
    for bar, row in zip(bars, rows):
        if DID_NOT_LEARN in row["Flags"]:
            bar.set(hatch="//", facecolor="white", edgecolor="tab:blue")
    if constant is not None:
        ax.axhline(constant, color="tab:red", ls="--", lw=1, label="best constant predictor (test split)")
    for i, value in enumerate(ours):
        if np.isnan(value):
            ax.text(i - 0.2, 1, MISSING, rotation=90, ha="center", va="bottom", fontsize=8)
    ax.set_xticks(x, names, rotation=30, ha="right")
    ax.set_ylabel("mean IoU (%)")
    if any(reported(r["name"]) is None for r in rows):
        ax.set_xlabel(f"* {BEYOND_THE_REPORT}: not in the report's Table 1")
    ax.set_title(title + ("; hatched: did not learn" if any(DID_NOT_LEARN in r["Flags"] for r in rows) else ""),
                 fontsize=10)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_table(*, profile: str = "default", fingerprint: str | None = None, seeds: int | None = None,
                out_dir=None, records: list[dict] | None = None) -> dict[str, Path]:
    """Write table1.md/.csv/.png from the records; return their paths."""
    out_dir = Path(out_dir) if out_dir else reports_dir()
    out_dir.mkdir(parents=True, exist_ok=True)
    chosen = select_records(all_records() if records is None else records, profile=profile,
                            fingerprint=fingerprint, seeds=seeds)
    fingerprints = {r["data"]["fingerprint"] for by_seed in chosen.values() for r in by_seed.values()}
    if len(fingerprints) > 1:
        raise ValueError(f"records from {len(fingerprints)} different data files: pass --data PATH (or "
                         "fingerprint=) to choose one")
    rows = build_rows(chosen)
    header = _source_lines(chosen, profile)
    paths = {"md": out_dir / "table1.md", "csv": out_dir / "table1.csv", "png": out_dir / "table1.png"}
    paths["md"].write_text(to_markdown(rows, header, note_lines(chosen)))
    write_csv(rows, paths["csv"])
    synthetic = any(r["data"]["kind"] == "synthetic" for by in chosen.values() for r in by.values())
    constants = [c["score"] for by in chosen.values() for r in by.values() if (c := constant_test_score(r))]
    plot(rows, paths["png"], f"Table 1, profile {profile}" + (" — SYNTHETIC data, not the report's" if synthetic else ""),
         constant=100 * max(constants) if constants else None)
    return paths


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m helpers.study.table", description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="default")
    parser.add_argument("--data", help="use only runs on this data file (default: every data source found)")
    parser.add_argument("--seeds", type=int, help="use seeds 0..N-1 (default: all)")
    parser.add_argument("--out", help="output folder (default: reports/)")
    args = parser.parse_args(argv)
    fingerprint = None
    try:
        if args.data:
            from helpers.data.loading import load_mars

            fingerprint = load_mars(args.data).source.fingerprint
        paths = write_table(profile=args.profile, fingerprint=fingerprint, seeds=args.seeds, out_dir=args.out)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(paths["md"].read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
