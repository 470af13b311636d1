"""What the bot says: every reply's wording in one place, as plain text (no markup to escape)."""
from __future__ import annotations

from collections import Counter

HELP = """detbot trains an object detector on your own photos.

1. Send a .zip of a Pascal VOC dataset (images + LabelImg XML files). I check it and reply with a report and a preview.
2. /split [val_ratio] [seed] - train/val split (default 0.1, 0).
3. /labels - the classes; /labels rename a=b, /labels merge a,b=c, /labels drop x, /labels file.
4. /model - pick a detector (the recommended one is marked).
5. /train [epochs | N steps] [key=value ...] - a confirmation card, then training starts.
While it trains: live progress here, loss curves, an alert at once if the loss turns NaN.
/status, /stop, /resume, /jobs, /export - follow and control your jobs.
/predict - then send a photo: I draw what the model finds.
/dataset URL - a dataset too large to send through Telegram."""

COMMANDS = [("start", "what this bot does"), ("help", "the whole flow"), ("split", "train/val split"),
            ("labels", "classes and label map"), ("model", "choose a detector"), ("train", "start training"),
            ("status", "progress of your job"), ("stop", "stop a job"), ("resume", "resume an interrupted job"),
            ("jobs", "your jobs"), ("export", "send the model again"), ("predict", "try the model on a photo"),
            ("dataset", "fetch a dataset from a URL")]

STRANGER = "Sorry, this detbot is private. Ask its owner to add your Telegram id to ALLOWED_USER_IDS."
APOLOGY = "Sorry, something went wrong on my side; it is logged. Nothing you sent was lost - please try again."


def too_big(size_mb: float, limit_mb: int, local_mode: bool) -> str:
    if local_mode:
        return f"That file is {size_mb:.0f} MB; this bot accepts up to {limit_mb} MB. Send a smaller zip."
    return (f"That file is {size_mb:.0f} MB, but bots on Telegram's cloud Bot API may only download "
            f"{limit_mb} MB. Either send it by URL with /dataset https://..., or run detbot with a "
            "self-hosted Bot API server (telegram-bot-api --local), which raises the limit to 2000 MB "
            "(see the README).")


def report(dataset_id: str, summary: dict) -> str:
    lines = [f"Dataset {dataset_id}: {summary['images']} images, {summary['labelled_images']} labelled, "
             f"{summary['boxes']} boxes, {len(summary['classes'])} classes."]
    lines += [f"  {name}: {c['boxes']} boxes in {c['images']} images" for name, c in summary["classes"].items()]
    lines.append(split(summary["splits"], summary.get("warnings", [])))
    lines.append(problems(summary["problems"]))
    lines.append("Next: /split to change the split, /labels to edit classes, /model to pick a detector.")
    return "\n".join(lines)


def problems(items: list[dict], per_kind: int = 3) -> str:
    if not items:
        return "No problems found."
    counts = Counter(p["kind"] for p in items)
    lines = ["Problems (what I did about them):"]
    for kind, count in counts.most_common():
        examples = [p for p in items if p["kind"] == kind][:per_kind]
        lines.append(f"- {kind} x{count}: {examples[0]['action']}")
        lines += [f"    {p['detail']}" for p in examples]
        if count > per_kind:
            lines.append(f"    ... and {count - per_kind} more")
    return "\n".join(lines)


def split(splits: dict, warnings: list[str]) -> str:
    lines = ["Split: " + ", ".join(f"{name} {s['images']} images" for name, s in splits.items())]
    classes = sorted({c for s in splits.values() for c in s["classes"]})
    for name in classes:
        lines.append(f"  {name}: " + ", ".join(f"{split} {s['classes'].get(name, 0)}" for split, s in splits.items()))
    lines += [f"Warning: {w}" for w in warnings]
    return "\n".join(lines)


