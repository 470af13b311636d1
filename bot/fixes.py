"""One-tap fixes under a dataset's report: a button per fix the report's problems call for.

Only label variants ("Cat", "cat") have one: merging them is an edit the user must choose, and the
button runs the same service as ``/labels merge``. The other problems need no button, because the
pipeline has dealt with them already: annotations without an image and unreadable images are left
out of the records when they are written (see ``pipeline.data.pairing`` and ``pair_check``).

A button carries the dataset's id and an index into the fixes its stored summary offers, never a
class name: the names come from the summary on the server, and the dataset from the store, which
checks it against the presser.
"""

from __future__ import annotations

from dataclasses import dataclass

from telegram import InlineKeyboardButton, InlineKeyboardMarkup

from pipeline.errors import PipelineError
from storage import Dataset

from . import send, texts
from .errors import Refused, user_text

BUTTON = "fix"
MAX_BUTTONS = 5  # a keyboard stays readable; /labels merge does the rest
_SYNTAX = (",", "=")  # characters that a merge expression uses itself


@dataclass(frozen=True)
class Fix:
    names: tuple[str, ...]  # label spellings to merge
    into: str


def offers(summary: dict) -> list[Fix]:
    """The fixes a dataset's report offers, in the order of its problems (the buttons' indices)."""
    fixes = []
    for problem in summary.get("problems", []):
        params = problem.get("params") or {}
        if problem["kind"] != "label_variant" or "names" not in params:
            continue
        names = (*params["names"], params["into"])
        if all(name == name.strip() and not any(char in name for char in _SYNTAX) for name in names):
            fixes.append(Fix(tuple(params["names"]), params["into"]))
    return fixes[:MAX_BUTTONS]


def keyboard(dataset: Dataset, classes: set[str] | None = None) -> InlineKeyboardMarkup | None:
    """The report's buttons; with ``classes`` (the dataset's classes now), only fixes that still apply."""
    rows = [
        [
            InlineKeyboardButton(
                texts.merge_button(list(fix.names), fix.into), callback_data=f"{BUTTON}:{dataset.id}:{i}"
            )
        ]
        for i, fix in enumerate(offers(dataset.summary or {}))
        if classes is None or set(fix.names) <= classes
    ]
    return InlineKeyboardMarkup(rows) if rows else None


async def button(query, context, rest: str) -> None:
    """A fix tapped: the merge runs on that dataset, and the report card says what it did."""
    svc, user_id = context.bot_data["services"], query.from_user.id
    dataset_id, _, index = rest.partition(":")
    dataset = svc.datasets.dataset(user_id, dataset_id)  # another user's id is "not found"
    fixes = offers(dataset.summary or {})
    report = query.message.text or ""
    try:
        if not index.isdigit() or int(index) >= len(fixes):
            raise Refused(texts.FIX_GONE)
        if svc.datasets.store.current_dataset(user_id).id != dataset.id:  # /labels edits the current one
            raise Refused(texts.fix_not_current(dataset.id))
        fix = fixes[int(index)]
        items, _ = await svc.datasets.labels(user_id, ["merge", f"{','.join(fix.names)}={fix.into}"])
    except (Refused, PipelineError) as error:
        await send.edit(query, f"{report}\n\n{user_text(error)}", keyboard(dataset))
        return
    classes = [item["name"] for item in items]
    answer = texts.merged(list(fix.names), fix.into, classes)
    await send.edit(query, f"{report}\n\n{answer}", keyboard(dataset, set(classes)))
