"""Class edits a user asks for: rename, merge and drop, checked against the classes there are.

An edit maps raw labels (as written in the annotations) to final classes; edits compose,
so ``rename a=b`` then ``merge b,c=d`` sends ``a``, ``b`` and ``c`` to ``d``.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, field

from pipeline.errors import UsageError


@dataclass(frozen=True)
class LabelEdits:
    """Raw label -> final label (None: dropped); labels not in ``mapping`` stay as they are."""

    mapping: dict[str, str | None] = field(default_factory=dict)

    def __post_init__(self):
        object.__setattr__(self, "mapping", dict(self.mapping))  # callers' dicts must not change us

    def apply(self, label: str) -> str | None:
        return self.mapping.get(label, label)


def _retarget(edits: LabelEdits, old: str, new: str | None) -> LabelEdits:
    """Send every raw label that now ends as ``old`` to ``new`` instead."""
    mapping = {raw: (new if final == old else final) for raw, final in edits.mapping.items()}
    if old not in edits.mapping:
        mapping[old] = new  # the raw label ``old`` itself, which had no entry
    return LabelEdits({raw: final for raw, final in sorted(mapping.items()) if raw != final})


def _check_new_name(name: str, command: str) -> None:
    """Refuse names that would be invisible, ambiguous or break the label map file."""
    if not name.strip():
        problem, why = "is empty", "empty"
    elif any(unicodedata.category(char) == "Cc" for char in name):
        problem, why = "contains a line break or control character", "control"
    elif not name.strip("'\"` "):
        problem, why = "is only quotes", "quotes"
    elif name != name.strip():
        problem, why = "starts or ends with a space", "spaces"
    else:
        return
    raise UsageError(
        f"the new class name {name!r} {problem}. Write a plain one-line name without quotes, e.g. `{command}`.",
        kind="bad_class_name",
        details={"name": name, "problem": why},
    )


def _check_known(known: set[str], names: Sequence[str], command: str) -> None:
    unknown = [name for name in names if name not in known]
    if unknown:
        listed = ", ".join(repr(name) for name in sorted(known)) or "none (every label was dropped)"
        missing = ", ".join(repr(name) for name in unknown)
        raise UsageError(
            f"there is no class {missing}. The classes are: {listed}. Spell the names exactly "
            f"as listed (case and spaces count), e.g. `{command}`.",
            kind="unknown_class",
            details={"missing": unknown, "classes": sorted(known)},
        )


def rename(edits: LabelEdits, known: set[str], old: str, new: str) -> LabelEdits:
    """Rename a current class; renaming onto another class's name merges the two."""
    command = "labels --rename OLD=NEW"
    _check_new_name(new, command)
    _check_known(known, [old], command)
    return edits if old == new else _retarget(edits, old, new)


def merge(edits: LabelEdits, known: set[str], sources: Sequence[str], target: str) -> LabelEdits:
    command = "labels --merge A,B=NEW"
    _check_new_name(target, command)
    if not sources:
        raise UsageError(
            f"no class to merge was given. Write the classes before '=', e.g. `{command}`.", kind="merge_nothing"
        )
    _check_known(known, sources, command)
    for source in dict.fromkeys(sources):
        if source != target:
            edits = _retarget(edits, source, target)
    return edits


def drop(edits: LabelEdits, known: set[str], name: str) -> LabelEdits:
    _check_known(known, [name], "labels --drop NAME")
    return _retarget(edits, name, None)


def parse_rename(expr: str) -> tuple[str, str]:
    """``old=new``; spaces around the names are ignored."""
    old, sep, new = expr.partition("=")
    old, new = old.strip(), new.strip()
    if not sep or "=" in new or not old or not new:
        raise UsageError(
            f"cannot read the rename {expr!r}. Write it as OLD=NEW, e.g. `labels --rename wbc=WBC`.",
            kind="unreadable_rename",
            details={"text": expr},
        )
    return old, new


def parse_merge(expr: str) -> tuple[list[str], str]:
    """``a,b=c``; spaces around the names are ignored."""
    left, sep, target = expr.partition("=")
    sources = [name.strip() for name in left.split(",")]
    target = target.strip()
    if not sep or "=" in target or not target or not all(sources):
        raise UsageError(
            f"cannot read the merge {expr!r}. Write it as A,B=NEW, e.g. `labels --merge wbc,Wbc=WBC`.",
            kind="unreadable_merge",
            details={"text": expr},
        )
    return sources, target
