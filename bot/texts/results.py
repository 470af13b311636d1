"""What the end of a job shows: the results album, AP in plain words, the archive's caption, and /settings' notices."""

from __future__ import annotations

# --- the results album and AP50 in plain words --------------------------------------------------------


def curves_caption(job_id: str) -> str:
    return f"Job {job_id}: training loss and validation AP"


def confusion_caption(job_id: str) -> str:
    return f"Job {job_id}: confusion matrix (rows: true class, columns: what the model said)"


def per_class_caption(job_id: str) -> str:
    return f"Job {job_id}: AP per class (the weakest at the bottom)"


def samples_caption(job_id: str) -> str:
    return f"Job {job_id}: the exported model's detections on validation images"


def ap50_explained(ap50: float) -> str:
    return (
        f"AP50 {ap50:.2f}: a found box counts as right when it overlaps the true one by half or more; missed objects "
        "and wrong boxes pull it down. 1.0 is perfect, 0.5 finds about half of them well."
    )


# --- the archive: what is inside, what to do next, and what happens when it is too big ----------------

_MODELS = {"saved_model": "SavedModel", "float32": "TFLite float32", "float16": "TFLite float16", "int8": "TFLite int8"}


def archive_caption(
    job_id: str, size_mb: float, models: list[tuple[str, str, float]], checkpoint_step: int | None
) -> str:
    """``models``: (artefact name, file or folder, MB) of each model in the archive."""
    lines = [f"The model of job {job_id} ({size_mb:.1f} MB):"]
    lines += [f"- {_MODELS[name]} ({file}), {mb:.1f} MB" for name, file, mb in models if name in _MODELS]
    extras = ["label_map.pbtxt (the class names)", "README.md", "metrics.json"]
    if checkpoint_step is not None:
        extras.insert(1, f"checkpoint/ (step {checkpoint_step}, to train on)")
    lines.append("- " + ", ".join(extras))
    files = {name: file for name, file, _ in models}
    if "saved_model" in files:
        lines.append(
            "Python: unzip, pip install tensorflow pillow, and run the code in README.md with a photo: it prints "
            "each object found."
        )
    lite = next((files[name] for name in ("float16", "float32", "int8") if name in files), None)
    if lite:
        lines.append(
            f"Android: copy {lite} into your app's assets and load it with the TFLite Task "
            "Library's ObjectDetector (Kotlin in README.md); the class names are inside the model."
        )
    return "\n".join(lines)


def exporting(job_id: str) -> str:
    return f"Preparing the model archive of job {job_id}; it follows in a moment."


def too_big_offer(size_mb: float, limit_mb: int, offers: list[tuple[str, float, list[str]]]) -> str:
    """``offers``: (kind, MB, its models) of each smaller archive that fits."""
    lines = [f"The whole archive is {size_mb:.0f} MB, above the {limit_mb} MB a bot may send. Smaller ones that fit:"]
    for kind, mb, models in offers:
        what = ", ".join(_MODELS.get(name, name) for name in models)
        use = "for phones (Android, iOS)" if kind == "tflite" else "for Python and TensorFlow Serving"
        lines.append(f"- {what}: {mb:.1f} MB, {use}")
    lines.append("Or the whole archive in parts, which only a computer can join.")
    return "\n".join(lines)


def offer_button(kind: str, size_mb: float) -> str:
    return f"{'TFLite only' if kind == 'tflite' else 'SavedModel only'} ({size_mb:.1f} MB)"


def parts_button(parts: int) -> str:
    return f"All of it, in {parts} parts"


def parts_join(archive_name: str, size_mb: float, limit_mb: int, parts: int) -> str:
    return (
        f"The archive is {size_mb:.0f} MB, above the {limit_mb} MB a bot may send, so it came in {parts} parts. "
        "Save them in one folder on a computer and join them:\n"
        f"- Windows: open {archive_name}.001 with 7-Zip (it reads the other parts itself), or in a command "
        f"prompt: copy /b {archive_name}.001+{archive_name}.002{'+...' if parts > 2 else ''} {archive_name}\n"
        f"- macOS, Linux: cat {archive_name}.0* > {archive_name}\n"
        "A phone cannot join them: /export offers the smaller archives, when one fits, which need no joining."
    )


OFFER_EXPIRED = "That archive is no longer there: /export makes it again."

# --- /settings: language, notifications, loss curves --------------------------------------------------


def settings(language: str, quiet: bool, plot_minutes: int | None, default_minutes: float) -> str:
    """``plot_minutes``: the user's choice (0: no curves); None: the bot's default, ``default_minutes``."""
    sound = (
        "quiet: only the final result and alerts make a sound"
        if quiet
        else "every message makes a sound (progress photos too)"
    )
    minutes = default_minutes if plot_minutes is None else plot_minutes
    curves = "none until the end" if minutes == 0 else f"one every {minutes:g} min"
    return (
        f"Settings.\nLanguage: {language}.\nNotifications: {sound}.\nLoss curves while a job trains: {curves}. "
        "Evaluations send theirs within the same limit."
    )


QUIET_ON, QUIET_OFF = "Quiet", "Every message with sound"


def plot_button(minutes: int) -> str:
    return "No curves" if minutes == 0 else f"Curves every {minutes} min"
