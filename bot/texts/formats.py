"""Annotation formats: the one a zip was read as, and what to send when none is found."""

from __future__ import annotations

# pipeline.data.formats.detect.FORMATS, as users know them (the same in every language).
_FORMAT_NAMES = {
    "voc": "Pascal VOC",
    "coco": "COCO JSON",
    "yolo": "YOLO",
    "labelme": "LabelMe JSON",
    "csv": "TensorFlow CSV",
}


def format_name(key: str | None) -> str:
    return _FORMAT_NAMES.get(key or "voc", key or "Pascal VOC")


_FILES = {
    "voc": "the .xml files",
    "coco": "the COCO .json file",
    "yolo": "the .txt label files",
    "labelme": "the LabelMe .json files",
    "csv": "the .csv file",
}

HOW_TO_EXPORT = (
    "I read Pascal VOC (an .xml per image), COCO JSON, YOLO (a .txt per image with data.yaml or obj.names), "
    "LabelMe JSON and the TensorFlow CSV. To get one:\n"
    "- Roboflow: Download Dataset > COCO, YOLOv8 or Pascal VOC > download zip\n"
    "- CVAT: Export dataset > COCO 1.0, YOLO 1.1 or PASCAL VOC 1.1, with Save images on\n"
    "- Label Studio: Export > COCO, YOLO or Pascal VOC XML, then zip the images with it\n"
    "Send that zip here."
)


def no_annotations(details: dict) -> str:
    """``pipeline.data.formats.detect``: images, but no annotation in a format it reads."""
    return f"This zip has {details['images']} images but no annotations I can read.\n{HOW_TO_EXPORT}"


def mixed_formats(details: dict) -> str:
    """``pipeline.data.formats.detect``: two formats in one zip."""
    first, second = details["formats"][:2]
    return (
        f"This zip holds annotations in two formats, {format_name(first)} and {format_name(second)}. I read one "
        f"format per zip: remove {_FILES.get(first, first)} or {_FILES.get(second, second)} and send the zip again."
    )


_FOLDERS = {"train": "train", "valid": "validation", "test": "test", "dataset": "one folder"}


def cleaned_choose(dataset_id: str) -> str:
    return (
        f"Dataset {dataset_id}, cleaned: the images that go into training, with your class edits and split "
        "applied. In which format?"
    )


def cleaned_caption(dataset_id: str, fmt: str, images: int, boxes: int, folders: list[str]) -> str:
    where = ", ".join(_FOLDERS.get(folder, folder) for folder in folders)
    return f"Dataset {dataset_id}, cleaned, as {format_name(fmt)}: {images} images, {boxes} boxes ({where})."


def cleaned_too_big(dataset_id: str, size_mb: float, limit_mb: int) -> str:
    return (
        f"Dataset {dataset_id}, cleaned, is {size_mb:.0f} MB: more than the {limit_mb} MB I can send. "
        "The bot's owner can raise the limit with a self-hosted Bot API server."
    )
