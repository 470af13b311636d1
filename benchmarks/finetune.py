"""What a pretrained start buys: AP50 over wall time at equal steps, from scratch, backbone-only and detector.

Three trainings of the same model on the same prepared dataset, one after another in fresh processes, with
the same schedule and evaluations every ``--steps / --evals`` steps:

  scratch    --no-pretrained
  backbone   the detector checkpoint, backbone only (task.init_checkpoint_modules=[backbone])
  detector   the detector checkpoint: backbone, decoder and head, all but the class logits

The detector checkpoint is ``--detector`` (a Model Garden RetinaNet archive or prefix, e.g. the published
``https://storage.googleapis.com/tf_model_garden/vision/retinanet/spinenet49mobile.tar.gz`` with
``--model spinenet49-mobile``) where the internet is reachable; without it the script makes a local
"COCO-like" one: ``--model`` trained from scratch for ``--source-steps`` on generated photo-like shapes
(three classes), saved as an archive with its params.yaml. The target dataset defaults to kangaroo.zip from
../shared/datasets (one class, real photos), which no test trains on.

    .venv/bin/python benchmarks/finetune.py [--dataset ZIP] [--model mobilenetv2-fpn] [--steps 300] [--evals 3]
                                            [--detector URL_OR_PATH] [--source-steps 400] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from pipeline.data.steps import PrepareOptions, prepare  # noqa: E402
from pipeline.data.synthetic import SyntheticSpec, make_voc_zip  # noqa: E402
from pipeline.train.events import read_events  # noqa: E402

KANGAROO = REPO.parent / "shared" / "datasets" / "kangaroo.zip"
STARTS = {
    "scratch": ["--no-pretrained"],
    "backbone": ["task.init_checkpoint_modules=[backbone]"],
    "detector": [],
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", type=Path, default=KANGAROO)
    parser.add_argument("--model", default="mobilenetv2-fpn")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--evals", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--detector", help="a detector checkpoint (archive or prefix, URL or path)")
    parser.add_argument("--source-steps", type=int, default=400)
    parser.add_argument("--workdir", type=Path)
    args = parser.parse_args()
    if not args.dataset.is_file():
        sys.exit(f"no dataset at {args.dataset}: give one with --dataset")
    work = args.workdir or Path(tempfile.mkdtemp(prefix="detbot-finetune-"))
    work.mkdir(parents=True, exist_ok=True)
    target = work / "target"
    if not target.exists():
        prepare(args.dataset, target, PrepareOptions(val_ratio=0.2))
    detector = args.detector or str(local_detector(work, args))
    print(f"target {args.dataset.name}, model {args.model}, {args.steps} steps of batch {args.batch_size}")
    print(f"detector checkpoint: {detector}\n")
    rows = []
    for name, extra in STARTS.items():
        pretrained = [] if name == "scratch" else ["--pretrained-url", detector]
        rows += [(name, *point) for point in train(target, work / "jobs" / name, args, [*pretrained, *extra])]
    print(f"{'start':<9} {'step':>5} {'AP50':>6} {'wall s':>7}")
    for name, step, ap50, wall in rows:
        print(f"{name:<9} {step:>5} {ap50:>6.3f} {wall:>7.0f}")
    print("\ncommand: .venv/bin/python benchmarks/finetune.py " + " ".join(sys.argv[1:]))
    return 0


def train(workspace: Path, job: Path, args, extra: list[str]) -> list[tuple[int, float, float]]:
    """(step, AP50, seconds since the process started) of each evaluation of a fresh run."""
    shutil.rmtree(job, ignore_errors=True)
    every = max(1, args.steps // args.evals)
    command = [sys.executable, "-m", "pipeline", "train", str(workspace), "--model", args.model, "--job-dir"]
    command += [str(job), "--steps", str(args.steps), "--batch-size", str(args.batch_size), "--json"]
    command += ["--weights-cache", str(job.parent.parent / "cache"), *extra]
    command += [f"trainer.validation_interval={every}", f"trainer.checkpoint_interval={every}"]
    command += [f"trainer.steps_per_loop={min(every, 50)}"]
    start = time.time()
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"training failed ({' '.join(extra)}): {result.stdout[-1500:]}\n{result.stderr[-1500:]}")
    events = read_events(job / "events.jsonl")
    began = events[0]
    print(f"{job.name}: started from {began.get('start')}, restored {began.get('restored', 0)} variables")
    return [(e["step"], e["AP50"], e["time"] - start) for e in events if e["event"] == "eval"]


def local_detector(work: Path, args) -> Path:
    """A detector trained here on generated photo-like shapes, archived with its params.yaml."""
    archive = work / "detector.tar.gz"
    if archive.exists():
        return archive
    source = work / "source"
    if not source.exists():
        spec = SyntheticSpec(images=160, seed=99, photo_like=True, size_jitter=0.3)
        prepare(make_voc_zip(work / "source.zip", spec), source, PrepareOptions(val_ratio=0.2))
    job = work / "source-job"
    shutil.rmtree(job, ignore_errors=True)
    steps = str(args.source_steps)
    command = [sys.executable, "-m", "pipeline", "train", str(source), "--model", args.model, "--no-pretrained"]
    command += ["--steps", steps, "--job-dir", str(job), "--json", f"trainer.validation_interval={steps}"]
    subprocess.run(command, cwd=REPO, check=True, capture_output=True)
    ap50 = [e["AP50"] for e in read_events(job / "events.jsonl") if e["event"] == "eval"]
    print(f"local detector: {steps} steps on generated shapes, AP50 {ap50[-1]:.3f}")
    prefix = _latest(job / "checkpoints")
    with tarfile.open(archive, "w:gz") as tar:
        for file in prefix.parent.glob(prefix.name + ".*"):
            tar.add(file, arcname=f"detector/checkpoint/{file.name}")
        tar.add(job / "params.yaml", arcname="detector/params.yaml")
    return archive


def _latest(folder: Path) -> Path:
    steps = [int(p.name.split("-")[1].split(".")[0]) for p in folder.glob("ckpt-*.index")]
    return folder / f"ckpt-{max(steps)}"


if __name__ == "__main__":
    raise SystemExit(main())