def label_map(items: list[dict], problems_list: list[dict]) -> str:
    lines = ["Classes (id: name):"] + [f"  {i['id']}: {i['name']}" for i in items]
    if problems_list:
        lines.append(problems(problems_list))
    lines.append("Edit: /labels rename a=b | merge a,b=c | drop x; /labels file sends label_map.pbtxt.")
    return "\n".join(lines)


def model_button(model: dict) -> str:
    star = "* " if model["recommended"] else ""
    return f"{star}{model['name']}: AP {model['coco_ap']}, {model['params_m']}M params, {model['input_size']}px"


def train_card(card: dict) -> str:
    eta = card["estimate_s"]
    estimate = f"about {eta / 60:.0f} min" if eta else "shown once training runs"
    return (f"Ready to train {card['model']} on dataset {card['dataset']}:\n"
            f"classes: {', '.join(card['classes'])}\n"
            f"images: {card['train_images']} train / {card['val_images']} val\n"
            f"batch size {card['batch_size']}, {card['steps']} steps ({card['epochs']:.1f} epochs)\n"
            f"device: {card['device']}\nestimated time: {estimate}"
            + (f"\noverrides: {' '.join(card['overrides'])}" if card["overrides"] else ""))


def status(job_id: str, model: str, state: str, progress: dict | None, evaluation: dict | None,
           queue_position: int | None = None) -> str:
    lines = [f"Job {job_id} ({model}): {state}" + (f", position {queue_position} in the queue"
                                                    if queue_position else "")]
    if progress:
        total = progress.get("total_steps") or 0
        percent = f" ({100 * progress['step'] / total:.0f}%)" if total else ""
        lines.append(f"step {progress['step']}/{total}{percent}")
        lines.append(f"loss {progress['total_loss']:.4f} (cls {progress.get('cls_loss') or 0:.4f}, "
                     f"box {progress.get('box_loss') or 0:.5f}), lr {progress.get('learning_rate') or 0:.5f}")
        eta = progress.get("eta_s")
        lines.append(f"{progress.get('images_per_sec')} images/s" +
                     (f", about {eta // 60:.0f} min {eta % 60:.0f} s left" if isinstance(eta, (int, float)) else ""))
    if evaluation:
        lines.append(f"last evaluation (step {evaluation['step']}): AP {evaluation['AP']:.3f}, "
                     f"AP50 {evaluation['AP50']:.3f}")
    return "\n".join(lines)


def finished(job_id: str, event: dict) -> str:
    per_class = event.get("per_class_AP") or {}
    lines = [f"Job {job_id} finished: best AP {event.get('AP') or 0:.3f}, AP50 {event.get('AP50') or 0:.3f} "
             f"(step {event.get('best_step')})."]
    lines += [f"  {name}: AP {value:.3f}" for name, value in per_class.items()]
    lines.append("Exporting and checking the model; the archive follows.")
    return "\n".join(lines)


def nan_alert(job_id: str, nan: dict) -> str:
    return (f"Alert: job {job_id} - {nan.get('message', 'the loss became NaN')}. Training goes on from the "
            "last good checkpoint. Stop it, or let it continue?")


def failed(job_id: str, event: dict) -> str:
    """A failed job; /resume is offered only when it can work (a checkpoint to continue from)."""
    before = event.get("stage") == "start"
    head = f"Job {job_id} could not start" if before else f"Job {job_id} failed at step {event.get('step', 0)}"
    advice = (f"/resume {job_id} continues from its last checkpoint." if event.get("resumable") else
              "Nothing can be resumed: fix the cause, then start a new job with /train.")
    return f"{head}: {event.get('message', '')}\n{advice}"


def not_resumable(job_id: str) -> str:
    return (f"Job {job_id} failed in a way that resuming would repeat (see its failure message). "
            "Start a new job with /train.")


def stopped(job_id: str, step: int) -> str:
    return f"Job {job_id} stopped at step {step}, with a checkpoint. /resume {job_id} continues it."
