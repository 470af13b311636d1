"""Answers to what the bot cannot take as sent: free text, unknown commands, other media and archives,
albums, a photo before any model, /cancel; and the marker of a reply cut to Telegram's limits."""

from __future__ import annotations

# The next step, by where the user is (``bot.guide.Step.kind``); ``{job}`` is the job it is about.
_NEXT = {
    "upload": "Send me a .zip of your Pascal VOC dataset (images + LabelImg XML files) to begin.",
    "checking": "Your dataset is being checked; its report comes in a moment.",
    "train": "Your dataset is ready: /model picks a detector, /train starts training.",
    "training": "Job {job} is training: /status shows how far it is.",
    "predict": "Send a photo (or an image as a file) and I draw what the model of job {job} finds.",
}
# A photo needs a trained model: what to do first, by the same steps.
_FIRST = {
    "upload": "First send me a .zip of your Pascal VOC dataset, then /train.",
    "checking": "Your dataset is being checked; when its report comes, /train.",
    "train": "Your dataset is ready: /train starts training.",
    "training": "Job {job} is still training (/status shows how far).",
}
_MEDIA = {
    "voice": "voice messages",
    "audio": "audio",
    "video": "videos",
    "video_note": "video messages",
    "animation": "GIFs",
    "sticker": "stickers",
}
ARCHIVE_KINDS = {"rar": "RAR", "7z": "7-Zip", "tar": "tar", "gzip": "gzip (.tar.gz)"}
CANCELLABLE = {"train_card": "the /train card", "predict": "photo mode (/predict)"}
NOTHING_TO_CANCEL = "Nothing to cancel. /help shows what I can do."


def next_step(kind: str, job_id: str | None = None) -> str:
    return _NEXT[kind].format(job=job_id)


def free_text(kind: str, job_id: str | None) -> str:
    return f"I follow commands and files, not free text. {next_step(kind, job_id)} /help shows the whole flow."


def unknown_command(command: str, kind: str, job_id: str | None) -> str:
    return f"I don't know {command[:40]}. {next_step(kind, job_id)} /help lists the commands."


def no_model_yet(kind: str, job_id: str | None) -> str:
    """A photo or /predict before any model of the user's has finished training: what to do first, in one message."""
    return (
        "To find things in a photo I need a model trained on your data. "
        f"{_FIRST[kind].format(job=job_id)} Then send a photo, and I draw what the model finds."
    )


def media_refused(kind: str) -> str:
    what = _MEDIA.get(kind, "that kind of message")
    return (
        f"I can't use {what}. I take a .zip of a Pascal VOC dataset, photos or image files "
        "(once a model is trained), and the commands in /help."
    )


def other_archive(kind: str) -> str:
    return f"that is a {ARCHIVE_KINDS[kind]} archive: send a .zip (zip the same folder as .zip and send that)"


def other_archive_sent(kind: str) -> str:
    text = other_archive(kind)
    return text[0].upper() + text[1:] + "."


def cancelled(what: list[str]) -> str:
    return "Cancelled: " + ", ".join(CANCELLABLE[item] for item in what) + "."


def album_note(count: int) -> str:
    """Under the answer to an album: one answer, for its first photo."""
    return f"(That was the first of the {count} photos of your album; send the others one at a time.)"


def cut_lines(count: int) -> str:
    """Where a message that cannot be split (an edit, a caption) was cut."""
    return f"... ({count} more lines)"
