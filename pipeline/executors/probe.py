"""What a Ray cluster offers detbot: one small task on every node writes a file into the shared folder and
says what GPUs the node has.

The bot reads those files back itself: a node whose file it cannot see does not share the folder, and its
trainings would write where the bot never looks. The GPUs are nvidia-smi's on that node, not the bot host's.
"""

from __future__ import annotations

import socket
from pathlib import Path

from pipeline.errors import ClusterError
from pipeline.train.hardware import Hardware, detect_hardware


def visit_nodes(shared_dir: Path, token: str) -> list[dict]:
    """Run inside a Ray job (the cluster's address is in its environment): one task pinned to each live node."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    ray.init(logging_level="WARNING", log_to_driver=False)
    visit = ray.remote(num_cpus=0)(_visit)
    nodes = [node for node in ray.nodes() if node["Alive"]]
    pending = [
        visit.options(scheduling_strategy=NodeAffinitySchedulingStrategy(node["NodeID"], soft=False)).remote(
            str(shared_dir), token, node["NodeID"]
        )
        for node in nodes
    ]
    found = ray.get(pending, timeout=120)
    return [
        report | {"resources": node["Resources"], "address": node["NodeManagerAddress"]}
        for node, report in zip(nodes, found, strict=True)
    ]


def _visit(shared_dir: str, token: str, node_id: str) -> dict:
    path = Path(shared_dir) / ".detbot-check" / f"{token}-{node_id}"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(node_id, encoding="utf-8")
        wrote = None
    except OSError as error:
        wrote = str(error)
    # Every GPU of the node: the task itself asked for none, so its CUDA_VISIBLE_DEVICES means nothing here.
    hardware = detect_hardware(None)
    return {"node": node_id, "host": socket.gethostname(), "write_error": wrote, "hardware": hardware.to_json()}


def check_shared(shared_dir: Path, token: str, nodes: list[dict]) -> None:
    """Every node's file must be here, with its id in it; they are removed either way."""
    missing = []
    for node in nodes:
        path = Path(shared_dir) / ".detbot-check" / f"{token}-{node['node']}"
        try:
            seen = path.read_text(encoding="utf-8")
            path.unlink()
        except OSError:
            seen = None
        if seen != node["node"]:
            missing.append(node)
    if missing:
        node = missing[0]
        where = f"{node['host']} ({node['address']}, node {node['node'][:12]})"
        why = f"it could not write there: {node['write_error']}" if node["write_error"] else "what it wrote is not here"
        raise ClusterError(
            f"{shared_dir} is not shared with the Ray node {where}: {why}. Mount the same folder at the same "
            "path on every node (README: Running on several GPU hosts).",
            kind="storage_not_shared",
            details={"path": str(shared_dir), "node": where, "nodes": len(missing)},
        )


def cluster_hardware(nodes: list[dict], resource: str, gpus_per_job: int) -> Hardware:
    """What one training gets: ``gpus_per_job`` of a node that has them, planned for the weakest such node
    (a job may land on any of them)."""
    able = [node for node in nodes if node["resources"].get(resource, 0) >= gpus_per_job]
    if not able:
        counts = sorted({int(node["resources"].get(resource, 0)) for node in nodes})
        raise ClusterError(
            f"no Ray node has {gpus_per_job} of the resource {resource!r} (nodes have {counts}): start the GPU "
            f"hosts with `ray start --address=HEAD:6379` (Ray counts their GPUs), or lower the GPUs per job.",
            kind="no_gpu_nodes",
            details={"resource": resource, "wanted": gpus_per_job},
        )
    found = [Hardware.from_json(node["hardware"]) for node in able]
    weakest = min(found, key=lambda hardware: (hardware.gpu_memory_mb, hardware.compute_capability))
    if not weakest.gpus:  # a custom resource on CPU nodes (a test cluster): the CPU plan
        return weakest
    return Hardware(
        gpus=min(gpus_per_job, weakest.gpus),
        gpu_memory_mb=weakest.gpu_memory_mb,
        compute_capability=weakest.compute_capability,
        cpu_cores=weakest.cpu_cores,
    )
