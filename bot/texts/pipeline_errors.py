"""The pipeline's errors a chat user can meet, worded from their kind and details (``pipeline.errors``).

The pipeline's own messages are the CLI's (they name options and commands); here every hint is a chat
command. A kind not worded here shows the pipeline's message, redacted, as it is.
"""

from __future__ import annotations

from . import formats as _formats


def _place(d: dict) -> str:
    return " > ".join(d.get("where") or ["The zip"])


def _bytes(count: int) -> str:
    return f"{count / 2**30:.1f} GB" if count >= 2**30 else f"{count / 2**20:.0f} MB"


def _names(names: list) -> str:
    return ", ".join(f"'{name}'" for name in names)


_NAME_PROBLEMS = {
    "empty": "is empty",
    "control": "contains a line break or control character",
    "quotes": "is only quotes",
    "spaces": "starts or ends with a space",
}
_SMALLER = "Choose a smaller model with /model, or a smaller batch (e.g. /train batch=4)."

_ERRORS = {
    # the zip (pipeline.data.ingest, zip_entries, pair_check)
    "corrupt_zip": lambda d: (
        f"{_place(d)} is a damaged zip, probably cut short while uploading or copying. "
        "Create the zip again and send it."
    ),
    "not_a_zip": lambda d: (
        f"{_place(d)} is not a zip file. Send the dataset as a .zip of the images and their annotations."
    ),
    "too_large": lambda d: (
        f"{_place(d)} unpacks to more than the {_bytes(d['limit'])} allowed for one file. Remove or shrink that "
        "file and send the zip again."
        if d.get("one_file")
        else f"{_place(d)} unpacks to more than the {_bytes(d['limit'])} allowed for a dataset. Send a smaller "
        "one (e.g. with resized images) or split it into several zips."
    ),
    "over_budget": lambda d: (
        f"{_place(d)} unpacks to more than the {_bytes(d['limit'])} of your space set aside "
        "for it. Delete old datasets (/datasets) or job files (/jobs), or send a smaller dataset."
    ),
    "empty_zip": lambda d: (
        f"{_place(d)} holds no files apart from folders and system files (__MACOSX, .DS_Store). "
        "Zip the folder that holds the images and annotations and send it again."
    ),
    "unsafe_path": lambda d: (
        f"{_place(d)} was refused: a path in it leads outside the dataset folder, so nothing "
        "was unpacked. Zip the dataset folder itself (right-click it > Compress) and send the new zip."
    ),
    "nested_too_deep": lambda d: (
        f"{_place(d)} is a zip inside a zip deeper than {d['levels']} level(s). Unpack it "
        "and send one zip that holds the images and annotations directly."
    ),
    "compression_ratio": lambda d: (
        f"{_place(d)} expands more than {d['ratio']:g} times its compressed size, which "
        "looks like a zip bomb. Send a zip that holds only the dataset's real files."
    ),
    "no_images": lambda d: (
        f"{_place(d)} holds no images: none of its {d['files']} files ({_names(d['examples'])}) "
        "is a .jpg, .jpeg or .png. Add the images next to their annotations and send the zip again."
    ),
    "encrypted": lambda d: f"{_place(d)} is password-protected. Zip the dataset again without a password and send it.",
    "symlink": lambda d: (
        f"{_place(d)} is a symbolic link, which could point outside the dataset. Put the real "
        "files in the zip and send it again."
    ),
    "unsupported_compression": lambda d: (
        f"{_place(d)} uses compression method {d['method']} (e.g. Deflate64), "
        "which cannot be read. Zip it again with the standard (Deflate) compression and send it."
    ),
    "too_many_entries": lambda d: (
        f"{_place(d)} holds more than {d['limit']:,} entries. Remove files that are "
        "neither images nor annotations, or split the dataset into several zips."
    ),
    "too_many_pixels": lambda d: (
        f"The images hold {d['gigapixels']} gigapixels, more than the "
        f"{d['limit_gigapixels']:g} I decode for one dataset (the largest, {d['largest']}, has {d['largest_mp']} MP). "
        "The detectors see at most 640x640 pixels: downscale the images (e.g. to 1600 px on the long side) or send "
        "the dataset in smaller parts."
    ),
    # class edits and the split (pipeline.data.class_edits, label_plan, split)
    "bad_class_name": lambda d: (
        f"The new class name '{d['name']}' {_NAME_PROBLEMS[d['problem']]}. Write a plain "
        "one-line name, e.g. /labels rename old=new."
    ),
    "unknown_class": lambda d: (
        f"There is no class {_names(d['missing'])}. The classes are: "
        f"{_names(d['classes']) or 'none'}. Spell the names as /labels lists them (case and spaces count)."
    ),
    "merge_nothing": lambda d: "No class to merge was given. Write the classes before '=', e.g. /labels merge a,b=c.",
    "unreadable_rename": lambda d: f"I cannot read the rename '{d['text']}'. Write it as /labels rename old=new.",
    "unreadable_merge": lambda d: f"I cannot read the merge '{d['text']}'. Write it as /labels merge a,b=new.",
    "no_class_left": lambda d: (
        "No class would be left: every label was dropped. Keep at least one class; to undo "
        "the drops, send the zip again."
    ),
    "bad_val_ratio": lambda d: (
        f"The validation share {d['ratio']:g} is out of range: it must be above 0 and below "
        "1 (0.1 to 0.2 is usual), e.g. /split 0.15."
    ),
    "too_few_images": lambda d: (
        f"Only {d['images']} distinct usable image(s) (identical copies count once): a split "
        "needs at least 2, one to train on and one to validate on. Add images and send the zip again."
    ),
    "empty_split_folder": lambda d: (
        f"The zip's folders leave no {d['split']} images. Put more images in its train/ "
        "and valid/ folders and send it again."
    ),
    # training (pipeline.train)
    "unknown_model": lambda d: f"There is no model called '{d['name']}'. /model lists them: {', '.join(d['models'])}.",
    "no_records": lambda d: (
        "The dataset has no train/val records to train on (were they deleted?). Send the zip again."
    ),
    "empty_split": lambda d: (
        f"The dataset has {d['train']} training and {d['val']} validation images; training "
        "needs both. Change the split with /split, or add images."
    ),
    "steps_and_epochs": lambda d: "Give either steps or epochs, not both: e.g. /train 30 or /train 500 steps.",
    "loss_diverged": lambda d: (
        f"The loss turned NaN or exploded again at step {d['step']}, after {d['recoveries']} "
        f"roll-back{'s' if d['recoveries'] != 1 else ''}, each lowering the learning rate. Check the dataset "
        "report for bad boxes, or train again with a lower learning rate, e.g. /train lr=0.001."
    ),
    "out_of_memory": lambda d: (
        f"The model does not fit in GPU memory even with a batch of {d['batch']}. {_SMALLER}"
        if "batch" in d
        else f"The GPU ran out of memory while the model was being built (another job may hold it). {_SMALLER}"
    ),
    "gpus_missing": lambda d: (
        f"This job was planned for {d['planned']} GPU(s), but {d['visible']} can be seen "
        "now. The bot's owner should check the GPUs; a new /train plans for the GPUs that are there."
    ),
    # Model Garden's or TensorFlow's own error: the pipeline's message (redacted) says it, and what to do.
    "config": lambda d: d["message"],
    "internal": lambda d: d["message"],
    "checkpoint_mismatch": lambda d: (
        "The model's pretrained checkpoint does not fit it. Choose another model with "
        "/model; the bot's owner can also let jobs start from scratch."
    ),
    "weights_error": lambda d: (
        "The pretrained weights could not be fetched or checked. Try /train again later; if "
        "it keeps failing, the bot's owner can let jobs start from scratch."
    ),
    # export and predict (pipeline.export)
    "no_checkpoint": lambda d: "It has no checkpoint yet, so there is nothing to export: /resume it first.",
    "checkpoint_changed": lambda d: (
        "Its checkpoint changed while it was being read (is it still training?). Send /export again."
    ),
    "no_val_records": lambda d: "Its dataset no longer holds the validation images the export is checked on.",
    "export_check_failed": lambda d: "The exported model failed its check; the bot's owner finds why in the log.",
    "export_mismatch": lambda d: (
        f"The exported model does not reproduce training ({d['metric']} {d['export']:.3f} "
        f"against {d['training']:.3f}), so no archive was written; the bot's owner can look into it."
    ),
    "export_broken": lambda d: "Model Garden could not export the model; the bot's owner finds why in the log.",
    "no_archive": lambda d: "The model archive is missing; /export makes it again.",
    "too_big": lambda d: "That part of the model archive does not fit in what I may send.",
    "bad_archive": lambda d: "The model archive is damaged; the bot's owner can look into it.",
    "no_image": lambda d: "The photo did not arrive; send it again.",
    "unreadable_image": lambda d: "That photo cannot be read as an image; send a JPEG or PNG.",
    # the Ray cluster (pipeline.executors), for a bot that trains there
    "cluster_unreachable": lambda d: (
        "The cluster that runs trainings does not answer right now. Your data and jobs are safe; "
        "try again in a few minutes."
    ),
    "cluster_command_failed": lambda d: (
        "The cluster could not finish that; your data and jobs are safe. Try again, and if it fails again, "
        "the bot's owner finds why in the cluster's job log."
    ),
    "run_exists": lambda d: "That job is already on the cluster; /status shows it.",
    # annotation formats (pipeline.data.formats)
    "no_annotations": _formats.no_annotations,
    "mixed_formats": _formats.mixed_formats,
}
WORDED_ERRORS = tuple(_ERRORS)  # tests/test_chat_words.py holds it to the kinds pipeline/ raises


def _worded(table: dict, kind: str, details: dict | None, message: str) -> str | None:
    """``kind`` as ``table`` words it from ``details`` and, under "message", the pipeline's redacted message;
    None for a kind it lacks or details it misses."""
    try:
        return table[kind]((details or {}) | {"message": message}) if kind in table else None
    except (KeyError, TypeError, ValueError):
        return None


def pipeline_error(kind: str, message: str, details: dict | None = None) -> str:
    """A ``pipeline.errors.PipelineError`` (its kind, redacted message and details), worded for the chat."""
    return _worded(_ERRORS, kind, details, message) or message
