"""The dataset steps on a workspace: inspect, split, labels, records, and prepare.

Each step reads the previous steps' files from the workspace and writes its
own, so the CLI, the bot and scripts can run them one at a time or in one go.
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path

from pipeline.data.dataset_health import inspect_files, summarize
from pipeline.data.ingest import ExtractLimits, extract_zip
from pipeline.data.label_plan import LabelPlan, edit_labels, load_plan
from pipeline.data.preview import write_preview
from pipeline.data.records import RecordsReport, write_records
from pipeline.data.reports import HealthReport, Problem, SplitReport
from pipeline.data.samples import SPLITS, Sample
from pipeline.data.split import split_samples, split_stats, split_warnings
from pipeline.data.workspace import Workspace
from pipeline.errors import WorkspaceError
from pipeline.files import write_json


@dataclass(frozen=True)
class PrepareOptions:
    val_ratio: float = 0.1
    test_ratio: float = 0.0
    seed: int = 0
    use_folders: bool = False
    label_map: Path | None = None
    ignore_unknown_labels: bool = False
    shards: int | None = None
    workers: int | None = None
    limits: ExtractLimits = field(default_factory=ExtractLimits)


def inspect(
    archive: Path, ws: Workspace, limits: ExtractLimits = ExtractLimits(), workers: int | None = None
) -> HealthReport:
    """Unpack the zip safely into the workspace, check every file, write report and preview."""
    files = _unpack(archive, ws, limits)
    samples, report = inspect_files(ws.source, files, workers)
    ws.save_samples(samples)
    write_json(ws.report, report.to_json())
    write_preview(ws.source, samples, report.problems, ws.preview)
    return report


def _unpack(archive: Path, ws: Workspace, limits: ExtractLimits) -> tuple[str, ...]:
    """Extract once; the same zip again reuses the extraction, another zip is refused."""
    digest = _sha256(archive)
    marker = ws.root / "upload.json"
    if marker.exists():
        stored = json.loads(marker.read_text(encoding="utf-8"))
        if stored["sha256"] != digest:
            raise WorkspaceError(
                f"The workspace {ws.root} already holds another dataset ({stored['name']}). "
                f"Choose a new --out folder for {archive.name}, or delete {ws.root} first.",
                kind="destination_not_empty",
            )
        return tuple(stored["files"])
    if ws.root.exists() and any(ws.root.iterdir()):
        raise WorkspaceError(
            f"{ws.root} is not empty and is not a detbot workspace; choose a new --out folder for {archive.name}.",
            kind="destination_not_empty",
        )
    ws.root.mkdir(parents=True, exist_ok=True)
    extraction = extract_zip(archive, ws.source, limits)
    write_json(marker, {"name": archive.name, "sha256": digest, "files": list(extraction.files)})
    return extraction.files


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        while chunk := stream.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def split(
    ws: Workspace, val_ratio: float = 0.1, test_ratio: float = 0.0, seed: int = 0, use_folders: bool = False
) -> SplitReport:
    samples = ws.load_samples()
    assignment = split_samples(samples, val_ratio, test_ratio, seed, use_folders)
    write_json(
        ws.split,
        {
            "seed": seed,
            "ratios": {"val": val_ratio, "test": test_ratio},
            "from_folders": use_folders,
            "assignment": {str(k): v for k, v in sorted(assignment.items())},
        },
    )
    return split_report(ws, samples)


def split_report(ws: Workspace, samples: list[Sample]) -> SplitReport:
    """Per-class counts per split, in the current final class names."""
    stored = ws.read_json(ws.split, "split")
    assignment = {int(k): v for k, v in stored["assignment"].items()}
    plan = load_plan(ws, samples)
    return SplitReport(
        seed=stored["seed"],
        ratios=stored["ratios"],
        from_folders=stored["from_folders"],
        splits=split_stats(samples, assignment, plan.final),
        class_warnings=split_warnings(samples, assignment, plan.final),
    )


def labels(
    ws: Workspace, *, rename=(), merge=(), drop=(), label_map: Path | None = None, ignore_unknown: bool = False
) -> tuple[LabelPlan, list[Problem]]:
    return edit_labels(
        ws,
        ws.load_samples(),
        rename=rename,
        merge=merge,
        drop=drop,
        label_map_file=label_map,
        ignore_unknown=ignore_unknown,
    )


def records(ws: Workspace, shards: int | None = None, workers: int | None = None) -> RecordsReport:
    samples = ws.load_samples()
    assignment = {int(k): v for k, v in ws.read_json(ws.split, "split")["assignment"].items()}
    plan = load_plan(ws, samples) if ws.labels.exists() else edit_labels(ws, samples)[0]
    by_split: dict[str, list[Sample]] = defaultdict(list)
    for sample in samples:
        by_split[assignment[sample.id]].append(plan.relabel(sample))
    return write_records(ws, dict(by_split), plan.label_map.ids(), workers=workers, num_shards=shards)


def prepare(archive: Path, out: Path, options: PrepareOptions = PrepareOptions()) -> dict:
    """Every step in one go; returns (and saves) the JSON summary the bot and scripts read."""
    ws = Workspace(out)
    report = inspect(archive, ws, options.limits, options.workers)
    plan, label_problems = labels(ws, label_map=options.label_map, ignore_unknown=options.ignore_unknown_labels)
    split_result = split(ws, options.val_ratio, options.test_ratio, options.seed, options.use_folders)
    written = records(ws, options.shards, options.workers)
    summary = build_summary(ws, report, plan, split_result, written, label_problems)
    write_json(ws.summary, summary)
    return summary


def build_summary(
    ws: Workspace,
    report: HealthReport,
    plan: LabelPlan,
    split_result: SplitReport,
    written: RecordsReport,
    label_problems: list[Problem],
) -> dict:
    final = summarize(report.images, [plan.relabel(s) for s in ws.load_samples()], [])
    problems = [asdict(p) for p in (*report.problems, *label_problems)]
    outputs = {"label_map": str(ws.label_map), "preview": str(ws.preview)}
    outputs |= {
        f"{name}_records": list(written.splits.get(name, ()))
        for name in SPLITS
        if name != "test" or name in written.splits
    }
    return {
        "format": report.format,
        "images": report.images,
        "labelled_images": final.labelled_images,
        "usable_images": final.usable_images,
        "boxes": final.boxes,
        "classes": {name: asdict(stats) for name, stats in final.classes.items()},
        "label_map": [asdict(item) for item in plan.label_map.items],
        "box_sizes": final.box_sizes,
        "splits": {name: asdict(stats) for name, stats in split_result.splits.items()},
        "warnings": list(split_result.warnings),
        "class_warnings": [asdict(warning) for warning in split_result.class_warnings],
        "problems": problems,
        "outputs": outputs,
    }
