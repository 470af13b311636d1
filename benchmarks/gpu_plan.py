"""The training plan detbot makes for each described machine, and how fast each plan's numerics run here.

For CPU, 1xT4 16 GB, 1xA100 80 GB, 1xH200 141 GB and 4xA100 80 GB, each with 160 and 5,000
training images, it prints the plan for the model detbot recommends there: batch, steps,
epochs, warm-up, learning rate, precision, strategy, XLA, and an estimated time. Then it
trains each distinct (machine, model) plan for a few loops on THIS machine with
`python -m pipeline train --assume-hardware` (mixed precision, XLA, mirrored strategy over
logical CPU devices: the plan's numerics, on the CPU) and prints the steady steps/s.

The GPU times are ESTIMATES, not measurements: images/s per GPU is taken as the target
figure for RetinaNet-R50-FPN at 640 on one H100/H200 in bf16 (149 images/s, eager PyTorch
torchvision at batch 32, quoted by issue 7), scaled by the GPU's dense tensor TFLOPS
(T4 65 fp16, A100 312 bf16, H100/H200 989 bf16) and by the model's forward GFLOPs,
capped at MAX_IMAGES_PER_GPU for input decoding, times the number of GPUs, plus 10
evaluations. benchmarks/gpu_throughput.py measures the real figure on a GPU host.

    .venv/bin/python benchmarks/gpu_plan.py [--no-emulate] [--loops 3] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import math
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from pipeline.train.catalogue import get_model, recommend  # noqa: E402
from pipeline.train.config import DataFacts, TrainRequest, plan_schedule  # noqa: E402
from pipeline.train.events import read_events  # noqa: E402
from pipeline.train.hardware import parse_hardware_spec  # noqa: E402

MACHINES = {
    "CPU (2 cores)": "gpus=0",
    "1x T4 16 GB": "gpus=1,memory_gb=16,cc=7.5",
    "1x A100 80 GB": "gpus=1,memory_gb=80,cc=8.0",
    "1x H200 141 GB": "gpus=1,memory_gb=141,cc=9.0",
    "4x A100 80 GB": "gpus=4,memory_gb=80,cc=8.0",
}
PEAK_TFLOPS = {7.5: 65.0, 8.0: 312.0, 9.0: 989.0}  # dense tensor-core fp16 (T4) / bf16
REFERENCE = (149.0, 989.0, 97.0)  # images/s, TFLOPS, GFLOPs: R50-FPN 640 on one H100/H200
MAX_IMAGES_PER_GPU = 1500.0
# Measured on this 2-core machine at batch 8 (bot/training.py uses the same figures for its ETA).
CPU_STEP_S = {"mobilenetv2-fpn": 0.25, "spinenet49-mobile": 0.5, "resnet50-fpn": 1.7, "spinenet49": 1.5}
EVALS, EVAL_S = 10, 15.0  # evaluations per run and an allowance for each (val split, COCO metrics)


def facts(images: int) -> DataFacts:
    return DataFacts(
        num_classes=4,
        train_images=images,
        val_images=max(20, images // 5),
        train_pattern="-",
        val_pattern="-",
        label_map="-",
    )


def estimate_s(model: str, hardware, steps: int, batch: int) -> float:
    if not hardware.gpus:
        return steps * CPU_STEP_S[model] * batch / 8 + EVALS * EVAL_S
    gflops = get_model(model).gflops or 1.0
    rate, peak, reference_gflops = REFERENCE
    per_gpu = min(
        MAX_IMAGES_PER_GPU, rate * PEAK_TFLOPS[hardware.compute_capability] / peak * reference_gflops / gflops
    )
    return steps * batch / (per_gpu * hardware.gpus) + EVALS * EVAL_S


def plans() -> list[dict]:
    rows = []
    for name, spec in MACHINES.items():
        hardware = parse_hardware_spec(spec, cpu_cores=2)
        for images in (160, 5000):
            model = recommend(images, hardware).name
            plan = plan_schedule(get_model(model), facts(images), hardware, TrainRequest(model))
            rows.append(
                {
                    "machine": name,
                    "spec": spec,
                    "images": images,
                    "model": model,
                    "plan": plan,
                    "hardware": hardware,
                    "epochs": plan.steps * plan.batch_size / images,
                    "estimate": estimate_s(model, hardware, plan.steps, plan.batch_size),
                }
            )
    return rows


def print_table(rows: list[dict]) -> None:
    print(
        "| machine | train images | model | batch | steps | epochs | warm-up | LR | precision | strategy | XLA "
        "| estimated time |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for row in rows:
        plan, hardware = row["plan"], row["hardware"]
        strategy = f"mirrored x{hardware.gpus}" if hardware.gpus else "one device"
        print(
            f"| {row['machine']} | {row['images']:,} | {row['model']} | {plan.batch_size} | {plan.steps:,} | "
            f"{row['epochs']:.0f} | {plan.warmup_steps} | {plan.learning_rate:.3f} | {hardware.precision} | "
            f"{strategy} | {'yes' if hardware.gpus == 1 else 'no'} | {_duration(row['estimate'])} |"
        )


def _duration(seconds: float) -> str:
    return f"{seconds / 60:.0f} min" if seconds < 5400 else f"{seconds / 3600:.1f} h"


def emulate(rows: list[dict], workdir: Path, loops: int) -> None:
    from pipeline.data.steps import PrepareOptions, prepare
    from pipeline.data.synthetic import SyntheticSpec, make_voc_zip

    ws = workdir / "ws"
    if not (ws / "summary.json").exists():
        prepare(
            make_voc_zip(workdir / "shapes.zip", SyntheticSpec(images=120, seed=3)), ws, PrepareOptions(val_ratio=0.2)
        )
    print("\nEmulated on this CPU (the plan's precision, XLA and strategy; batch scaled to fit the CPU):")
    print(
        f"{'machine':<16}{'model':<19}{'precision':<10}{'replicas':>9}{'batch here':>11}{'steps/s':>9}"
        f"{'images/s':>10}{'wall s':>8}"
    )
    done = set()
    for row in rows:
        key = (row["spec"], row["model"])
        if key in done:
            continue
        done.add(key)
        started, rate, wall = _run(ws, workdir / f"job-{len(done)}", row["spec"], row["model"], loops)
        print(
            f"{row['machine']:<16}{row['model']:<19}{started['precision']:<10}{started['replicas']:>9}"
            f"{started['batch_size']:>11}{rate:>9.3f}{rate * started['batch_size']:>10.2f}{wall:>8.0f}",
            flush=True,
        )


def _run(ws: Path, job: Path, spec: str, model: str, loops: int) -> tuple[dict, float, float]:
    loop = 2
    cmd = [
        sys.executable,
        "-m",
        "pipeline",
        "train",
        str(ws),
        "--model",
        model,
        "--no-pretrained",
        "--assume-hardware",
        spec,
        "--job-dir",
        str(job),
        "--steps",
        str(loop * (loops + 1)),
        f"trainer.steps_per_loop={loop}",
        "trainer.checkpoint_interval=1000000",
        "trainer.validation_interval=1000000",
    ]
    start = time.monotonic()
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    wall = time.monotonic() - start
    events = read_events(job / "events.jsonl")
    if done.returncode != 0 or not events or events[0]["event"] != "started":
        sys.exit(f"{' '.join(cmd)} failed ({done.returncode}): {events[-1:] or done.stderr[-2000:]}")
    progress = [e for e in events if e["event"] == "progress"][1:]  # the first loop traces and compiles
    seconds = progress[-1]["time"] - [e for e in events if e["event"] == "progress"][0]["time"]
    steps = progress[-1]["step"] - loop
    return events[0], steps / seconds if seconds > 0 else math.nan, wall


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--no-emulate", action="store_true", help="print the plans only")
    parser.add_argument("--loops", type=int, default=3, help="timed loops of 2 steps per emulated plan")
    parser.add_argument("--workdir", type=Path, help="dataset and jobs (default: a temp dir, deleted)")
    args = parser.parse_args(argv[1:])
    rows = plans()
    print_table(rows)
    if not args.no_emulate:
        workdir = args.workdir or Path(tempfile.mkdtemp(prefix="gpu-plan-"))
        workdir.mkdir(parents=True, exist_ok=True)
        try:
            emulate(rows, workdir, args.loops)
        finally:
            if args.workdir is None:
                shutil.rmtree(workdir, ignore_errors=True)
    print("command:", " ".join([Path(sys.executable).name, *argv]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
