"""The export half of ``python -m pipeline``: export a trained job, predict with the archive."""

from __future__ import annotations

from pathlib import Path

from pipeline.cli import tables
from pipeline.export.predict import DEFAULT_THRESHOLD, detect, draw, extract, load_model, open_upright


def add_commands(sub, common) -> None:
    p = sub.add_parser(
        "export", parents=[common], help="export a trained job as a checked model archive (SavedModel, TFLite, samples)"
    )
    p.add_argument("job_dir", type=Path)
    p.add_argument("--out", type=Path, required=True, help="the .zip to write")
    p.add_argument("--no-tflite", action="store_true", help="skip the TFLite conversion")
    p.add_argument("--samples", type=int, default=4, help="validation images to draw detections on")
    p.set_defaults(run=_export)

    p = sub.add_parser("predict", parents=[common], help="detect objects in an image with an exported archive")
    p.add_argument("archive", type=Path, help="the .zip that `export` wrote")
    p.add_argument("image", type=Path)
    p.add_argument("--out", type=Path, required=True, help="where to write the image with its boxes drawn")
    p.add_argument(
        "--threshold",
        type=float,
        default=DEFAULT_THRESHOLD,
        help=f"lowest score to report (default: {DEFAULT_THRESHOLD})",
    )
    p.set_defaults(run=_predict)


def _export(args):
    from pipeline.export.archive import export_job  # numpy and the evaluator: only for this command

    report = export_job(args.job_dir, args.out, tflite=not args.no_tflite, samples=args.samples)
    payload = report.to_json()
    rows = [
        ["training (validation)", _num(report.training_ap), _num(report.training_ap50)],
        ["exported model", _num(report.export_ap), _num(report.export_ap50)],
    ]
    per_class = [[name, _num(ap)] for name, ap in report.per_class_ap.items()]
    models = [
        [
            a.file,
            f"{a.bytes / 2**20:.1f} MB" if a.kept else "left out",
            _num(a.ap50),
            "-" if a.latency_ms is None else f"{a.latency_ms:.1f}",
            a.note,
        ]
        for a in report.artefacts
    ]
    text = "\n\n".join(
        [
            f"checkpoint: {report.checkpoint.note}",
            tables.table(["evaluated", "AP", "AP50"], rows) + f"\n(AP50 must agree within {report.tolerance:.3f})",
            tables.table(["class", "AP"], per_class),
            tables.table(["file", "size", "AP50", "ms/image", "note"], models),
            f"archive: {report.archive} ({report.archive_bytes / 2**20:.1f} MB, {report.seconds:.0f} s)\n"
            f"samples: {', '.join(str(p) for p in report.samples) or 'none'}",
        ]
    )
    return payload, text


def _predict(args):
    image = open_upright(args.image)
    detections = detect(load_model(extract(args.archive)), image, args.threshold)
    out = draw(image, detections, args.out)
    rows = [[d.label, f"{d.score:.3f}", ", ".join(f"{v:.0f}" for v in d.box)] for d in detections]
    text = (
        tables.table(["label", "score", "box (xmin, ymin, xmax, ymax)"], rows)
        if rows
        else f"nothing scored {args.threshold} or more"
    )
    return [d.to_json() for d in detections], f"{text}\n\nwrote {out}"


def _num(value) -> str:
    return "-" if value is None else f"{value:.3f}"
