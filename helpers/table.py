"""Table 1 from run records alone: `reports/table1.md`, `table1.csv` and the chart `table1.png`.

Rows come in the report's order; for each row the records of the chosen profile, data fingerprint and
seeds are gathered and shown as mean ± std over seeds (a single seed shows its value). A row without a
record shows "missing" — never a number. Beside our held-out test scores and the leaderboard-style
public/private scores (where hidden test labels exist) stand the report's own two numbers, and every
table says which data and profile produced it; results on synthetic data are labelled as such.

    python -m helpers.table [--profile quick] [--data PATH] [--seeds N] [--out reports/]
"""
from __future__ import annotations

import argparse
import csv
import io
import sys
from pathlib import Path

import numpy as np

from helpers.experiments import REPORTED, TABLE1
from helpers.paths import reports_dir
from helpers.records import all_records

MISSING = "missing"
COLUMNS = [  # (column title, path into a record, scale)
    ("Test mIoU (starter kit)", ("test", "competition_miou")),
    ("Test mIoU 1–4", ("test", "miou_1_4")),
    ("LB public mIoU", ("leaderboard", "public", "competition_miou")),
    ("LB private mIoU", ("leaderboard", "private", "competition_miou")),
]


def _value(record: dict, path: tuple) -> float | None:
    node = record
    for key in path:
        if not isinstance(node, dict) or node.get(key) is None:
            return None
        node = node[key]
    return 100.0 * float(node)


def select_records(records: list[dict], *, profile: str, fingerprint: str | None, seeds: int | None) -> dict:
    """{row name: {seed: newest record}} for the wanted profile, data and seeds 0..seeds-1."""
    chosen: dict[str, dict[int, dict]] = {}
    for record in records:
        if record["profile"]["name"] != profile or record["name"] not in TABLE1:
            continue
        if fingerprint and record["data"]["fingerprint"] != fingerprint:
            continue
        if seeds is not None and record["seed"] >= seeds:
            continue
        by_seed = chosen.setdefault(record["name"], {})
        older = by_seed.get(record["seed"])
        if older is None or record["finished_at"] > older["finished_at"]:
            by_seed[record["seed"]] = record
    return chosen


def _cell(values: list[float | None]) -> str:
    values = [v for v in values if v is not None]
    if not values:
        return MISSING
    if len(values) == 1:
        return f"{values[0]:.2f}"
    return f"{np.mean(values):.2f} ± {np.std(values, ddof=1):.2f}"


def build_rows(chosen: dict) -> list[dict]:
    """One dict per Table 1 row: our cells (strings), the raw values, and the report's numbers."""
    rows = []
    for name in TABLE1:
        records = list(chosen.get(name, {}).values())
        row = {"Model": name, "seeds": len(records)}
        for title, path in COLUMNS:
            values = [_value(r, path) for r in records]
            row[title] = _cell(values)
            row["_" + title] = [v for v in values if v is not None]
        row["Report test mIoU"], row["Report Kaggle mIoU"] = (f"{v:g}" for v in REPORTED[name])
        rows.append(row)
    return rows


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
    lines.append("Profile `{name}`: width ×{width}, batch {batch_size}, ≤{epochs} epochs (patience {patience}), "
                 "train/val/test capped at {max_train}/{max_val}/{max_test} images, leaderboard scored on "
                 "{test_set_limit} test images (None = all).".format(**prof))
    devices = sorted({r.get("device_name", "?") for r in records})
    lines.append(f"Device(s): {'; '.join(devices)}. Seeds per row: mean ± sample std when more than one.")
    return lines


def to_markdown(rows: list[dict], header_lines: list[str]) -> str:
    titles = ["Model"] + [t for t, _ in COLUMNS] + ["Report test mIoU", "Report Kaggle mIoU", "seeds"]
    out = io.StringIO()
    out.write("# Table 1 — regenerated\n\n" + "\n".join(f"{line}  " for line in header_lines) + "\n\n")
    out.write("| " + " | ".join(titles) + " |\n|" + "---|" * len(titles) + "\n")
    for row in rows:
        out.write("| " + " | ".join(str(row[t]) for t in titles) + " |\n")
    out.write("\nScores in percent. *Test* = held-out 10 % test split (starter-kit `MeanIoU(5, ignore_class=0)` "
              "and mean IoU over classes 1–4); *LB* = leaderboard-style score of the competition test set's "
              "public/private parts (hidden labels; synthetic data only). Report columns: the seed report's "
              "Table 1.\n")
    return out.getvalue()


def write_csv(rows: list[dict], path: Path) -> None:
    titles = ["Model"] + [t for t, _ in COLUMNS] + ["Report test mIoU", "Report Kaggle mIoU", "seeds"]
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(titles)
        for row in rows:
            writer.writerow([row[t] for t in titles])


def plot(rows: list[dict], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [r["Model"] for r in rows]
    ours = [np.mean(r["_Test mIoU (starter kit)"]) if r["_Test mIoU (starter kit)"] else np.nan for r in rows]
    spread = [np.std(r["_Test mIoU (starter kit)"], ddof=1) if len(r["_Test mIoU (starter kit)"]) > 1 else 0 for r in rows]
    reported = [REPORTED[n][0] for n in names]
    x = np.arange(len(names))
    fig, ax = plt.subplots(figsize=(11, 4))
    ax.bar(x - 0.2, ours, 0.4, yerr=spread, label="this run (test split)", color="tab:blue")
    ax.bar(x + 0.2, reported, 0.4, label="report (test set)", color="tab:gray")
    for i, value in enumerate(ours):
        if np.isnan(value):
            ax.text(i - 0.2, 1, MISSING, rotation=90, ha="center", va="bottom", fontsize=8)
    ax.set_xticks(x, names, rotation=30, ha="right")
    ax.set_ylabel("mean IoU (%)")
    ax.set_title(title, fontsize=10)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_table(*, profile: str = "quick", fingerprint: str | None = None, seeds: int | None = None,
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
    paths["md"].write_text(to_markdown(rows, header))
    write_csv(rows, paths["csv"])
    synthetic = any(r["data"]["kind"] == "synthetic" for by in chosen.values() for r in by.values())
    plot(rows, paths["png"], f"Table 1, profile {profile}" + (" — SYNTHETIC data, not the report's" if synthetic else ""))
    return paths


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m helpers.table", description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="quick")
    parser.add_argument("--data", help="use only runs on this data file (default: every data source found)")
    parser.add_argument("--seeds", type=int, help="use seeds 0..N-1 (default: all)")
    parser.add_argument("--out", help="output folder (default: reports/)")
    args = parser.parse_args(argv)
    fingerprint = None
    try:
        if args.data:
            from helpers.data import load_mars

            fingerprint = load_mars(args.data).source.fingerprint
        paths = write_table(profile=args.profile, fingerprint=fingerprint, seeds=args.seeds, out_dir=args.out)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(paths["md"].read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
