"""The model archive of every catalogue model: its size, and each artefact's size and latency on this CPU.

For each model: a job of ``--steps`` steps from scratch on generated shapes at the model's own input size
(what is measured is the graph, not what it learnt), exported by ``python -m pipeline export`` exactly as a
user's job is. The latencies are the export's own measurement: the median over the validation images in
the fresh verifying process (SavedModel: resizing and non-max suppression included).

    .venv/bin/python benchmarks/archive_sizes.py [--models a,b] [--steps 2] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from pipeline.data.steps import PrepareOptions, prepare  # noqa: E402
from pipeline.data.synthetic import SyntheticSpec, make_voc_zip  # noqa: E402
from pipeline.train.catalogue import catalog  # noqa: E402

MB = 1024 * 1024


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", help="comma-separated catalogue names (default: all)")
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--workdir", type=Path)
    args = parser.parse_args()
    work = args.workdir or Path(tempfile.mkdtemp(prefix="detbot-archives-"))
    names = args.models.split(",") if args.models else [spec.name for spec in catalog()]
    workspace = work / "shapes"
    if not workspace.exists():
        work.mkdir(parents=True, exist_ok=True)
        prepare(make_voc_zip(work / "shapes.zip", SyntheticSpec(images=40, seed=5)), workspace, PrepareOptions())
    rows = [measure(name, workspace, work / name, args.steps) for name in names]
    print(f"{'model':<18} {'archive MB':>10}  artefacts (MB, median ms per image)")
    for name, archive, artefacts in rows:
        said = ", ".join(
            f"{a['name']} {a['bytes'] / MB:.1f} MB" + (f" {a['latency_ms']:.0f} ms" if a["latency_ms"] else "")
            for a in artefacts
            if a["kept"]
        )
        print(f"{name:<18} {archive / MB:>10.1f}  {said}")
    print(
        f"\n{os.cpu_count()} CPU cores; command: .venv/bin/python benchmarks/archive_sizes.py " + " ".join(sys.argv[1:])
    )
    return 0


def measure(name: str, workspace: Path, job: Path, steps: int) -> tuple[str, int, list[dict]]:
    pipeline(
        "train", str(workspace), "--model", name, "--no-pretrained", "--steps", str(steps), "--batch-size", "2",
        "--job-dir", str(job), f"trainer.steps_per_loop={steps}", f"trainer.validation_interval={steps}",
    )  # fmt: skip
    report = pipeline("export", str(job), "--out", str(job / "model.zip"), "--samples", "0")
    return name, report["archive_bytes"], report["artefacts"]


def pipeline(*args: str) -> dict:
    result = subprocess.run(
        [sys.executable, "-m", "pipeline", *args, "--json"], cwd=REPO, capture_output=True, text=True
    )
    if result.returncode != 0:
        sys.exit(f"pipeline {args[0]} failed: {result.stdout[-1500:]}\n{result.stderr[-1500:]}")
    return json.loads(result.stdout)


if __name__ == "__main__":
    raise SystemExit(main())
