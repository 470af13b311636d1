"""Help, commands, short replies shared by every area, and the store's refusals."""

from __future__ import annotations

from .files import dataset_busy, job_not_deletable, quota_full

HELP = """detbot trains an object detector on your own photos.

1. Send a .zip of your labelled images: Pascal VOC, COCO JSON, YOLO, LabelMe or the TensorFlow CSV
(as Roboflow, CVAT, Label Studio or LabelImg export them). I check it and reply with a report and a preview.
2. /split [val_ratio] [seed] - train/val split (default 0.1, 0).
3. /labels - the classes; /labels rename a=b, /labels merge a,b=c, /labels drop x, /labels file.
4. /model - pick a detector (the recommended one is marked).
5. /train [epochs | N steps] [key=value ...] - a confirmation card, then training starts.
While it trains: live progress here, loss curves, an alert at once if the loss turns NaN.
/status, /stop, /resume, /jobs, /export - follow and control your jobs; /jobs also shows your disk use
and deletes the files of ended jobs.
/datasets - your datasets: choose the current one, delete old ones.
/predict - then send a photo: I draw what the model finds.
/dataset URL - a dataset too large to send through Telegram.
/settings - the language of my replies (English, 한국어), quiet notifications, how often loss curves come."""

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
    ("settings", "language, notifications"),
]

STRANGER = "Sorry, this detbot is private. Ask its owner to add your Telegram id to ALLOWED_USER_IDS."
APOLOGY = "Sorry, something went wrong on my side; it is logged. Nothing you sent was lost - please try again."
NOT_A_ZIP = "Send the dataset as a .zip file (images + annotations: Pascal VOC, COCO JSON, YOLO, LabelMe or CSV)."
SPLIT_USAGE = "Usage: /split [val_ratio] [seed], e.g. /split 0.2 1"
LABELS_USAGE = "Usage: /labels, /labels rename a=b, /labels merge a,b=c, /labels drop x, /labels file"
NO_DATASET = (
    "No dataset yet: send me a .zip of your labelled images first (Pascal VOC, COCO JSON, YOLO, LabelMe or CSV)."
)
NO_JOB_YET = "No such job yet: start one with /train."
START_BUTTON, CANCEL_BUTTON = "Start", "Cancel"
STOP_BUTTON, CONTINUE_BUTTON = "Stop", "Continue"
CONFIRM_STOP, KEEP_RUNNING = "Yes, stop it", "No"
CARD_EXPIRED = "This card has expired; send /train again."
CANCELLED = "Cancelled."
ARCHIVE_CAPTION = "The trained model: SavedModel, label map, config, metrics, samples."
NOTHING_FOUND = "nothing found"
FOLLOW_TELEGRAM = "As my Telegram app"


def language_chosen(name: str) -> str:
    return f"I reply in {name} from now on. /settings changes it."


def dataset_waiting(dataset_id: str, status: str) -> str:
    return f"Dataset {dataset_id} is {status}; wait for its report or send another zip."


def pick_model(name: str, reason: str) -> str:
    """``reason``: ``recommendation()``'s words."""
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
    return ", ".join(f"{d['label']} {d['score']:.2f}" for d in found) or NOTHING_FOUND


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
        f"{limit_mb} MB. Either send it by URL with /dataset https://..., or ask the bot's owner to run "
        "it with a self-hosted Bot API server, which raises the limit to 2000 MB (see the README)."
    )
