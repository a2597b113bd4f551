"""``python -m netlab.summarize DIR``: one table and one plot for a multirun directory.

Reads every run under DIR (its ``.hydra/overrides.yaml``, ``results.json`` and
``metrics.csv``) and writes ``summary.csv``, ``summary.md`` (a markdown table: the run's
overrides, val/test accuracy, training time) and ``comparison.png`` (the validation
accuracy curves of all runs overlaid) into DIR.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

import yaml

COLUMNS = ("run", "overrides", "val_accuracy", "test_accuracy", "best_val_accuracy", "train_time_s",
           "images_per_s", "epochs", "steps")
HIDDEN = ("hydra.", "data.root", "experiment=", "sweep=", "train.progress")


def runs(root: Path) -> list[dict]:
    rows = []
    for results in sorted(root.rglob("results.json"), key=lambda p: _job_number(p.parent, root)):
        run = results.parent
        info = json.loads(results.read_text())
        overrides_file = run / ".hydra" / "overrides.yaml"
        overrides = yaml.safe_load(overrides_file.read_text()) if overrides_file.exists() else []
        shown = [o for o in overrides if not o.startswith(HIDDEN)]
        with open(run / "metrics.csv") as f:
            curve = [(int(r["step"]), float(r["accuracy"])) for r in csv.DictReader(f) if r["split"] == "val"]
        rows.append({"run": str(run.relative_to(root)), "shown": shown,
                     **{k: info.get(k) for k in COLUMNS[2:]}, "curve": curve})
    # Show what tells the runs apart; what they all share is said once, above the table.
    common = set.intersection(*(set(r["shown"]) for r in rows)) if len(rows) > 1 else set()
    for r in rows:
        r["overrides"] = " ".join(o for o in r.pop("shown") if o not in common) or "(defaults)"
    return rows, sorted(common)


def _job_number(run: Path, root: Path):
    head = run.relative_to(root).parts[0].split("_")[0]
    return (int(head) if head.isdigit() else 10 ** 9, str(run))


def markdown(rows: list[dict], common=()) -> str:
    lines = [f"All runs: `{' '.join(common)}`", ""] if common else []
    lines += ["| run | overrides | val acc | test acc | best val | train time | img/s |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['run'].split('_')[0]} | `{r['overrides']}` | {100 * r['val_accuracy']:.2f}% | "
                     f"{100 * r['test_accuracy']:.2f}% | {100 * r['best_val_accuracy']:.2f}% | "
                     f"{r['train_time_s']:.0f} s | {r['images_per_s']:,.0f} |")
    return "\n".join(lines) + "\n"


def plot(rows: list[dict], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.5))
    lows = []
    for r in rows:
        steps, accs = zip(*r["curve"]) if r["curve"] else ((), ())
        ax.plot(steps, [100 * a for a in accs], marker=".", label=r["overrides"])
        lows += [100 * a for a in accs[len(accs) // 2:]]
    if lows:
        ax.set_ylim(max(0, min(lows) - 1), 100)
    ax.set(xlabel="iteration", ylabel="validation accuracy (%)", title=title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def summarize(root: Path, title: str | None = None):
    rows, common = runs(root) if any(root.rglob("results.json")) else ([], [])
    if not rows:
        raise SystemExit(f"netlab: error: no finished runs (results.json) under {root}")
    with open(root / "summary.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    (root / "summary.md").write_text(markdown(rows, common))
    plot(rows, root / "comparison.png", title or root.name)
    return rows, common


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m netlab.summarize", description=__doc__.splitlines()[0])
    parser.add_argument("directory", type=Path, help="a multirun directory (multirun/DATE/TIME)")
    parser.add_argument("--title", help="title of comparison.png")
    args = parser.parse_args(argv)
    if not args.directory.is_dir():
        parser.exit(2, f"netlab: error: {args.directory} is not a directory\n")
    rows, common = summarize(args.directory, args.title)
    print(markdown(rows, common), end="")
    print(f"wrote summary.csv, summary.md and comparison.png in {args.directory}", file=sys.stderr)


if __name__ == "__main__":
    main()
