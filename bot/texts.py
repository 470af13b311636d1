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
/status, /stop, /resume, /jobs, /export - follow and control your jobs; /jobs also shows your disk use
and deletes the files of ended jobs.
/datasets - your datasets: choose the current one, delete old ones.
/predict - then send a photo: I draw what the model finds.
/dataset URL - a dataset too large to send through Telegram."""

COMMANDS = [
    ("start", "what this bot does"),
    ("help", "the whole flow"),
    ("split", "train/val split"),
    ("labels", "classes and label map"),
    ("model", "choose a detector"),
    ("train", "start training"),
    ("status", "progress of your job"),
    ("stop", "stop a job"),
    ("resume", "resume an interrupted job"),
    ("jobs", "your jobs"),
    ("export", "send the model again"),
    ("predict", "try the model on a photo"),
    ("dataset", "fetch a dataset from a URL"),
    ("datasets", "your datasets: choose, delete"),
]

STRANGER = "Sorry, this detbot is private. Ask its owner to add your Telegram id to ALLOWED_USER_IDS."
APOLOGY = "Sorry, something went wrong on my side; it is logged. Nothing you sent was lost - please try again."
NOT_A_ZIP = "Send the dataset as a .zip file (images + Pascal VOC .xml annotations)."
SPLIT_USAGE = "Usage: /split [val_ratio] [seed], e.g. /split 0.2 1"
LABELS_USAGE = "Usage: /labels, /labels rename a=b, /labels merge a,b=c, /labels drop x, /labels file"
NO_DATASET = "No dataset yet: send me a .zip of your Pascal VOC dataset first."
NO_JOB_YET = "No such job yet: start one with /train."
START_BUTTON, CANCEL_BUTTON = "Start", "Cancel"
STOP_BUTTON, CONTINUE_BUTTON = "Stop", "Continue"
CONFIRM_STOP, KEEP_RUNNING = "Yes, stop it", "No"
CARD_EXPIRED = "This card has expired; send /train again."
CANCELLED = "Cancelled."
ARCHIVE_CAPTION = "The trained model: SavedModel, label map, config, metrics, samples."
NOTHING_FOUND = "nothing found"


def dataset_waiting(dataset_id: str, status: str) -> str:
    return f"Dataset {dataset_id} is {status}; wait for its report or send another zip."


def pick_model(name: str, reason: str) -> str:
    return f"Pick a detector. Recommended (*): {name} - {reason}."


def model_chosen(name: str) -> str:
    return f"Model: {name}. Next: /train (or /train 30 for 30 epochs)."


def no_job_in(statuses: tuple[str, ...]) -> str:
    return f"No {' or '.join(statuses)} job of yours; /jobs lists them."


def confirm_stop(job_id: str) -> str:
    return f"Stop job {job_id}? It saves a checkpoint first; /resume continues later."


def stopping(job_id: str) -> str:
    return f"Stopping job {job_id}: it saves a checkpoint and exits."


def nan_answer(job_id: str, stop: bool) -> str:
    return f"Job {job_id}: " + ("stopping." if stop else "continuing.")


def predict_prompt(job_id: str) -> str:
    return f"Send a photo; I will run the model of job {job_id} on it."


def detections(found: list[dict]) -> str:
    """The caption of a photo with the model's detections drawn on it."""
    return (", ".join(f"{d['label']} {d['score']:.2f}" for d in found) or NOTHING_FOUND)[:1000]


def archive_parts(archive_name: str, size: int, limit_mb: int, parts: int) -> str:
    return (
        f"The archive was {size / 2**20:.0f} MB, above the {limit_mb} MB upload "
        f"limit, so it came in {parts} parts. Join them with: cat {archive_name}.* "
        f"> {archive_name} (Windows: copy /b {archive_name}.001+{archive_name}.002 "
        f"{archive_name})."
    )


# --- what the store could not do, worded from its kind (``storage.errors``) ------------------------

