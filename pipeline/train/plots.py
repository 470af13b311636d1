"""Loss and AP curves as PNG files in the job folder, drawn from the event stream."""

from __future__ import annotations

from pathlib import Path

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
