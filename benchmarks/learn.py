"""Does the default CPU training actually learn, and how fast?

    python benchmarks/learn.py shapes              # 300 generated images, 3 classes, default CPU settings
    python benchmarks/learn.py kangaroo            # ../shared/datasets/kangaroo.zip, from scratch

Runs ``python -m pipeline train`` as the CLI and the bot do, prints the AP curve
against wall time (start-up included), the time the target AP50 was first
reached, and the exported model's AP next to the training evaluation.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipeline.data.steps import PrepareOptions, prepare  # noqa: E402
from pipeline.data.synthetic import SyntheticSpec, make_voc_zip  # noqa: E402
from pipeline.train.events import read_events  # noqa: E402
from pipeline.train.job_folder import JobPaths  # noqa: E402
from pipeline.train.job_process import request_stop  # noqa: E402

SHARED = ROOT.parent / "shared" / "datasets"
TARGETS = {"shapes": (0.95, 300.0, []), "kangaroo": (0.65, 600.0, ["--steps", "2400"])}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dataset", choices=sorted(TARGETS))
    parser.add_argument("--images", type=int, default=300, help="shapes only")
    parser.add_argument("--workdir", type=Path)
    parser.add_argument("--no-export", action="store_true")
    parser.add_argument("extra", nargs="*", help="more `train` arguments or key=value overrides")
    args = parser.parse_args()
    target, budget, train_args = TARGETS[args.dataset]
    work = args.workdir or Path(tempfile.mkdtemp(prefix=f"learn-{args.dataset}-"))
    work.mkdir(parents=True, exist_ok=True)
    workspace = _workspace(args, work)
    job = JobPaths(work / f"job-{int(time.time())}")
    started = time.monotonic()
    command = [
        sys.executable,
        "-m",
        "pipeline",
        "train",
        str(workspace),
        "--model",
        "mobilenetv2-fpn",
        "--no-pretrained",
        "--job-dir",
        str(job.root),
        *train_args,
        *args.extra,
    ]
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _watch(process, job, started, budget)
    events = read_events(job.events)
    reached = _report(events, started_wall=time.time() - (time.monotonic() - started), target=target, budget=budget)
    if not args.no_export:
        _export(job, work)
    print(f"\ncommand: {' '.join(sys.argv)}\ntrain: {' '.join(command[1:])}\nload average: {os.getloadavg()}")
    return 0 if reached else 1


def _workspace(args, work: Path) -> Path:
    if args.dataset == "shapes":
        archive = make_voc_zip(work / "shapes.zip", SyntheticSpec(images=args.images, seed=11))
    else:
        archive = SHARED / "kangaroo.zip"
        if not archive.exists():
            raise SystemExit(f"{archive} is not here")
    summary = prepare(archive, work / "ws", PrepareOptions(val_ratio=0.2))
    print(
        f"dataset: {summary['splits']['train']['images']} train / {summary['splits']['val']['images']} val "
        f"images, classes {sorted(summary['classes'])}"
    )
    return work / "ws"


def _watch(process: subprocess.Popen, job: JobPaths, started: float, budget: float) -> None:
    """Let training run; past the budget, stop it gracefully (the curve up to then is the result)."""
    stopped = False
    while process.poll() is None:
        if not stopped and time.monotonic() - started > budget:
            request_stop(job)
            stopped = True
        time.sleep(1)


def _report(events: list[dict], started_wall: float, target: float, budget: float) -> bool:
    print("\nAP curve (wall time includes start-up):")
    print(f"{'wall s':>7} {'step':>6} {'AP':>7} {'AP50':>7}")
    reached_at = None
    for event in (e for e in events if e["event"] == "eval"):
        wall = event["time"] - started_wall
        print(f"{wall:7.1f} {event['step']:6d} {event['AP']:7.3f} {event['AP50']:7.3f}")
        if reached_at is None and event["AP50"] >= target:
            reached_at = wall
    last = events[-1]
    print(f"last event: {last['event']} at step {last['step']}, {last['time'] - started_wall:.1f} s")
    progress = [e for e in events if e["event"] == "progress"]
    if progress:
        print(f"speed at the end: {progress[-1]['steps_per_sec']} steps/s, {progress[-1]['images_per_sec']} img/s")
    ok = reached_at is not None and reached_at <= budget
    print(
        f"target AP50 >= {target} within {budget:.0f} s: "
        + (f"reached at {reached_at:.1f} s -> TARGET MET" if ok else "not reached -> TARGET MISSED")
    )
    return ok


def _export(job: JobPaths, work: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "pipeline", "export", str(job.root), "--out", str(work / "model.zip"), "--json"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    if out.returncode != 0:
        print(f"export failed: {out.stdout[-800:]}")
        return
    report = json.loads(out.stdout)
    print(
        f"\nexport: training AP {report['training_ap']:.3f} / AP50 {report['training_ap50']:.3f}; exported "
        f"model AP {report['export_ap']:.3f} / AP50 {report['export_ap50']:.3f} (tolerance "
        f"{report['tolerance']:.3f}); TFLite: {report['tflite']} ({report['tflite_note']}); {report['seconds']:.0f} s"
    )


if __name__ == "__main__":
    sys.exit(main())
