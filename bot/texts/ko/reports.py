"""The Korean of bot/texts/reports.py: the same names and parameters (tests/test_catalogues.py)."""

from __future__ import annotations

from collections import Counter

from bot.texts.reports import (
    CLASSES_IN_CHAT,
    CLASSES_ON_CARD,
    DETAIL_IN_CHAT,  # noqa: F401  (the same limits in both languages)
    WARNINGS_IN_CHAT,
    _clip,
    ap_file,
    report_file,
    split_file,
)

from .files import status_word
from .formats import format_name
from .pipeline_words import class_warning, device, problem_action, problem_detail, problem_name


def in_file(filename: str) -> str:
    return f"모든 클래스와 자세한 내용: {filename} (첨부)."


def _with_file(chat: str, whole: str, filename: str) -> tuple[str, str | None]:
    return (chat, None) if chat == whole else (f"{chat}\n{in_file(filename)}", whole)


def report(dataset_id: str, summary: dict) -> tuple[str, str | None]:
    whole, chat = (_report(dataset_id, summary, compact) for compact in (False, True))
    return _with_file(chat, whole, report_file(dataset_id))


def _report(dataset_id: str, summary: dict, compact: bool) -> str:
    classes = summary["classes"]
    lines = [
        f"데이터셋 {dataset_id}({format_name(summary.get('format'))} 형식): 이미지 {summary['images']}장, "
        f"라벨된 이미지 {summary['labelled_images']}장, "
        f"상자 {summary['boxes']}개, 클래스 {len(classes)}개."
    ]
    if not compact or len(classes) <= CLASSES_IN_CHAT:
        lines += [f"  {name}: 이미지 {c['images']}장에 상자 {c['boxes']}개" for name, c in classes.items()]
    lines.append(_split(summary["splits"], summary.get("class_warnings", []), compact))
    lines.append(problems(summary["problems"], compact=compact))
    lines.append("다음: /split으로 분할 바꾸기, /labels로 클래스 고치기, /model로 검출기 고르기.")
    return "\n".join(lines)


def problems(items: list[dict], per_kind: int = 3, compact: bool = True) -> str:
    """Each kind and what was done, worded from its kind and parameters."""
    if not items:
        return "문제가 없어요."
    counts = Counter(p["kind"] for p in items)
    lines = ["문제 (처리한 방법):"]
    for kind, count in counts.most_common():
        examples = [p for p in items if p["kind"] == kind][: per_kind if compact else None]
        lines.append(f"- {problem_name(kind)} x{count}: {problem_action(examples[0])}")
        lines += [f"    {_clip(problem_detail(p)) if compact else problem_detail(p)}" for p in examples]
        if count > len(examples):
            lines.append(f"    ... 외 {count - len(examples)}개")
    return "\n".join(lines)


FIX_GONE = "이 버튼은 더 이상 쓸 수 없어요. 지금 클래스는 /labels에서 볼 수 있어요."


def merge_button(names: list[str], into: str) -> str:
    return f"{', '.join(names)} → {into} 합치기"


def merged(names: list[str], into: str, classes: list[str]) -> str:
    return f"{', '.join(names)}을(를) {into}(으)로 합쳤어요. 이제 클래스: {_names(classes)}."


def fix_not_current(dataset_id: str) -> str:
    return f"데이터셋 {dataset_id}은(는) 지금 데이터셋이 아니에요. /datasets에서 고른 뒤 다시 눌러 주세요."


def split(dataset_id: str, splits: dict, warnings: list[dict]) -> tuple[str, str | None]:
    whole, chat = (_split(splits, warnings, compact) for compact in (False, True))
    return _with_file(chat, whole, split_file(dataset_id))


_SPLITS = {"train": "학습", "val": "검증", "test": "테스트"}


def _split(splits: dict, warnings: list[dict], compact: bool) -> str:
    lines = ["분할: " + ", ".join(f"{_SPLITS.get(name, name)} {s['images']}장" for name, s in splits.items())]
    classes = sorted({c for s in splits.values() for c in s["classes"]})
    if not compact or len(classes) <= CLASSES_IN_CHAT:
        for name in classes:
            counts = ", ".join(
                f"{_SPLITS.get(split, split)} {s['classes'].get(name, 0)}" for split, s in splits.items()
            )
            lines.append(f"  {name}: {counts}")
    shown = warnings[:WARNINGS_IN_CHAT] if compact else warnings
    lines += [f"주의: {class_warning(w)}" for w in shown]
    if len(warnings) > len(shown):
        lines.append(f"... 주의 {len(warnings) - len(shown)}개 더")
    return "\n".join(lines)


