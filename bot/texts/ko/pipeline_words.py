"""The Korean of bot/texts/pipeline_words.py: the same names and parameters (tests/test_catalogues.py)."""

from __future__ import annotations

from bot.texts.pipeline_words import _worded


def _listed(items: list) -> str:
    return ", ".join(str(item) for item in items)


def _size(pair: list | None) -> str:
    return f"{pair[0]}x{pair[1]}" if pair else "?"


def _box(params: dict) -> str:
    label = params.get("label") or "이름 없음"
    return f"{params['file']}의 {params.get('object', '?')}번째 물체({label})"


_DROPPED = {
    "zero_area": "넓이가 0이에요",
    "inverted": "모서리가 뒤집혔어요(최댓값 < 최솟값)",
    "outside": "이미지 밖에 있어요",
}

_PROBLEM_WORDS = {
    "image_without_annotation": (
        lambda p: f"{p['file']}: 주석 파일이 없어요",
        lambda p: "뺐어요. 물체 없는 주석을 넣으면 네거티브 예시로 써요",
    ),
    "annotation_without_image": (
        lambda p: (
            f"{p['file']}: {p['image']}은(는) 이미 {p['described_by']}이(가) 설명해요"
            if "described_by" in p
            else f"{p['file']}: zip에 없는 이미지 {p['count']}장을 더 가리켜요"
            if "count" in p
            else f"{p['file']}: zip에 이 이름의 이미지가 없어요"
        ),
        lambda p: (
            "뺐어요. 중복된 주석을 지워 주세요" if "described_by" in p else "뺐어요. 이미지를 넣거나 주석을 지워 주세요"
        ),
    ),
    "bad_annotation": (
        lambda p: f"{p['file']}: 읽을 수 없어요",
        lambda p: "이미지를 뺐어요. 주석을 고치거나 다시 내보내 주세요",
    ),
    "bad_image": (
        lambda p: f"{p['file']}: 이미지를 디코딩할 수 없어요",
        lambda p: "기록에서 뺐어요. 파일을 다시 내보내거나 바꿔 주세요",
    ),
    "format_mismatch": (
        lambda p: f"{p['file']}: 확장자와 실제 형식({p.get('format', '?')})이 달라요",
        lambda p: "JPEG로 다시 인코딩했어요",
    ),
    "size_mismatch": (
        lambda p: (
            f"{p['file']}: 주석의 크기({_size(p.get('said'))})가 실제 이미지 크기({_size(p.get('real'))})와 달라요"
        ),
        lambda p: (
            "상자를 실제 크기에 맞췄어요(가로세로 비율이 같아요)"
            if p.get("rescaled")
            else "상자를 그린 대로 두고 이미지에 맞춰 잘랐어요. 파일을 확인해 주세요"
        ),
    ),
    "exif_rotated": (
        lambda p: f"{p['file']}: 회전된 채 저장됐어요(EXIF 방향 {p.get('orientation', '?')})",
        lambda p: (
            "픽셀을 바로 세웠어요. 상자를 그린 방향이에요"
            if p.get("turned", True)
            else "저장된 그대로 두었어요. 상자를 그린 방향이에요"
        ),
    ),
    "color_converted": (
        lambda p: f"{p['file']}: 8비트 RGB가 아니에요(모드 {p.get('mode', '?')})",
        lambda p: "3채널 RGB로 바꿨어요",
    ),
    "box_clipped": (
        lambda p: f"{_box(p)}가 {_size(p.get('image_size'))} 이미지 밖으로 나가요",
        lambda p: "이미지 안으로 잘랐어요",
    ),
    "box_dropped": (
        lambda p: f"{_box(p)}: " + _DROPPED.get(p.get("reason"), "정보가 빠졌어요"),
        lambda p: "상자를 버렸어요",
    ),
    "label_variant": (
        lambda p: f"라벨 {_listed(p['names'])}: 대소문자나 공백만 달라요",
        lambda p: (
            f"따로 두었어요. 한 클래스라면 합치기 버튼을 누르거나 /labels merge {','.join(p['names'])}={p['into']} "
            "를 보내세요"
        ),
    ),
    "duplicate_image": (
        lambda p: f"{p['file']}: {_listed(p['copies'])}와(과) 바이트까지 똑같아요",
        lambda p: "모두 두고, 항상 같은 분할에 넣었어요",
    ),
    "unknown_label": (
        lambda p: f"라벨 '{p['label']}'(이미지 {p['images']}장)이(가) {p['label_map']}에 없어요",
        lambda p: "그 상자는 뺐어요",
    ),
    "empty_class": (
        lambda p: f"클래스 '{p['name']}'에 상자가 없어요",
        lambda p: "라벨 맵에 두었지만 예시가 없으면 배울 수 없어요",
    ),
    "class_index_out_of_range": (
        lambda p: f"{p['file']}: 이름 파일에 없는 클래스 번호가 있어요",
        lambda p: "상자를 버렸어요. 클래스 번호를 고치거나 이름 파일에 클래스를 더해 주세요",
    ),
    "class_names_missing": (
        lambda p: f"{p['file']}의 YOLO 라벨에 data.yaml, obj.names, classes.txt가 없어요",
        lambda p: "클래스 이름이 번호(0, 1, ...)예요. /labels rename 0=이름으로 이름을 붙여 주세요",
    ),
    "crowd_box": (
        lambda p: f"{p['file']}: iscrowd로 표시된 물체(무리 전체를 덮는 영역)가 있어요",
        lambda p: "COCO 학습처럼 뺐어요",
    ),
    "unsupported_file": (
        lambda p: f"{p['file']}: 읽지 않는 파일 형식이에요",
        lambda p: "건너뛰었어요. 이미지는 JPEG나 PNG로 바꿔 주세요",
    ),
}
WORDED_PROBLEMS = tuple(_PROBLEM_WORDS)
_NAMES = {
    "image_without_annotation": "주석 없는 이미지",
    "annotation_without_image": "이미지 없는 주석",
    "bad_annotation": "읽을 수 없는 주석",
    "bad_image": "읽을 수 없는 이미지",
    "format_mismatch": "확장자와 다른 형식",
    "size_mismatch": "주석과 다른 이미지 크기",
    "exif_rotated": "EXIF 회전",
    "color_converted": "색 형식 변환",
    "box_clipped": "이미지 밖으로 나간 상자",
    "box_dropped": "버린 상자",
    "label_variant": "대소문자·공백만 다른 라벨",
    "duplicate_image": "똑같은 이미지",
    "unknown_label": "라벨 맵에 없는 라벨",
    "empty_class": "상자 없는 클래스",
    "class_index_out_of_range": "없는 클래스 번호",
    "class_names_missing": "클래스 이름 없음",
    "crowd_box": "무리 상자",
    "unsupported_file": "읽지 않는 파일",
}


