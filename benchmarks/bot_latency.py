"""Reply latency of /status and /help while a training job runs and a dataset is being checked.

    python benchmarks/bot_latency.py [--commands 200] [--slow-downloads 6 | --split-labels]

The real bot process (`python -m bot`) talks to the fake Bot API on 127.0.0.1 (tests/fake_telegram.py);
latency is from the moment the update is queued to the moment the bot's reply arrives, polling
round trip included. Target: p95 under 300 ms.

`--slow-downloads N` (root only, needs `ip netns`) also has N more users send `/dataset URL`s
served a few bytes a second, and adds /split and /labels (the default thread pool) to the
commands measured. The bot refuses loopback URLs, so the slow server runs in a network
namespace this run makes, on a veth pair with 10.213.x.y/30 addresses, and the bot gets
DETBOT_ALLOW_PRIVATE_URLS=true; both are deleted at the end. `--split-labels` measures the
same four commands without the downloads, as the control. See benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bot import texts  # noqa: E402
from bot.uploads import DOWNLOAD_THREADS  # noqa: E402
from pipeline.data.synthetic import SyntheticSpec, make_voc_zip  # noqa: E402
from tests.fake_telegram import DEFAULT_TOKEN, FakeTelegram  # noqa: E402
from tests.test_bot_e2e import ANN, BOB, BotProcess, kill_trainers, start_training, text_of, upload  # noqa: E402

CAT = 1003  # splits and relabels her own small dataset (--slow-downloads, --split-labels)
DOWNLOADERS = 3001  # the slow downloaders are users 3001, 3002, ...
EXPECT = {"/status": "Job ", "/help": "Pascal VOC", "/split": "Split: ", "/labels": "Classes (id: name)"}


def measure(tg, user, command: str, expect: str, early: list) -> float:
    """Milliseconds until the bot *sends* a text message with ``expect`` in this chat.

    Sent, not edited: the job's progress message ("Job ...: running") is edited in place
    every second, and an edit must not pass for the reply to /status. ``early`` collects
    the commands where an edit would have (how the first version of this script timed).
    """
    mark = tg.mark()
    started = time.perf_counter()
    user.send_text(command)
    reply = tg.wait_for(
        lambda m: m["event"] == "sent" and m["kind"] == "text" and expect in text_of(m),
        chat_id=user.chat_id,
        since=mark,
        timeout=30,
    )
    elapsed = (time.perf_counter() - started) * 1000
    first = tg.wait_for(lambda m: expect in text_of(m), chat_id=user.chat_id, since=mark, timeout=1)
    if first["seq"] < reply["seq"]:
        early.append(command)
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--commands", type=int, default=200)
    parser.add_argument("--check-images", type=int, default=2000, help="size of the dataset being checked")
    parser.add_argument(
        "--slow-downloads",
        type=int,
        default=0,
        metavar="N",
        help="N users each download a URL served a few bytes a second meanwhile (root, ip netns)",
    )
    parser.add_argument("--drip-bytes", type=int, default=4, help="bytes per second the slow server sends")
    parser.add_argument(
        "--split-labels",
        action="store_true",
        help="also measure /split and /labels (implied by --slow-downloads): the control run",
    )
    parser.add_argument("--split-images", type=int, default=24, help="size of the dataset /split rewrites")
    args = parser.parse_args()
    # Ctrl-C and kill both unwind through the finally blocks: the namespace must not outlive us.
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGHUP, _interrupt)
    work = Path(tempfile.mkdtemp(prefix="bot-latency-"))
    (work / "data").mkdir()
    big = make_voc_zip(
        work / "big.zip", SyntheticSpec(images=args.check_images, size=(640, 480), size_jitter=0.25, photo_like=True)
    )
    slow = args.slow_downloads > 0
    edits = slow or args.split_labels
    drip = DripNetwork(work, args.drip_bytes) if slow else None
    downloaders = [DOWNLOADERS + index for index in range(args.slow_downloads)]
    settings = {"DETBOT_DOWNLOAD_LIMIT_MB": 2000}
    if edits:
        settings["ALLOWED_USER_IDS"] = ",".join(map(str, [ANN, BOB, CAT, *downloaders]))
    if slow:
        settings["DETBOT_ALLOW_PRIVATE_URLS"] = "true"
    commands = ["/status", "/help", "/split", "/labels"] if edits else ["/status", "/help"]
    results: dict[str, list[float]] = {command: [] for command in commands}
    early: list[str] = []
    checking = dripping = 0
    report, finished, timed_out = None, False, None
    try:
        if drip:
            drip.start()
        # A self-hosted-sized limit, so the big dataset is downloaded and checked, not refused.
        with FakeTelegram(DEFAULT_TOKEN, download_limit=2000 * 2**20) as tg:
            bot = BotProcess(tg, work / "data", **settings)
            try:
                tg.wait_until_polling()
                ann, bob = tg.user(ANN, "Ann"), tg.user(BOB, "Bob")
                upload(tg, ann, work)
                cat = tg.user(CAT, "Cat")
                if edits:
                    upload(tg, cat, work, images=args.split_images)
                start_training(tg, ann, "100000 steps trainer.validation_interval=100000")
                tg.wait_for(lambda m: "step " in text_of(m), chat_id=ANN, timeout=180)
                bob.send_document(big.read_bytes(), "big.zip")
                tg.wait_for(lambda m: "Checking it" in text_of(m), chat_id=BOB, timeout=60)
                if drip:
                    drip.start_downloads(tg, downloaders)
                users = {"/status": ann, "/help": ann, "/split": cat, "/labels": cat}
                for index in range(args.commands):
                    command = commands[index % len(commands)]
                    text = command
                    if command == "/split":  # a real change each time: 0.2, 0.1, 0.2, ...
                        text = f"/split {0.2 if index // len(commands) % 2 == 0 else 0.1}"
                    try:
                        results[command].append(measure(tg, users[command], text, EXPECT[command], early))
                    except AssertionError:  # no reply in 30 s: that is the finding, not a crash
                        timed_out = command
                        break
                    checking += not any(text_of(m).startswith("Dataset ") for m in tg.messages(BOB))
                    if drip:
                        dripping += drip.all_in_progress(tg, downloaders)
                if drip:
                    report = drip.report(tg, downloaders)
                finished = True
            finally:
                bot.stop()
                kill_trainers(work / "data")
    finally:
        if drip:
            drip.close()
        if not finished:
            print(f"the bot's log: {work / 'bot.log'}", file=sys.stderr)
    _print(results, checking, early, args, report, dripping, timed_out)
    return 0


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


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


def _print(
    results: dict, checking: int, early: list, args, report: dict | None, dripping: int, timed_out: str | None
) -> None:
    print(f"{'command':<8} {'n':>4} {'p50 ms':>8} {'p95 ms':>8} {'max ms':>8}")
    worst = float("inf") if timed_out else 0.0
    for command, values in results.items():
        if len(values) < 2:
            print(f"{command:<8} {len(values):>4} {'-':>8} {'-':>8} {max(values, default=0):8.1f}")
            continue
        p95 = statistics.quantiles(values, n=20)[-1]
        worst = max(worst, p95)
        print(f"{command:<8} {len(values):>4} {statistics.median(values):8.1f} {p95:8.1f} {max(values):8.1f}")
    answered = sum(map(len, results.values()))
    if timed_out:
        print(f"STOPPED: no reply to {timed_out} within 30 s, after {answered} of {args.commands} commands.")
    print(
        f"{checking} of {answered} commands were answered while the {args.check_images}-image dataset "
        "was still being checked; a training job ran throughout."
    )
    if report:
        print(
            f"slow downloads ({args.drip_bytes} bytes/s each): {report['sent']} sent; at the end "
            f"{report['waiting']} still in progress by the bot's replies (no check, no refusal), "
            f"{report['open']} connections open at the server (kernel: {report['established']} established; "
            f"{report['accepted']} accepted in all, {report['bytes_sent']} bytes dripped), "
            f"{max(report['waiting'] - report['open'], 0)} waiting in the bot's download queue "
            f"({DOWNLOAD_THREADS} download threads)."
        )
        print(
            f"{dripping} of {answered} commands were answered while all {report['sent']} downloads were in "
            "progress and the server had every download thread's connection open."
        )
    if early:
        print(
            f"note: on {len(early)} command(s) ({', '.join(sorted(set(early)))}) a progress-message edit came "
            "before the reply; timing to the first matching edit (as this script first did) would have "
            "stopped early there."
        )
    why = f"no reply to {timed_out} in 30 s" if timed_out else f"worst p95 {worst:.1f} ms"
    print(f"target p95 < 300 ms: {'TARGET MET' if worst < 300 else 'TARGET MISSED'} ({why})")
    print(f"command: {' '.join(sys.argv)}\nload average: {os.getloadavg()}")


if __name__ == "__main__":
    sys.exit(main())
