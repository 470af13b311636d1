"""The words of ``/train`` as a checked request, and that request as the trainer's command line.

Every word is data, checked here; settings are only those of ``pipeline.train.chat_overrides``, and no word
reaches the trainer as typed.
"""

from __future__ import annotations

from pipeline.train.catalogue import get_model
from pipeline.train.chat_overrides import (
    EPOCHS,
    OPTIONS,
    ChatOptionError,
    ChatSettings,
    literal,
    parse_chat_settings,
    parse_value,
    steps_option,
)
from pipeline.train.config import TrainRequest
from storage import Job

from . import texts
from .config import Settings
from .errors import Refused

UNITS = {"steps": "steps", "step": "steps", "epochs": "epochs", "epoch": "epochs"}
# Some Telegram clients turn a typed "--" into a dash.
OPTION_DASHES = ("-", "\u2014", "\u2013")


def parse_train_args(args: list[str], model: str, max_steps: int) -> TrainRequest:
    """``/train [E | N steps | steps=N | epochs=E] [name=value ...]``: every word is data, checked here;
    settings are only those of ``pipeline.train.chat_overrides``, and no word reaches the trainer as typed."""
    lengths: dict[str, int | float] = {}
    settings = []
    words = list(args)
    try:
        while words:
            word = words.pop(0)
            key, sep, value = word.partition("=")
            if sep and key in ("steps", "epochs"):
                lengths[key] = _length(key, value, max_steps, word)
            elif _is_number(word):
                unit = UNITS[words.pop(0)] if words and words[0] in UNITS else "epochs"
                lengths[unit] = _length(unit, word, max_steps, f"{word} {unit}")
            elif word.startswith(OPTION_DASHES):
                raise Refused(texts.train_option_refused(word, OPTIONS))
            elif sep:
                settings.append(word)
            else:
                raise Refused(texts.train_word_unknown(word, OPTIONS))
        chosen = parse_chat_settings(settings)
    except ChatOptionError as error:
        raise Refused(texts.train_setting_refused(error, OPTIONS)) from None
    if len(lengths) > 1:
        raise Refused(texts.BOTH_LENGTHS)
    return TrainRequest(
        model=model,
        steps=lengths.get("steps"),
        epochs=lengths.get("epochs"),
        batch_size=chosen.get("batch"),
        early_stop_evals=chosen.get("early_stop") or 0,
        overrides=chosen.words(),
    )


def _length(unit: str, text: str, max_steps: int, word: str) -> int | float:
    return parse_value(steps_option(max_steps) if unit == "steps" else EPOCHS, text, word)


def _is_number(word: str) -> bool:
    """Anything float() reads, "inf" and "nan" too: they are lengths, refused with their range."""
    try:
        float(word)
    except ValueError:
        return False
    return True


def request_json(request: TrainRequest) -> dict:
    """What is stored: the length and the settings as canonical chat words (batch and early stop included)."""
    return {
        "model": request.model,
        "steps": request.steps,
        "epochs": request.epochs,
        "overrides": list(request.overrides),
    }


def checked_request(request: dict, max_steps: int) -> tuple[list[str], ChatSettings]:
    """A stored request checked again, as length options and settings: rows may predate the allowlist."""
    try:
        chosen = parse_chat_settings(request.get("overrides") or [])
        for unit in ("steps", "epochs"):
            if request.get(unit) is not None:
                text = str(request[unit])
                return [f"--{unit}", literal(_length(unit, text, max_steps, f"{text} {unit}"))], chosen
        return [], chosen
    except ChatOptionError as error:
        raise Refused(texts.train_setting_refused(error, OPTIONS)) from None


def train_args(job: Job, settings: Settings, detached: bool = True) -> list[str]:
    """Everything after the workspace, built from checked values only; overrides go after "--", where
    the CLI reads nothing as an option. ``detached`` False: the trainer in the foreground, as a cluster runs it."""
    lengths, chosen = checked_request(job.request, settings.max_steps)
    return [
        "--model",
        get_model(job.model).name,
        "--job-dir",
        str(job.job_dir.absolute()),
        "--url-policy",
        settings.url_policy,
        *([] if settings.pretrained else ["--no-pretrained"]),
        *lengths,
        *chosen.trainer_options(),
        *(["--detach", "--json"] if detached else []),
        "--",
        *chosen.overrides(),
    ]
