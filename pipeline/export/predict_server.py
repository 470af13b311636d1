"""A warm predictor: one model archive loaded once, then one answer per request until the caller hangs up.

Starting TensorFlow and loading a SavedModel takes seconds; running it on a photo takes a fraction of
one. A caller that predicts again and again (the bot, through ``bot/predictor.py``) keeps this loop
running in a process of its own and talks to it over any channel of dicts: ``receive`` returns the
next request and raises EOFError once the caller is gone, ``reply`` sends an answer.

First answer, unasked: ``{"ready": {"pid", "seconds"}}`` once the model is loaded and has run once
(so the first photo is as fast as the next), or ``{"error": PipelineError JSON}`` and the loop ends.
Then, for each ``{"image": PATH, "out": PATH, "threshold": T, "floor": F}``:
``{"detections": [every detection scoring F or more, best first], "drawn": PATH}`` with the boxes
scoring T or more drawn at ``out``; ``{"error": ...}`` for an image it cannot read; ``{"crash":
TRACEBACK}`` for anything else, after which the model goes on serving.
"""

from __future__ import annotations

import logging
import os
import time
import traceback
from collections.abc import Callable
from pathlib import Path

from PIL import Image

from pipeline.errors import PipelineError
from pipeline.export.predict import Model, detect, draw, extract, load_model, open_upright

log = logging.getLogger(__name__)
WARM_UP_SIDE = 64  # a blank image this size runs through the model once before the first request


def serve(archive: Path, receive: Callable[[], dict], reply: Callable[[dict], None]) -> None:
    started = time.monotonic()
    try:
        model = load_model(extract(archive))
        detect(model, Image.new("RGB", (WARM_UP_SIDE, WARM_UP_SIDE)))
    except PipelineError as error:
        reply({"error": error.to_json()})
        return
    reply({"ready": {"pid": os.getpid(), "seconds": round(time.monotonic() - started, 3)}})
    while True:
        try:
            request = receive()
        except EOFError:  # the caller closed its end, or died
            return
        reply(answer(model, request))


def answer(model: Model, request: dict) -> dict:
    try:
        image = open_upright(Path(request["image"]))
        found = detect(model, image, float(request["floor"]))
        shown = [detection for detection in found if detection.score >= float(request["threshold"])]
        drawn = draw(image, shown, Path(request["out"]))
        return {"detections": [detection.to_json() for detection in found], "drawn": str(drawn)}
    except PipelineError as error:
        return {"error": error.to_json()}
    except Exception:  # one photo's failure must not cost the next photo a cold start
        log.exception("a prediction failed")
        return {"crash": traceback.format_exc()}