_STORE_THINGS = {"job": "/jobs lists your jobs", "dataset": "/datasets lists your datasets"}
STORE_BUSY = "My database is busy with another task right now; please try again in a minute."
STORE_BROKEN = (
    "Sorry, my database could not do that; the bot's owner has the details in the bot's log. "
    "Nothing you sent was lost - please try again later."
)


def store_error(kind: str, params: dict) -> str:
    """A ``storage.StoreError``, from its kind and parameters only: never its message, which may name files."""
    if kind == "not_found":
        thing, where = params["thing"], _STORE_THINGS.get(params["thing"], "send /start")
        return f"No {thing} '{params['id']}' of yours: {where}."
    if kind == "no_dataset":
        return NO_DATASET
    if kind == "not_ready":
        return dataset_waiting(params["id"], params["status"])
    if kind == "not_deletable":
        return job_not_deletable(params["id"], params["status"])
    if kind == "quota":
        return quota_full(params["used"], params["limit"], params["wanted"])
    if kind == "in_use":
        return dataset_busy(params["dataset_id"], params["jobs"])
    return STORE_BUSY if kind == "locked" else STORE_BROKEN


def too_big(size_mb: float, limit_mb: int, local_mode: bool) -> str:
    if local_mode:
        return f"That file is {size_mb:.0f} MB; this bot accepts up to {limit_mb} MB. Send a smaller zip."
    return (
        f"That file is {size_mb:.0f} MB, but bots on Telegram's cloud Bot API may only download "
        f"{limit_mb} MB. Either send it by URL with /dataset https://..., or run detbot with a "
        "self-hosted Bot API server (telegram-bot-api --local), which raises the limit to 2000 MB "
        "(see the README)."
    )


def report(dataset_id: str, summary: dict) -> str:
    lines = [
        f"Dataset {dataset_id}: {summary['images']} images, {summary['labelled_images']} labelled, "
        f"{summary['boxes']} boxes, {len(summary['classes'])} classes."
    ]
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
    return (
        f"Ready to train {card['model']} on dataset {card['dataset']}:\n"
        f"classes: {', '.join(card['classes'])}\n"
        f"images: {card['train_images']} train / {card['val_images']} val\n"
        f"batch size {card['batch_size']}, {card['steps']} steps ({card['epochs']:.1f} epochs)\n"
        f"device: {card['device']}\nstarts from: {START_POINTS[card['start']]}\nestimated time: {estimate}"
        + (f"\noverrides: {' '.join(card['overrides'])}" if card["overrides"] else "")
    )


START_POINTS = {
    "detector": "a COCO-trained detector (all but its class layer)",
    "backbone": "an ImageNet-trained backbone",
    "checkpoint": "your checkpoint",
    "scratch": "scratch (random weights)",
}


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


def finished(job_id: str, event: dict) -> str:
    per_class = event.get("per_class_AP") or {}
    lines = [
        f"Job {job_id} finished: best AP {event.get('AP') or 0:.3f}, AP50 {event.get('AP50') or 0:.3f} "
        f"(step {event.get('best_step')})."
    ]
    lines += [f"  {name}: AP {value:.3f}" for name, value in per_class.items()]
    lines.append("Exporting and checking the model; the archive follows.")
    return "\n".join(lines)


def nan_alert(job_id: str, nan: dict) -> str:
    return (
        f"Alert: job {job_id} - {nan.get('message', 'the loss became NaN')}. Training goes on from the "
        "last good checkpoint. Stop it, or let it continue?"
    )


def failed(job_id: str, event: dict, message: str, log: str = "") -> str:
    """A failed job; /resume is offered only when it can work (a checkpoint to continue from).

    ``message``: the event's, fit for the chat; ``log``: ``trainer_log()``, when it failed unexpectedly.
    """
    before = event.get("stage") == "start"
    head = f"Job {job_id} could not start" if before else f"Job {job_id} failed at step {event.get('step', 0)}"
    advice = (
        f"/resume {job_id} continues from its last checkpoint."
        if event.get("resumable")
        else "Nothing can be resumed: fix the cause, then start a new job with /train."
    )
    return f"{head}: {message}\n{advice}{log}"


