"""The Korean of bot/texts/lists.py: the same names and parameters (tests/test_catalogues.py)."""

from __future__ import annotations

import time

from bot.texts.ko.files import size_text, status_word, usage_line
from bot.texts.ko.general import pick_model

_ACTIONS = {
    "status": "상태",
    "stop": "중지",
    "export": "내보내기",
    "predict": "예측",
    "delete": "삭제",
    "use": "현재로",
    "cleaned": "정리된 데이터셋 받기",
}
NEWER_PAGE, OLDER_PAGE = "‹ 최신", "이전 ›"
# The catalogue's "when to pick it" (pipeline/train/catalog.json), by model; another model keeps its English.
_WHEN = {
    "mobilenetv2-fpn": "데이터셋이 작거나 CPU나 휴대폰에서 쓸 때: 학습도 실행도 가장 빠르고, "
    "간단한 물체는 몇 분 만에 배워요.",
    "spinenet49-mobile": "MobileNetV2로는 정확도가 모자랄 때 휴대폰과 엣지 기기용이에요. "
    "CPU에서는 학습이 약 3배 느려요.",
    "resnet50-fpn": "GPU가 있고 클래스마다 이미지가 수백 장일 때: 정확한 고전 검출기예요. CPU 학습에는 너무 느려요.",
    "spinenet49": "GPU에서 큰 데이터셋으로 정확도가 가장 중요할 때: 공개된 가중치가 없어서 "
    "처음부터 오래 학습해야 해요.",
}


def not_your_card(owner: str | None) -> str:
    """The alert for a member who pressed someone else's card in a group."""
    if owner:
        return f"{owner}님의 카드예요. 버튼은 {owner}님만 누를 수 있어요. 직접 명령을 보내 주세요."
    return "다른 사람의 카드예요. 버튼은 그 사람만 누를 수 있어요. 직접 명령을 보내 주세요."


def _when(timestamp: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(timestamp))


def _page_line(page) -> str:
    return f" ({page.count}쪽 중 {page.number + 1}쪽)" if page.count > 1 else ""


def list_button(number: int, action: str) -> str:
    """A button of entry ``number`` of a list: ``action`` is a key of ``_ACTIONS``."""
    return f"{number}: {_ACTIONS[action]}"


def jobs_list(page) -> str:
    """/jobs (and /status without an id): ``page.items`` are (job, dataset file name, best AP or None)."""
    if not page.items:
        return "아직 작업이 없어요: /train\n" + usage_line(page.usage)
    lines = [f"내 작업, 최신순{_page_line(page)}. 목록 아래 버튼을 누르세요:"]
    for number, (job, dataset, ap) in enumerate(page.items, start=page.first + 1):
        result = f", AP {ap:.3f}" if ap is not None else ""
        state = status_word(job.status)
        lines.append(f"{number}. {dataset} - {job.model} - {state}{result} - {_when(job.created)} ({job.id})")
    lines.append(usage_line(page.usage))
    return "\n".join(lines)


def datasets_list(page, current_id: str | None) -> str:
    if not page.items:
        return "아직 데이터셋이 없어요. Pascal VOC 데이터셋을 .zip으로 보내 주세요.\n" + usage_line(page.usage)
    lines = [f"내 데이터셋, 최신순{_page_line(page)} (* = 현재, /train이 쓰는 것):"]
    for number, d in enumerate(page.items, start=page.first + 1):
        facts = (
            f", 이미지 {d.summary.get('images', 0)}장, 클래스 {len(d.summary.get('classes') or {})}개"
            if d.ready
            else ""
        )
        mark = "* " if d.id == current_id else ""
        lines.append(
            f"{number}. {mark}{d.name} - {status_word(d.status)}{facts}, {size_text(d.size_bytes)} "
            f"- {_when(d.created)} ({d.id})"
        )
    lines.append(usage_line(page.usage))
    return "\n".join(lines)


def no_model_in(job_id: str, status: str) -> str:
    return f"작업 {job_id}은(는) {status_word(status)} 상태예요. 끝난 작업만 내보내거나 예측할 모델이 있어요."


def split_now(split: dict) -> str:
    """/split without words: the split the current dataset has, above the ratio buttons."""
    names = {"train": "학습", "val": "검증", "test": "테스트"}
    counts = ", ".join(f"{names.get(name, name)} {s['images']}장" for name, s in split["splits"].items())
    how = "폴더 기준" if split["from_folders"] else f"검증 {split['ratios'].get('val', 0):.0%}"
    test = split["ratios"].get("test") or 0
    how += f", 테스트 {test:.0%}" if test else ""
    return (
        f"데이터셋 {split['dataset']}의 분할: {counts} ({how}, 시드 {split['seed']}).\n"
        "검증 비율을 누르면 같은 시드로 다시 나눠요. 다른 비율과 시드는 /split 0.25 7처럼 입력하세요."
    )


def ratio_button(ratio: str, current: bool) -> str:
    return f"{'* ' if current else ''}검증 {float(ratio):.0%}"


def model_menu(name: str, reason: str, models: list[dict]) -> str:
    """/model: the recommendation, then when to pick each catalogue model (* marks the recommended one)."""
    lines = [pick_model(name, reason), ""]
    lines += [f"{'* ' if m['name'] == name else ''}{m['name']}: {_WHEN.get(m['name'], m['when'])}" for m in models]
    return "\n".join(lines)
