"""Object Detection API label maps (``label_map.pbtxt``): the format, read, written and checked.

The reader is a small tokenizer rather than protobuf's ``text_format`` so that
TensorFlow stays off the dataset path and every error can name the line to fix.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from pipeline.errors import LabelMapError
from pipeline.files import write_text

_EXAMPLE_ITEM = "item { id: 1 name: 'dog' }"


@dataclass(frozen=True)
class LabelItem:
    id: int
    name: str
    display_name: str


@dataclass(frozen=True)
class LabelMap:
    items: tuple[LabelItem, ...]

    def ids(self) -> dict[str, int]:
        return {item.name: item.id for item in self.items}

    def names(self) -> dict[int, str]:
        """Class id -> name, as detections and metrics are labelled."""
        return {item.id: item.name for item in self.items}

    def lookup(self, label: str) -> LabelItem | None:
        """The item named ``label``; a display name only counts when no name matches."""
        return self._by_name.get(label) or self._by_display_name.get(label)

    @cached_property
    def _by_name(self) -> dict[str, LabelItem]:
        return {item.name: item for item in self.items}

    @cached_property
    def _by_display_name(self) -> dict[str, LabelItem]:
        return {item.display_name: item for item in reversed(self.items)}  # the first one in the file wins


def derive(labels: Iterable[str]) -> LabelMap:
    """A label map for the data's own labels: sorted so ids do not depend on file order."""
    names = sorted(set(labels))
    return LabelMap(tuple(LabelItem(index, name, name) for index, name in enumerate(names, start=1)))