def interrupted(job_id: str, log_tail: str | None) -> str:
    return (
        f"Job {job_id} stopped unexpectedly (the trainer process is gone). "
        f"/resume {job_id} continues from its last checkpoint." + trainer_log(log_tail)
    )


def trainer_log(tail: str | None) -> str:
    """The end of a trainer's log (``JobPaths.log``), for a job that ended unexpectedly."""
    if tail is None:
        return "\nIts trainer left no log (train.log in the job folder)."
    return f"\nThe last lines of its trainer's log (train.log, kept in the job folder):\n{tail}"


def eval_caption(job_id: str, step: int, event: dict) -> str:
    return f"Job {job_id}, step {step}: AP {event['AP']:.3f}, AP50 {event['AP50']:.3f}"


def detections_caption(job_id: str, step: int) -> str:
    return f"Job {job_id}, step {step}: detections on validation images"


def loss_caption(job_id: str, step: int) -> str:
    return f"Job {job_id}: loss at step {step}"


def not_resumable(job_id: str) -> str:
    return (
        f"Job {job_id} failed in a way that resuming would repeat (see its failure message). "
        "Start a new job with /train."
    )


def cannot_resume(job_id: str, status: str) -> str:
    return f"Job {job_id} is {status}; only interrupted, stopped or failed jobs resume."


def not_running(job_id: str, status: str) -> str:
    return f"Job {job_id} is {status}, not running."


def export_failed(job_id: str, reason: str) -> str:
    return f"Export of job {job_id} failed: {reason}"


def stopped(job_id: str, step: int) -> str:
    return f"Job {job_id} stopped at step {step}, with a checkpoint. /resume {job_id} continues it."


# --- /train: what a chat user may set, and why a request is refused -------------------------------

TRAIN_SETTING_ABOUT = {
    "lr": "learning rate",
    "batch": "images per training step",
    "eval_every": "steps between evaluations",
    "early_stop": "stop after this many evaluations without a better AP (0: never)",
    "checkpoint_every": "steps between checkpoints",
    "report_every": "steps between progress reports",
    "hflip": "random horizontal flips",
    "scale_min": "smallest random zoom",
    "scale_max": "largest random zoom",
}


def train_settings(options) -> str:
    """The allowlist (``pipeline.train.chat_overrides.OPTIONS``), one setting a line."""
    lines = [
        "/train takes a length (/train 30 for epochs, /train 500 steps) and these settings as name=value, "
        "e.g. /train 500 steps lr=0.01 batch=16:"
    ]
    lines += [f"  {o.name}: {TRAIN_SETTING_ABOUT.get(o.name, o.target)}, {_allowed(o)}" for o in options]
    return "\n".join(lines)


def _allowed(option) -> str:
    if option.kind is bool:
        return "true or false"
    return f"{'a whole number' if option.kind is int else 'a number'} from {option.low:g} to {option.high:g}"


def _short(word: str) -> str:
    return word if len(word) <= 60 else word[:57] + "..."


def train_option_refused(word: str, options) -> str:
    return (
        f"'{_short(word)}' looks like an option of the trainer; /train passes none on, only the settings "
        f"below.\n{train_settings(options)}"
    )


def train_word_unknown(word: str, options) -> str:
    return f"I don't understand '{_short(word)}'.\n{train_settings(options)}"


def train_setting_refused(error, options) -> str:
    """A ``pipeline.train.chat_overrides.ChatOptionError``, worded for the chat."""
    option, word = error.option, _short(error.word)
    if error.problem == "unknown":
        name = _short(error.word.partition("=")[0])
        return f"'{name}' cannot be set from the chat.\n{train_settings(options)}"
    if error.problem == "twice":
        return f"{option.name} is given twice ('{word}'); give it once."
    if option.name in ("steps", "epochs"):
        limit = " (this bot's limit)" if option.name == "steps" else ""
        return f"'{word}' refused: {option.name} must be {_allowed(option)}{limit}."
    return (
        f"'{word}' refused: {option.name} ({TRAIN_SETTING_ABOUT.get(option.name, option.target)}) must be "
        f"{_allowed(option)}."
    )


