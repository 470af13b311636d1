"""Korean for what the pipeline words in English with data baked in: its recommendation reasons, split
warnings and problem actions. Recognised sentences are re-worded from their parameters; one the
patterns miss stays English (tests/test_catalogues.py runs the pipeline's own sentences through them,
so a reworded pipeline sentence fails there first)."""

from __future__ import annotations

import re

_REASONS = [
    (
        r"no GPU here \((?P<cores>\d+) CPU cores\): .*",
        "GPU가 없어요(CPU 코어 {cores}개). CPU에서는 모바일 모델만 몇 분 안에 학습돼요",
    ),
    (
        r"the GPU has (?P<gb>\d+) GB: .*",
        "GPU 메모리가 {gb} GB예요. COCO로 사전 학습한 모바일 모델이 쓸 만한 배치로 들어가요",
    ),
    (
        r"(?P<images>\d+) labelled images is a small dataset: .*",
        "라벨된 이미지 {images}장은 작은 데이터셋이에요. 사전 학습한 모바일 모델이 큰 모델보다 잘 일반화해요",
    ),
    (
        r"(?P<images>\d+) labelled images and (?P<device>.+): the COCO-pretrained .*",
        "라벨된 이미지 {images}장과 {device}: COCO로 사전 학습한 ResNet-50 FPN이 정확한 선택이에요",
    ),
]
_DEVICES = [
    (r"CPU \((?P<cores>\d+) cores\)", "CPU(코어 {cores}개)"),
    (r"(?P<gpus>\d+) GPUs? \((?P<gb>\d+) GB each\)", "GPU {gpus}개(각 {gb} GB)"),
    (r"(?P<gpus>\d+) GPUs? \((?P<gb>\d+) GB each\), assumed", "GPU {gpus}개(각 {gb} GB, 가정)"),
]
_WARNINGS = [
    (
        r"class '(?P<name>.*)' has no training images; .*",
        "클래스 '{name}'에 학습 이미지가 없어서 검출기가 배울 수 없어요",
    ),
    (
        r"class '(?P<name>.*)' has only (?P<count>\d+) training images?; .*",
        "클래스 '{name}'의 학습 이미지가 {count}장뿐이에요. 클래스마다 50장 이상은 있어야 해요",
    ),
    (
        r"class '(?P<name>.*)' has no validation images; .*",
        "클래스 '{name}'에 검증 이미지가 없어서 정확도를 잴 수 없어요",
    ),
    (
        r"class '(?P<name>.*)' has only (?P<count>\d+) validation images?; .*",
        "클래스 '{name}'의 검증 이미지가 {count}장뿐이라 점수가 들쭉날쭉해요",
    ),
    (r"class '(?P<name>.*)' has no test images; .*", "클래스 '{name}'에 테스트 이미지가 없어서 테스트 점수가 없어요"),
]
_SUFFIX_MORE = " — 이 클래스의 이미지를 더 넣어 주세요"

PROBLEM_NAMES = {
    "image_without_annotation": "XML 없는 이미지",
    "annotation_without_image": "이미지 없는 XML",
    "bad_annotation": "읽을 수 없는 XML",
    "bad_image": "읽을 수 없는 이미지",
    "format_mismatch": "확장자와 다른 형식",
    "size_mismatch": "XML과 다른 이미지 크기",
    "exif_rotated": "EXIF 회전",
    "color_converted": "색 형식 변환",
    "box_clipped": "이미지 밖으로 나간 상자",
    "box_dropped": "버린 상자",
    "label_variant": "대소문자·공백만 다른 라벨",
    "duplicate_image": "똑같은 이미지",
    "unknown_label": "라벨 맵에 없는 라벨",
    "empty_class": "상자 없는 클래스",
    "unsupported_file": "읽지 않는 파일",
}
PROBLEM_ACTIONS = {
    "image_without_annotation": "빼고 진행해요. 물체 없는 XML을 넣으면 네거티브 예시로 써요",
    "annotation_without_image": "빼고 진행해요. 이미지를 넣거나 XML을 지워 주세요",
    "bad_annotation": "이미지를 뺐어요. XML을 고치거나 다시 내보내 주세요",
    "bad_image": "빼고 진행해요. 파일을 다시 내보내거나 바꿔 주세요",
    "format_mismatch": "JPEG로 다시 인코딩했어요",
    "size_mismatch": "상자를 실제 크기에 맞췄거나 그린 대로 두었어요. 파일을 확인해 주세요",
    "exif_rotated": "상자를 그린 방향에 맞췄어요",
    "color_converted": "3채널 RGB로 바꿨어요",
    "box_clipped": "이미지 안으로 잘랐어요",
    "box_dropped": "상자를 버렸어요",
    "label_variant": "따로 두었어요. 한 클래스라면 /labels merge로 합치세요",
    "duplicate_image": "모두 두고, 항상 같은 분할에 넣었어요",
    "unknown_label": "그 상자는 뺐어요",
    "empty_class": "라벨 맵에 두었지만 예시가 없으면 배울 수 없어요",
    "unsupported_file": "건너뛰었어요. 이미지는 JPEG나 PNG로 바꿔 주세요",
}


def _reword(sentence: str, patterns: list[tuple[str, str]]) -> str | None:
    for pattern, korean in patterns:
        match = re.fullmatch(pattern, sentence, flags=re.DOTALL)
        if match:
            return korean.format(**match.groupdict())
    return None


def recommendation(reason: str) -> str:
    """``pipeline.train.catalogue.recommend``'s reason, in Korean."""
    for pattern, korean in _REASONS:
        match = re.fullmatch(pattern, reason, flags=re.DOTALL)
        if match:
            params = match.groupdict()
            return korean.format(**params | ({"device": device(params["device"])} if "device" in params else {}))
    return reason


def device(text: str) -> str:
    """``pipeline.train.hardware.Hardware.device``, in Korean."""
    return _reword(text, _DEVICES) or text


def split_warning(warning: str) -> str:
    """One of ``pipeline.data.split.split_warnings``, in Korean."""
    korean = _reword(warning, _WARNINGS)
    return korean + _SUFFIX_MORE if korean else warning
