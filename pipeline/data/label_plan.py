"""The labels step: class edits and the label map, kept in the workspace.

Edits accumulate (the bot sends one ``/labels rename`` at a time), so the
workspace stores raw label -> final label, and the label map is rebuilt from it.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, replace
from pathlib import Path

from pipeline import label_map as lm
from pipeline.data import class_edits
from pipeline.data.reports import Problem
from pipeline.data.samples import Sample
from pipeline.data.workspace import Workspace
from pipeline.errors import LabelMapError
from pipeline.files import write_json


@dataclass(frozen=True)
class LabelPlan:
    """How every raw label in the data becomes a class id (or is left out)."""

    edits: class_edits.LabelEdits
    label_map: lm.LabelMap
    supplied: bool = False  # the user gave the label map; ids come from their file
    ignore_unknown: bool = False

    def final(self, label: str) -> str | None:
        edited = self.edits.apply(label)
        if edited is None:
            return None
        item = self.label_map.lookup(edited)
        return item.name if item else None

    def relabel(self, sample: Sample) -> Sample:
        """The sample with final class names; boxes of dropped or unknown labels removed."""
        boxes = tuple(replace(box, label=name) for box in sample.boxes if (name := self.final(box.label)) is not None)
        return replace(sample, boxes=boxes)

    def to_json(self) -> dict:
        return {
            "edits": self.edits.mapping,
            "supplied": self.supplied,
            "ignore_unknown": self.ignore_unknown,
            "items": [{"id": i.id, "name": i.name, "display_name": i.display_name} for i in self.label_map.items],
        }

    @classmethod
    def from_json(cls, payload: dict) -> LabelPlan:
        items = tuple(lm.LabelItem(**item) for item in payload["items"])
        return cls(
            class_edits.LabelEdits(dict(payload["edits"])),
            lm.LabelMap(items),
            payload["supplied"],
            payload["ignore_unknown"],
        )


def load_plan(ws: Workspace, samples: list[Sample]) -> LabelPlan:
    """The stored plan, or the one derived from the data when labels were never edited."""
    if ws.labels.exists():
        return LabelPlan.from_json(ws.read_json(ws.labels, "labels"))
    return LabelPlan(class_edits.LabelEdits({}), lm.derive(_raw_labels(samples)))


def edit_labels(
    ws: Workspace,
    samples: list[Sample],
    *,
    rename=(),
    merge=(),
    drop=(),
    label_map_file: Path | None = None,
    ignore_unknown: bool = False,
) -> tuple[LabelPlan, list[Problem]]:
    """Apply edits on top of the stored plan, check it against the data, save it."""
    current = load_plan(ws, samples)
    edits = current.edits
    for expr in rename:
        edits = class_edits.rename(edits, _known(edits, samples), *class_edits.parse_rename(expr))
    for expr in merge:
        edits = class_edits.merge(edits, _known(edits, samples), *class_edits.parse_merge(expr))
    for name in drop:
        edits = class_edits.drop(edits, _known(edits, samples), name)
    supplied = current.supplied or label_map_file is not None
    ignore_unknown = ignore_unknown or current.ignore_unknown
    if label_map_file is not None:
        label_map = lm.read_pbtxt(label_map_file)
    elif supplied:
        label_map = current.label_map
    else:
        label_map = lm.derive(_known(edits, samples))
    plan = LabelPlan(edits, label_map, supplied, ignore_unknown)
    problems = _check_supplied(plan, samples, label_map_file or ws.label_map) if supplied else []
    if not plan.label_map.items:
        raise LabelMapError(
            "No class is left: every label was dropped. Keep at least one class "
            "(run `labels` without --drop, or undo by sending the zip again).",
            kind="no_class_left",
        )
    ws.data.mkdir(parents=True, exist_ok=True)
    lm.write_pbtxt(plan.label_map, ws.label_map)
    write_json(ws.labels, plan.to_json())
    return plan, problems


def _check_supplied(plan: LabelPlan, samples: list[Sample], source: Path) -> list[Problem]:
    """Every data label must be in the user's map, unless they asked to leave the rest out."""
    usage: dict[str, list[str]] = defaultdict(list)
    for sample in samples:
        for label in sorted(sample.labels):
            edited = plan.edits.apply(label)
            if edited is not None:
                usage[edited].append(sample.annotation or sample.image)
    problems: list[Problem] = []
    try:
        lm.check_coverage(plan.label_map, usage, source.name)
    except LabelMapError as error:
        if not plan.ignore_unknown:
            raise
        for label, files in error.details["missing"].items():
            problems.append(
                Problem(
                    "unknown_label",
                    files[0],
                    f"label '{label}' ({len(usage[label])} images) is not in {source.name}",
                    "its boxes are left out",
                    {"label": label, "images": len(usage[label]), "label_map": source.name},
                )
            )
    used = {plan.label_map.lookup(label).name for label in usage if plan.label_map.lookup(label)}
    problems.extend(
        Problem(
            "empty_class",
            source.name,
            f"class '{item.name}' (id {item.id}) has no boxes",
            "kept in the label map; the detector cannot learn it without examples",
            {"name": item.name, "id": item.id},
        )
        for item in plan.label_map.items
        if item.name not in used
    )
    return problems


def _raw_labels(samples: list[Sample]) -> set[str]:
    return {label for sample in samples for label in sample.labels}


def _known(edits: class_edits.LabelEdits, samples: list[Sample]) -> set[str]:
    return {name for label in _raw_labels(samples) if (name := edits.apply(label)) is not None}
