"""The training half of ``python -m pipeline``: models, train, status, stop."""

from __future__ import annotations

import json
import time
from pathlib import Path

import yaml

from pipeline.cli import tables
from pipeline.cli.cluster import add_ray_options, ray_executor
from pipeline.data.workspace import Workspace
from pipeline.executors import LocalExecutor
from pipeline.executors.base import ACTIVE_STATES, Run
from pipeline.train import job_process
from pipeline.train.catalogue import catalog, get_model, recommend, start_point
from pipeline.train.config import TrainRequest, build_params, workspace_facts
from pipeline.train.hardware import Hardware, detect_hardware, parse_hardware_spec
from pipeline.train.job_folder import JobPaths, load_job

DEFAULT_WEIGHTS_CACHE = Path("~/.cache/detbot/weights")


def add_commands(sub, common) -> None:
    p = sub.add_parser("models", parents=[common], help="list the detectors you can train, with a recommendation")
    p.add_argument("--workspace", type=Path, help="a prepared workspace, to recommend for its data")
    _hardware_option(p)
    p.set_defaults(run=_models)

    _add_train(sub, common)

    p = sub.add_parser("status", parents=[common], help="what a training job is doing")
    p.add_argument("job_dir", type=Path)
    p.set_defaults(run=_status)

    p = sub.add_parser("stop", parents=[common], help="stop a training job gracefully (checkpoint, then exit)")
    p.add_argument("job_dir", type=Path)
    p.set_defaults(run=_stop)


def _add_train(sub, common) -> None:
    p = sub.add_parser("train", parents=[common], help="train a detector on a prepared workspace")
    p.add_argument("workspace", type=Path)
    p.add_argument("--model", help="a name from `models` (default: the recommended one)")
    length = p.add_mutually_exclusive_group()
    length.add_argument("--steps", type=int)
    length.add_argument("--epochs", type=float)
    p.add_argument("--batch-size", type=int, help="global batch size (default: by device and memory)")
    p.add_argument(
        "--job-dir",
        type=Path,
        help="the job folder (default: WORKSPACE/jobs/MODEL-TIME); an existing job folder resumes",
    )
    p.add_argument("--detach", action="store_true", help="train in the background and return at once")
    p.add_argument(
        "--executor",
        choices=("local", "ray"),
        default="local",
        help="where training runs: this host (default) or a Ray cluster (submits and returns, as --detach)",
    )
    add_ray_options(p)
    p.add_argument("--gpus", type=int, default=1, help="with --executor ray: GPUs the job asks the cluster for")
    p.add_argument("--no-pretrained", action="store_true", help="train from scratch, download nothing")
    p.add_argument(
        "--early-stop",
        type=int,
        default=0,
        metavar="EVALS",
        help="stop after this many evaluations without a better AP (default: never)",
    )
    p.add_argument(
        "--pretrained-url",
        help="a checkpoint (archive or prefix; http, gs://, file or path) to start from instead of the catalogue's",
    )
    p.add_argument(
        "--url-policy",
        choices=("public", "private", "any"),
        default="any",
        help="addresses a pretrained http(s) URL may reach: public (internet only), private "
        "(also RFC 1918/ULA LAN addresses), any (default; loopback too)",
    )
    p.add_argument(
        "--keep-classifier",
        action="store_true",
        help="from a detector checkpoint with as many classes as this dataset, keep its class layer too",
    )
    p.add_argument("--max-recoveries", type=int, default=3, help="NaN roll-backs before giving up")
    p.add_argument(
        "--recovery-lr-factor", type=float, default=0.5, help="learning-rate multiplier at each NaN roll-back"
    )
    p.add_argument("--weights-cache", type=Path, default=DEFAULT_WEIGHTS_CACHE)
    p.add_argument("--show-config", action="store_true", help="print the resolved Model Garden config and exit")
    _hardware_option(p)
    p.add_argument("overrides", nargs="*", metavar="key=value", help="Model Garden config overrides")
    p.set_defaults(run=_train)


def _hardware_option(parser) -> None:
    parser.add_argument(
        "--assume-hardware",
        metavar="SPEC",
        help="plan for this machine instead of the one here, e.g. gpus=2,memory_gb=80,cc=8.0; "
        "without those GPUs, training runs the plan's numerics on the CPU",
    )


def _hardware(args) -> Hardware:
    if args.assume_hardware:
        return parse_hardware_spec(args.assume_hardware)
    return detect_hardware(args.visible_devices)


START_WORDS = {
    "detector": "COCO detector",
    "backbone": "ImageNet backbone",
    "checkpoint": "the given checkpoint",
    "scratch": "scratch",
}


def _models(args):
    hardware = _hardware(args)
    labelled = None
    if args.workspace:
        summary = Workspace(args.workspace).read_json(Workspace(args.workspace).summary, "prepare")
        labelled = summary["labelled_images"]
    choice = recommend(labelled if labelled is not None else 0, hardware)
    models = [spec.to_json() | {"recommended": spec.name == choice.name} for spec in catalog()]
    payload = {"device": hardware.device, "recommended": choice.name, "reason": choice.reason, "models": models}
    rows = [
        [
            ("* " if m["recommended"] else "  ") + m["name"],
            f"{m['input_size']}px",
            m["coco_ap"],
            m["params_m"],
            m["gflops"] if m["gflops"] is not None else "-",
            START_WORDS[m["start"]],
            m["when"],
        ]
        for m in models
    ]
    text = tables.table(["model", "input", "COCO AP", "params M", "GFLOPs", "starts from", "when to pick it"], rows)
    return payload, f"{text}\n\nrecommended: {choice.name} ({choice.reason})"