BOTH_LENGTHS = "Give either steps or epochs, not both: /train 30 (epochs) or /train 500 steps."


def too_many_steps(steps: int, max_steps: int) -> str:
    return (
        f"That makes {steps} training steps; this bot allows at most {max_steps}. Ask for fewer: "
        "/train N steps, or fewer epochs."
    )


def job_cap(limit: int) -> str:
    return f"You already have {limit} jobs queued or running; wait for one to finish or /stop one."


def launch_failed(job_id: str, reason: str | None) -> str:
    return (
        f"Job {job_id} could not start: {reason or 'no reason was given'}\n"
        "Nothing ran, and it no longer holds a place in the queue. Fix the cause, then /train again."
    )


def pipeline_exit(code: int | None, detail: str) -> str:
    """Why a pipeline command gave no answer, for a job's error: its exit code and last stderr line."""
    return f"the pipeline stopped with exit code {code}" + (f" ({detail})" if detail else " and said nothing")


NO_TRAINER = "the launch reported no trainer process"


def launch_crashed(error_name: str) -> str:
    return f"the bot could not launch the trainer ({error_name}); its owner finds the details in the bot's log"


def dataset_in_use(dataset_id: str, jobs: tuple, change: str) -> str:
    """``change``: what was refused ("split", "classes"); ``jobs``: the queued/running jobs on the dataset."""
    listed = ", ".join(f"{job.id} ({job.status})" for job in jobs)
    one = len(jobs) == 1
    return (
        f"Dataset {dataset_id} is in use by job{'' if one else 's'} {listed}, so its {change} cannot change: "
        f"a job trains on exactly the records it was queued with. Wait until the job{' ends' if one else 's end'} "
        f"(or /stop {'it' if one else 'them'}), then try again; or send the zip again to get a separate copy "
        "you can change now."
    )


# --- uploads, quotas, /datasets and /jobs clean-up ------------------------------------------


def size_text(size: float) -> str:
    return f"{size / 2**30:.1f} GB" if size >= 2**30 else f"{size / 2**20:.1f} MB"


def checking(name: str) -> str:
    return f"Got {name}. Checking it (unpacking, every image and XML)..."


def could_not_use(name: str, error: str | None) -> str:
    return f"I could not use {name}: {error}"


PREVIEW_CAPTION = "Sample images with their boxes; problem images first, framed red."
DOWNLOADING = "Downloading..."
URL_USAGE = "Give an http(s) URL of a .zip file: /dataset https://example.com/data.zip"
# One sentence for every refused or unreachable address, so replies cannot map a network.
URL_REFUSED = (
    "I could not download that URL: it is unreachable, not allowed, or too slow. Check that it "
    "is a public http(s) link to a .zip file and try again."
)


def url_too_large(cap: int, by_quota: bool) -> str:
    why = "the room left in your disk quota" if by_quota else "the largest download this bot accepts"
    return f"That file is larger than {size_text(cap)}, {why}. Send a smaller zip." + (
        " /datasets and /jobs show what you can delete." if by_quota else ""
    )


def downloads_busy(count: int) -> str:
    return f"You already have {count} download(s) running; wait for them to finish, then try again."


def quota_full(used: int, limit: int, wanted: int | None = None) -> str:
    need = f"this needs {size_text(wanted)} more, which does not fit" if wanted else "nothing more fits"
    return (
        f"Your files use {size_text(used)} of your {size_text(limit)}; {need}. Delete old datasets "
        "(/datasets) or job files (/jobs), or ask the bot's owner for more room."
    )


