"""``python -m pipeline``: the command-line twin of every chat command.

A thin layer: parse arguments, call ``steps``, print a table or the JSON contract.
Errors become one paragraph (or ``{"error": {...}}`` with ``--json``) and a
non-zero exit code here, and only here.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from dataclasses import asdict
from pathlib import Path

from pipeline.cli import cluster as cli_cluster
from pipeline.cli import export as cli_export
from pipeline.cli import export_data as cli_export_data
from pipeline.cli import tables
from pipeline.cli import train as cli_train
from pipeline.data import steps
from pipeline.data.synthetic import SyntheticSpec, make_voc_zip
from pipeline.data.workspace import Workspace
from pipeline.errors import PipelineError

log = logging.getLogger("pipeline")
EXIT_USER_ERROR, EXIT_INTERNAL_ERROR = 1, 3


def main(argv: list[str] | None = None, visible_devices: str | None = None) -> int:
    """``visible_devices``: CUDA_VISIBLE_DEVICES as the entry point read it (None: every GPU)."""
    args = _parse(build_parser(), sys.argv[1:] if argv is None else list(argv))
    args.visible_devices = visible_devices
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        payload, text = args.run(args)
    except PipelineError as error:
        return _fail(args, error.to_json(), str(error), EXIT_USER_ERROR)
    except Exception:  # the user gets one line; the log gets the traceback
        log.exception("internal error in %s", args.command)
        message = "detbot hit an internal error; nothing you sent was changed. Run again with -v and report the log."
        return _fail(args, {"kind": "internal_error", "message": message}, message, EXIT_INTERNAL_ERROR)
    print(json.dumps(payload, indent=1, ensure_ascii=False) if args.json else text)
    return payload.get("exit_code", 0) if isinstance(payload, dict) else 0


def _parse(parser: argparse.ArgumentParser, argv: list) -> argparse.Namespace:
    """Everything after the first ``--`` is an override, whatever it looks like: a program that
    builds the command (the bot) puts values there so none can ever be read as an option."""
    head, tail = (argv[: argv.index("--")], argv[argv.index("--") + 1 :]) if "--" in argv else (argv, [])
    # Overrides (key=value) may also follow options; argparse alone would only take them first.
    args, extra = parser.parse_known_args(head)
    extra, tail = [str(token) for token in extra], [str(token) for token in tail]
    if any(token.startswith("-") or "=" not in token for token in extra):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if (extra or tail) and not hasattr(args, "overrides"):
        parser.error(f"unrecognized arguments: {' '.join(extra + tail)} ({args.command} takes no overrides)")
    if extra or tail:
        args.overrides = [*args.overrides, *extra, *tail]
    return args


def _fail(args, error: dict, message: str, code: int) -> int:
    if args.json:
        print(json.dumps({"error": error}, ensure_ascii=False))
    else:
        print(f"error: {message}", file=sys.stderr)
    return code


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m pipeline",
        description="Turn a zipped dataset (Pascal VOC, COCO, YOLO, LabelMe, TF CSV) into checked, split, labelled, "
        "sharded TFRecords.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--json", action="store_true", help="print the machine-readable result")
    common.add_argument("-v", "--verbose", action="store_true", help="log progress")

    p = sub.add_parser("prepare", parents=[common], help="run every step on a dataset zip")
    _dataset_args(p)
    _split_args(p)
    _label_map_args(p)
    _records_args(p)
    p.set_defaults(run=_prepare)

    p = sub.add_parser("inspect", parents=[common], help="unpack and check a dataset zip")
    _dataset_args(p)
    p.add_argument("--workers", type=int, help="processes to use (default: every core)")
    p.set_defaults(run=_inspect)

    p = sub.add_parser("split", parents=[common], help="split a workspace into train/val(/test)")
    p.add_argument("workspace", type=Path)
    _split_args(p)
    p.set_defaults(run=_split)

    p = sub.add_parser("labels", parents=[common], help="show or edit the classes and the label map")
    p.add_argument("workspace", type=Path)
    p.add_argument("--rename", action="append", default=[], metavar="OLD=NEW")
    p.add_argument("--merge", action="append", default=[], metavar="A,B=C")
    p.add_argument("--drop", action="append", default=[], metavar="NAME")
    _label_map_args(p)
    p.set_defaults(run=_labels)

    p = sub.add_parser("records", parents=[common], help="write sharded TFRecords for each split")
    p.add_argument("workspace", type=Path)
    _records_args(p)
    p.set_defaults(run=_records)

    cli_train.add_commands(sub, common)
    cli_export.add_commands(sub, common)
    cli_export_data.add_commands(sub, common)
    cli_cluster.add_commands(sub, common)

    p = sub.add_parser("demo", parents=[common], help="write a generated dataset zip of coloured shapes")
    p.add_argument("out", type=Path, help="the .zip to write")
    p.add_argument("--images", type=int, default=200)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(run=_demo)
    return parser


def _dataset_args(p):
    p.add_argument(
        "dataset", type=Path, help="the dataset .zip (images + Pascal VOC, COCO, YOLO, LabelMe or TF CSV annotations)"
    )
    p.add_argument("--out", type=Path, required=True, help="the workspace folder to create")


def _split_args(p):
    p.add_argument("--val-ratio", type=float, default=0.1)
    p.add_argument("--test-ratio", type=float, default=0.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--use-folders", action="store_true", help="keep the zip's train/ valid/ test/ folders as the split")


def _label_map_args(p):
    p.add_argument("--label-map", type=Path, help="your label_map.pbtxt; every label in the data must be in it")
    p.add_argument(
        "--ignore-unknown-labels",
        action="store_true",
        help="with --label-map: leave out boxes whose label is not in it",
    )


def _records_args(p):
    p.add_argument("--shards", type=int, help="shards per split (default: by size, at least 8 when possible)")
    p.add_argument("--workers", type=int, help="processes to use (default: every core)")


def _prepare(args):
    options = steps.PrepareOptions(
        val_ratio=args.val_ratio,
        test_ratio=args.test_ratio,
        seed=args.seed,
        use_folders=args.use_folders,
        label_map=args.label_map,
        ignore_unknown_labels=args.ignore_unknown_labels,
        shards=args.shards,
        workers=args.workers,
    )
    summary = steps.prepare(args.dataset, args.out, options)
    text = "\n\n".join(
        [
            tables.health_text(summary),
            tables.label_map_text(summary["label_map"]),
            tables.split_text(summary["splits"], summary["warnings"]),
            tables.records_text(summary["outputs"]),
            f"workspace: {args.out}\npreview: {summary['outputs']['preview']}",
        ]
    )
    return summary, text


def _inspect(args):
    ws = Workspace(args.out)
    report = steps.inspect(args.dataset, ws, workers=args.workers)
    payload = report.to_json() | {"outputs": {"preview": str(ws.preview), "report": str(ws.report)}}
    return payload, tables.health_text(payload) + f"\n\npreview: {ws.preview}"


def _split(args):
    report = steps.split(Workspace(args.workspace), args.val_ratio, args.test_ratio, args.seed, args.use_folders)
    payload = report.to_json()
    return payload, tables.split_text(payload["splits"], payload["warnings"])


def _labels(args):
    ws = Workspace(args.workspace)
    plan, problems = steps.labels(
        ws,
        rename=args.rename,
        merge=args.merge,
        drop=args.drop,
        label_map=args.label_map,
        ignore_unknown=args.ignore_unknown_labels,
    )
    payload = {
        "label_map": [asdict(i) for i in plan.label_map.items],
        "edits": plan.edits.mapping,
        "problems": [asdict(p) for p in problems],
        "outputs": {"label_map": str(ws.label_map)},
    }
    text = tables.label_map_text(payload["label_map"])
    if problems:
        text += "\n\n" + tables.problems_text(payload["problems"])
    return payload, text + f"\n\nlabel map: {ws.label_map}"


def _records(args):
    report = steps.records(Workspace(args.workspace), args.shards, args.workers)
    outputs = {f"{split}_records": list(paths) for split, paths in report.splits.items()}
    payload = {
        "examples": report.examples,
        "reencoded": report.reencoded,
        "bytes_written": report.bytes_written,
        "outputs": outputs,
    }
    return payload, tables.records_text(outputs)


def _demo(args):
    path = make_voc_zip(args.out, SyntheticSpec(images=args.images, seed=args.seed))
    return {"dataset": str(path), "images": args.images}, f"wrote {path} ({args.images} images)"
