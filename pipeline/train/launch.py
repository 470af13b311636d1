"""Create (or find) a training job from a prepared workspace, and run it.

The CLI and the bot start training the same way: ``python -m pipeline train``,
in the foreground or detached into its own session.
"""

from __future__ import annotations

import logging
import shutil
import time
from dataclasses import asdict
from pathlib import Path

import yaml

from pipeline.data.workspace import Workspace
from pipeline.files import write_json
from pipeline.train.catalogue import get_model, recipe_of, start_point
from pipeline.train.config import TrainRequest, build_params, save_params, workspace_facts
from pipeline.train.hardware import Hardware
from pipeline.train.job_folder import JobPaths, load_job
from pipeline.train.job_process import claim_pid

log = logging.getLogger(__name__)


def create_job(
    workspace: Path, request: TrainRequest, job_dir: Path, hardware: Hardware, weights_cache: Path
) -> tuple[JobPaths, bool]:
    """The job for ``job_dir``: created from the request, or the existing one (resume)."""
    job = JobPaths(Path(job_dir))
    if job.job.exists():
        return job, False
    ws = Workspace(Path(workspace))
    spec = get_model(request.model)
    facts = workspace_facts(ws)
    init_checkpoint, recipe = _pretrained(spec, request, weights_cache)
    params = build_params(spec, facts, hardware, request, init_checkpoint, recipe)
    job.root.mkdir(parents=True, exist_ok=True)
    label_map = job.root / "label_map.pbtxt"
    shutil.copyfile(ws.label_map, label_map)  # the job keeps the map it was trained with
    save_params(params, job.params)
    write_json(
        job.job,
        {
            "model": spec.name,
            "experiment": spec.experiment,
            "workspace": str(ws.root.absolute()),
            "label_map": str(label_map.absolute()),
            "device": hardware.device,
            "hardware": hardware.to_json(),
            "train_images": facts.train_images,
            "val_images": facts.val_images,
            "request": asdict(request),
            "init_checkpoint": init_checkpoint,
            "start": start_point(spec, request.pretrained, request.pretrained_url).kind,
            "created": time.time(),
        },
    )
    return job, True


def _pretrained(spec, request: TrainRequest, cache: Path) -> tuple[str | None, dict]:
    """The fetched checkpoint's prefix, and the recipe its own params.yaml states (a detbot or Model Garden
    archive carries one beside the checkpoint; the catalogue states the published ones' recipes)."""
    url = request.pretrained_url or spec.checkpoint_url
    if not request.pretrained or not url:
        return None, {}
    from pipeline.train.weights import fetch_checkpoint

    prefix = fetch_checkpoint(url, cache, policy=request.url_policy).prefix
    beside = [folder / "params.yaml" for folder in (prefix.parent, prefix.parent.parent)]
    found = next((path for path in beside if path.is_file()), None)
    recipe = recipe_of(yaml.safe_load(found.read_text(encoding="utf-8")) or {}) if found else {}
    return str(prefix), recipe


def run_job(job_dir: Path) -> int:
    """Train until done, stopped or failed; the exit code says which (0 done/stopped, 2 failed)."""
    from pipeline.train.supervisor import Supervisor

    job, meta = load_job(job_dir)
    claim_pid(job)
    try:
        return Supervisor(job, meta).run()
    finally:
        job.pid.unlink(missing_ok=True)
