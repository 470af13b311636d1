"""Model Garden's COCO evaluator, with per-class AP that works on stock pycocotools.

Model Garden only reports per-category metrics when its COCOeval carries a
``category_stats`` attribute, which pycocotools does not have; the per-class
numbers are in ``eval['precision']`` all the same.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from official.vision.evaluation import coco_evaluator

from pipeline.files import write_json
from pipeline.train.metrics import ImageBoxes, confusion_matrix, mean_valid

# precision has shape [IoU thresholds, recall points, classes, area ranges, max detections];
# area range 0 is "all", max-detections index -1 is 100.
_ALL_AREAS, _MAX_DETS = 0, -1


class PerClassCOCOEvaluator(coco_evaluator.COCOEvaluator):
    def _retrieve_per_category_metrics(self, coco_eval, prefix=""):
        precision = coco_eval.eval["precision"]
        metrics = {}
        for index, category_id in enumerate(coco_eval.params.catIds):
            for key, values in (
                ("", precision[:, :, index, _ALL_AREAS, _MAX_DETS]),
                ("@50IoU", precision[0, :, index, _ALL_AREAS, _MAX_DETS]),
            ):
                value = mean_valid(values)
                metrics[f"{prefix}Precision mAP ByCategory{key}/{category_id}"] = -1.0 if value is None else value
        return metrics

    def evaluate(self):
        # The predictions are gone once result() resets; keep what a confusion matrix needs.
        self.last_boxes = _image_boxes(self._groundtruths, self._predictions)
        self.last_source_ids = [int(i) for batch in self._groundtruths.get("source_id", []) for i in batch]
        return super().evaluate()


def _image_boxes(groundtruths: dict, predictions: dict) -> tuple[list[ImageBoxes], list[ImageBoxes]]:
    """Per-image boxes in pixels as (xmin, ymin, xmax, ymax), from the evaluator's batched arrays."""
    truths, found = [], []
    for batch in range(len(groundtruths.get("source_id", []))):
        gt_boxes, gt_classes, gt_count = (groundtruths[key][batch] for key in ("boxes", "classes", "num_detections"))
        dt_boxes, dt_classes, dt_scores, dt_count = (
            predictions[key][batch]
            for key in ("detection_boxes", "detection_classes", "detection_scores", "num_detections")
        )
        for image in range(len(gt_boxes)):
            truths.append(_boxes(gt_boxes[image][: int(gt_count[image])], gt_classes[image][: int(gt_count[image])]))
            count = int(dt_count[image])
            found.append(_boxes(dt_boxes[image][:count], dt_classes[image][:count], dt_scores[image][:count]))
    return truths, found


def _boxes(yxyx: np.ndarray, classes: np.ndarray, scores: np.ndarray | None = None) -> ImageBoxes:
    return ImageBoxes(
        boxes=tuple((float(b[1]), float(b[0]), float(b[3]), float(b[2])) for b in yxyx),
        classes=tuple(int(c) for c in classes),
        scores=() if scores is None else tuple(float(s) for s in scores),
    )


def write_detections(
    evaluator: PerClassCOCOEvaluator, workspace: Path, names: dict, out: Path, count: int = 4, threshold: float = 0.3
) -> Path | None:
    """The last evaluation's detections drawn on a few validation images, for the user to look at."""
    from pipeline.data.preview import draw_detections
    from pipeline.data.workspace import Workspace

    _, found = getattr(evaluator, "last_boxes", ([], []))
    ids = getattr(evaluator, "last_source_ids", [])
    if not found:
        return None
    samples = {sample.id: sample for sample in Workspace(workspace).load_samples()}
    chosen = [(samples[i], boxes) for i, boxes in zip(ids, found) if i in samples][:count]
    return draw_detections(Workspace(workspace).source, chosen, names, threshold, out)


def write_confusion(evaluator: PerClassCOCOEvaluator, num_classes: int, names: dict, job) -> None:
    """The confusion matrix of the evaluator's last evaluation, as JSON and PNG in the job folder."""
    truths, found = getattr(evaluator, "last_boxes", ([], []))
    matrix = confusion_matrix(truths, found, num_classes, class_names=names)
    write_json(job.confusion, matrix.to_json())
    matrix.write_png(job.confusion.with_suffix(".png"))


def use_per_class_evaluator(task) -> None:
    """Swap the task's evaluator for one that reports per-class AP, keeping its settings."""
    config = task.task_config
    task.coco_metric = PerClassCOCOEvaluator(
        annotation_file=config.annotation_file,
        include_mask=False,
        per_category_metrics=True,
        max_num_eval_detections=config.max_num_eval_detections,
    )
