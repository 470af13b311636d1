"""The store's exceptions. Handlers catch ``StoreError`` and may show ``str(error)`` to the user."""
from __future__ import annotations


class StoreError(Exception):
    """Anything the store cannot do; the message says what is wrong and what to do."""


class NotFound(StoreError):
    """No such row, or not one of the asking user's (the two are deliberately indistinguishable)."""
