"""Uploads, quotas, /datasets and /jobs clean-up."""

from __future__ import annotations


def size_text(size: float) -> str:
    return f"{size / 2**30:.1f} GB" if size >= 2**30 else f"{size / 2**20:.1f} MB"


def status_word(status: str) -> str:
    """A dataset's or job's status, as stored (the Korean catalogue words it)."""
    return status


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
