"""How each user wants to be notified (``/settings``): quiet or not, and how often loss curves come.

Stored per user (``storage``: ``users.quiet``, ``users.plot_minutes``); the watcher reads them for every
job it words, the ``/settings`` card shows and changes them. Button data is checked against the fixed
choices here: nothing a button carries is stored unchecked.
"""

from __future__ import annotations

from dataclasses import dataclass

from telegram import InlineKeyboardButton, InlineKeyboardMarkup

from storage import Store, User

from . import texts
from .config import Settings

PLOT_CHOICES = (0, 5, 15, 30)  # minutes between loss curves while a job trains; 0: none


@dataclass(frozen=True)
class Notifications:
    quiet: bool  # photos, plots and new status messages go without a sound; the final result and alerts notify
    plot_interval_s: float | None  # None: no curves while training

    @classmethod
    def of(cls, user: User, settings: Settings) -> Notifications:
        minutes = user.plot_minutes
        interval = settings.plot_interval_s if minutes is None else (minutes * 60.0 or None)
        return cls(quiet=user.quiet is not False, plot_interval_s=interval)


def notifications(store: Store, settings: Settings, user_id: int) -> Notifications:
    return Notifications.of(store.get_user(user_id), settings)


def choose(store: Store, user_id: int, data: str) -> User:
    """A /settings button: ``quiet:1``, ``quiet:0`` or ``plots:MINUTES`` with MINUTES in ``PLOT_CHOICES``.
    Anything else changes nothing."""
    what, _, value = data.partition(":")
    if what == "quiet" and value in ("0", "1"):
        return store.set_notifications(user_id, quiet=value == "1")
    if what == "plots" and value in {str(minutes) for minutes in PLOT_CHOICES}:
        return store.set_notifications(user_id, plot_minutes=int(value))
    return store.get_user(user_id)


def card(user: User, settings: Settings) -> tuple[str, InlineKeyboardMarkup]:
    """The /settings card: its text and buttons (language, quiet, curves)."""
    names = texts.LANGUAGE_NAMES.items()
    languages = [InlineKeyboardButton(name, callback_data=f"lang:{code}") for code, name in names]
    follow = [InlineKeyboardButton(texts.FOLLOW_TELEGRAM, callback_data="lang:")]
    quiet = [
        InlineKeyboardButton(texts.QUIET_ON, callback_data="notify:quiet:1"),
        InlineKeyboardButton(texts.QUIET_OFF, callback_data="notify:quiet:0"),
    ]
    plots = [InlineKeyboardButton(texts.plot_button(m), callback_data=f"notify:plots:{m}") for m in PLOT_CHOICES]
    text = texts.settings(
        texts.LANGUAGE_NAMES[texts.spoken()], user.quiet is not False, user.plot_minutes, settings.plot_interval_s / 60
    )
    return text, InlineKeyboardMarkup([languages, follow, quiet, plots])
