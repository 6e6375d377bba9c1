"""A node's or an edge's stored training curves: as rows, as CSV, and as a plot.

Every node and edge header keeps its per-epoch history (``training.history``), so the
curves of any registry can be looked at without retraining.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

from modgraph.errors import ConfigError
from modgraph.storage.outputs import check_output, output_file


def parse_target(name: str) -> tuple[str, ...]:
    """``mnist`` (a node), ``fsdd->mnist`` or ``fsdd--mnist`` (an edge)."""
    for sep in ("->", "--"):
        if sep in name:
            source, _, target = name.partition(sep)
            return source.strip(), target.strip()
    return (name.strip(),)


def training_history(registry, name: str) -> tuple[str, list[dict]]:
    """The title and the per-epoch rows of a node (``mnist``) or an edge (``fsdd->mnist``)."""
    parts = parse_target(name)
    if len(parts) == 1:
        record = registry.node_record(parts[0])
        title = f"{parts[0]} VAE"
    else:
        record = registry.edge_record(*parts)
        title = f"{parts[0]} -> {parts[1]} associator"
    rows = record.training.get("history") or []
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        raise ConfigError(f"{name}: its stored training history is not a list of epochs")
    if not rows:
        raise ConfigError(f"{name}: no training history is stored (trained before histories were recorded?)")
    return title, rows


def history_csv(rows: list[dict]) -> str:
    """The rows as CSV, one column per quantity recorded in any epoch."""
    columns = list(dict.fromkeys(key for row in rows for key in row))
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


def plot_history(title: str, rows: list[dict], path: Path) -> Path:
    """Training and validation loss by epoch (and validation accuracy on a second axis) as a PNG."""
    check_output(path)  # before matplotlib is imported: a refused name costs nothing
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [row.get("epoch", i + 1) for i, row in enumerate(rows)]
    fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=120)
    for key, style in (("train_loss", "-"), ("val_loss", "--")):
        points = [(e, r[key]) for e, r in zip(epochs, rows) if isinstance(r.get(key), (int, float))]
        if points:
            ax.plot(*zip(*points), style, marker="o", label=key.replace("_", " "))
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss per sample")
    points = [(e, r["val_accuracy"]) for e, r in zip(epochs, rows) if isinstance(r.get("val_accuracy"), (int, float))]
    if points:
        acc = ax.twinx()
        acc.plot(*zip(*points), ":", color="tab:green", marker="s", label="validation accuracy")
        acc.set_ylabel("validation accuracy")
        acc.legend(loc="center right")
    ax.legend(loc="upper right")
    ax.set_title(title)
    fig.tight_layout()
    try:
        with output_file(path) as tmp:
            fig.savefig(tmp, format="png")
    finally:
        plt.close(fig)
    return Path(path)
