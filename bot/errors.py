"""The bot's one error hierarchy, and what a chat user is told about any error.

The bot's own errors carry the catalogue's sentence (``bot/texts``) already; the
pipeline's are written for the user but may name the host's folders; the store's are
worded here from their kind, never from their message (which names the database file).
Anything else is a fault of the bot's: the user gets an apology, the log the traceback.
"""

from __future__ import annotations

from collections.abc import Iterable

from pipeline.errors import PipelineError
from storage import StoreError

from . import texts
from .redact import redact

# Store kinds that mean the store itself cannot work: the operator must hear of them.
STORE_FAULTS = frozenset({"locked", "broken", "bug", "newer_schema"})


class BotError(Exception):
    """An error the bot has worded already: ``str()`` is the sentence for whoever reads it."""


class Refused(BotError):
    """A chat request the bot does not carry out as asked: bad words, a quota, a dataset in use."""


class ConfigError(BotError):
    """A setting is missing or malformed; the message says which and how to fix it (the operator reads it)."""


def user_text(error: BaseException, secrets: Iterable[str] = ()) -> str | None:
    """What a chat user is told about ``error``; None: a fault of the bot's, to apologise for."""
    if isinstance(error, Refused):
        return str(error)
    if isinstance(error, PipelineError):
        return texts.pipeline_error(error.kind, redact(str(error), secrets), error.details)
    if isinstance(error, StoreError):
        return texts.store_error(error.kind, error.params)
    return None


def cli_error_text(error: dict, secrets: Iterable[str] = ()) -> str:
    """What a chat user is told about a ``python -m pipeline ... --json`` error: ``{"kind", "message", "details"}``."""
    return texts.pipeline_error(error.get("kind", ""), redact(error.get("message", ""), secrets), error.get("details"))
