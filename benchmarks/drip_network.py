"""The slow URL server of bot_latency.py --slow-downloads, in a network namespace of the run's own.

The bot refuses loopback URLs, so the server (drip_server.py) runs behind a veth pair with
10.213.x.y/30 addresses; everything made here is deleted by DripNetwork.close().
"""

from __future__ import annotations

import ipaddress
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from bot import texts
from bot.uploads import DOWNLOAD_THREADS
from tests.test_bot_e2e import text_of


class DripNetwork:
    """A network namespace of this run's own, a veth pair into it, and the slow server inside.

    Only addresses made here are ever contacted: 10.213.x.y/30, x.y from our pid, skipping
    any /30 that overlaps an address or route the machine already has.
    """

    PORT = 8080

    def __init__(self, work: Path, drip_bytes: int):
        pid = os.getpid()
        self.work, self.drip_bytes = work, drip_bytes
        self.namespace, self.host_link, self.ns_link = f"detbot-bench-{pid}", f"dbb{pid}h", f"dbb{pid}n"
        self.status, self.log = work / "drip-status.json", work / "drip-server.log"
        self.server: subprocess.Popen | None = None
        self.made: list[str] = []  # what close() must undo
        self.host_address = self.ns_address = ""

    # --- set-up and tear-down -------------------------------------------------------------------

    def start(self) -> None:
        if os.geteuid() != 0:
            raise SystemExit("--slow-downloads needs root: it makes a network namespace and a veth pair")
        subnet = _free_subnet(os.getpid())
        host, peer = list(subnet.hosts())
        self.host_address, self.ns_address = str(host), str(peer)
        _ip("netns", "add", self.namespace)
        self.made.append("netns")
        _ip("link", "add", self.host_link, "type", "veth", "peer", "name", self.ns_link)
        self.made.append("link")
        _ip("link", "set", self.ns_link, "netns", self.namespace)
        _ip("addr", "add", f"{host}/{subnet.prefixlen}", "dev", self.host_link)
        _ip("link", "set", self.host_link, "up")
        _ip("-n", self.namespace, "addr", "add", f"{peer}/{subnet.prefixlen}", "dev", self.ns_link)
        _ip("-n", self.namespace, "link", "set", self.ns_link, "up")
        print(f"slow server: namespace {self.namespace}, {self.host_link} {host} <-> {self.ns_link} {peer}", flush=True)
        with self.log.open("ab") as log:
            self.server = subprocess.Popen(
                [
                    "ip",
                    "netns",
                    "exec",
                    self.namespace,
                    sys.executable,
                    str(Path(__file__).with_name("drip_server.py")),
                    "--host",
                    self.ns_address,
                    "--port",
                    str(self.PORT),
                    "--status",
                    str(self.status),
                    "--bytes",
                    str(self.drip_bytes),
                    "--tick",
                    "1",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 20
        while not self.status.exists():
            if self.server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the slow server did not start: {self.log.read_text()[-2000:]}")
            time.sleep(0.1)

    def close(self) -> None:
        if self.server is not None and self.server.poll() is None:
            self.server.terminate()
            try:
                self.server.wait(10)
            except subprocess.TimeoutExpired:
                self.server.kill()
                self.server.wait(10)
        if "link" in self.made:  # deleting one end deletes the pair (it may be gone with the namespace)
            _ip("link", "del", self.host_link, check=False)
        if "netns" in self.made:
            _ip("netns", "del", self.namespace, check=False)
        self.made.clear()
        leftovers = [name for name in (self.host_link,) if _ip("link", "show", name, check=False, quiet=True)]
        leftovers += [self.namespace] if self.namespace in _ip("netns", "list", check=False, quiet=True) else []
        if leftovers:
            print(f"WARNING: could not delete {leftovers}; remove them by hand", file=sys.stderr)

    # --- the downloads --------------------------------------------------------------------------

    def url(self, index: int) -> str:
        return f"http://{self.ns_address}:{self.PORT}/slow-{index}.zip"

    def start_downloads(self, tg, users: list[int]) -> None:
        """Each user sends /dataset URL; returns once the bot has said "Downloading..." to all and the
        server sees as many connections as the bot's download pool runs at once."""
        for index, user_id in enumerate(users, 1):
            tg.user(user_id, f"Dl{index}").send_text(f"/dataset {self.url(index)}")
        for user_id in users:
            tg.wait_for(lambda m: text_of(m) == texts.DOWNLOADING, chat_id=user_id, timeout=30)
        expected = min(len(users), DOWNLOAD_THREADS)
        deadline = time.monotonic() + 30
        while self.server_state()["open"] < expected and time.monotonic() < deadline:
            time.sleep(0.1)
        ended = [user_id for user_id in users if not self._downloading(tg, user_id)]
        if ended:
            raise RuntimeError(
                f"downloads of users {ended} ended before the measurement: "
                f"{[text_of(m) for u in ended for m in tg.messages(u)]}"
            )
        state = self.server_state()
        print(
            f"{len(users)} downloads sent; the server has {state['open']} connections open "
            f"(the bot runs {DOWNLOAD_THREADS} downloads at once)",
            flush=True,
        )

    def server_state(self) -> dict:
        return json.loads(self.status.read_text())

    def established(self) -> int:
        """TCP connections to the server as the kernel in the namespace sees them."""
        out = subprocess.run(
            ["ip", "netns", "exec", self.namespace, "ss", "-Htn", "state", "established", f"( sport = :{self.PORT} )"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        return len(out.splitlines())

    @staticmethod
    def _downloading(tg, user_id: int) -> bool:
        """The bot has said "Downloading..." and nothing since (no check, no refusal)."""
        said = [text_of(m) for m in tg.messages(user_id)]
        return said == [texts.DOWNLOADING]

    def all_in_progress(self, tg, users: list[int]) -> bool:
        expected = min(len(users), DOWNLOAD_THREADS)
        return all(self._downloading(tg, u) for u in users) and self.server_state()["open"] >= expected

    def report(self, tg, users: list[int]) -> dict:
        state = self.server_state()
        return {
            "sent": len(users),
            "waiting": sum(self._downloading(tg, u) for u in users),
            "open": state["open"],
            "established": self.established(),
            "accepted": state["accepted"],
            "bytes_sent": state["bytes_sent"],
        }


def _ip(*args: str, check: bool = True, quiet: bool = False) -> str:
    done = subprocess.run(["ip", *args], capture_output=True, text=True, check=False)
    if done.returncode and check:
        raise RuntimeError(f"ip {' '.join(args)} failed: {done.stderr.strip()} (is `ip netns` allowed here?)")
    if done.returncode and not quiet:
        print(f"ip {' '.join(args)}: {done.stderr.strip()}", file=sys.stderr)
    return done.stdout if done.returncode == 0 else ""


def _free_subnet(pid: int) -> ipaddress.IPv4Network:
    """A 10.213.x.y/30 that overlaps no address or route this machine has."""
    taken = []
    for line in _ip("-o", "-4", "addr", "show").splitlines():
        words = line.split()
        if "inet" in words:
            taken.append(ipaddress.ip_interface(words[words.index("inet") + 1]).network)
    route_types = {
        "unicast",
        "local",
        "broadcast",
        "multicast",
        "anycast",
        "blackhole",
        "unreachable",
        "prohibit",
        "throw",
        "nat",
    }
    for line in _ip("-4", "route", "show", "table", "all").splitlines():
        words = line.split()
        destination = words[1] if words and words[0] in route_types else (words[0] if words else "default")
        if destination != "default":
            taken.append(ipaddress.ip_network(destination, strict=False))
    for step in range(2**14):
        index = (pid + step) % 2**14
        subnet = ipaddress.ip_network(f"10.213.{index // 64}.{index % 64 * 4}/30")
        if not any(subnet.overlaps(other) for other in taken):
            return subnet
    raise RuntimeError("no free /30 in 10.213.0.0/16")