def problem_name(kind: str) -> str:
    return _NAMES.get(kind, kind)


def problem_detail(problem: dict) -> str:
    """A kind unknown here shows its file: the pipeline's own detail is English."""
    return _worded(_PROBLEM_WORDS, problem, 0) or problem["file"] or problem["detail"]


def problem_action(problem: dict) -> str:
    return _worded(_PROBLEM_WORDS, problem, 1) or "처리했어요"


_CLASS_WARNINGS = {
    "no_train": "클래스 '{name}'에 학습 이미지가 없어서 검출기가 배울 수 없어요",
    "few_train": "클래스 '{name}'의 학습 이미지가 {count}장뿐이에요. 클래스마다 50장 이상은 있어야 해요",
    "no_val": "클래스 '{name}'에 검증 이미지가 없어서 정확도를 잴 수 없어요",
    "few_val": "클래스 '{name}'의 검증 이미지가 {count}장뿐이라 점수가 들쭉날쭉해요",
    "no_test": "클래스 '{name}'에 테스트 이미지가 없어서 테스트 점수가 없어요",
}


def class_warning(warning: dict) -> str:
    text = _CLASS_WARNINGS[warning["kind"]].format(name=warning["name"], count=warning["count"])
    return f"{text} — 이 클래스의 이미지를 더 넣어 주세요"


def device(params: dict) -> str:
    if not params["gpus"]:
        return f"CPU(코어 {params['cpu_cores']}개)"
    return f"GPU {params['gpus']}개(각 {params['memory_gb']} GB" + (", 가정)" if params["assumed"] else ")")


RECOMMENDATIONS = {
    "no_gpu": "GPU가 없어요(CPU 코어 {cores}개). CPU에서는 모바일 모델만 몇 분 안에 학습돼요",
    "small_gpu": "GPU 메모리가 {memory_gb} GB예요. COCO로 사전 학습한 모바일 모델이 쓸 만한 배치로 들어가요",
    "small_dataset": (
        "라벨된 이미지 {images}장은 작은 데이터셋이에요. 사전 학습한 모바일 모델이 큰 모델보다 잘 일반화해요"
    ),
    "accurate": "라벨된 이미지 {images}장과 {device}: COCO로 사전 학습한 ResNet-50 FPN이 정확한 선택이에요",
}


def recommendation(kind: str, params: dict) -> str:
    return RECOMMENDATIONS[kind].format(**params | ({"device": device(params["device"])} if "device" in params else {}))
