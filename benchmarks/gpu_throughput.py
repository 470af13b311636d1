"""Training throughput of resnet50-fpn at 640x640 with the plan detbot makes for this GPU host.

Run it unchanged on a GPU host:

    .venv/bin/python benchmarks/gpu_throughput.py                  # every visible GPU
    CUDA_VISIBLE_DEVICES=0 .venv/bin/python benchmarks/gpu_throughput.py

It generates a dataset of 640x640 images, plans resnet50-fpn for the GPUs here as for a
5,000-image dataset (batch from GPU memory, bfloat16 or float16 by compute capability,
XLA on one GPU, mirrored with sync batch norm on several), trains it with
`python -m pipeline train` (the supervisor the bot uses, no evaluation or checkpoint in the
window) and prints steady-state images/s: from the end of the first `--warmup-loops`
loops (tracing, XLA compilation, cuDNN autotuning) to the last loop.

The target is >= 150 images/s on one H100 or H200: eager PyTorch's torchvision
RetinaNet-R50-FPN measures 149 images/s there in bf16 at batch 32 (issue 7).

On a machine without GPUs it refuses, unless told which machine to emulate
(`--assume-hardware gpus=1,memory_gb=80,cc=9.0 --loops 2`): then the plan's numerics run on the
CPU, the batch is scaled down to fit, and the figure says nothing about a GPU.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from pipeline.train.catalogue import get_model  # noqa: E402
from pipeline.train.config import DataFacts, TrainRequest, plan_schedule  # noqa: E402
from pipeline.train.events import read_events  # noqa: E402
from pipeline.train.hardware import detect_hardware, parse_hardware_spec  # noqa: E402

MODEL, SIZE = "resnet50-fpn", 640
TARGET = 150.0  # images/s on one H100/H200
PLANNED_FOR_IMAGES = 5000  # the batch is the one planned for a dataset this large


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--loops", type=int, default=10, help="timed loops (default 10)")
    parser.add_argument("--loop-steps", type=int, default=20, help="steps per loop (default 20)")
    parser.add_argument("--warmup-loops", type=int, default=2, help="loops left out of the timing (default 2)")
    parser.add_argument("--images", type=int, default=256, help="images in the generated dataset (default 256)")
    parser.add_argument("--assume-hardware", metavar="SPEC", help="emulate a described machine on the CPU")
    parser.add_argument("--workdir", type=Path, help="dataset and job (default: a temp dir, deleted)")
    return parser.parse_args(argv)


def planned_batch(hardware) -> int:
    facts = DataFacts(
        num_classes=4,
        train_images=PLANNED_FOR_IMAGES,
        val_images=1000,
        train_pattern="-",
        val_pattern="-",
        label_map="-",
    )
    return plan_schedule(get_model(MODEL), facts, hardware, TrainRequest(MODEL)).batch_size


def workspace(workdir: Path, images: int) -> Path:
    from pipeline.data.steps import PrepareOptions, prepare
    from pipeline.data.synthetic import SyntheticSpec, make_voc_zip

    ws = workdir / f"ws-{images}"
    if not (ws / "summary.json").exists():
        archive = make_voc_zip(workdir / "shapes.zip", SyntheticSpec(images=images, size=(SIZE, SIZE), seed=5))
        prepare(archive, ws, PrepareOptions(val_ratio=0.1))
    return ws


def train(ws: Path, job: Path, args, batch: int) -> tuple[list[dict], float]:
    steps = args.loop_steps * (args.loops + args.warmup_loops)
    cmd = [
        sys.executable,
        "-m",
        "pipeline",
        "train",
        str(ws),
        "--model",
        MODEL,
        "--no-pretrained",
        "--job-dir",
        str(job),
        "--steps",
        str(steps),
        "--batch-size",
        str(batch),
        f"trainer.steps_per_loop={args.loop_steps}",
        f"trainer.checkpoint_interval={steps}",
        f"trainer.validation_interval={steps}",
        "trainer.validation_steps=1",
    ]
    if args.assume_hardware:
        cmd[cmd.index("--job-dir") : cmd.index("--job-dir")] = ["--assume-hardware", args.assume_hardware]
    start = time.monotonic()
    with (job.parent / "train.out").open("w") as out:
        code = subprocess.run(cmd, cwd=REPO, stdout=out, stderr=subprocess.STDOUT).returncode
    events = read_events(job / "events.jsonl")
    if code != 0 or not events or events[-1]["event"] != "finished":
        sys.exit(f"training failed (exit {code}): {events[-1:]}; see {job.parent / 'train.out'}")
    return events, time.monotonic() - start


def main(argv: list[str]) -> int:
    args = parse_args(argv[1:])
    hardware = (
        parse_hardware_spec(args.assume_hardware)
        if args.assume_hardware
        else detect_hardware(os.environ.get("CUDA_VISIBLE_DEVICES"))
    )
    if not hardware.gpus:
        sys.exit(
            "no GPU visible (nvidia-smi lists none, or CUDA_VISIBLE_DEVICES hides them): run this on the GPU "
            "host, or emulate one with --assume-hardware gpus=1,memory_gb=80,cc=9.0"
        )
    batch = planned_batch(hardware)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="gpu-throughput-"))
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        ws = workspace(workdir, args.images)
        job = workdir / f"job-{time.strftime('%H%M%S')}"
        events, wall = train(ws, job, args, batch)
    finally:
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)
    report(events, wall, hardware, batch, args, argv)
    return 0


def report(events: list[dict], wall: float, hardware, batch: int, args, argv: list[str]) -> None:
    started = events[0]
    loops = [e for e in events if e["event"] == "progress"]
    window = loops[args.warmup_loops - 1 :] if args.warmup_loops else loops
    seconds = window[-1]["time"] - window[0]["time"]
    steps = window[-1]["step"] - window[0]["step"]
    rate = steps * started["batch_size"] / seconds
    print(
        f"device: {hardware.device}; {MODEL} at {SIZE}x{SIZE}, planned batch {batch}, trained batch "
        f"{started['batch_size']}, precision {started['precision']}, XLA {'on' if started['xla'] else 'off'}, "
        f"{started['replicas']} replica(s)"
    )
    print(
        f"steady: {steps} steps in {seconds:.1f} s = {rate:.1f} images/s "
        f"({rate / max(1, hardware.gpus):.1f} per GPU); whole run {wall:.0f} s"
    )
    if started["emulated"]:
        print("EMULATED on the CPU: this is not a GPU figure")
    else:
        verdict = "TARGET MET" if rate >= TARGET else "TARGET MISSED"
        print(f"{verdict} (>= {TARGET:.0f} images/s on one H100/H200; torchvision RetinaNet-R50-FPN bf16: 149)")
    print("command:", " ".join([Path(sys.executable).name, *argv]))


if __name__ == "__main__":
    sys.exit(main(sys.argv))