def label_map(items: list[dict], problems_list: list[dict]) -> str:
    lines = ["클래스 (id: 이름):"] + [f"  {i['id']}: {i['name']}" for i in items]
    if problems_list:
        lines.append(problems(problems_list))
    lines.append("고치기: /labels rename a=b | merge a,b=c | drop x. /labels file은 label_map.pbtxt를 보내요.")
    return "\n".join(lines)


def _names(names: list[str]) -> str:
    if len(names) <= CLASSES_ON_CARD:
        return ", ".join(names)
    shown = ", ".join(names[:CLASSES_ON_CARD])
    return f"{shown} ... 외 {len(names) - CLASSES_ON_CARD}개, 모두 {len(names)}개 (/labels에 전체 목록)"


def model_button(model: dict) -> str:
    star = "* " if model["recommended"] else ""
    return f"{star}{model['name']}: AP {model['coco_ap']}, 파라미터 {model['params_m']}M, {model['input_size']}px"


START_POINTS = {
    "detector": "COCO로 학습한 검출기(클래스 층만 빼고)",
    "backbone": "ImageNet으로 학습한 백본",
    "checkpoint": "내 체크포인트",
    "scratch": "처음부터(무작위 가중치)",
}


def train_card(card: dict) -> str:
    eta = card["estimate_s"]
    estimate = f"약 {eta / 60:.0f}분" if eta else "학습이 시작되면 보여 드려요"
    return (
        f"데이터셋 {card['dataset']}로 {card['model']} 학습 준비가 됐어요:\n"
        f"클래스: {_names(card['classes'])}\n"
        f"이미지: 학습 {card['train_images']}장 / 검증 {card['val_images']}장\n"
        f"배치 크기 {card['batch_size']}, {card['steps']} 스텝 ({card['epochs']:.1f} 에폭)\n"
        f"장치: {device(card['device'])}\n시작점: {START_POINTS[card['start']]}\n"
        f"예상 시간: {estimate}" + (f"\n설정: {' '.join(card['overrides'])}" if card["overrides"] else "")
    )


CLUSTER_QUEUED = "클러스터 대기열에서 빈 GPU를 기다리는 중"


def status(
    job_id: str,
    model: str,
    state: str,
    progress: dict | None,
    evaluation: dict | None,
    queue_position: int | None = None,
) -> str:
    lines = [
        f"작업 {job_id} ({model}): {status_word(state)}" + (f", 대기열 {queue_position}번째" if queue_position else "")
    ]
    if progress:
        total = progress.get("total_steps") or 0
        percent = f" ({100 * progress['step'] / total:.0f}%)" if total else ""
        lines.append(f"스텝 {progress['step']}/{total}{percent}")
        lines.append(
            f"손실 {progress['total_loss']:.4f} (cls {progress.get('cls_loss') or 0:.4f}, "
            f"box {progress.get('box_loss') or 0:.5f}), lr {progress.get('learning_rate') or 0:.5f}"
        )
        eta = progress.get("eta_s")
        lines.append(
            f"초당 이미지 {progress.get('images_per_sec')}장"
            + (f", 약 {eta // 60:.0f}분 {eta % 60:.0f}초 남음" if isinstance(eta, (int, float)) else "")
        )
    if evaluation:
        lines.append(
            f"마지막 평가 (스텝 {evaluation['step']}): AP {evaluation['AP']:.3f}, AP50 {evaluation['AP50']:.3f}"
        )
    return "\n".join(lines)


def finished(job_id: str, event: dict) -> tuple[str, str | None]:
    whole, chat = (_finished(job_id, event, compact) for compact in (False, True))
    return _with_file(chat, whole, ap_file(job_id))


def _finished(job_id: str, event: dict, compact: bool) -> str:
    per_class = event.get("per_class_AP") or {}
    lines = [
        f"작업 {job_id} 완료: 최고 AP {event.get('AP') or 0:.3f}, AP50 {event.get('AP50') or 0:.3f} "
        f"(스텝 {event.get('best_step')})."
    ]
    if compact and len(per_class) > CLASSES_IN_CHAT:
        weakest = sorted(per_class.items(), key=lambda item: item[1])[:3]
        lines.append("가장 약한 클래스: " + ", ".join(f"{name} AP {value:.3f}" for name, value in weakest))
    else:
        lines += [f"  {name}: AP {value:.3f}" for name, value in per_class.items()]
    lines.append("모델을 내보내고 확인하는 중이에요. 곧 아카이브를 보내 드려요.")
    return "\n".join(lines)
