"""``python -m pipeline export-data``: a workspace's cleaned dataset as a VOC, COCO or YOLO zip."""

from __future__ import annotations

from pathlib import Path

from pipeline.data.formats.cleaned_zip import export_dataset
from pipeline.data.formats.writers import WRITERS
from pipeline.data.workspace import Workspace


def add_commands(sub, common) -> None:
    p = sub.add_parser(
        "export-data",
        parents=[common],
        help="write the checked dataset (label edits, split, fixes applied) as a VOC, COCO or YOLO zip",
    )
    p.add_argument("workspace", type=Path)
    p.add_argument("--format", choices=WRITERS, required=True, help="the annotation format to write")
    p.add_argument("--out", type=Path, required=True, help="the .zip to write")
    p.set_defaults(run=_export_data)


def _export_data(args):
    payload = export_dataset(Workspace(args.workspace), args.format, args.out)
    folders = ", ".join(f"{folder} {count}" for folder, count in payload["folders"].items())
    text = (
        f"{payload['format']}: {payload['images']} images, {payload['boxes']} boxes, "
        f"{len(payload['classes'])} classes ({folders})\nwrote {args.out}"
    )
    return payload, text
