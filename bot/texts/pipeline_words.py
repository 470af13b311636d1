"""What the pipeline reports as kinds and parameters, worded: a dataset's problems, split warnings, the
machine that trains and why a detector is recommended (``pipeline.data.reports``, ``pipeline.train``)."""

from __future__ import annotations


def _listed(items: list) -> str:
    return ", ".join(str(item) for item in items)


def _size(pair: list | None) -> str:
    return f"{pair[0]}x{pair[1]}" if pair else "?"


def _box(params: dict) -> str:
    return f"object {params.get('object', '?')} ({params.get('label') or 'no name'}) in {params['file']}"


_DROPPED = {
    "zero_area": "has zero area",
    "inverted": "has inverted corners (max < min)",
    "outside": "lies outside the image",
}

# kind -> (the detail, from the problem's parameters; what was done about it)
_PROBLEM_WORDS = {
    "image_without_annotation": (
        lambda p: f"{p['file']} has no annotation",
        lambda p: "left out; add an annotation with no objects to use it as a negative",
    ),
    "annotation_without_image": (
        lambda p: (
            f"{p['file']} describes {p['image']}, which {p['described_by']} already describes"
            if "described_by" in p
            else f"{p['file']} names {p['count']} more images that are not in the zip"
            if "count" in p
            else f"{p['file']} names no image in the zip"
        ),
        lambda p: (
            "left out; remove the duplicate annotation"
            if "described_by" in p
            else "left out; add the image or remove the annotation"
        ),
    ),
    "bad_annotation": (
        lambda p: f"{p['file']} {p['reason']}" if p.get("reason") else f"{p['file']} cannot be read",
        lambda p: "its image left out; fix or re-export the annotation",
    ),
    "bad_image": (
        lambda p: f"{p['file']} {p['reason']}" if p.get("reason") else f"{p['file']} cannot be decoded",
        lambda p: "left out of the records; re-export or replace the file",
    ),
    "format_mismatch": (
        lambda p: f"{p['file']} is a {p.get('format', 'different')} file with the wrong extension",
        lambda p: "re-encoded as JPEG for the records",
    ),
    "size_mismatch": (
        lambda p: f"{p['file']} says {_size(p.get('said'))} but the image is {_size(p.get('real'))}",
        lambda p: (
            "boxes rescaled to the real image size (same aspect ratio)"
            if p.get("rescaled")
            else "boxes kept as drawn and clipped to the image; check this file"
        ),
    ),
    "exif_rotated": (
        lambda p: f"{p['file']} is stored rotated (EXIF orientation {p.get('orientation', '?')})",
        lambda p: (
            "pixels turned upright, the view the boxes were drawn on"
            if p.get("turned", True)
            else "kept as stored, the view the boxes were drawn on"
        ),
    ),
    "color_converted": (
        lambda p: f"{p['file']} is not 8-bit RGB (mode {p.get('mode', '?')})",
        lambda p: "converted to 3-channel RGB",
    ),
    "box_clipped": (
        lambda p: f"{_box(p)} reaches outside the {_size(p.get('image_size'))} image",
        lambda p: "clipped to the image",
    ),
    "box_dropped": (
        lambda p: f"{_box(p)} " + _DROPPED.get(p.get("reason"), "is incomplete"),
        lambda p: "box dropped",
    ),
    "label_variant": (
        lambda p: f"labels {_listed(p['names'])} differ only in case or spaces",
        lambda p: (
            f"kept apart; if they are one class, tap the merge button or send /labels merge "
            f"{','.join(p['names'])}={p['into']}"
        ),
    ),
    "duplicate_image": (
        lambda p: f"{p['file']} is byte-identical to {_listed(p['copies'])}",
        lambda p: "all kept, always in the same split",
    ),
    "unknown_label": (
        lambda p: f"label '{p['label']}' ({p['images']} images) is not in {p['label_map']}",
        lambda p: "its boxes are left out",
    ),
    "empty_class": (
        lambda p: f"class '{p['name']}' has no boxes",
        lambda p: "kept in the label map; the detector cannot learn it without examples",
    ),
    "class_index_out_of_range": (
        lambda p: f"{p['file']} has a class number its names file does not have",
        lambda p: "box dropped; fix the class number or add the class to the names",
    ),
    "class_names_missing": (
        lambda p: f"the YOLO labels in {p['file']} come without data.yaml, obj.names or classes.txt",
        lambda p: "classes are named by their numbers (0, 1, ...); give them names with /labels rename 0=name",
    ),
    "crowd_box": (
        lambda p: f"{p['file']} has objects marked iscrowd (one region covering a crowd)",
        lambda p: "left out, as COCO training leaves them out",
    ),
    "unsupported_file": (
        lambda p: f"{p['file']} is a file type I do not read",
        lambda p: "skipped; convert images to JPEG or PNG to use them",
    ),
}