_CRASHES = {
    "disk_full": "the server's disk is full. Please tell the bot's owner; nothing of yours was kept.",
    "name_too_long": "a file path in it is too long for the server's disk. Shorten the folder and file "
    "names, zip it again and send it.",
    "memory": "checking it needed more memory than a check may use. Send a smaller dataset, or split it.",
    "worker_died": "the checker stopped unexpectedly (it may have run out of memory). Send the zip again; "
    "if it happens again, send a smaller dataset.",
    "internal": "something went wrong on my side while checking it; it is logged. Send the zip again.",
}


def check_crashed(kind: str) -> str:
    return _CRASHES.get(kind, _CRASHES["internal"])


CHECK_INTERRUPTED = "the bot restarted while checking it. Send the zip again."


def check_interrupted(dataset_id: str, name: str) -> str:
    return f"I restarted while checking {name} (dataset {dataset_id}), so that check was stopped. Please send it again."


def usage_line(usage) -> str:
    return (
        f"Disk: {size_text(usage.total)} of {size_text(usage.limit)} (datasets {size_text(usage.datasets)}, "
        f"jobs {size_text(usage.jobs)}, predictions {size_text(usage.predictions)})."
    )


def datasets_list(datasets: list, current_id: str | None, usage) -> str:
    if not datasets:
        return "No datasets yet: send me a .zip of your Pascal VOC dataset.\n" + usage_line(usage)
    lines = ["Your datasets (* = current, used by /train):"]
    lines += [
        f"{'*' if d.id == current_id else ' '} {d.id}  {d.name}  {d.status}  {size_text(d.size_bytes)}"
        for d in datasets
    ]
    lines.append(usage_line(usage))
    return "\n".join(lines)


def use_button(dataset_id: str) -> str:
    return f"Use {dataset_id}"


def delete_button(item_id: str) -> str:
    return f"Delete {item_id}"


CONFIRM_DELETE = "Yes, delete"
KEEP = "No, keep"
DELETE_PREDICTIONS_BUTTON = "Delete predictions"


def confirm_delete_dataset(dataset) -> str:
    return (
        f"Delete dataset {dataset.id} ({dataset.name}, {size_text(dataset.size_bytes)})? Its files and "
        "its ended jobs, with their models, are deleted too. This cannot be undone."
    )


def dataset_deleted(dataset_id: str) -> str:
    return f"Dataset {dataset_id} deleted."


def dataset_current(dataset_id: str) -> str:
    return f"Dataset {dataset_id} is now current: /train, /split and /labels use it."


def dataset_not_ready(dataset_id: str, status: str) -> str:
    return f"Dataset {dataset_id} is {status}; only a ready dataset can be used, and a ready or failed one deleted."


def dataset_busy(dataset_id: str, jobs: tuple) -> str:
    listed = ", ".join(job.id for job in jobs)
    return f"Dataset {dataset_id} is used by job {listed}; stop it or let it finish before deleting the dataset."


def jobs_list(jobs: list, usage) -> str:
    lines = [f"{j.id}  {j.model}  {j.status}  dataset {j.dataset_id}" for j in jobs] or ["No jobs yet: /train"]
    lines.append(usage_line(usage))
    return "\n".join(lines)


def confirm_delete_job(job_id: str, size: int) -> str:
    return (
        f"Delete the files of job {job_id} ({size_text(size)}: checkpoints and the exported model)? "
        "It leaves /jobs; this cannot be undone."
    )


def job_deleted(job_id: str) -> str:
    return f"Job {job_id} and its files deleted."


def job_not_deletable(job_id: str, status: str) -> str:
    return f"Job {job_id} is {status}; only finished, failed or stopped jobs can be deleted."


def confirm_delete_predictions(size: int) -> str:
    return f"Delete the photos you sent to /predict and their drawn results ({size_text(size)})?"


PREDICTIONS_DELETED = "Predictions deleted."
CANCELLED_DELETE = "Kept."
