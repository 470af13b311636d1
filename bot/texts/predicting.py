"""/predict with a warm model: its replies and the score-threshold buttons."""

from __future__ import annotations

_SHOWN_AT_MOST = 10  # detections named in a redrawn photo's caption; the rest are counted

PHOTO_FORGOTTEN = "I no longer have the detections of this photo: send the photo again."
NOT_YOUR_PHOTO = "Only the person who sent this photo can change its threshold."
PREDICT_CRASHED = (
    "The model stopped while it worked on your photo. Send the photo again: a fresh copy of the model answers it."
)


def predict_timed_out(seconds: float) -> str:
    return (
        f"The model took more than {seconds:.0f} s over your photo, so I stopped it. Send the photo again: a fresh "
        "copy of the model answers it."
    )


def lower_threshold(value: float) -> str:
    """A button: redraw with the boxes down to this score too."""
    return f"More boxes (score {value:.2f}+)"


def higher_threshold(value: float) -> str:
    return f"Fewer boxes (score {value:.2f}+)"


def threshold_caption(found: list[dict], threshold: float) -> str:
    """A photo redrawn at another score threshold: how many boxes, and the best of them."""
    named = ", ".join(f"{d['label']} {d['score']:.2f}" for d in found[:_SHOWN_AT_MOST])
    more = f", and {len(found) - _SHOWN_AT_MOST} more" if len(found) > _SHOWN_AT_MOST else ""
    boxes = "1 box" if len(found) == 1 else f"{len(found)} boxes"
    return f"{boxes} scoring {threshold:.2f} or more" + (f": {named}{more}" if found else ".")
