"""Benchmark how long one store commit holds its caller, with SQLite's flush on every commit and without.

The bot commits on its event loop (a /split marks its dataset as being edited, a /model button stores the
choice), so a commit's time is time no other user is answered. In WAL mode, ``synchronous = FULL`` (SQLite's
default) flushes the WAL to disk on every commit; ``NORMAL`` (what ``storage.open_store`` sets) flushes only at
a checkpoint. Each mode is timed on a quiet disk and beside a large write, the way a training host writes
checkpoints and exports: a child process writes ``--write-mb`` files and fsyncs each, over and over.

Every commit is ``Store.set_model`` on a real store file (one row updated), ``--commits`` of them 50 ms apart;
the output gives median, 95th percentile and max per mode and condition.

    .venv/bin/python benchmarks/store_commits.py [--commits 100] [--write-mb 1000] [--dir /tmp]
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from storage import open_store  # noqa: E402

MODES = ("FULL", "NORMAL")
PAUSE_S = 0.05
CHUNK = b"\0" * 2**20


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--commits", type=int, default=100, help="commits timed per mode and condition")
    parser.add_argument("--write-mb", type=int, default=1000, help="size of each file the writer flushes")
    parser.add_argument("--dir", type=Path, default=None, help="where the store and the writer's files go")
    return parser.parse_args(argv)


def write_forever(folder: str, megabytes: int) -> None:
    """The large writer: a file of ``megabytes``, flushed, deleted, again, until killed."""
    target = Path(folder) / "writer.bin"
    while True:
        with open(target, "wb") as out:
            for _ in range(megabytes):
                out.write(CHUNK)
            out.flush()
            os.fsync(out.fileno())
        target.unlink()


def commit_times_ms(folder: Path, mode: str, commits: int) -> list[float]:
    store = open_store(folder / f"store-{mode}-{time.monotonic_ns()}.db")
    store.db.execute(f"PRAGMA synchronous = {mode}")
    store.ensure_user(1, "Ann")
    times = []
    for i in range(commits):
        start = time.perf_counter()
        store.set_model(1, f"model-{i}")
        times.append((time.perf_counter() - start) * 1000)
        time.sleep(PAUSE_S)
    store.close()
    return times


def row(mode: str, condition: str, times: list[float]) -> str:
    p95 = statistics.quantiles(times, n=20)[-1]
    return f"{mode:<7} {condition:<16} {statistics.median(times):9.2f} {p95:9.2f} {max(times):9.2f}"


def main(argv: list[str]) -> None:
    args = parse_args(argv)
    with tempfile.TemporaryDirectory(dir=args.dir, prefix="store-commits-") as name:
        folder = Path(name)
        print(f"$ .venv/bin/python benchmarks/store_commits.py {' '.join(argv)}".rstrip())
        print(f"store and writer in {folder}; {args.commits} commits per line, {PAUSE_S * 1000:.0f} ms apart")
        print(f"{'mode':<7} {'condition':<16} {'median ms':>9} {'p95 ms':>9} {'max ms':>9}")
        for mode in MODES:
            print(row(mode, "quiet disk", commit_times_ms(folder, mode, args.commits)), flush=True)
            writer = multiprocessing.get_context("spawn").Process(
                target=write_forever, args=(str(folder), args.write_mb), daemon=True
            )
            writer.start()
            try:
                time.sleep(1.0)  # the writer's dirty pages build up first
                times = commit_times_ms(folder, mode, args.commits)
            finally:
                writer.kill()
                writer.join()
            print(row(mode, f"{args.write_mb} MB writer", times), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
