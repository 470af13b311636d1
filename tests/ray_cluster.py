"""A real Ray cluster on 127.0.0.1 for the tests: a head (job server on loopback, 2 CPUs, usage stats off) and
worker nodes joining it, each a ``ray start --block`` in a session of its own, killed whole at the end.

A GPU is a custom resource (``fake_gpu``) on this CPU-only machine. A node can be started in a mount namespace
of its own with a tmpfs over a folder: the folder is then not shared with that node, as on a host that forgot
to mount it.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RAY = str(Path(sys.executable).with_name("ray"))
GPU = "fake_gpu"


def free_port(taken: set[int]) -> int:
    """A loopback port free now and not in ``taken``, which it joins.

    A port is free again as soon as its probe closes, so two probes in a row can be given the same one (a run
    saw the dashboard and a node's agent both on 54701, and the head refused to start): remember each."""
    while True:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        if port not in taken:
            taken.add(port)
            return port


class RayCluster:
    def __init__(self, log_dir: Path):
        self.log_dir = log_dir
        # Ray's socket paths must stay under 107 bytes: a short folder of its own, not pytest's deep one.
        self.temp_dir = Path(tempfile.mkdtemp(prefix="ray", dir="/tmp"))
        self.ports: set[int] = set()
        self.port, self.dashboard_port = free_port(self.ports), free_port(self.ports)
        self.nodes: list[subprocess.Popen] = []
        self.env = os.environ | {"RAY_USAGE_STATS_ENABLED": "0"}

    @property
    def address(self) -> str:
        return f"http://127.0.0.1:{self.dashboard_port}"

    def start(self, workers: int = 1) -> RayCluster:
        """The head and ``workers`` nodes with one fake GPU each; what started is stopped if the rest fails."""
        try:
            self._node(
                "head",
                [
                    "--head",
                    f"--port={self.port}",
                    "--dashboard-host=127.0.0.1",
                    f"--dashboard-port={self.dashboard_port}",
                ]
                + ["--include-dashboard=true", f"--temp-dir={self.temp_dir}"],
            )
            for _ in range(workers):
                self.add_worker({GPU: 1})
        except BaseException:
            self.stop()
            raise
        return self

    def add_worker(self, resources: dict, hidden: Path | None = None) -> subprocess.Popen:
        """A node joining the head; ``hidden``: a folder this node sees as an empty tmpfs of its own."""
        options = [f"--address=127.0.0.1:{self.port}", f"--resources={json.dumps(resources)}"]
        process = self._node(f"worker{len(self.nodes)}", options, hidden)
        self.wait_for_nodes(len(self.nodes))
        return process

    def _node(self, name: str, options: list[str], hidden: Path | None = None) -> subprocess.Popen:
        command = [RAY, "start", "--block", "--node-ip-address=127.0.0.1", "--num-cpus=2", "--disable-usage-stats"]
        command += [
            "--object-store-memory=80000000",
            f"--dashboard-agent-listen-port={free_port(self.ports)}",
            *options,
        ]
        if hidden is not None:
            hidden.mkdir(parents=True, exist_ok=True)
            mount = f"mount -t tmpfs tmpfs {shlex_quote(hidden)} && exec {' '.join(map(shlex_quote, command))}"
            command = ["unshare", "--mount", "--propagation", "private", "sh", "-c", mount]
        log = (self.log_dir / f"ray-{name}.log").open("ab")
        process = subprocess.Popen(
            command,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        self.nodes.append(process)
        return process

    def alive_nodes(self) -> list[dict]:
        out = subprocess.run(
            [RAY, "list", "nodes", "--address", self.address, "--format", "json", "--filter", "state=ALIVE"],
            capture_output=True,
            text=True,
            env=self.env,
            timeout=60,
        )
        try:  # before the head answers, or with no node yet, it prints a sentence instead
            return json.loads(out.stdout) if out.returncode == 0 else []
        except ValueError:
            return []

    def wait_for_nodes(self, count: int, timeout: float = 180) -> None:
        deadline = time.monotonic() + timeout
        while len(self.alive_nodes()) != count:
            for node in self.nodes:
                assert node.poll() is None, f"a Ray node exited ({node.returncode}); see {self.log_dir}/ray-*.log"
            assert time.monotonic() < deadline, f"the Ray cluster did not reach {count} nodes in {timeout} s"
            time.sleep(1)

    def stop_node(self, process: subprocess.Popen) -> None:
        _kill_session(process)
        self.nodes.remove(process)

    def stop(self) -> None:
        for process in reversed(self.nodes):
            _kill_session(process)
        self.nodes.clear()
        shutil.rmtree(self.temp_dir, ignore_errors=True)


def _kill_session(process: subprocess.Popen) -> None:
    """The node's ``ray start`` and every process it started (they share its session)."""
    for sig, wait in ((signal.SIGTERM, 5), (signal.SIGKILL, 10)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            break
        try:
            process.wait(wait)
            break
        except subprocess.TimeoutExpired:
            continue
    _kill_stragglers(process.pid)


def _kill_stragglers(session: int) -> None:
    """Ray processes that left the node's session, found by it in /proc."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == session:
            try:
                os.kill(int(stat.parent.name), signal.SIGKILL)
            except ProcessLookupError:
                pass


def shlex_quote(value) -> str:
    import shlex

    return shlex.quote(str(value))
