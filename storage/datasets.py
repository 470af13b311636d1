"""Users and their datasets."""

from __future__ import annotations

from pathlib import Path

import sqlite_utils

from .connection import Connection, normalise_id, shown
from .errors import NotFound, StoreError
from .rows import Dataset, User, columns, to_json

_UNCHANGED = object()


class UsersAndDatasets(Connection):
    # --- users -------------------------------------------------------------------------------

    def ensure_user(self, user_id: int, name: str, app_language: str | None = None) -> User:
        """The user, created on first sight; a changed Telegram display name or app language is taken over."""
        with self._write() as db:
            if self._one("SELECT 1 AS hit FROM users WHERE user_id = ?", [user_id]) is None:
                row = {"user_id": user_id, "name": name, "app_language": app_language, "created": self._now()}
                db["users"].insert(row)
            else:
                db.execute(
                    "UPDATE users SET name = ?, app_language = COALESCE(?, app_language) WHERE user_id = ? "
                    "AND (name IS NOT ? OR app_language IS NOT COALESCE(?, app_language))",
                    [name, app_language, user_id, name, app_language],
                )
            return self.get_user(user_id)

    def get_user(self, user_id: int) -> User:
        with self._read():
            row = self._one(f"SELECT {columns(User)} FROM users WHERE user_id = ?", [user_id])
        if row is None:
            raise NotFound(
                f"no user {user_id} yet: call ensure_user() on their first message", thing="user", id=str(user_id)
            )
        return User.from_row(row)

    def current_dataset(self, user_id: int) -> Dataset:
        """The dataset the user's commands work on: the one chosen last (an upload chooses itself)."""
        with self._read():
            chosen = self.get_user(user_id).current_dataset_id
            if chosen is None:
                raise StoreError(f"user {user_id} has no current dataset yet", kind="no_dataset")
            return self.dataset(user_id, chosen)

    def set_current_dataset(self, user_id: int, dataset_id: str | None) -> User:
        """Select one of the user's datasets for the next training (None clears the choice)."""
        with self._write():
            if dataset_id is not None:
                dataset_id = self.dataset(user_id, dataset_id).id
            return self._update_user(user_id, {"current_dataset_id": dataset_id})

    def set_model(self, user_id: int, name: str | None) -> User:
        # The catalogue lives in the pipeline, which the store must not import: the bot validates names.
        with self._write():
            return self._update_user(user_id, {"chosen_model": name})

    def set_language(self, user_id: int, language: str | None) -> User:
        """The language the bot speaks to the user; None follows their Telegram app's. The bot validates codes."""
        with self._write():
            return self._update_user(user_id, {"language": language})

    def set_notifications(self, user_id: int, *, quiet=_UNCHANGED, plot_minutes=_UNCHANGED) -> User:
        """How the bot notifies the user (see ``User``); None restores a default. The bot validates values."""
        changes = {
            key: value for key, value in (("quiet", quiet), ("plot_minutes", plot_minutes)) if value is not _UNCHANGED
        }
        with self._write():
            return self._update_user(user_id, changes)

    def user_language(self, user_id: int) -> tuple[str | None, str | None]:
        """(the language chosen, the app's language_code as last seen); Nones for an unknown user."""
        with self._read():
            row = self._one("SELECT language, app_language FROM users WHERE user_id = ?", [user_id])
        return (row["language"], row["app_language"]) if row else (None, None)

    def set_quota(self, user_id: int, *, max_jobs=_UNCHANGED, max_bytes=_UNCHANGED) -> User:
        """Per-user overrides of the bot's quotas; None restores the default."""
        changes = {
            key: value for key, value in (("max_jobs", max_jobs), ("max_bytes", max_bytes)) if value is not _UNCHANGED
        }
        with self._write():
            return self._update_user(user_id, changes)

    def _update_user(self, user_id: int, changes: dict) -> User:
        try:
            self.db["users"].update(user_id, changes)
        except sqlite_utils.db.NotFoundError:
            raise NotFound(
                f"no user {user_id} yet: call ensure_user() on their first message", thing="user", id=str(user_id)
            ) from None
        return self.get_user(user_id)

    # --- datasets ----------------------------------------------------------------------------

    def add_dataset(self, user_id: int, name: str, workspace: Path | str, size_bytes: int) -> Dataset:
        """Record an upload being checked; ``finish_dataset`` or ``fail_dataset`` settles it."""
        with self._write() as db:
            self._require_user(user_id)
            now = self._now()
            dataset_id = self._fresh_id("datasets")
            db["datasets"].insert(
                {
                    "id": dataset_id,
                    "user_id": user_id,
                    "name": name,
                    "workspace": str(workspace),
                    "status": "checking",
                    "size_bytes": int(size_bytes),
                    "created": now,
                    "updated": now,
                }
            )
            return self.dataset(user_id, dataset_id)

    def finish_dataset(self, dataset_id: str, summary: dict, size_bytes: int | None = None) -> Dataset:
        """Ready for training. ``size_bytes``: the workspace's size after preparing, for the quota."""
        changes = {"status": "ready", "error": None, "summary": to_json(summary)}
        if size_bytes is not None:
            changes["size_bytes"] = int(size_bytes)
        return self._settle_dataset(dataset_id, changes)

    def fail_dataset(self, dataset_id: str, error: str) -> Dataset:
        return self._settle_dataset(dataset_id, {"status": "failed", "error": error})

    def _settle_dataset(self, dataset_id: str, changes: dict) -> Dataset:
        with self._write() as db:
            try:
                db["datasets"].update(normalise_id(dataset_id), changes | {"updated": self._now()})
            except sqlite_utils.db.NotFoundError:
                raise NotFound(
                    f"no dataset {shown(dataset_id)!r}: it was never added", thing="dataset", id=shown(dataset_id)
                ) from None
            row = self._one(f"SELECT {columns(Dataset)} FROM datasets WHERE id = ?", [normalise_id(dataset_id)])
            return Dataset.from_row(row)

    def dataset(self, user_id: int, dataset_id: str) -> Dataset:
        with self._read():
            row = self._one(
                f"SELECT {columns(Dataset)} FROM datasets WHERE id = ? AND user_id = ?",
                [normalise_id(dataset_id), user_id],
            )
        if row is None:
            # Same words whether it is someone else's or nobody's: existence must not leak.
            raise NotFound(
                f"no dataset {shown(dataset_id)!r} of yours: check the id against your list of datasets",
                thing="dataset",
                id=shown(dataset_id),
            )
        return Dataset.from_row(row)

    def datasets(self, user_id: int) -> list[Dataset]:
        """The user's datasets, newest first."""
        with self._read():
            rows = self._all(
                f"SELECT {columns(Dataset)} FROM datasets WHERE user_id = ? ORDER BY created DESC, rowid DESC",
                [user_id],
            )
        return [Dataset.from_row(row) for row in rows]

    def user_bytes(self, user_id: int) -> int:
        """Disk held by the user's datasets, failed ones included (their files may still be there)."""
        with self._read():
            row = self._one("SELECT COALESCE(SUM(size_bytes), 0) AS total FROM datasets WHERE user_id = ?", [user_id])
        return int(row["total"])
