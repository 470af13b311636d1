"""Benchmark `python -m pipeline prepare` against the floor for the same bytes.

The floor reads the zip once and writes as many bytes once; `prepare` runs as users run
it, in a subprocess on every core, with its process tree sampled for RSS and CPU. See
benchmarks/README.md for how to read the output. Workspaces are deleted only at the end:
on journal-less ext4 (like this machine's) each file created soon after thousands were
deleted costs ~0.5 ms of kernel time (`recently_deleted` inode scan), skewing the next run.
The same images are also written as COCO JSON and YOLO zips and prepared in turns with the
VOC one: reading another format must not cost more than 10% over VOC.

    .venv/bin/python benchmarks/ingest.py [--images 2000] [--workdir DIR | --keep]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from pipeline.data.images import check_image  # noqa: E402
from pipeline.data.parallel import chunks, default_workers, parallel_map  # noqa: E402
from pipeline.data.synthetic import SyntheticSpec, make_dataset_zip  # noqa: E402

TARGET_RATIO = 5.0  # prepare may take at most this many times the floor
FORMATS = ("voc", "coco", "yolo")  # the same images and boxes in each annotation format
FORMAT_SLACK = 0.10  # COCO and YOLO may take at most this much longer than VOC
MEMORY_GROWTH_LIMIT = 0.20  # peak tree RSS may grow at most this much from N/4 to N images
SAMPLE_SECONDS = 0.05
SLOW_CREATE_SECONDS = 100e-6  # per empty file; ~25 us is normal on ext4
CHUNK = 1 << 20
MB = 1e6


@dataclass
class Run:
    seconds: float
    cpu_seconds: float  # user + system over every process of the tree
    main_peak: int  # bytes, VmHWM of the command's own process
    worker_peak: int  # bytes, largest VmHWM of any descendant (forkserver, pool workers)
    tree_peak: int  # bytes, largest sum of RSS over the tree at one sample (shared pages counted twice)
    other_cpu: float  # CPU seconds the rest of the machine used meanwhile (noise)
    stdout: str
    stderr: str


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=2000, help="images in the dataset (default 2000)")
    parser.add_argument("--workdir", type=Path, help="where zips and workspaces go (default: a temp dir)")
    parser.add_argument("--keep", action="store_true", help="keep the temp workdir (a --workdir is always kept)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=2, help="runs of the floor and of prepare; best counts")
    return parser.parse_args(argv)


def dataset(workdir: Path, images: int, seed: int, fmt: str = "voc") -> tuple[Path, float | None]:
    """The zip for (images, seed, format), generated once; returns it and the generation time (None: cached)."""
    path = workdir / f"{fmt}-{images}-seed{seed}.zip"
    if path.exists():
        return path, None
    spec = SyntheticSpec(
        images=images, seed=seed, size=(640, 480), size_jitter=0.25, boxes=(1, 4), photo_like=True, quality=90
    )
    start = time.perf_counter()
    make_dataset_zip(path.with_suffix(".partial"), spec, fmt).replace(path)
    return path, time.perf_counter() - start


def best_of(repeats: int, fn) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def copy_once(archive: Path, target: Path) -> None:
    """The floor: read the zip once and write as many bytes once, without fsync."""
    with archive.open("rb") as src, target.open("wb") as dst:
        while chunk := src.read(CHUNK):
            dst.write(chunk)


def check_all_jpegs(archive: Path) -> None:
    """The one check no pipeline can skip: prepare's JPEG check decode of every image, on every core."""
    with zipfile.ZipFile(archive) as zf:
        names = [name for name in zf.namelist() if name.endswith(".jpg")]
    parallel_map(_check_members, [(str(archive), part) for part in chunks(names, 8 * default_workers())], min_items=2)


def _check_members(task: tuple[str, list[str]]) -> None:
    with zipfile.ZipFile(task[0]) as zf:
        for name in task[1]:
            check_image(zf.read(name))


def create_files(workdir: Path, count: int) -> float:
    """Seconds to create ``count`` empty files: what extraction pays the kernel per file."""
    folder = workdir / "workspaces" / "empty-files"
    folder.mkdir()
    start = time.perf_counter()
    for index in range(count):
        (folder / f"{index:06d}").open("xb").close()
    return time.perf_counter() - start


