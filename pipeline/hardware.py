"""What the training machine has, found without importing TensorFlow.

``nvidia-smi`` answers in milliseconds, where importing TensorFlow to list GPUs
costs seconds; the catalogue and the bot need the answer before any training.
"""
from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass


@dataclass(frozen=True)
class Hardware:
    gpus: int = 0
    gpu_memory_mb: int = 0  # of the smallest GPU: a mirrored batch must fit on each
    compute_capability: float = 0.0
    cpu_cores: int = 1

    @property
    def device(self) -> str:
        if not self.gpus:
            return f"CPU ({self.cpu_cores} cores)"
        return f"{self.gpus} GPU{'s' if self.gpus > 1 else ''} ({self.gpu_memory_mb // 1024} GB each)"

    @property
    def mixed_precision(self) -> str:
        # bfloat16 needs Ampere (8.0+); float16 with loss scaling runs fast from Volta (7.0).
        if self.compute_capability >= 8.0:
            return "mixed_bfloat16"
        return "mixed_float16" if self.compute_capability >= 7.0 else "float32"


def detect_hardware() -> Hardware:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return Hardware(cpu_cores=cores)
    try:
        out = subprocess.run([smi, "--query-gpu=memory.total,compute_cap", "--format=csv,noheader,nounits"],
                             capture_output=True, text=True, timeout=10, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return Hardware(cpu_cores=cores)
    rows = [[cell.strip() for cell in line.split(",")] for line in out.strip().splitlines() if line.strip()]
    if not rows:
        return Hardware(cpu_cores=cores)
    return Hardware(gpus=len(rows), gpu_memory_mb=min(int(float(r[0])) for r in rows),
                    compute_capability=min(float(r[1]) for r in rows), cpu_cores=cores)
