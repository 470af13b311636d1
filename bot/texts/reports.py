"""Reports of a dataset, its split and classes, the /train card, a job's status and its end."""

from __future__ import annotations

from collections import Counter

from .formats import format_name
from .pipeline_words import class_warning, device, problem_action, problem_detail, problem_name

CLASSES_IN_CHAT = 25  # more per-class lines than this go to the attached file, not the chat
CLASSES_ON_CARD = 12
WARNINGS_IN_CHAT = 5  # a warning per class adds up
DETAIL_IN_CHAT = 160  # characters of one problem's detail (a duplicate lists every copy)


def report_file(dataset_id: str) -> str:
    return f"report-{dataset_id}.txt"


def split_file(dataset_id: str) -> str:
    return f"split-{dataset_id}.txt"


def ap_file(job_id: str) -> str:
    return f"ap-{job_id}.txt"


def in_file(filename: str) -> str:
    return f"Every class and every detail: {filename} (attached)."


def _with_file(chat: str, whole: str, filename: str) -> tuple[str, str | None]:
    """(the chat message, the whole text for a file when the message leaves something out)."""
    return (chat, None) if chat == whole else (f"{chat}\n{in_file(filename)}", whole)


def report(dataset_id: str, summary: dict) -> tuple[str, str | None]:
    """A checked dataset: (the chat message, the whole report for ``report_file`` or None)."""
    whole, chat = (_report(dataset_id, summary, compact) for compact in (False, True))
    return _with_file(chat, whole, report_file(dataset_id))


def _report(dataset_id: str, summary: dict, compact: bool) -> str:
    classes = summary["classes"]
    lines = [
        f"Dataset {dataset_id} ({format_name(summary.get('format'))}): {summary['images']} images, "
        f"{summary['labelled_images']} labelled, "
        f"{summary['boxes']} boxes, {len(classes)} classes."
    ]
    if not compact or len(classes) <= CLASSES_IN_CHAT:
        lines += [f"  {name}: {c['boxes']} boxes in {c['images']} images" for name, c in classes.items()]
    lines.append(_split(summary["splits"], summary.get("class_warnings", []), compact))
    lines.append(problems(summary["problems"], compact=compact))
    lines.append("Next: /split to change the split, /labels to edit classes, /model to pick a detector.")
    return "\n".join(lines)


def problems(items: list[dict], per_kind: int = 3, compact: bool = True) -> str:
    if not items:
        return "No problems found."
    counts = Counter(p["kind"] for p in items)
    lines = ["Problems (what I did about them):"]
    for kind, count in counts.most_common():
        examples = [p for p in items if p["kind"] == kind][: per_kind if compact else None]
        lines.append(f"- {problem_name(kind)} x{count}: {problem_action(examples[0])}")
        lines += [f"    {_clip(problem_detail(p)) if compact else problem_detail(p)}" for p in examples]
        if count > len(examples):
            lines.append(f"    ... and {count - len(examples)} more")
    return "\n".join(lines)


def _clip(detail: str) -> str:
    """A detail cut to ``DETAIL_IN_CHAT`` at a list item, saying how many items were left out."""
    if len(detail) <= DETAIL_IN_CHAT:
        return detail
    cut = detail.rfind(", ", 0, DETAIL_IN_CHAT)
    cut = cut if cut > 0 else DETAIL_IN_CHAT
    return f"{detail[:cut]} ... and {detail[cut:].count(', ') or 1} more"


# --- one-tap fixes under a report (bot/fixes.py) ---

FIX_GONE = "This button no longer applies; /labels shows the classes as they are."


def merge_button(names: list[str], into: str) -> str:
    return f"Merge {', '.join(names)} → {into}"


def merged(names: list[str], into: str, classes: list[str]) -> str:
    return f"Merged {', '.join(names)} into {into}. The classes now: {_names(classes)}."


def fix_not_current(dataset_id: str) -> str:
    return f"Dataset {dataset_id} is not your current dataset: choose it in /datasets, then tap again."


def split(dataset_id: str, splits: dict, warnings: list[dict]) -> tuple[str, str | None]:
    """/split: (the chat message, the per-class table for ``split_file`` or None); ``warnings``: the
    split's ``class_warnings``."""
    whole, chat = (_split(splits, warnings, compact) for compact in (False, True))
    return _with_file(chat, whole, split_file(dataset_id))