def _request(args, workspace: Workspace, hardware: Hardware) -> TrainRequest:
    model = args.model
    if model is None:
        summary = json.loads(workspace.summary.read_text()) if workspace.summary.exists() else {}
        model = recommend(summary.get("labelled_images", 0), hardware).name
    get_model(model)
    return TrainRequest(
        model=model,
        steps=args.steps,
        epochs=args.epochs,
        batch_size=args.batch_size,
        overrides=tuple(args.overrides),
        pretrained=not args.no_pretrained,
        pretrained_url=args.pretrained_url,
        early_stop_evals=args.early_stop,
        max_recoveries=args.max_recoveries,
        recovery_lr_factor=args.recovery_lr_factor,
        url_policy=args.url_policy,
        keep_classifier=args.keep_classifier,
    )


def _train(args):
    from pipeline.train.launch import create_job, run_job

    workspace = Workspace(args.workspace)
    hardware = _hardware(args)
    request = _request(args, workspace, hardware)
    if args.show_config:
        spec = get_model(request.model)
        params = build_params(spec, workspace_facts(workspace), hardware, request)
        start = start_point(spec, request.pretrained, request.pretrained_url).kind
        text = yaml.safe_dump(json.loads(json.dumps(params.as_dict())), sort_keys=True)
        return {"config": params.as_dict(), "start": start}, f"# starts from: {START_WORDS[start]}\n{text}"
    job_dir = args.job_dir or workspace.root / "jobs" / f"{request.model}-{time.strftime('%Y%m%d-%H%M%S')}"
    if args.executor == "ray":
        return _submit(args, workspace, request, JobPaths(job_dir))
    job, created = create_job(workspace.root, request, job_dir, hardware, args.weights_cache.expanduser())
    if args.detach:
        if job_process.running_pid(job):
            return _status_payload(job, f"already running: {job.root}")
        run = LocalExecutor().submit(
            ["train", str(workspace.root), "--model", request.model, "--job-dir", str(job.root)], job
        )
        pid = int(run.id.split()[0])
        return {
            "job": str(job.root),
            "pid": pid,
            "detached": True,
            "created": created,
        }, f"training in the background (pid {pid}); follow it with: python -m pipeline status {job.root}"
    code = run_job(job.root)
    # Its own status, without asking an executor: on a cluster node the trainer is the run Ray is reporting on.
    status = job_process.job_status(job)
    return status | {"exit_code": code}, f"job {job.root}\n{tables.job_text(status)}"


def _submit(args, workspace: Workspace, request: TrainRequest, job: JobPaths):
    """The job is created and trained on a cluster node (TensorFlow never loads here): the entrypoint is this
    command in the foreground, with every option this one was given and no executor."""
    argv = [str(workspace.root.absolute()), "--model", request.model, "--job-dir", str(job.root.absolute())]
    argv += _length_options(args) + _trainer_options(args, request)
    run = ray_executor(args, job.root).submit(["train", *argv, "--", *request.overrides], job, gpus=args.gpus)
    return {"job": str(job.root), "run": run.id, "executor": run.executor, "address": run.address}, (
        f"submitted to the Ray cluster as {run.id}; follow it with: python -m pipeline status {job.root}"
    )


def _length_options(args) -> list[str]:
    if args.steps is not None:
        return ["--steps", str(args.steps)]
    return ["--epochs", str(args.epochs)] if args.epochs is not None else []


def _trainer_options(args, request: TrainRequest) -> list[str]:
    options = ["--url-policy", request.url_policy, "--early-stop", str(request.early_stop_evals)]
    options += ["--max-recoveries", str(request.max_recoveries)]
    options += ["--recovery-lr-factor", str(request.recovery_lr_factor)]
    options += ["--batch-size", str(request.batch_size)] if request.batch_size else []
    options += ["--no-pretrained"] if not request.pretrained else []
    options += ["--pretrained-url", request.pretrained_url] if request.pretrained_url else []
    options += ["--keep-classifier"] if request.keep_classifier else []
    options += ["--assume-hardware", args.assume_hardware] if args.assume_hardware else []
    return options


def _status_payload(job, heading: str):
    status = job_process.job_status(job) | _run_status(job)
    return status, heading + "\n" + tables.job_text(status)


def _run_status(job: JobPaths) -> dict:
    """Where the job's last run is, and what its executor says of it (a cluster's queue, a lost run)."""
    run = Run.load(job)
    if run is None or run.executor != "ray":
        return {}
    from pipeline.executors import RayExecutor

    state = RayExecutor(run.address, job.root).status(run)
    return {"run": {"executor": run.executor, "id": run.id, "state": state.state, "message": state.message}}


def _status(args):
    job, _ = load_job(args.job_dir)
    return _status_payload(job, f"job {job.root}")


def _stop(args):
    job, _ = load_job(args.job_dir)
    running = job_process.request_stop(job) or _run_status(job).get("run", {}).get("state") in ACTIVE_STATES
    message = (
        "stop requested: the job saves a checkpoint and exits after the current loop"
        if running
        else "the job is not running; it will not start training again until you run train on it"
    )
    return {"job": str(job.root), "was_running": running}, message
