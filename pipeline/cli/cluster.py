"""The cluster half of ``python -m pipeline``: check a Ray cluster, and the probe it runs on every node."""

from __future__ import annotations

from pathlib import Path

from pipeline.cli import tables


def add_commands(sub, common) -> None:
    p = sub.add_parser(
        "cluster-check",
        parents=[common],
        help="check a Ray cluster: every node sees the shared folder; what one training gets",
    )
    add_ray_options(p)
    p.add_argument("--shared-dir", type=Path, required=True, help="the folder every node mounts at this path")
    p.add_argument("--gpus-per-job", type=int, default=1)
    p.set_defaults(run=_check)

    p = sub.add_parser("cluster-probe", parents=[common], help="(run on a cluster by cluster-check) visit each node")
    p.add_argument("shared_dir", type=Path)
    p.add_argument("--token", required=True)
    p.set_defaults(run=_probe)


def add_ray_options(parser) -> None:
    parser.add_argument("--ray-address", help="the Ray head's job server, e.g. http://10.0.0.5:8265")
    parser.add_argument(
        "--ray-gpu-resource",
        default="GPU",
        help="the Ray resource a training's GPUs are counted in (default GPU; a custom one for tests)",
    )


def ray_executor(args, shared_dir: Path):
    from pipeline.errors import UsageError
    from pipeline.executors import RayExecutor

    if not args.ray_address:
        raise UsageError("--executor ray needs --ray-address http://HEAD:8265 (the head's job server).")
    return RayExecutor(args.ray_address, shared_dir, args.ray_gpu_resource)


def _check(args):
    from pipeline.executors.probe import cluster_hardware
    from pipeline.executors.ray_jobs import probe

    executor = ray_executor(args, args.shared_dir)
    nodes = probe(executor)
    plan = cluster_hardware(nodes, args.ray_gpu_resource, args.gpus_per_job)
    rows = [
        [node["host"], node["address"], node["resources"].get(args.ray_gpu_resource, 0), _gpus(node)] for node in nodes
    ]
    text = tables.table(["host", "address", args.ray_gpu_resource, "GPUs (nvidia-smi)"], rows)
    payload = {"nodes": nodes, "plan": plan.to_json(), "device": plan.device_params}
    return payload, f"{text}\n\n{args.shared_dir} is shared by every node; one training gets: {plan.device}"


def _gpus(node: dict) -> str:
    hardware = node["hardware"]
    return f"{hardware['gpus']} x {hardware['gpu_memory_mb'] // 1024} GB" if hardware["gpus"] else "none"


def _probe(args):
    from pipeline.executors.probe import visit_nodes

    nodes = visit_nodes(args.shared_dir, args.token)
    return {"nodes": nodes}, "\n".join(f"{node['host']}: {node['resources']}" for node in nodes)
