"""Lists with buttons: /jobs, /datasets, /split's ratios, /model's menu, and cards that answer only who opened them."""

from __future__ import annotations

import time

from .files import size_text, usage_line
from .general import pick_model

_ACTIONS = {
    "status": "Status",
    "stop": "Stop",
    "export": "Export",
    "predict": "Predict",
    "delete": "Delete",
    "use": "Make current",
    "cleaned": "Download cleaned",
}
NEWER_PAGE, OLDER_PAGE = "‹ Newer", "Older ›"


def not_your_card(owner: str | None) -> str:
    """The alert for a member who pressed someone else's card in a group."""
    if owner:
        return f"This card is {owner}'s: only {owner} can use its buttons. Send the command yourself for your own."
    return "This card is someone else's: only they can use its buttons. Send the command yourself for your own."


def _when(timestamp: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(timestamp))


def _page_line(page) -> str:
    return f" (page {page.number + 1} of {page.count})" if page.count > 1 else ""


def list_button(number: int, action: str) -> str:
    """A button of entry ``number`` of a list: ``action`` is a key of ``_ACTIONS``."""
    return f"{number}: {_ACTIONS[action]}"


def jobs_list(page) -> str:
    """/jobs (and /status without an id): ``page.items`` are (job, dataset file name, best AP or None)."""
    if not page.items:
        return "No jobs yet: /train\n" + usage_line(page.usage)
    lines = [f"Your jobs, newest first{_page_line(page)}. Tap a button under the list:"]
    for number, (job, dataset, ap) in enumerate(page.items, start=page.first + 1):
        result = f", AP {ap:.3f}" if ap is not None else ""
        lines.append(f"{number}. {dataset} - {job.model} - {job.status}{result} - {_when(job.created)} ({job.id})")
    lines.append(usage_line(page.usage))
    return "\n".join(lines)


def datasets_list(page, current_id: str | None) -> str:
    if not page.items:
        return "No datasets yet: send me a .zip of your Pascal VOC dataset.\n" + usage_line(page.usage)
    lines = [f"Your datasets, newest first{_page_line(page)} (* = current, used by /train):"]
    for number, d in enumerate(page.items, start=page.first + 1):
        facts = (
            f", {d.summary.get('images', 0)} images, {len(d.summary.get('classes') or {})} classes" if d.ready else ""
        )
        mark = "* " if d.id == current_id else ""
        lines.append(
            f"{number}. {mark}{d.name} - {d.status}{facts}, {size_text(d.size_bytes)} - {_when(d.created)} ({d.id})"
        )
    lines.append(usage_line(page.usage))
    return "\n".join(lines)


def no_model_in(job_id: str, status: str) -> str:
    return f"Job {job_id} is {status}: only a finished job has a model to export or try."


def split_now(split: dict) -> str:
    """/split without words: the split the current dataset has, above the ratio buttons."""
    counts = ", ".join(f"{name} {s['images']} images" for name, s in split["splits"].items())
    how = "from its folders" if split["from_folders"] else f"val {split['ratios'].get('val', 0):.0%}"
    test = split["ratios"].get("test") or 0
    how += f", test {test:.0%}" if test else ""
    return (
        f"Dataset {split['dataset']} is split: {counts} ({how}, seed {split['seed']}).\n"
        "Tap a validation share to split it again with the same seed, or type /split 0.25 7 "
        "for another share and seed."
    )


def ratio_button(ratio: str, current: bool) -> str:
    return f"{'* ' if current else ''}val {float(ratio):.0%}"


def model_menu(name: str, reason: str, models: list[dict]) -> str:
    """/model: the recommendation, then when to pick each catalogue model (* marks the recommended one)."""
    lines = [pick_model(name, reason), ""]
    lines += [f"{'* ' if m['name'] == name else ''}{m['name']}: {m['when']}" for m in models]
    return "\n".join(lines)
