"""The dataset's health: every pair checked in parallel, then duplicates, label variants and a summary.

The report says what was found and what was done; nothing is fixed silently and
nothing the user sent is modified (fixes happen when records are written).
"""

from __future__ import annotations

import re
import statistics
from collections import defaultdict
from dataclasses import replace
from functools import partial
from pathlib import Path

from pipeline.data.formats.detect import read_annotations
from pipeline.data.pair_check import PairResult, check_dataset_pixels, check_pair
from pipeline.data.pairing import classify
from pipeline.data.parallel import parallel_map
from pipeline.data.reports import ClassStats, HealthReport, Problem
from pipeline.data.samples import Sample

# COCO's size buckets, in pixels of area, so numbers read like the evaluator's APs/APm/APl.
SMALL_AREA, MEDIUM_AREA = 32**2, 96**2


def inspect_files(
    source: Path, files: tuple[str, ...], workers: int | None = None
) -> tuple[list[Sample], HealthReport]:
    problems = [
        Problem(
            "unsupported_file",
            name,
            f"{name} is not a .jpg, .jpeg, .png or .xml file",
            "skipped; convert images to JPEG or PNG to use them",
        )
        for name in classify(files).unsupported
    ]
    reading = read_annotations(source, files, problems)
    check_dataset_pixels(source, [task.image for task in reading.tasks])
    results: list[PairResult] = parallel_map(partial(check_pair, source), reading.tasks, workers)
    samples = [result.sample for result in results if result.sample is not None]
    for result in results:
        problems.extend(result.problems)
    problems.extend(label_variants(samples))
    problems.extend(_duplicates(samples))
    return samples, replace(summarize(len(reading.images), samples, problems), format=reading.format)


def normalize_label(label: str) -> str:
    return re.sub(r"\s+", " ", label).strip().casefold()


def label_variants(samples: list[Sample]) -> list[Problem]:
    """Spellings of one label; the one with the most boxes (then the first in order) is the suggested name."""
    spellings: dict[str, dict[str, str]] = defaultdict(dict)
    boxes: dict[str, int] = defaultdict(int)
    for sample in samples:
        for box in sample.boxes:
            spellings[normalize_label(box.label)].setdefault(box.label, sample.annotation or sample.image)
            boxes[box.label] += 1
    problems = []
    for variants in spellings.values():
        if len(variants) > 1:
            names = sorted(variants)
            into = min(names, key=lambda name: -boxes[name])
            listed = ", ".join(f"'{name}' (e.g. {variants[name]})" for name in names)
            problems.append(
                Problem(
                    "label_variant",
                    variants[names[0]],
                    f"labels {listed} differ only in case or spaces",
                    f"kept apart; merge them with `labels --merge {','.join(names)}={into}` if they are one class",
                    {"names": names, "examples": [variants[name] for name in names], "into": into},
                )
            )
    return problems


def _duplicates(samples: list[Sample]) -> list[Problem]:
    groups: dict[str, list[str]] = defaultdict(list)
    for sample in samples:
        groups[sample.sha256].append(sample.image)
    return [
        Problem(
            "duplicate_image",
            images[0],
            f"{images[0]} is byte-identical to {', '.join(images[1:])}",
            "all kept, always in the same split",
            {"copies": images[1:]},
        )
        for images in groups.values()
        if len(images) > 1
    ]


def summarize(image_count: int, samples: list[Sample], problems: list[Problem]) -> HealthReport:
    boxes: dict[str, int] = defaultdict(int)
    images: dict[str, int] = defaultdict(int)
    for sample in samples:
        for box in sample.boxes:
            boxes[box.label] += 1
        for label in sample.labels:
            images[label] += 1
    classes = {name: ClassStats(boxes[name], images[name]) for name in sorted(boxes)}
    return HealthReport(
        images=image_count,
        labelled_images=sum(1 for s in samples if s.boxes),
        usable_images=len(samples),
        boxes=sum(boxes.values()),
        classes=classes,
        box_sizes=box_sizes(samples),
        problems=tuple(problems),
    )


def box_sizes(samples: list[Sample]) -> dict[str, float | int]:
    areas = [box.area for sample in samples for box in sample.boxes]
    relative = sorted((box.area / (sample.width * sample.height)) ** 0.5 for sample in samples for box in sample.boxes)
    sizes: dict[str, float | int] = {
        "small": sum(1 for a in areas if a < SMALL_AREA),
        "medium": sum(1 for a in areas if SMALL_AREA <= a < MEDIUM_AREA),
        "large": sum(1 for a in areas if a >= MEDIUM_AREA),
    }
    if relative:
        deciles = statistics.quantiles(relative, n=10) if len(relative) > 1 else [relative[0]] * 9
        sizes |= {
            "relative_p10": round(deciles[0], 4),
            "relative_median": round(statistics.median(relative), 4),
            "relative_p90": round(deciles[-1], 4),
        }
    return sizes
