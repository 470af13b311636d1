"""The health check: pair files, check every pair in parallel, and report.

The report says what was found and what was done; nothing is fixed silently and
nothing the user sent is modified (fixes happen when records are written).
"""
from __future__ import annotations

import re
import statistics
from collections import defaultdict
from functools import partial
from pathlib import Path, PurePosixPath

from .check import PairResult, PairTask, check_dataset_pixels, check_pair
from .dataset import Sample
from .pairing import ImageIndex, Layout, classify, closest
from .parallel import parallel_map
from .report import ClassStats, HealthReport, Problem
from .voc import AnnotationError, parse_voc

# COCO's size buckets, in pixels of area, so numbers read like the evaluator's APs/APm/APl.
SMALL_AREA, MEDIUM_AREA = 32 ** 2, 96 ** 2


def inspect_files(source: Path, files: tuple[str, ...], workers: int | None = None
                  ) -> tuple[list[Sample], HealthReport]:
    layout = classify(files)
    problems = [Problem("unsupported_file", name, f"{name} is not a .jpg, .jpeg, .png or .xml file",
                        "skipped; convert images to JPEG or PNG to use them") for name in layout.unsupported]
    tasks = _pair(source, layout, problems)
    check_dataset_pixels(source, [task.image for task in tasks])
    results: list[PairResult] = parallel_map(partial(check_pair, source), tasks, workers)
    samples = [result.sample for result in results if result.sample is not None]
    for result in results:
        problems.extend(result.problems)
    problems.extend(label_variants(samples))
    problems.extend(_duplicates(samples))
    return samples, summarize(len(layout.images), samples, problems)


def _pair(source: Path, layout: Layout, problems: list[Problem]) -> list[PairTask]:
    index = ImageIndex(layout.images)
    claims: dict[str, list[str]] = defaultdict(list)
    for annotation in layout.annotations:
        image = index.match(annotation) or index.match(annotation, _declared_stem(source / annotation))
        if image is None:
            problems.append(Problem("annotation_without_image", annotation,
                                    f"{annotation} has no image with the same name in the zip",
                                    "left out; add the image or remove the XML"))
        else:
            claims[image].append(annotation)
    tasks = []
    for number, image in enumerate(layout.images, start=1):
        annotations = claims.get(image)
        if not annotations:
            problems.append(Problem("image_without_annotation", image, f"{image} has no XML annotation",
                                    "left out; add an XML with no objects to use it as a negative"))
            continue
        chosen = closest(image, annotations)
        for extra in annotations:
            if extra != chosen:
                problems.append(Problem("annotation_without_image", extra,
                                        f"{extra} names {image}, which {chosen} already describes",
                                        "left out; remove the duplicate XML"))
        tasks.append(PairTask(number, image, chosen))
    return tasks


def _declared_stem(path: Path) -> str | None:
    """The image stem named in <filename>; <path> is never trusted (it is the labeller's disk)."""
    try:
        filename = parse_voc(path.read_bytes()).filename
    except (AnnotationError, OSError):
        return None
    return PurePosixPath(filename.replace("\\", "/")).stem if filename else None


def normalize_label(label: str) -> str:
    return re.sub(r"\s+", " ", label).strip().casefold()


def label_variants(samples: list[Sample]) -> list[Problem]:
    spellings: dict[str, dict[str, str]] = defaultdict(dict)
    for sample in samples:
        for box in sample.boxes:
            spellings[normalize_label(box.label)].setdefault(box.label, sample.annotation or sample.image)
    problems = []
    for variants in spellings.values():
        if len(variants) > 1:
            names = sorted(variants)
            listed = ", ".join(f"'{name}' (e.g. {variants[name]})" for name in names)
            problems.append(Problem("label_variant", variants[names[0]],
                                    f"labels {listed} differ only in case or spaces",
                                    "kept apart; merge them with `labels --merge "
                                    f"{','.join(names)}={names[0]}` if they are one class"))
    return problems


def _duplicates(samples: list[Sample]) -> list[Problem]:
    groups: dict[str, list[str]] = defaultdict(list)
    for sample in samples:
        groups[sample.sha256].append(sample.image)
    return [Problem("duplicate_image", images[0],
                    f"{images[0]} is byte-identical to {', '.join(images[1:])}",
                    "all kept, always in the same split")
            for images in groups.values() if len(images) > 1]


def summarize(image_count: int, samples: list[Sample], problems: list[Problem]) -> HealthReport:
    boxes: dict[str, int] = defaultdict(int)
    images: dict[str, int] = defaultdict(int)
    for sample in samples:
        for box in sample.boxes:
            boxes[box.label] += 1
        for label in sample.labels:
            images[label] += 1
    classes = {name: ClassStats(boxes[name], images[name]) for name in sorted(boxes)}
    return HealthReport(images=image_count, labelled_images=sum(1 for s in samples if s.boxes),
                        usable_images=len(samples), boxes=sum(boxes.values()), classes=classes,
                        box_sizes=box_sizes(samples), problems=tuple(problems))


def box_sizes(samples: list[Sample]) -> dict[str, float | int]:
    areas = [box.area for sample in samples for box in sample.boxes]
    relative = sorted((box.area / (sample.width * sample.height)) ** 0.5
                      for sample in samples for box in sample.boxes)
    sizes: dict[str, float | int] = {
        "small": sum(1 for a in areas if a < SMALL_AREA),
        "medium": sum(1 for a in areas if SMALL_AREA <= a < MEDIUM_AREA),
        "large": sum(1 for a in areas if a >= MEDIUM_AREA),
    }
    if relative:
        deciles = statistics.quantiles(relative, n=10) if len(relative) > 1 else [relative[0]] * 9
        sizes |= {"relative_p10": round(deciles[0], 4), "relative_median": round(statistics.median(relative), 4),
                  "relative_p90": round(deciles[-1], 4)}
    return sizes