def _busy_cpu() -> float:
    """CPU seconds the whole machine has run (guest time is already inside user)."""
    t = psutil.cpu_times()
    return t.user + t.nice + t.system + t.irq + t.softirq


def monitored(cmd: list[str], workdir: Path) -> Run:
    """Run ``cmd`` to the end, sampling RSS, peak RSS and CPU of its whole process tree."""
    with tempfile.TemporaryFile("w+", dir=workdir) as out, tempfile.TemporaryFile("w+", dir=workdir) as err:
        start, busy = time.perf_counter(), _busy_cpu()
        proc = subprocess.Popen(cmd, cwd=REPO, stdout=out, stderr=err)
        root = psutil.Process(proc.pid)
        peaks: dict[int, int] = {}
        cpu: dict[int, float] = {}
        tree_peak = 0
        while proc.poll() is None:
            tree_peak = max(tree_peak, _sample(root, peaks, cpu))
            time.sleep(SAMPLE_SECONDS)
        seconds, busy = time.perf_counter() - start, _busy_cpu() - busy
        out.seek(0), err.seek(0)
        workers = [peak for pid, peak in peaks.items() if pid != proc.pid]
        return Run(
            seconds,
            sum(cpu.values()),
            peaks.get(proc.pid, 0),
            max(workers, default=0),
            tree_peak,
            max(0.0, busy - sum(cpu.values())),
            out.read(),
            err.read(),
        )


def _sample(root: psutil.Process, peaks: dict[int, int], cpu: dict[int, float]) -> int:
    """One sample of the tree: update per-process peaks and CPU, return the summed RSS."""
    total = 0
    try:
        tree = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0
    for process in tree:
        try:
            with process.oneshot():
                total += process.memory_info().rss
                times = process.cpu_times()
            cpu[process.pid] = times.user + times.system
            peaks[process.pid] = max(peaks.get(process.pid, 0), _vm_hwm(process.pid))
        except (psutil.NoSuchProcess, FileNotFoundError, ProcessLookupError):
            continue
    return total


