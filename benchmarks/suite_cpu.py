"""Where the test suite's CPU goes: every Python process of a ``./test`` run, with the CPU it used.

    .venv/bin/python benchmarks/suite_cpu.py                 # the full suite, as ./test runs it
    .venv/bin/python benchmarks/suite_cpu.py -m "not slow"   # any ./test arguments pass through

A ``sitecustomize`` put first on PYTHONPATH makes each Python process the run starts (pytest's workers,
trainers, exports, bots, Ray's nodes) append its command line and CPU seconds to a log when it exits.
A process killed by a signal writes nothing, so the log is a lower bound; the run's whole CPU, from the
kernel's account of the children this script waited for, is printed beside it. With the CPU the run
needs and the cores it has, no scheduling can end it sooner than CPU / cores: that floor is printed.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LOGGER = """\
import atexit, json, os, resource, sys
def _log():
    usage = resource.getrusage(resource.RUSAGE_SELF)
    line = {"cpu": usage.ru_utime + usage.ru_stime, "tf": "tensorflow" in sys.modules, "argv": sys.argv}
    with open(LOG, "a") as out:
        out.write(json.dumps(line) + "\\n")
atexit.register(_log)
_exit = os._exit
def _logged_exit(code):  # trainers end with os._exit, which skips atexit
    _log()
    _exit(code)
os._exit = _logged_exit
"""


def kind(argv: list[str]) -> str:
    """What a process was, from its command line: ``pipeline train``, ``bot``, ``pytest worker``, ..."""
    first = argv[0] if argv else ""
    for package in ("pipeline", "bot"):
        if first.endswith(f"{package}/__main__.py"):
            return " ".join([package, *argv[1:2]]) if package == "pipeline" else package
    if first.endswith("verify.py"):
        return "export verify (fresh process)"
    if first == "-c" and len(argv) == 1:
        return "pytest worker (in-process tests)"
    if "ray" in first:
        return "ray " + " ".join(argv[1:2])
    return Path(first).name or "python -c"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cores", type=int, default=os.cpu_count())
    parser.add_argument("--top", type=int, default=12, help="the costliest processes to list one by one")
    args, test_args = parser.parse_known_args()
    with tempfile.TemporaryDirectory(prefix="suite-cpu-") as folder:
        log = Path(folder) / "processes.jsonl"
        (Path(folder) / "sitecustomize.py").write_text(f"LOG = {str(log)!r}\n" + LOGGER)
        paths = [folder, *filter(None, [os.environ.get("PYTHONPATH")])]
        command = [str(ROOT / "test"), "-q", "-p", "no:cacheprovider", *test_args]
        started = time.monotonic()
        result = subprocess.run(command, cwd=ROOT, env=os.environ | {"PYTHONPATH": os.pathsep.join(paths)})
        wall = time.monotonic() - started
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        processes = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    report(processes, children.ru_utime + children.ru_stime, wall, args.cores, args.top)
    print(f"command: {' '.join(sys.argv)}  (tests exited {result.returncode})")
    return 0


def report(processes: list[dict], total_cpu: float, wall: float, cores: int, top: int) -> None:
    logged = sum(p["cpu"] for p in processes)
    print(f"wall {wall:.0f} s on {cores} cores; CPU of the whole run {total_cpu:.0f} s (kernel's count)")
    floor = total_cpu / cores
    print(f"floor: {total_cpu:.0f} CPU-s / {cores} cores = {floor:.0f} s; 6 minutes hold {360 * cores} CPU-s")
    print(f"{len(processes)} Python processes logged their exit, {logged:.0f} CPU-s; killed ones are not among them")
    by_kind: dict[str, list[float]] = collections.defaultdict(list)
    for process in processes:
        by_kind[kind(process["argv"]) + (" [TF]" if process["tf"] else "")].append(process["cpu"])
    print(f"\n{'CPU-s':>8} {'n':>4} {'each':>7}  kind")
    for name, cpus in sorted(by_kind.items(), key=lambda item: -sum(item[1])):
        print(f"{sum(cpus):8.1f} {len(cpus):4d} {sum(cpus) / len(cpus):7.1f}  {name}")
    print(f"\nthe {top} costliest:")
    for process in sorted(processes, key=lambda p: -p["cpu"])[:top]:
        print(f"{process['cpu']:8.1f}  {' '.join(process['argv'])[:150]}")


if __name__ == "__main__":
    sys.exit(main())