def _split(splits: dict, warnings: list[dict], compact: bool) -> str:
    lines = ["Split: " + ", ".join(f"{name} {s['images']} images" for name, s in splits.items())]
    classes = sorted({c for s in splits.values() for c in s["classes"]})
    if not compact or len(classes) <= CLASSES_IN_CHAT:
        for name in classes:
            counts = ", ".join(f"{split} {s['classes'].get(name, 0)}" for split, s in splits.items())
            lines.append(f"  {name}: {counts}")
    shown = warnings[:WARNINGS_IN_CHAT] if compact else warnings
    lines += [f"Warning: {class_warning(w)}" for w in shown]
    if len(warnings) > len(shown):
        lines.append(f"... and {len(warnings) - len(shown)} more warnings")
    return "\n".join(lines)


def label_map(items: list[dict], problems_list: list[dict]) -> str:
    lines = ["Classes (id: name):"] + [f"  {i['id']}: {i['name']}" for i in items]
    if problems_list:
        lines.append(problems(problems_list))
    lines.append("Edit: /labels rename a=b | merge a,b=c | drop x; /labels file sends label_map.pbtxt.")
    return "\n".join(lines)


def _names(names: list[str]) -> str:
    """A class list short enough for a card; /labels lists them all."""
    if len(names) <= CLASSES_ON_CARD:
        return ", ".join(names)
    shown = ", ".join(names[:CLASSES_ON_CARD])
    return f"{shown} ... and {len(names) - CLASSES_ON_CARD} more, {len(names)} in all (/labels lists them)"


def model_button(model: dict) -> str:
    star = "* " if model["recommended"] else ""
    return f"{star}{model['name']}: AP {model['coco_ap']}, {model['params_m']}M params, {model['input_size']}px"


def train_card(card: dict) -> str:
    eta = card["estimate_s"]
    estimate = f"about {eta / 60:.0f} min" if eta else "shown once training runs"
    return (
        f"Ready to train {card['model']} on dataset {card['dataset']}:\n"
        f"classes: {_names(card['classes'])}\n"
        f"images: {card['train_images']} train / {card['val_images']} val\n"
        f"batch size {card['batch_size']}, {card['steps']} steps ({card['epochs']:.1f} epochs)\n"
        f"device: {device(card['device'])}\nstarts from: {START_POINTS[card['start']]}\nestimated time: {estimate}"
        + (f"\noverrides: {' '.join(card['overrides'])}" if card["overrides"] else "")
    )


START_POINTS = {
    "detector": "a COCO-trained detector (all but its class layer)",
    "backbone": "an ImageNet-trained backbone",
    "checkpoint": "your checkpoint",
    "scratch": "scratch (random weights)",
}


CLUSTER_QUEUED = "waiting in the cluster's queue for a free GPU"


def status(
    job_id: str,
    model: str,
    state: str,
    progress: dict | None,
    evaluation: dict | None,
    queue_position: int | None = None,
) -> str:
    lines = [
        f"Job {job_id} ({model}): {state}" + (f", position {queue_position} in the queue" if queue_position else "")
    ]
    if progress:
        total = progress.get("total_steps") or 0
        percent = f" ({100 * progress['step'] / total:.0f}%)" if total else ""
        lines.append(f"step {progress['step']}/{total}{percent}")
        lines.append(
            f"loss {progress['total_loss']:.4f} (cls {progress.get('cls_loss') or 0:.4f}, "
            f"box {progress.get('box_loss') or 0:.5f}), lr {progress.get('learning_rate') or 0:.5f}"
        )
        eta = progress.get("eta_s")
        lines.append(
            f"{progress.get('images_per_sec')} images/s"
            + (f", about {eta // 60:.0f} min {eta % 60:.0f} s left" if isinstance(eta, (int, float)) else "")
        )
    if evaluation:
        lines.append(
            f"last evaluation (step {evaluation['step']}): AP {evaluation['AP']:.3f}, AP50 {evaluation['AP50']:.3f}"
        )
    return "\n".join(lines)


def finished(job_id: str, event: dict) -> tuple[str, str | None]:
    """A finished job: (the chat message, every class's AP for ``ap_file`` or None)."""
    whole, chat = (_finished(job_id, event, compact) for compact in (False, True))
    return _with_file(chat, whole, ap_file(job_id))


def _finished(job_id: str, event: dict, compact: bool) -> str:
    per_class = event.get("per_class_AP") or {}
    lines = [
        f"Job {job_id} finished: best AP {event.get('AP') or 0:.3f}, AP50 {event.get('AP50') or 0:.3f} "
        f"(step {event.get('best_step')})."
    ]
    if compact and len(per_class) > CLASSES_IN_CHAT:
        weakest = sorted(per_class.items(), key=lambda item: item[1])[:3]
        lines.append("Weakest classes: " + ", ".join(f"{name} AP {value:.3f}" for name, value in weakest))
    else:
        lines += [f"  {name}: AP {value:.3f}" for name, value in per_class.items()]
    lines.append("Exporting and checking the model; the archive follows.")
    return "\n".join(lines)
