"""Loss and AP curves as PNG files in the job folder, drawn from the event stream, and the end of a job's
result charts (both curves in one image, AP per class) as PNG bytes.

The result charts use matplotlib's object API (a ``Figure`` of its own, no pyplot state), so the bot can draw
them in a worker thread while other threads draw too.
"""

from __future__ import annotations

import io
from pathlib import Path

from pipeline.drawing import font_path
from pipeline.files import replacing

PLOT_INTERVAL_S = 30.0


def write_plots(events: list[dict], job) -> None:
    import matplotlib

    matplotlib.use("Agg")  # no display on a training host
    progress = [e for e in events if e["event"] == "progress"]
    evals = [e for e in events if e["event"] == "eval"]
    incidents = [e for e in events if e["event"] in ("nan", "recovered")]
    if progress:
        _loss_plot(progress, incidents, job.loss_plot)
    if evals:
        _ap_plot(evals, job.ap_plot)


def _loss_plot(progress: list[dict], incidents: list[dict], out: Path) -> None:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.6), dpi=110)
    steps = [e["step"] for e in progress]
    for key, label in (("total_loss", "total"), ("cls_loss", "classification"), ("box_loss", "box x50")):
        scale = 50 if key == "box_loss" else 1
        values = [e.get(key) * scale if isinstance(e.get(key), (int, float)) else None for e in progress]
        ax.plot(steps, values, label=label, linewidth=1.4)
    for incident in incidents:
        ax.axvline(
            incident["step"], color="red" if incident["event"] == "nan" else "orange", linestyle="--", linewidth=1
        )
    ax.set(xlabel="step", ylabel="loss", title="Training loss (red: NaN, orange: recovered)")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper right", fontsize=8)
    _save(fig, out)


def _ap_plot(evals: list[dict], out: Path) -> None:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.6), dpi=110)
    steps = [e["step"] for e in evals]
    ax.plot(steps, [e["AP"] for e in evals], marker="o", label="AP (0.5:0.95)")
    ax.plot(steps, [e["AP50"] for e in evals], marker="o", label="AP50")
    ax.set(xlabel="step", ylabel="average precision", ylim=(0, 1), title="Validation AP")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    _save(fig, out)


def _save(fig, out: Path) -> None:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    with replacing(out) as tmp:
        fig.savefig(tmp)
    plt.close(fig)


def curves_png(events: list[dict]) -> bytes:
    """Training loss and validation AP over the steps, side by side, from a job's events."""
    from matplotlib.figure import Figure

    progress = [e for e in events if e["event"] == "progress"]
    evals = [e for e in events if e["event"] == "eval"]
    fig = Figure(figsize=(9, 3.6), dpi=110)
    loss, ap = fig.subplots(1, 2)
    loss.plot([e["step"] for e in progress], [e.get("total_loss") for e in progress], linewidth=1.4)
    loss.set(xlabel="step", ylabel="loss", title="Training loss")
    ap.plot([e["step"] for e in evals], [e["AP"] for e in evals], marker="o", label="AP (0.5:0.95)")
    ap.plot([e["step"] for e in evals], [e["AP50"] for e in evals], marker="o", label="AP50")
    ap.set(xlabel="step", ylabel="average precision", ylim=(0, 1), title="Validation AP")
    ap.legend(loc="lower right", fontsize=8)
    for axes in (loss, ap):
        axes.grid(alpha=0.3)
    return _png(fig)


def per_class_ap_png(per_class_ap: dict[str, float], most: int = 40) -> bytes:
    """A horizontal bar per class (the weakest ``most`` when there are more), class names in a font with Hangul."""
    from matplotlib.figure import Figure
    from matplotlib.font_manager import FontProperties

    shown = sorted(per_class_ap.items(), key=lambda item: item[1])[:most]
    names, values = [name for name, _ in shown], [max(0.0, value or 0.0) for _, value in shown]
    fig = Figure(figsize=(6, 1.2 + 0.28 * len(shown)), dpi=110)
    axes = fig.subplots()
    axes.barh(range(len(shown)), values, color="#3b7dd8")
    axes.set_yticks(range(len(shown)), names, fontproperties=FontProperties(fname=font_path(), size=9))
    for row, value in enumerate(values):
        axes.text(min(value + 0.01, 0.9), row, f"{value:.2f}", va="center", fontsize=8)
    hidden = f" (the weakest {most} of {len(per_class_ap)})" if len(per_class_ap) > most else ""
    axes.set(xlim=(0, 1), xlabel="AP (IoU 0.5:0.95)", title="AP per class" + hidden)
    axes.grid(axis="x", alpha=0.3)
    return _png(fig)


def _png(fig) -> bytes:
    fig.tight_layout()
    out = io.BytesIO()
    fig.savefig(out, format="png")
    return out.getvalue()
