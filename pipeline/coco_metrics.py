"""Model Garden's COCO evaluator, with per-class AP that works on stock pycocotools.

Model Garden only reports per-category metrics when its COCOeval carries a
``category_stats`` attribute, which pycocotools does not have; the per-class
numbers are in ``eval['precision']`` all the same.
"""
from __future__ import annotations

import numpy as np
from official.vision.evaluation import coco_evaluator

# precision has shape [IoU thresholds, recall points, classes, area ranges, max detections];
# area range 0 is "all", max-detections index -1 is 100.
_ALL_AREAS, _MAX_DETS = 0, -1


class PerClassCOCOEvaluator(coco_evaluator.COCOEvaluator):
    def _retrieve_per_category_metrics(self, coco_eval, prefix=""):
        precision = coco_eval.eval["precision"]
        metrics = {}
        for index, category_id in enumerate(coco_eval.params.catIds):
            metrics[f"{prefix}Precision mAP ByCategory/{category_id}"] = _mean(precision[:, :, index, _ALL_AREAS, _MAX_DETS])
            metrics[f"{prefix}Precision mAP ByCategory@50IoU/{category_id}"] = _mean(precision[0, :, index, _ALL_AREAS, _MAX_DETS])
        return metrics


def _mean(values: np.ndarray) -> float:
    valid = values[values > -1]
    return float(valid.mean()) if valid.size else -1.0


def use_per_class_evaluator(task) -> None:
    """Swap the task's evaluator for one that reports per-class AP, keeping its settings."""
    config = task.task_config
    task.coco_metric = PerClassCOCOEvaluator(annotation_file=config.annotation_file, include_mask=False,
                                             per_category_metrics=True,
                                             max_num_eval_detections=config.max_num_eval_detections)
