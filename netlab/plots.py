"""Figures: training curves (the report's Figure 3) and confusion matrices."""

from __future__ import annotations

from pathlib import Path

from .outputs import atomic_write


def pyplot():
    """matplotlib's pyplot on the file-only Agg backend, imported on first use: it is half a
    second of every command's start-up, and most commands draw nothing (a refused one never)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt

def save(fig, path: Path) -> None:
    """Write ``fig`` as a PNG atomically (a crash never leaves half a picture), and free it."""
    atomic_write(path, lambda f: save_to(fig, f))


def save_to(fig, file) -> None:
    """Write ``fig`` as a PNG into an open binary file, and free it."""
    try:
        fig.savefig(file, format="png", dpi=100)
    finally:
        pyplot().close(fig)


COLORS = {"train": "tab:blue", "val": "tab:orange", "test": "tab:green"}


def curves(rows: list[dict], path: Path, title: str = "") -> None:
    """Loss and accuracy of each split against iterations, from metrics rows, as a PNG."""
    save(curves_figure(rows, title), path)


def curves_figure(rows: list[dict], title: str = "", mark: int | None = None):
    """Loss and accuracy curves; ``mark`` draws a line at that step (a checkpoint's)."""
    fig, (ax_loss, ax_acc) = pyplot().subplots(1, 2, figsize=(11, 4))
    for split, color in COLORS.items():
        pts = [r for r in rows if r["split"] == split]
        if not pts:
            continue
        steps = [r["step"] for r in pts]
        ax_loss.plot(steps, [r["loss"] for r in pts], color=color, label=split, marker=".")
        ax_acc.plot(steps, [100 * r["accuracy"] for r in pts], color=color, label=split, marker=".")
    ax_loss.set(xlabel="iteration", ylabel="loss", title="loss", yscale="log")
    ax_acc.set(xlabel="iteration", ylabel="accuracy (%)", title="accuracy")
    accs = [100 * r["accuracy"] for r in rows]
    if accs:  # every point shown, the early ones included
        ax_acc.set_ylim(max(0.0, min(accs) - 1), 100)
    for ax in (ax_loss, ax_acc):
        if mark is not None:
            ax.axvline(mark, color="grey", linestyle=":", label=f"step {mark}")
        ax.grid(alpha=0.3)
        ax.legend()
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def confusion(matrix, classes, path: Path, title: str = "") -> None:
    """A confusion matrix (rows: true class, columns: predicted) with counts in the cells."""
    k = len(classes)
    fig, ax = pyplot().subplots(figsize=(1.0 + 0.6 * k, 0.8 + 0.6 * k))
    ax.imshow([[min(v, 50) for v in row] for row in matrix], cmap="Blues")
    for i in range(k):
        for j in range(k):
            v = int(matrix[i][j])
            if v:
                ax.text(j, i, str(v), ha="center", va="center", fontsize=7,
                        color="white" if i == j else "black")
    ax.set_xticks(range(k), classes, rotation=45 if max(map(len, classes)) > 2 else 0, fontsize=8)
    ax.set_yticks(range(k), classes, fontsize=8)
    ax.set(xlabel="predicted", ylabel="true", title=title or "confusion matrix")
    fig.tight_layout()
    save(fig, path)
