"""Reading a stranger's JSON, YAML, CSV and text files without surprises.

Every reader caps the bytes it accepts before parsing, JSON is also capped in depth
(the C decoder recurses per level) and refuses NaN/Infinity, numbers may arrive as
strings ("12.5", as some exporters write them), and text comes in UTF-8 with or
without a BOM or in cp949 (Korean Windows tools), with any line ends.
"""

from __future__ import annotations

import json
import math
import re

import yaml

MAX_DEPTH = 64  # COCO nests 5 levels, LabelMe 4; anything deeper is not an annotation
MAX_COORDINATE = 1e7  # as for VOC: no image is ten million pixels wide
_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")


class UnreadableFile(Exception):
    """The file cannot be used; the message says why, for the report."""


def decode_text(data: bytes) -> str:
    """UTF-8 (a BOM dropped) or cp949, with every line end made ``\\n``."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        try:
            text = data.decode("cp949")
        except UnicodeDecodeError:
            raise UnreadableFile("is neither UTF-8 nor cp949 text") from None
    return text.replace("\r\n", "\n").replace("\r", "\n")


def check_size(data: bytes, limit: int, what: str) -> None:
    if len(data) > limit:
        raise UnreadableFile(f"is {len(data) / 2**20:.1f} MiB, more than the {limit / 2**20:g} MiB a {what} may be")


def load_json(data: bytes, limit: int, what: str):
    """Parsed JSON, or UnreadableFile for anything too large, too deep, not JSON or with NaN/Infinity."""
    check_size(data, limit, what)
    text = decode_text(data)
    depth = _depth(data)
    if depth > MAX_DEPTH:
        raise UnreadableFile(f"nests {depth} levels deep (limit {MAX_DEPTH}); a {what} needs a handful")
    try:
        return json.loads(text, parse_constant=_refuse_constant)
    except json.JSONDecodeError as exc:
        raise UnreadableFile(f"is not valid JSON ({exc.msg}, line {exc.lineno})") from None
    except RecursionError:
        raise UnreadableFile("nests too deep to read") from None


def _refuse_constant(name: str):
    raise UnreadableFile(f"holds {name}, which is not a JSON number")


def _depth(data: bytes) -> int:
    """Bracket depth outside strings, each pass peeling the innermost pairs (at most MAX_DEPTH + 1 passes)."""
    brackets = _STRING.sub(b"", data).translate(None, _NOT_BRACKETS)
    depth = 0
    while brackets and depth <= MAX_DEPTH:
        peeled = brackets.replace(b"[]", b"").replace(b"{}", b"")
        if peeled == brackets:  # unbalanced: the parser names the error
            break
        brackets, depth = peeled, depth + 1
    return depth


def load_yaml(data: bytes, limit: int, what: str):
    """``yaml.safe_load`` of a capped file: no Python objects, no tags, nothing executed."""
    check_size(data, limit, what)
    try:
        return yaml.safe_load(decode_text(data))
    except yaml.YAMLError as exc:
        raise UnreadableFile(f"is not valid YAML ({str(exc).splitlines()[0]})") from None
    except RecursionError:
        raise UnreadableFile("nests too deep to read") from None


def number(value) -> float:
    """A finite coordinate from a JSON/CSV value, a numeric string included; ValueError otherwise."""
    kind = type(value)  # exact types: a bool is an int to isinstance
    if kind is int or kind is float:
        result = float(value)
    elif kind is str:
        result = float(value.strip())
    else:
        raise ValueError(f"{value!r} is not a number")
    if not math.isfinite(result) or abs(result) >= MAX_COORDINATE:
        raise ValueError(f"{value!r} is not a usable coordinate")
    return result


def identifier(value) -> int | str:
    """A COCO id: 7, 7.0 and "7" are one id; other strings stay strings."""
    if isinstance(value, bool):
        return str(value)
    try:
        as_float = number(value)
    except ValueError:
        return str(value)
    return int(as_float) if as_float.is_integer() else as_float


def positive_int(value) -> int | None:
    try:
        result = int(number(value))
    except ValueError:
        return None
    return result if result > 0 else None
