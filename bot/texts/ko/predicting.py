"""The Korean of bot/texts/predicting.py: the same names and parameters (tests/test_catalogues.py)."""

from __future__ import annotations

_SHOWN_AT_MOST = 10

PHOTO_FORGOTTEN = "이 사진의 검출 결과가 더 이상 없어요. 사진을 다시 보내 주세요."
NOT_YOUR_PHOTO = "이 사진을 보낸 사람만 기준 점수를 바꿀 수 있어요."
PREDICT_CRASHED = "모델이 사진을 처리하다가 멈췄어요. 사진을 다시 보내 주세요. 새로 띄운 모델이 답해요."


def predict_timed_out(seconds: float) -> str:
    return (
        f"모델이 사진 한 장에 {seconds:.0f}초 넘게 걸려서 모델을 멈췄어요. "
        "사진을 다시 보내 주세요. 새로 띄운 모델이 답해요."
    )


def lower_threshold(value: float) -> str:
    return f"상자 더 보기 (점수 {value:.2f} 이상)"


def higher_threshold(value: float) -> str:
    return f"상자 덜 보기 (점수 {value:.2f} 이상)"


def threshold_caption(found: list[dict], threshold: float) -> str:
    named = ", ".join(f"{d['label']} {d['score']:.2f}" for d in found[:_SHOWN_AT_MOST])
    more = f" 외 {len(found) - _SHOWN_AT_MOST}개" if len(found) > _SHOWN_AT_MOST else ""
    head = f"점수 {threshold:.2f} 이상인 상자 {len(found)}개"
    return head + (f": {named}{more}" if found else "예요.")