WORDED_PROBLEMS = tuple(_PROBLEM_WORDS)  # the kinds worded here; tests hold it to pipeline.data.reports.PROBLEM_KINDS


def problem_name(kind: str) -> str:
    return kind


def _worded(table: dict, problem: dict, part: int) -> str | None:
    """Part 0 (the detail) or 1 (the action) of ``problem`` as ``table`` words its kind; None for a kind
    the table lacks, or a problem without the parameters (one checked before they were reported)."""
    words = table.get(problem["kind"])
    try:
        return words[part]({"file": problem["file"]} | problem.get("params", {})) if words else None
    except KeyError:
        return None


def problem_detail(problem: dict) -> str:
    """A problem's detail from its parameters (else the pipeline's own sentence)."""
    return _worded(_PROBLEM_WORDS, problem, 0) or problem["detail"]


def problem_action(problem: dict) -> str:
    return _worded(_PROBLEM_WORDS, problem, 1) or problem["action"]


def _images(count: int, split: str) -> str:
    return f"{count} {split} image{'s' if count != 1 else ''}"


_CLASS_WARNINGS = {
    "no_train": lambda w: f"class '{w['name']}' has no training images; the detector cannot learn it",
    "few_train": lambda w: (
        f"class '{w['name']}' has only {_images(w['count'], 'training')}; detectors need ~50+ per class"
    ),
    "no_val": lambda w: f"class '{w['name']}' has no validation images; its accuracy cannot be measured",
    "few_val": lambda w: f"class '{w['name']}' has only {_images(w['count'], 'validation')}; its score will be noisy",
    "no_test": lambda w: f"class '{w['name']}' has no test images; its test score is missing",
}


def class_warning(warning: dict) -> str:
    """One of ``pipeline.data.reports.ClassWarning`` (as JSON)."""
    return _CLASS_WARNINGS[warning["kind"]](warning) + " - add more images of it"


def device(params: dict) -> str:
    """``pipeline.train.hardware.Hardware.device_params``."""
    if not params["gpus"]:
        return f"CPU ({params['cpu_cores']} cores)"
    text = f"{params['gpus']} GPU{'s' if params['gpus'] > 1 else ''} ({params['memory_gb']} GB each)"
    return f"{text}, assumed" if params["assumed"] else text


RECOMMENDATIONS = {
    "no_gpu": "no GPU here ({cores} CPU cores): only a mobile model trains in minutes on a CPU",
    "small_gpu": "the GPU has {memory_gb} GB: a mobile model with COCO-pretrained weights fits with a useful batch",
    "small_dataset": (
        "{images} labelled images is a small dataset: a pretrained mobile model generalises better than a large one"
    ),
    "accurate": "{images} labelled images and {device}: the COCO-pretrained ResNet-50 FPN is the accurate choice",
}


def recommendation(kind: str, params: dict) -> str:
    """Why ``pipeline.train.catalogue.recommend`` chose its model."""
    return RECOMMENDATIONS[kind].format(**params | ({"device": device(params["device"])} if "device" in params else {}))