_SHORT_ESCAPES = {"\\": "\\\\", "'": "\\'", "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _quote(text: str) -> str:
    """A single-quoted protobuf text string; other control characters go as octal bytes."""
    parts = []
    for char in text:
        if char in _SHORT_ESCAPES:
            parts.append(_SHORT_ESCAPES[char])
        elif unicodedata.category(char) == "Cc":
            parts.extend(f"\\{byte:03o}" for byte in char.encode("utf-8"))
        else:
            parts.append(char)
    return "'" + "".join(parts) + "'"


def to_pbtxt(label_map: LabelMap) -> str:
    return "".join(
        f"item {{\n  id: {item.id}\n  name: {_quote(item.name)}\n  display_name: {_quote(item.display_name)}\n}}\n"
        for item in label_map.items
    )


def write_pbtxt(label_map: LabelMap, path: Path) -> None:
    """Write atomically so training never reads half a label map."""
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text(path, to_pbtxt(label_map))


_PUNCTUATION = frozenset("{}<>[]:,;")
_CLOSING = {"{": "}", "<": ">", "[": "]"}
_WORD = re.compile(r"[A-Za-z0-9_.+\-]+")
_STRING = {quote: re.compile(quote + r"((?:[^\\\n" + quote + r"]|\\.)*)" + quote) for quote in "'\""}
_ESCAPE = re.compile(rb"\\(?:([0-7]{1,3})|x([0-9A-Fa-f]{1,2})|u([0-9A-Fa-f]{4})|U([0-9A-Fa-f]{8})|(.))", re.DOTALL)
_SIMPLE_ESCAPES = {
    b"n": b"\n",
    b"t": b"\t",
    b"r": b"\r",
    b"a": b"\a",
    b"b": b"\b",
    b"f": b"\f",
    b"v": b"\v",
    b"\\": b"\\",
    b"'": b"'",
    b'"': b'"',
    b"?": b"?",
}
_FORMAT_HINT = f"Each class is written as `{_EXAMPLE_ITEM}`."


@dataclass(frozen=True)
class _Token:
    kind: str  # "word", "string", or the punctuation character itself
    text: str  # a string's decoded value; otherwise the source text
    line: int


def _error(source: str, line: int, problem: str, fix: str) -> LabelMapError:
    return LabelMapError(f"{source}, line {line}: {problem}. {fix}", details={"file": source, "line": line})


def _unescape(body: str, source: str, line: int) -> str:
    """Decode on bytes: protobuf's octal and hex escapes are bytes of UTF-8 text."""

    def replace(match: re.Match[bytes]) -> bytes:
        octal, hexa, code, long_code, other = match.groups()
        try:
            if octal or hexa:
                return bytes([int(octal, 8) if octal else int(hexa, 16)])
            if code or long_code:
                return chr(int(code or long_code, 16)).encode("utf-8")
            return _SIMPLE_ESCAPES[other]
        except (KeyError, ValueError, UnicodeEncodeError):
            escape = match.group().decode("utf-8", "replace")
            raise _error(
                source,
                line,
                f"the escape {escape!r} in a string is not valid",
                "Write the character itself; a backslash is \\\\ and a quote \\'.",
            ) from None

    try:
        return _ESCAPE.sub(replace, body.encode("utf-8")).decode("utf-8")
    except UnicodeDecodeError:
        raise _error(
            source,
            line,
            "the escaped bytes in a string are not UTF-8 text",
            "Write the characters themselves instead of byte escapes.",
        ) from None


def _tokenize(text: str, source: str) -> list[_Token]:
    tokens: list[_Token] = []
    position, line = 0, 1
    while position < len(text):
        char = text[position]
        if char.isspace():
            line += char == "\n"
            position += 1
        elif char == "#":
            end = text.find("\n", position)
            position = len(text) if end < 0 else end
        elif char in _PUNCTUATION:
            tokens.append(_Token(char, char, line))
            position += 1
        elif char in _STRING:
            match = _STRING[char].match(text, position)
            if match is None:
                raise _error(
                    source,
                    line,
                    f"a string opened with {char} is not closed on the same line",
                    f"Close it with {char}; a quote inside the name is written \\{char}.",
                )
            tokens.append(_Token("string", _unescape(match.group(1), source, line), line))
            position = match.end()
        else:
            match = _WORD.match(text, position)
            if match is None:
                raise _error(source, line, f"unexpected character {char!r}", f"Put names in quotes. {_FORMAT_HINT}")
            tokens.append(_Token("word", match.group(), line))
            position = match.end()
    return tokens


class _Parser:
    """Recursive descent over the few shapes a label map uses; unknown fields are skipped."""

    def __init__(self, tokens: list[_Token], source: str, last_line: int):
        self.tokens, self.source, self.last_line = tokens, source, last_line
        self.position = 0

    def accept(self, *kinds: str) -> _Token | None:
        if self.position < len(self.tokens) and self.tokens[self.position].kind in kinds:
            self.position += 1
            return self.tokens[self.position - 1]
        return None

    def expect(self, expected: str, *kinds: str) -> _Token:
        if self.position >= len(self.tokens):
            raise _error(
                self.source,
                self.last_line,
                f"the file ends where {expected} was expected",
                f"Check that every {{ has its }}. {_FORMAT_HINT}",
            )
        token = self.tokens[self.position]
        self.position += 1
        if kinds and token.kind not in kinds:
            raise _error(self.source, token.line, f"expected {expected}, found {token.text!r}", _FORMAT_HINT)
        return token

    def items(self) -> list[tuple[int, dict[str, _Token]]]:
        """Every top-level ``item`` as (line, {field: value}); other top-level fields are skipped."""
        found = []
        while self.position < len(self.tokens):
            name = self.field_name()
            if name.text == "item":
                found.append((name.line, self.item()))
            else:
                self.skip_value()
            self.accept(",", ";")
        return found

    def field_name(self) -> _Token:
        token = self.expect("a field name such as item, id or name", "word")
        if not token.text[0].isalpha():
            raise _error(
                self.source,
                token.line,
                f"expected a field name such as item, id or name, found {token.text!r}",
                _FORMAT_HINT,
            )
        return token

    def item(self) -> dict[str, _Token]:
        self.accept(":")
        closing = _CLOSING[self.expect("{ after item", "{", "<").kind]
        fields: dict[str, _Token] = {}
        while not self.accept(closing):
            name = self.field_name()
            if name.text not in ("id", "name", "display_name"):
                self.skip_value()
            elif name.text in fields:
                raise _error(
                    self.source,
                    name.line,
                    f"this item has a second {name.text} (the first is on line {fields[name.text].line})",
                    f"Keep one {name.text} per item.",
                )
            else:
                self.expect(f"':' after {name.text}", ":")
                fields[name.text] = self.value(f"a value for {name.text}")
            self.accept(",", ";")
        return fields

    def value(self, expected: str) -> _Token:
        token = self.expect(expected, "word", "string")
        if token.kind == "string":
            text = token.text
            while (more := self.accept("string")) is not None:
                text += more.text  # adjacent strings join, as in protobuf
            token = _Token("string", text, token.line)
        return token

    def skip_value(self) -> None:
        """Skip an unknown field (``frequency: FREQUENT``, ``keypoints { ... }``) without recursion."""
        self.accept(":")
        opening = self.accept("{", "<", "[")
        if opening is None:
            self.value("a value")
            return
        stack = [opening]
        while stack:
            expected = f"{_CLOSING[stack[-1].kind]} to close the {stack[-1].kind} on line {stack[-1].line}"
            token = self.expect(expected)
            if token.kind in _CLOSING:
                stack.append(token)
            elif token.kind in _CLOSING.values():
                self.position -= 1
                self.expect(expected, _CLOSING[stack.pop().kind])


def _to_item(line: int, fields: dict[str, _Token], source: str) -> LabelItem:
    id_token = fields.get("id")
    if id_token is None:
        raise _error(
            source, line, "this item has no id", "Give it a number from 1 up that no other item uses, e.g. `id: 3`."
        )
    if id_token.kind != "word" or not re.fullmatch(r"[+-]?(\d+|0[xX][0-9A-Fa-f]+)", id_token.text):
        raise _error(
            source,
            id_token.line,
            f"the id {id_token.text!r} is not a whole number",
            "Write it without quotes, e.g. `id: 3`.",
        )
    item_id = int(id_token.text, 0) if "x" in id_token.text.lower() else int(id_token.text)
    if item_id < 1:
        raise _error(
            source,
            id_token.line,
            f"the id {item_id} is below 1 (0 is reserved for the background)",
            "Number the classes from 1 up.",
        )
    names = {key: fields[key] for key in ("name", "display_name") if key in fields}
    for key, token in names.items():
        if token.kind != "string" or not token.text:
            problem = f"is not in quotes: {token.text}" if token.kind != "string" else "is empty"
            raise _error(source, token.line, f"the {key} {problem}", f"Write it as `{key}: 'dog'`.")
    if not names:
        raise _error(
            source,
            line,
            f"the item with id {item_id} has no name",
            "Add the label used in your XML files, e.g. `name: 'dog'`.",
        )
    # Maps made for display often carry only display_name; it then names the class as well.
    name = names.get("name", names.get("display_name"))
    return LabelItem(item_id, name.text, names.get("display_name", name).text)


def parse_pbtxt(text: str, source: str) -> LabelMap:
    """Read an Object Detection API label map; ``source`` names the file in error messages."""
    last_line = text.rstrip().count("\n") + 1  # where an editor shows the file ending
    raw_items = _Parser(_tokenize(text, source), source, last_line).items()
    if not raw_items:
        raise _error(
            source,
            last_line,
            "the file ends without any item, so the label map is empty",
            f"Add one item per class, e.g. `{_EXAMPLE_ITEM}`.",
        )
    items: list[LabelItem] = []
    id_lines: dict[int, int] = {}
    name_lines: dict[str, int] = {}
    for line, fields in raw_items:
        item = _to_item(line, fields, source)
        if item.id in id_lines:
            raise _error(
                source,
                fields["id"].line,
                f"the id {item.id} is used twice (also by the item on line {id_lines[item.id]})",
                "Give each class its own id.",
            )
        if item.name in name_lines:
            raise _error(
                source,
                line,
                f"the name {item.name!r} is used twice (also by the item on line {name_lines[item.name]})",
                "Keep one item per class and delete the other.",
            )
        id_lines[item.id], name_lines[item.name] = line, line
        items.append(item)
    return LabelMap(tuple(items))


def read_pbtxt(path: Path) -> LabelMap:
    try:
        text = path.read_text(encoding="utf-8-sig")  # editors on Windows add a BOM
    except FileNotFoundError:
        raise LabelMapError(
            f"The label map {path} does not exist. Check the path given to --label-map.", details={"file": path.name}
        ) from None
    except UnicodeDecodeError:
        raise LabelMapError(
            f"The label map {path.name} is not UTF-8 text. Save it as UTF-8 and send it again.",
            details={"file": path.name},
        ) from None
    return parse_pbtxt(text, path.name)


_FILES_SHOWN = 5


def check_coverage(label_map: LabelMap, usage: Mapping[str, Sequence[str]], source: str) -> None:
    """Raise one error naming every data label the label map lacks, with the files using it."""
    missing = {label: list(files) for label, files in sorted(usage.items()) if label_map.lookup(label) is None}
    if not missing:
        return
    lines = []
    for label, files in missing.items():
        unique = list(dict.fromkeys(files))
        shown = ", ".join(unique[:_FILES_SHOWN])
        more = f" and {len(unique) - _FILES_SHOWN} more" if len(unique) > _FILES_SHOWN else ""
        lines.append(f"  {label!r}" + (f" in {shown}{more}" if unique else ""))
    count = f"{len(missing)} labels used in the data are" if len(missing) > 1 else "1 label in the data is"
    raise LabelMapError(
        f"{count} missing from the label map {source}:\n"
        + "\n".join(lines)
        + f"\nAdd an item for each to {source}, or pass --ignore-unknown-labels to leave "
        "those boxes out.",
        details={"missing": missing},
    )