def _vm_hwm(pid: int) -> int:
    """The kernel's exact peak RSS of a process (Linux), in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


def pipeline_cmd(*args: str | Path, flags: tuple[str, ...] = ()) -> list[str]:
    return [sys.executable, *flags, "-m", "pipeline", *map(str, args), "--json"]


def prepare_runs(archive: Path, workdir: Path, images: int, repeats: int) -> tuple[Run, list[str]]:
    """Best-time run (with the highest peaks seen in any run) and what failed verification."""
    runs, failures = [], []
    for index in range(repeats):
        workspace = workdir / "workspaces" / f"{archive.stem}-{index}"
        run = monitored(pipeline_cmd("prepare", archive, "--out", workspace), workdir)
        failures += verify(run, images)
        runs.append(run)
    best = min(runs, key=lambda run: run.seconds)
    for peak in ("main_peak", "worker_peak", "tree_peak"):
        setattr(best, peak, max(getattr(run, peak) for run in runs))
    return best, sorted(set(failures))


def verify(run: Run, images: int) -> list[str]:
    try:
        summary = json.loads(run.stdout)
    except json.JSONDecodeError:
        return [f"prepare printed no JSON: {run.stderr.strip()[-500:]}"]
    if "error" in summary:
        return [f"prepare failed: {summary['error']}"]
    in_splits = sum(split["images"] for split in summary["splits"].values())
    checks = {
        f"usable_images is {summary['usable_images']}, expected {images}": summary["usable_images"] == images,
        f"splits hold {in_splits} images, expected {images}": in_splits == images,
        f"problems reported: {summary['problems'][:1]}": not summary["problems"],
    }
    return [failure for failure, ok in checks.items() if not ok]


def tensorflow_imports(archive: Path, workdir: Path) -> list[str]:
    """TensorFlow modules imported by any process of one prepare (-X importtime reaches workers too)."""
    workspace = workdir / "workspaces" / "importtime"
    cmd = pipeline_cmd("prepare", archive, "--out", workspace, flags=("-X", "importtime"))
    result = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, check=True)
    modules = [
        line.rsplit("|", 1)[-1].strip() for line in result.stderr.splitlines() if line.startswith("import time:")
    ]
    return sorted({name for name in modules if name.split(".")[0] in ("tensorflow", "tf_keras", "keras")})


def step_times(archive: Path, workdir: Path) -> dict[str, float]:
    """Each subcommand on its own, one after another, on one workspace (start-up included)."""
    workspace = workdir / "workspaces" / "steps"
    steps = {
        "inspect": ("inspect", archive, "--out", workspace),
        "labels": ("labels", workspace),
        "split": ("split", workspace),
        "records": ("records", workspace),
    }
    times = {}
    for name, args in steps.items():
        start = time.perf_counter()
        subprocess.run(pipeline_cmd(*args), cwd=REPO, capture_output=True, check=True)
        times[name] = time.perf_counter() - start
    return times


def mib(value: int) -> str:
    return f"{value / 2**20:.0f} MiB"


@dataclass
class Results:
    sizes: dict[int, int]  # images -> zip bytes
    floor_s: float
    decode_s: float
    create_s: float
    runs: dict[int, Run]  # images -> best prepare run
    steps: dict[str, float]
    failures: list[str]
    tf_modules: list[str]
    formats: dict[str, float]  # format -> best prepare seconds at N images, measured interleaved


def print_table(args, res: Results) -> None:
    n, run, mb = args.images, res.runs[args.images], res.sizes[args.images] / MB
    print(f"\ncommand: {' '.join(sys.argv)}")
    print(
        f"timings: best of {args.repeats} runs each, warm page cache, nothing dropped; RSS sampled every "
        f"{SAMPLE_SECONDS * 1000:.0f} ms, per-process peaks from VmHWM, tree total = largest RSS sum\n"
    )
    rows = [
        ("images", f"{n}"),
        ("dataset", f"{mb:.1f} MB"),
        (
            "floor: read zip + write same bytes",
            f"{res.floor_s:.3f} s  ({mb / res.floor_s:.0f} MB/s; no fsync, prepare fsyncs only its shards)",
        ),
        ("prepare (subprocess, all cores)", f"{run.seconds:.2f} s"),
        ("  images/s", f"{n / run.seconds:.0f}"),
        ("  MB/s", f"{mb / run.seconds:.1f}"),
        ("  CPU used", f"{run.cpu_seconds:.2f} s = {run.cpu_seconds / run.seconds:.2f} of {psutil.cpu_count()} cores"),
        ("  other processes' CPU meanwhile", f"{run.other_cpu / run.seconds:.2f} cores (noise)"),
        ("ratio prepare / floor", f"{run.seconds / res.floor_s:.1f}x  (target <= {TARGET_RATIO:g}x)"),
        ("peak RSS main process", mib(run.main_peak)),
        ("peak RSS worker max", mib(run.worker_peak)),
        ("peak RSS tree total", mib(run.tree_peak)),
        (
            "info: JPEG check decode, all cores",
            f"{res.decode_s:.2f} s  (floor + this: ratio {run.seconds / (res.floor_s + res.decode_s):.1f}x)",
        ),
        (
            f"info: create {2 * n} empty files",
            f"{res.create_s:.2f} s  ({res.create_s / (2 * n) * 1e6:.0f} us/file; extraction creates as many)",
        ),
    ]
    for label, value in rows:
        print(f"  {label:<38} {value}")
    print(
        "\nsteps one by one (each a fresh `python -m pipeline ...`, so start-up is included; "
        "labels and split are mostly start-up):"
    )
    for name, seconds in res.steps.items():
        print(f"  {name:<38} {seconds:.2f} s")


def print_verdicts(args, res: Results) -> None:
    n, quarter = args.images, max(1, args.images // 4)
    small, large = res.runs[quarter], res.runs[n]
    growth = large.tree_peak / small.tree_peak - 1
    print(
        f"\nmemory: tree peak {mib(small.tree_peak)} at {quarter} images, {mib(large.tree_peak)} at {n} "
        f"(main process {mib(small.main_peak)} -> {mib(large.main_peak)})"
    )
    slope = (large.main_peak - small.main_peak) / max(1, n - quarter) / 1024
    print(
        f"peak RSS grows {growth * 100:.0f}% from N/4 to N images ({quarter} -> {n}; main process "
        f"+{slope:.1f} KiB per extra image)"
    )
    print(f"tensorflow imported by any process: {', '.join(res.tf_modules[:5]) or 'no'}")
    print(f"verification: {'; '.join(res.failures) or f'all {n} images in the records, no problems'}")
    if large.other_cpu > 0.25 * large.seconds:
        print("WARNING: other processes kept the CPUs busy during prepare; these timings are noisy")
    if res.create_s > SLOW_CREATE_SECONDS * 2 * n:
        print(
            "WARNING: creating a file costs > 100 us here, likely because many files on this file system "
            "were deleted minutes ago (see the docstring); extraction pays the same"
        )
    voc = res.formats["voc"]
    print(
        "\nformats, same images (best of the interleaved runs): "
        + ", ".join(f"{fmt} {seconds:.2f} s ({seconds / voc - 1:+.0%})" for fmt, seconds in res.formats.items())
    )
    formats_ok = all(seconds <= voc * (1 + FORMAT_SLACK) for seconds in res.formats.values())
    verdict = "TARGET MET" if formats_ok else "TARGET MISSED"
    print(f"format target (COCO and YOLO within {FORMAT_SLACK:.0%} of VOC): {verdict}")
    speed_ok = large.seconds <= TARGET_RATIO * res.floor_s and not res.tf_modules and not res.failures
    print(
        f"\nspeed target (<= {TARGET_RATIO:g}x floor, no TensorFlow, every image): "
        f"{'TARGET MET' if speed_ok else 'TARGET MISSED'}"
    )
    print(
        f"memory target (peak grows <= {MEMORY_GROWTH_LIMIT:.0%} from N/4 to N): "
        f"{'TARGET MET' if growth <= MEMORY_GROWTH_LIMIT else 'TARGET MISSED'}"
    )


def measure(args, workdir: Path) -> Results:
    counts = sorted({max(1, args.images // 4), args.images})
    archives, sizes = {}, {}
    for count in counts:
        archives[count], generated = dataset(workdir, count, args.seed)
        sizes[count] = archives[count].stat().st_size
        how = "cached" if generated is None else f"generated in {generated:.1f} s"
        print(f"dataset: {archives[count]} ({count} images, {sizes[count] / MB:.1f} MB, {how})")
    archive = archives[args.images]
    (workdir / "workspaces").mkdir()
    floor_s = best_of(args.repeats, lambda: copy_once(archive, workdir / "workspaces" / "floor.bin"))
    decode_s = best_of(args.repeats, lambda: check_all_jpegs(archive))
    create_s = create_files(workdir, 2 * args.images)
    runs, failures = {}, []
    for count in counts:
        runs[count], failed = prepare_runs(archives[count], workdir, count, args.repeats)
        failures += [f"{count} images: {failure}" for failure in failed]
    tf_modules, steps = tensorflow_imports(archive, workdir), step_times(archive, workdir)
    formats, failed = format_times(workdir, args)
    failures += failed
    return Results(sizes, floor_s, decode_s, create_s, runs, steps, failures, tf_modules, formats)


def format_times(workdir: Path, args) -> tuple[dict[str, float], list[str]]:
    """Best prepare time of each format's zip, the formats taking turns so machine noise hits them alike."""
    archives = {fmt: dataset(workdir, args.images, args.seed, fmt)[0] for fmt in FORMATS}
    times: dict[str, list[float]] = {fmt: [] for fmt in FORMATS}
    failures = []
    for index in range(args.repeats):
        for fmt, archive in archives.items():
            workspace = workdir / "workspaces" / f"format-{fmt}-{index}"
            run = monitored(pipeline_cmd("prepare", archive, "--out", workspace), workdir)
            failures += [f"{fmt}: {failure}" for failure in verify(run, args.images)]
            times[fmt].append(run.seconds)
    return {fmt: min(values) for fmt, values in times.items()}, sorted(set(failures))


def main() -> int:
    args = parse_args(sys.argv[1:])
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="detbot-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(workdir / "workspaces", ignore_errors=True)  # left by an interrupted run
    try:
        results = measure(args, workdir)
        print_table(args, results)
        print_verdicts(args, results)
    finally:
        if args.workdir is None and not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            shutil.rmtree(workdir / "workspaces", ignore_errors=True)
            print(f"\nworkdir kept (zips are reused next time): {workdir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
