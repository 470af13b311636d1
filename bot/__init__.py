"""The Telegram adapter (python-telegram-bot): thin handlers over ``pipeline`` and ``storage``.

Nothing imports this package; it imports them.
"""
