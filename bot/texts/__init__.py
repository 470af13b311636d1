"""What the bot says: every reply's wording, as plain text (no markup to escape), in English and Korean.

``from bot import texts`` then ``texts.HELP`` or ``texts.report(...)``: each name is looked up in the
catalogue of the language being spoken (``english``: the modules beside this one, the source of truth;
``ko/``: the same names in Korean, kept complete by tests/test_catalogues.py). The language is set once
per update by the gate (``speak``) and per job owner by the watcher (``speaking``). A ContextVar holds it:
PTB runs each update in its own asyncio task, and ``asyncio.to_thread`` carries it into worker threads,
so no handler or service passes it along.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from types import ModuleType

from . import english, ko

CATALOGUES: dict[str, ModuleType] = {"en": english, "ko": ko}
DEFAULT = "en"
LANGUAGE_NAMES = {"en": "English", "ko": "한국어"}  # each in itself, for the /settings buttons
_spoken: ContextVar[str] = ContextVar("spoken", default=DEFAULT)


def language_of(telegram_code: str | None) -> str:
    """The catalogue for a Telegram ``language_code`` ("ko", "ko-KR" -> Korean; anything else -> English)."""
    code = (telegram_code or "").lower().replace("_", "-")
    return "ko" if code.split("-")[0] == "ko" else DEFAULT


def choose(stored: str | None, telegram_code: str | None) -> str:
    """A user's language: the one chosen with /settings, else their Telegram app's."""
    return stored if stored in CATALOGUES else language_of(telegram_code)


def speak(language: str) -> None:
    """Speak ``language`` for the rest of this update (its asyncio task)."""
    _spoken.set(language if language in CATALOGUES else DEFAULT)


def spoken() -> str:
    return _spoken.get()


@contextmanager
def speaking(language: str) -> Iterator[None]:
    """Speak ``language`` inside the block only: the watcher speaks to one job owner after another."""
    token = _spoken.set(language if language in CATALOGUES else DEFAULT)
    try:
        yield
    finally:
        _spoken.reset(token)


def __getattr__(name: str):
    return getattr(CATALOGUES[_spoken.get()], name)
