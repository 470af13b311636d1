"""Plain-text tables of the step results, for a terminal."""

from __future__ import annotations

from collections import Counter


def table(headers: list[str], rows: list[list]) -> str:
    cells = [headers] + [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def health_text(summary: dict) -> str:
    parts = [
        f"images {summary['images']}, labelled {summary['labelled_images']}, "
        f"boxes {summary['boxes']}, classes {len(summary['classes'])}, format {summary.get('format', 'voc')}",
        table(
            ["class", "boxes", "images"], [[name, c["boxes"], c["images"]] for name, c in summary["classes"].items()]
        ),
    ]
    sizes = summary.get("box_sizes") or {}
    if sizes:
        parts.append("box sizes: " + ", ".join(f"{k} {v}" for k, v in sizes.items()))
    parts.append(problems_text(summary["problems"]))
    return "\n\n".join(parts)


def problems_text(problems: list[dict], per_kind: int = 5) -> str:
    if not problems:
        return "problems: none"
    counts = Counter(p["kind"] for p in problems)
    lines = ["problems: " + ", ".join(f"{kind} {n}" for kind, n in counts.most_common())]
    shown: Counter = Counter()
    for problem in problems:
        shown[problem["kind"]] += 1
        if shown[problem["kind"]] <= per_kind:
            lines.append(f"  [{problem['kind']}] {problem['detail']} -> {problem['action']}")
        elif shown[problem["kind"]] == per_kind + 1:
            lines.append(f"  [{problem['kind']}] ... and {counts[problem['kind']] - per_kind} more (see --json)")
    return "\n".join(lines)


def split_text(splits: dict, warnings: list[str]) -> str:
    classes = sorted({name for s in splits.values() for name in s["classes"]})
    names = list(splits)
    rows = [["images"] + [splits[n]["images"] for n in names], ["boxes"] + [splits[n]["boxes"] for n in names]]
    rows += [[f"  {c}"] + [splits[n]["classes"].get(c, 0) for n in names] for c in classes]
    text = table([""] + names, rows)
    return text + ("\n\nwarnings:\n" + "\n".join(f"  - {w}" for w in warnings) if warnings else "")


def label_map_text(items: list[dict]) -> str:
    return table(["id", "name", "display_name"], [[i["id"], i["name"], i["display_name"]] for i in items])


def records_text(outputs: dict) -> str:
    lines = []
    for key, paths in outputs.items():
        if key.endswith("_records"):
            lines.append(
                f"{key.removesuffix('_records')}: {len(paths)} shards" + (f" ({paths[0]} ...)" if paths else "")
            )
    return "\n".join(lines)


def job_text(status: dict) -> str:
    lines = [f"state: {status['state']} at step {status['step']}" + (" (running)" if status["running"] else "")]
    run = status.get("run")
    if run:
        said = f" ({run['message']})" if run["message"] else ""
        lines.append(f"{run['executor']} run {run['id']}: {run['state']}{said}")
    progress = status.get("last_progress")
    if progress:
        eta = progress.get("eta_s")
        lines.append(
            f"step {progress['step']}/{progress['total_steps']}  loss {progress['total_loss']}  "
            f"lr {progress.get('learning_rate')}  {progress.get('images_per_sec')} img/s"
            + (f"  ETA {eta // 60:.0f} min {eta % 60:.0f} s" if isinstance(eta, (int, float)) else "")
        )
    evaluation = status.get("last_eval")
    if evaluation:
        lines.append(f"last eval at step {evaluation['step']}: AP {evaluation['AP']}  AP50 {evaluation['AP50']}")
    best = status.get("best")
    if best:
        lines.append(f"best: AP {best['AP']:.4f} at step {best['step']}")
    last = status.get("last_event") or {}
    if last.get("message"):
        lines.append(last["message"])
    return "\n".join(lines)
