"""How good a detector is on labelled images: COCO AP and a confusion matrix.

Plain numpy and pycocotools on boxes in pixels, so the same numbers can be
computed for any model (the exported SavedModel, TFLite) without TensorFlow.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.files import replacing

Box = tuple[float, float, float, float]  # xmin, ymin, xmax, ymax in pixels
# COCOeval's precision has shape [IoU thresholds, recall points, classes, area ranges, max detections];
# area range 0 is "all", max-detections index -1 is 100.
_ALL_AREAS, _MAX_DETS = 0, -1
BACKGROUND, MISSED = "background", "missed"


@dataclass(frozen=True)
class ImageBoxes:
    """One image's boxes; ``scores`` is empty for ground truth."""

    boxes: tuple[Box, ...] = ()
    classes: tuple[int, ...] = ()
    scores: tuple[float, ...] = ()


def coco_ap(
    groundtruths: Sequence[ImageBoxes], detections: Sequence[ImageBoxes], class_names: Mapping[int, str]
) -> dict:
    """COCO box AP, AP50, AP75 and per-class AP (None for a class without ground truth)."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    if len(groundtruths) != len(detections):
        raise ValueError(f"{len(groundtruths)} ground-truth images but {len(detections)} detection images")
    names = {int(k): v for k, v in class_names.items()}
    if not any(image.boxes for image in groundtruths):
        return {"AP": None, "AP50": None, "AP75": None, "per_class_AP": dict.fromkeys(names.values())}
    results = _annotations(detections, with_scores=True)
    if not results:  # pycocotools cannot load an empty result list; nothing found scores 0
        return {
            "AP": 0.0,
            "AP50": 0.0,
            "AP75": 0.0,
            "per_class_AP": {name: 0.0 if _has(groundtruths, cid) else None for cid, name in names.items()},
        }
    truth = COCO()
    truth.dataset = {
        "images": [{"id": index} for index in range(len(groundtruths))],
        "categories": [{"id": cid, "name": name} for cid, name in names.items()],
        "annotations": _annotations(groundtruths, with_scores=False),
    }
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints its progress and tables
        truth.createIndex()
        evaluation = COCOeval(truth, truth.loadRes(results), "bbox")
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    precision = evaluation.eval["precision"]
    per_class = {
        names[cid]: mean_valid(precision[:, :, index, _ALL_AREAS, _MAX_DETS])
        for index, cid in enumerate(evaluation.params.catIds)
    }
    stats = evaluation.stats
    return {"AP": float(stats[0]), "AP50": float(stats[1]), "AP75": float(stats[2]), "per_class_AP": per_class}


def _annotations(images: Sequence[ImageBoxes], with_scores: bool) -> list[dict]:
    rows = []
    for image_id, image in enumerate(images):
        scores = image.scores if with_scores else (None,) * len(image.boxes)
        for (xmin, ymin, xmax, ymax), cid, score in zip(image.boxes, image.classes, scores):
            width, height = xmax - xmin, ymax - ymin
            row = {
                "id": len(rows) + 1,
                "image_id": image_id,
                "category_id": int(cid),
                "bbox": [xmin, ymin, width, height],
                "area": width * height,
                "iscrowd": 0,
            }
            rows.append(row | ({"score": float(score)} if with_scores else {}))
    return rows


def _has(images: Sequence[ImageBoxes], class_id: int) -> bool:
    return any(class_id in image.classes for image in images)


def mean_valid(values: np.ndarray) -> float | None:
    valid = values[values > -1]  # -1 marks a class with no ground truth
    return float(valid.mean()) if valid.size else None


@dataclass(frozen=True)
class ConfusionMatrix:
    """Counts of true class (rows, last: background = false positives) against predicted class
    (columns, last: missed = ground truth nothing found)."""

    names: tuple[str, ...]
    counts: tuple[tuple[int, ...], ...]
    iou: float
    score: float

    @property
    def rows(self) -> tuple[str, ...]:
        return (*self.names, BACKGROUND)

    @property
    def columns(self) -> tuple[str, ...]:
        return (*self.names, MISSED)

    def to_json(self) -> dict:
        return {
            "rows": list(self.rows),
            "columns": list(self.columns),
            "counts": [list(row) for row in self.counts],
            "iou": self.iou,
            "score": self.score,
        }

    def write_png(self, path: Path) -> Path:
        import matplotlib

        matplotlib.use("Agg")  # no display on a server
        import matplotlib.pyplot as plt

        counts = np.array(self.counts, dtype=float)
        share = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)  # colour by row so rare classes show
        size = min(16.0, 1.6 + 0.7 * len(self.columns))  # inches; many classes still fit a screen
        fig, ax = plt.subplots(figsize=(size + 1, size), dpi=110)
        ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
        for (row, column), value in np.ndenumerate(counts):
            ax.text(
                column,
                row,
                int(value),
                ha="center",
                va="center",
                color="white" if share[row, column] > 0.5 else "black",
            )
        ax.set_xticks(range(len(self.columns)), self.columns, rotation=45, ha="right")
        ax.set_yticks(range(len(self.rows)), self.rows)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        ax.set_title(f"IoU >= {self.iou:g}, score >= {self.score:g}")
        fig.tight_layout()
        with replacing(path) as tmp:
            fig.savefig(tmp)
        plt.close(fig)
        return path


def confusion_matrix(
    groundtruths: Sequence[ImageBoxes],
    detections: Sequence[ImageBoxes],
    num_classes: int,
    iou: float = 0.5,
    score: float = 0.5,
    class_names: Mapping[int, str] | None = None,
) -> ConfusionMatrix:
    """Match detections to ground truth by IoU whatever their class, so a wrong class is off the diagonal.

    ``num_classes`` counts the background id 0, as the model config does: classes are ids 1..num_classes-1.
    """
    size = num_classes  # ids 1..n-1 map to 0..n-2; index n-1 is background / missed
    counts = np.zeros((size, size), dtype=int)
    for truth, found in zip(groundtruths, detections, strict=True):
        for true_index, found_index in _match(truth, found, iou, score):
            counts[
                size - 1 if true_index is None else truth.classes[true_index] - 1,
                size - 1 if found_index is None else found.classes[found_index] - 1,
            ] += 1
    names = {int(k): v for k, v in (class_names or {}).items()}
    return ConfusionMatrix(
        names=tuple(names.get(cid, str(cid)) for cid in range(1, num_classes)),
        counts=tuple(tuple(int(v) for v in row) for row in counts),
        iou=iou,
        score=score,
    )


def _match(truth: ImageBoxes, found: ImageBoxes, iou: float, score: float):
    """(truth index, detection index) pairs; None on one side for a false positive or a miss."""
    kept = sorted((i for i, s in enumerate(found.scores) if s >= score), key=lambda i: -found.scores[i])
    overlaps = _iou(np.array([found.boxes[i] for i in kept]).reshape(-1, 4), np.array(truth.boxes).reshape(-1, 4))
    free = np.ones(len(truth.boxes), dtype=bool)
    for row, index in enumerate(kept):  # highest score first claims its best free ground truth
        candidates = np.where(free, overlaps[row], -1.0)
        best = int(candidates.argmax()) if candidates.size else -1
        if best >= 0 and candidates[best] >= iou:
            free[best] = False
            yield best, index
        else:
            yield None, index
    for best in np.flatnonzero(free):
        yield int(best), None


def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise IoU of [N, 4] and [M, 4] boxes as xmin, ymin, xmax, ymax."""
    low = np.maximum(a[:, None, :2], b[None, :, :2])
    high = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(high - low, 0, None), axis=2)
    area_a = np.prod(a[:, 2:] - a[:, :2], axis=1)
    area_b = np.prod(b[:, 2:] - b[:, :2], axis=1)
    return inter / np.maximum(area_a[:, None] + area_b[None, :] - inter, 1e-9)
