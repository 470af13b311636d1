"""The training settings a chat user may choose: an allowlist, each with a type and a range.

Whatever a chat user types is data. Only the settings below reach the trainer, each
value parsed, range-checked and written back here, so no path, URL, trainer option or
other config key can be reached from a chat (the CLI keeps full power for the operator).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from pipeline.errors import UsageError

# Epochs become steps only once the batch and the data are known; the step ceiling is checked
# then. This bound only keeps the arithmetic sane before that.
MAX_EPOCHS = 10_000
TRUE, FALSE = ("true", "yes", "on", "1"), ("false", "no", "off", "0")


@dataclass(frozen=True)
class ChatOption:
    name: str  # what the user types: lr=0.01
    target: str  # a Model Garden config key, or a `python -m pipeline train` option ("--...")
    kind: type  # int, float or bool
    low: float | None = None  # inclusive bounds; None for bool
    high: float | None = None

    @property
    def is_option(self) -> bool:
        return self.target.startswith("--")


OPTIONS = (
    ChatOption("lr", "trainer.optimizer_config.learning_rate.cosine.initial_learning_rate", float, 1e-6, 10.0),
    ChatOption("batch", "--batch-size", int, 1, 256),
    ChatOption("eval_every", "trainer.validation_interval", int, 10, 1_000_000),
    ChatOption("early_stop", "--early-stop", int, 0, 100),
    ChatOption("checkpoint_every", "trainer.checkpoint_interval", int, 5, 1_000_000),
    ChatOption("report_every", "trainer.steps_per_loop", int, 1, 1000),
    ChatOption("hflip", "task.train_data.parser.aug_rand_hflip", bool),
    # Within these bounds scale_min <= 1 <= scale_max whatever the other one is.
    ChatOption("scale_min", "task.train_data.parser.aug_scale_min", float, 0.1, 1.0),
    ChatOption("scale_max", "task.train_data.parser.aug_scale_max", float, 1.0, 4.0),
)
EPOCHS = ChatOption("epochs", "--epochs", float, 0.01, MAX_EPOCHS)
# A config setting may also be given by its Model Garden key, as the CLI takes it.
_LOOKUP = {option.name: option for option in OPTIONS} | {o.target: o for o in OPTIONS if not o.is_option}


class ChatOptionError(UsageError):
    """A word that is no allowed setting (problem "unknown"), given twice ("twice"), or whose value
    is of the wrong type ("type") or out of range ("range"); the bot words it for the chat."""

    kind = "chat_option"

    def __init__(self, word: str, problem: str, option: ChatOption | None = None):
        wanted = f" ({option.name}: {describe(option)})" if option else ""
        super().__init__(
            f"'{word}' is not an allowed training setting ({problem}){wanted}.",
            details={"word": word, "problem": problem, "name": option.name if option else None},
        )
        self.word, self.problem, self.option = word, problem, option


@dataclass(frozen=True)
class ChatSettings:
    """Checked settings, in the order given."""

    values: tuple[tuple[ChatOption, bool | int | float], ...] = ()

    def words(self) -> tuple[str, ...]:
        """As the user would type them, canonical: what the bot stores and shows."""
        return tuple(f"{option.name}={literal(value)}" for option, value in self.values)

    def trainer_options(self) -> list[str]:
        return [token for option, value in self.values if option.is_option for token in (option.target, literal(value))]

    def overrides(self) -> list[str]:
        return [f"{option.target}={literal(value)}" for option, value in self.values if not option.is_option]

    def get(self, name: str):
        return next((value for option, value in self.values if option.name == name), None)


def parse_chat_settings(words) -> ChatSettings:
    """``name=value`` words (a short name or its Model Garden key) as checked settings."""
    chosen: dict[ChatOption, bool | int | float] = {}
    for word in words:
        name, sep, text = word.partition("=")
        option = _LOOKUP.get(name.strip().lower())
        if not sep or option is None:
            raise ChatOptionError(word, "unknown")
        if option in chosen:
            raise ChatOptionError(word, "twice", option)
        chosen[option] = parse_value(option, text, word)
    return ChatSettings(tuple(chosen.items()))


def steps_option(max_steps: int) -> ChatOption:
    """Steps, up to the operator's ceiling."""
    return ChatOption("steps", "--steps", int, 1, max_steps)


def parse_value(option: ChatOption, text: str, word: str | None = None) -> bool | int | float:
    word = f"{option.name}={text}" if word is None else word
    if option.kind is bool:
        lowered = text.strip().lower()
        if lowered not in TRUE + FALSE:
            raise ChatOptionError(word, "type", option)
        return lowered in TRUE
    try:
        number = float(text)
    except ValueError:
        raise ChatOptionError(word, "type", option) from None
    if not math.isfinite(number):
        raise ChatOptionError(word, "range", option)
    if option.kind is int:
        if number != int(number):
            raise ChatOptionError(word, "type", option)
        number = int(number)
    if not option.low <= number <= option.high:
        raise ChatOptionError(word, "range", option)
    return number


def literal(value: bool | int | float) -> str:
    """A value as YAML reads it back with the same type (YAML 1.1 reads "1e-06" as a string)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    mantissa, exp, exponent = format(value, ".10g").partition("e")
    if "." not in mantissa:
        mantissa += ".0"
    return mantissa + (f"e{int(exponent):+03d}" if exp else "")


def describe(option: ChatOption) -> str:
    """Type and range, e.g. "a whole number from 1 to 256"."""
    if option.kind is bool:
        return "true or false"
    kind = "a whole number" if option.kind is int else "a number"
    return f"{kind} from {option.low:g} to {option.high:g}"
