"""``python -m netlab.summarize DIR``: one table and one plot for a multirun directory.

Reads every run under DIR (its ``.hydra/overrides.yaml``, ``results.json`` and
``metrics.csv``) and writes ``summary.csv``, ``summary.md`` (a markdown table: the run's
overrides, val/test accuracy, training time) and ``comparison.png`` (the validation
accuracy curves of all runs overlaid) into DIR.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
import sys
from pathlib import Path

import yaml

from ..errors import DataError
from ..outputs import atomic_write, read_text
from ..plots import pyplot, save
from ..sweeps import FAILURE_FILE

COLUMNS = ("run", "overrides", "val_accuracy", "test_accuracy", "best_val_accuracy", "train_time_s",
           "images_per_s", "epochs", "steps")
HIDDEN = ("hydra.", "data.root", "experiment=", "sweep=", "train.progress")


def runs(root: Path) -> tuple[list[dict], list[str], list[dict]]:
    """``(finished runs, overrides they all share, unfinished jobs)`` under ``root``. A run's
    files are read as data: an unreadable or partial file makes that run unfinished, never a
    crash of the summary."""
    rows, unfinished = [], []
    jobs = {p.parent.parent for p in root.rglob(".hydra/overrides.yaml")} | {p.parent for p in root.rglob("results.json")}
    for run in sorted(jobs, key=lambda p: _job_number(p, root)):
        shown = [o for o in _overrides(run) if not o.startswith(HIDDEN)]
        try:
            info = json.loads(read_text(run / "results.json"))
            if not isinstance(info, dict):
                raise ValueError("not a JSON object")
        except FileNotFoundError:
            unfinished.append({"run": str(run.relative_to(root)), "shown": shown, "why": _failure(run)})
            continue
        except (OSError, ValueError) as exc:
            unfinished.append({"run": str(run.relative_to(root)), "shown": shown,
                               "why": f"unreadable results.json ({type(exc).__name__})"})
            continue
        rows.append({"run": str(run.relative_to(root)), "shown": shown,
                     **{k: _number(info.get(k)) for k in COLUMNS[2:]}, "curve": _curve(run)})
    # Show what tells the runs apart; what they all share is said once, above the table.
    common = set.intersection(*(set(r["shown"]) for r in rows)) if len(rows) > 1 else set()
    for r in rows + unfinished:
        r["overrides"] = " ".join(o for o in r.pop("shown") if o not in common) or "(defaults)"
    return rows, sorted(common), unfinished


def _failure(run: Path) -> str:
    """Why a job has no results: its failure.json's message, else that it is missing (killed,
    still running, or never started)."""
    try:
        message = json.loads(read_text(run / FAILURE_FILE)).get("message")
        return f"failed: {message}" if message else "failed"
    except (OSError, ValueError, AttributeError):
        return "no results.json (missing: killed, still running or never started)"


def _overrides(run: Path) -> list[str]:
    try:
        overrides = yaml.safe_load(read_text(run / ".hydra" / "overrides.yaml"))
    except (OSError, ValueError, yaml.YAMLError):
        return []
    return [str(o) for o in overrides] if isinstance(overrides, list) else []


def _number(value):
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) else None


def _curve(run: Path) -> list[tuple[int, float]]:
    try:
        text = read_text(run / "metrics.csv")
        return [(int(r["step"]), float(r["accuracy"])) for r in csv.DictReader(io.StringIO(text))
                if r.get("split") == "val"]
    except (OSError, KeyError, TypeError, ValueError, csv.Error):
        return []


def _job_number(run: Path, root: Path):
    parts = run.relative_to(root).parts
    head = parts[0].split("_")[0] if parts else ""
    return (int(head) if head.isdigit() else 10 ** 9, str(run))


def _pct(v):
    return "-" if v is None else f"{100 * v:.2f}%"


def markdown(rows: list[dict], common=(), unfinished=()) -> str:
    lines = [f"All runs: `{' '.join(common)}`", ""] if common else []
    lines += ["| run | overrides | val acc | test acc | best val | train time | img/s |",
              "|---|---|---|---|---|---|---|"]
    for r in rows:
        time_s = "-" if r["train_time_s"] is None else f"{r['train_time_s']:.0f} s"
        ips = "-" if r["images_per_s"] is None else f"{r['images_per_s']:,.0f}"
        lines.append(f"| {r['run'].split('_')[0]} | `{r['overrides']}` | {_pct(r['val_accuracy'])} | "
                     f"{_pct(r['test_accuracy'])} | {_pct(r['best_val_accuracy'])} | {time_s} | {ips} |")
    best = max((r for r in rows if r["val_accuracy"] is not None), key=lambda r: r["val_accuracy"], default=None)
    if best is not None:
        lines += ["", f"Best by validation accuracy: run {best['run'].split('_')[0]} `{best['overrides']}`, "
                      f"{_pct(best['val_accuracy'])} val, {_pct(best['test_accuracy'])} test."]
    if unfinished:
        lines += ["", f"Not finished ({len(unfinished)}):", ""]
        lines += [f"- {u['run'].split('_')[0]} `{u['overrides']}`: {u['why']}" for u in unfinished]
    return "\n".join(lines) + "\n"


def plot(rows: list[dict], path: Path, title: str) -> None:
    save(comparison_figure(rows, title), path)


def comparison_figure(rows: list[dict], title: str):
    """The validation accuracy curves of every run, overlaid."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(8, 4.5))
    shown = []
    for r in rows:
        steps, accs = zip(*r["curve"]) if r["curve"] else ((), ())
        ax.plot(steps, [100 * a for a in accs], marker=".", label=r["overrides"])
        shown += [100 * a for a in accs]
    if shown:  # every point of every curve, the early ones included
        ax.set_ylim(max(0, min(shown) - 1), min(100, max(shown) + 1))
    ax.set(xlabel="iteration", ylabel="validation accuracy (%)", title=title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def study_name(root: Path) -> str:
    """What the sweep in ``root`` studied: its experiment preset (``study_lr``), else the keys it
    swept, read from Hydra's ``multirun.yaml``; the folder's name if that cannot be read."""
    try:
        record = yaml.safe_load(read_text(root / "multirun.yaml"))
        hydra = record["hydra"]
        experiment = (hydra.get("runtime") or {}).get("choices", {}).get("experiment")
        if experiment:
            return str(experiment)
        swept = [str(o).split("=", 1)[0] for o in (hydra.get("overrides") or {}).get("task", [])
                 if "," in str(o).split("=", 1)[-1]]
        if swept:
            return "sweep of " + ", ".join(swept)
    except (OSError, ValueError, yaml.YAMLError, KeyError, TypeError, AttributeError):
        pass
    return root.name


def summarize(root: Path, title: str | None = None):
    rows, common, unfinished = runs(root)
    if not rows:
        why = f"; {len(unfinished)} job folders have no readable results.json" if unfinished else ""
        raise DataError(f"no finished runs (results.json) under {root}{why}")
    text = markdown(rows, common, unfinished)

    def write_csv(f):
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=COLUMNS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
        f.write(out.getvalue().encode())

    atomic_write(root / "summary.csv", write_csv)
    atomic_write(root / "summary.md", lambda f: f.write(text.encode()))
    plot(rows, root / "comparison.png", title or f"{study_name(root)}: validation accuracy")
    return rows, common, unfinished


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m netlab.summarize", description=__doc__.splitlines()[0])
    parser.add_argument("directory", type=Path, help="a multirun directory (multirun/DATE/TIME)")
    parser.add_argument("--title", help="title of comparison.png")
    args = parser.parse_args(argv)
    if not args.directory.is_dir():
        parser.exit(2, f"netlab: error: {args.directory} is not a directory\n")
    try:
        rows, common, unfinished = summarize(args.directory, args.title)
    except DataError as exc:
        parser.exit(2, f"netlab: error: {exc}\n")
    except OSError as exc:
        parser.exit(2, f"netlab: error: cannot write the summary into {args.directory}: {exc.strerror}\n")
    print(markdown(rows, common, unfinished), end="")
    print(f"wrote summary.csv, summary.md and comparison.png in {args.directory}", file=sys.stderr)

