"""The Korean of bot/texts/pipeline_errors.py: the same kinds and parameters (tests/test_chat_words.py)."""

from __future__ import annotations

from bot.texts.pipeline_errors import _worded

from . import formats as _formats


def _place(d: dict) -> str:
    return " > ".join(d.get("where") or ["zip"])


def _bytes(count: int) -> str:
    return f"{count / 2**30:.1f} GB" if count >= 2**30 else f"{count / 2**20:.0f} MB"


def _names(names: list) -> str:
    return ", ".join(f"'{name}'" for name in names)


_NAME_PROBLEMS = {
    "empty": "비어 있어요",
    "control": "줄바꿈이나 제어 문자가 들어 있어요",
    "quotes": "따옴표뿐이에요",
    "spaces": "공백으로 시작하거나 끝나요",
}
_SMALLER = "/model로 더 작은 모델을 고르거나 배치를 줄여 주세요(예: /train batch=4)."

_ERRORS = {
    "corrupt_zip": lambda d: (
        f"{_place(d)}: 깨진 zip이에요. 올리거나 복사하다 잘린 것 같아요. zip을 다시 만들어 보내 주세요."
    ),
    "not_a_zip": lambda d: f"{_place(d)}: zip 파일이 아니에요. 이미지와 주석을 .zip으로 묶어 보내 주세요.",
    "too_large": lambda d: (
        f"{_place(d)}: 풀면 파일 하나에 허용된 {_bytes(d['limit'])}를 넘어요. 그 파일을 빼거나 줄여서 다시 보내 주세요."
        if d.get("one_file")
        else f"{_place(d)}: 풀면 데이터셋에 허용된 {_bytes(d['limit'])}를 넘어요. 이미지 크기를 줄이거나 "
        "여러 zip으로 나눠 보내 주세요."
    ),
    "over_budget": lambda d: (
        f"{_place(d)}: 풀면 이 데이터셋에 잡아 둔 공간 {_bytes(d['limit'])}를 넘어요. "
        "/datasets나 /jobs에서 오래된 것을 지우거나 더 작은 데이터셋을 보내 주세요."
    ),
    "empty_zip": lambda d: (
        f"{_place(d)}: 폴더와 시스템 파일(__MACOSX, .DS_Store)밖에 없어요. "
        "이미지와 주석이 든 폴더를 zip으로 묶어 다시 보내 주세요."
    ),
    "unsafe_path": lambda d: (
        f"{_place(d)}: 데이터셋 폴더 밖을 가리키는 경로가 있어서 아무것도 풀지 않았어요. "
        "데이터셋 폴더 자체를 압축해서(오른쪽 클릭 > 압축) 다시 보내 주세요."
    ),
    "nested_too_deep": lambda d: (
        f"{_place(d)}: zip 안의 zip이 {d['levels']}단계보다 깊어요. 풀어서 이미지와 주석이 "
        "바로 들어 있는 zip 하나로 보내 주세요."
    ),
    "compression_ratio": lambda d: (
        f"{_place(d)}: 압축된 크기의 {d['ratio']:g}배 넘게 풀려서 zip 폭탄처럼 보여요. "
        "데이터셋의 실제 파일만 든 zip을 보내 주세요."
    ),
    "no_images": lambda d: (
        f"{_place(d)}: 이미지가 없어요. 파일 {d['files']}개({_names(d['examples'])}) 중 "
        ".jpg, .jpeg, .png가 하나도 없어요. 주석 옆에 이미지를 넣어 다시 보내 주세요."
    ),
    "encrypted": lambda d: f"{_place(d)}: 비밀번호가 걸려 있어요. 비밀번호 없이 다시 압축해서 보내 주세요.",
    "symlink": lambda d: (
        f"{_place(d)}: 심볼릭 링크라서 데이터셋 밖을 가리킬 수 있어요. 실제 파일을 넣어 다시 보내 주세요."
    ),
    "unsupported_compression": lambda d: (
        f"{_place(d)}: 읽을 수 없는 압축 방식({d['method']}, 예: Deflate64)이에요. "
        "표준(Deflate) 압축으로 다시 묶어 보내 주세요."
    ),
    "too_many_entries": lambda d: (
        f"{_place(d)}: 항목이 {d['limit']:,}개를 넘어요. 이미지와 주석이 아닌 파일을 빼거나 여러 zip으로 나눠 주세요."
    ),
    "too_many_pixels": lambda d: (
        f"이미지가 모두 {d['gigapixels']}기가픽셀로, 데이터셋 하나에 디코딩하는 "
        f"{d['limit_gigapixels']:g}기가픽셀을 넘어요(가장 큰 {d['largest']}은(는) {d['largest_mp']}메가픽셀). "
        "검출기는 최대 640x640 픽셀만 보니, 이미지를 줄이거나(예: 긴 쪽 1600픽셀) 나눠서 보내 주세요."
    ),
    "bad_class_name": lambda d: (
        f"새 클래스 이름 '{d['name']}'이(가) {_NAME_PROBLEMS[d['problem']]}. "
        "한 줄짜리 이름을 써 주세요. 예: /labels rename old=new"
    ),
    "unknown_class": lambda d: (
        f"클래스 {_names(d['missing'])}이(가) 없어요. 클래스: {_names(d['classes']) or '없음'}. "
        "/labels에 나온 그대로 써 주세요(대소문자와 공백도 구분해요)."
    ),
    "merge_nothing": lambda d: "합칠 클래스가 없어요. '=' 앞에 클래스를 써 주세요. 예: /labels merge a,b=c",
    "unreadable_rename": lambda d: (
        f"이름 바꾸기 '{d['text']}'을(를) 읽을 수 없어요. /labels rename old=new처럼 써 주세요."
    ),
    "unreadable_merge": lambda d: f"합치기 '{d['text']}'을(를) 읽을 수 없어요. /labels merge a,b=new처럼 써 주세요.",
    "no_class_left": lambda d: (
        "모든 라벨을 빼면 남는 클래스가 없어요. 클래스를 하나 이상 남겨 주세요. "
        "빼기를 되돌리려면 zip을 다시 보내 주세요."
    ),
    "bad_val_ratio": lambda d: (
        f"검증 비율 {d['ratio']:g}은(는) 범위를 벗어나요. 0보다 크고 1보다 작아야 해요(보통 0.1~0.2). 예: /split 0.15"
    ),
    "too_few_images": lambda d: (
        f"쓸 수 있는 서로 다른 이미지가 {d['images']}장뿐이에요(똑같은 사본은 한 장). "
        "학습용과 검증용으로 적어도 2장이 필요해요. 이미지를 더 넣어 zip을 다시 보내 주세요."
    ),
    "empty_split_folder": lambda d: (
        f"zip의 폴더대로 나누면 {d['split']} 이미지가 없어요. train/과 valid/ 폴더에 이미지를 더 넣어 다시 보내 주세요."
    ),
    "unknown_model": lambda d: f"'{d['name']}'이라는 모델은 없어요. /model에 목록이 있어요: {', '.join(d['models'])}.",
    "no_records": lambda d: "데이터셋에 학습할 train/val 기록이 없어요(지워졌나요?). zip을 다시 보내 주세요.",
    "empty_split": lambda d: (
        f"데이터셋의 이미지가 학습 {d['train']}장, 검증 {d['val']}장이에요. 둘 다 있어야 "
        "학습할 수 있어요. /split으로 다시 나누거나 이미지를 더 넣어 주세요."
    ),
    "steps_and_epochs": lambda d: "스텝과 에폭 중 하나만 주세요. 예: /train 30 또는 /train 500 steps",
    "loss_diverged": lambda d: (
        f"학습률을 낮추며 {d['recoveries']}번 되돌렸는데도 스텝 {d['step']}에서 손실이 다시 "
        "NaN이 되거나 폭발했어요. 데이터셋 보고서에서 잘못된 상자를 확인하거나, 더 낮은 학습률로 다시 "
        "학습해 주세요. 예: /train lr=0.001"
    ),
    "out_of_memory": lambda d: (
        f"배치 {d['batch']}로도 모델이 GPU 메모리에 들어가지 않아요. {_SMALLER}"
        if "batch" in d
        else f"모델을 만드는 중에 GPU 메모리가 모자랐어요(다른 작업이 쓰고 있을 수 있어요). {_SMALLER}"
    ),
    "gpus_missing": lambda d: (
        f"이 작업은 GPU {d['planned']}개로 계획됐는데 지금은 {d['visible']}개만 보여요. "
        "봇 관리자가 GPU를 확인해야 해요. 새 /train은 지금 있는 GPU로 계획해요."
    ),
    "config": lambda d: (
        "Model Garden이 이 작업의 모델을 만들지 못했어요. 설정을 줄여서 /train으로 새 작업을 시작해 주세요. "
        f"자세한 내용(영어): {d['message']}"
    ),
    "internal": lambda d: (
        "예상하지 못한 오류로 학습이 멈췄어요. 봇 관리자가 학습 로그에서 자세한 내용을 볼 수 있어요. "
        f"자세한 내용(영어): {d['message']}"
    ),
    "checkpoint_mismatch": lambda d: (
        "모델의 사전 학습 체크포인트가 맞지 않아요. /model로 다른 모델을 고르세요. "
        "봇 관리자가 처음부터 학습하게 바꿀 수도 있어요."
    ),
    "weights_error": lambda d: (
        "사전 학습 가중치를 가져오거나 확인하지 못했어요. 나중에 /train을 다시 해 주세요. "
        "계속 안 되면 봇 관리자가 처음부터 학습하게 바꿀 수 있어요."
    ),
    "no_checkpoint": lambda d: "아직 체크포인트가 없어서 내보낼 게 없어요. 먼저 /resume으로 학습을 이어 주세요.",
    "checkpoint_changed": lambda d: (
        "읽는 동안 체크포인트가 바뀌었어요(아직 학습 중인가요?). /export를 다시 보내 주세요."
    ),
    "no_val_records": lambda d: "데이터셋에 내보낸 모델을 확인할 검증 이미지가 더 이상 없어요.",
    "export_check_failed": lambda d: (
        "내보낸 모델이 확인을 통과하지 못했어요. 봇 관리자가 로그에서 이유를 볼 수 있어요."
    ),
    "export_mismatch": lambda d: (
        f"내보낸 모델이 학습 결과를 재현하지 못해서({d['metric']} {d['export']:.3f}, 학습 때 "
        f"{d['training']:.3f}) 아카이브를 만들지 않았어요. 봇 관리자가 살펴볼 수 있어요."
    ),
    "export_broken": lambda d: "Model Garden이 모델을 내보내지 못했어요. 봇 관리자가 로그에서 이유를 볼 수 있어요.",
    "no_archive": lambda d: "모델 아카이브가 없어요. /export로 다시 만들어요.",
    "too_big": lambda d: "모델 아카이브의 그 부분은 보낼 수 있는 크기를 넘어요.",
    "bad_archive": lambda d: "모델 아카이브가 깨졌어요. 봇 관리자가 살펴볼 수 있어요.",
    "no_image": lambda d: "사진이 도착하지 않았어요. 다시 보내 주세요.",
    "unreadable_image": lambda d: "그 사진은 이미지로 읽을 수 없어요. JPEG나 PNG로 보내 주세요.",
    "cluster_unreachable": lambda d: (
        "학습을 돌리는 클러스터가 지금 응답하지 않아요. 데이터와 작업은 안전해요. 몇 분 뒤에 다시 해 주세요."
    ),
    "cluster_command_failed": lambda d: (
        "클러스터에서 그 일을 끝내지 못했어요. 데이터와 작업은 안전해요. 다시 해 보시고, 또 실패하면 "
        "봇 관리자가 클러스터의 작업 로그에서 원인을 찾을 수 있어요."
    ),
    "run_exists": lambda d: "그 작업은 이미 클러스터에 있어요. /status 로 볼 수 있어요.",
    "no_annotations": _formats.no_annotations,
    "mixed_formats": _formats.mixed_formats,
}
WORDED_ERRORS = tuple(_ERRORS)
_OWN_WORDS = frozenset({"internal_error"})  # the bot worded these already (bot/cli_runner.py)
# A kind not worded here: a Korean lead from the error's class, then its English message.
_LEADS = {
    "dataset_rejected": "이 zip은 쓸 수 없어요(안전하지 않거나, 깨졌거나, 비어 있어요)",
    "label_map_error": "라벨 맵에 문제가 있어요",
    "workspace_error": "데이터셋에서 이 단계를 할 수 없어요",
    "usage_error": "그 요청은 할 수 없어요",
    "training_error": "학습을 시작하거나 이어 갈 수 없어요",
    "export_error": "모델을 내보내지 못했어요",
}


def pipeline_error(kind: str, message: str, details: dict | None = None) -> str:
    if kind in _OWN_WORDS:
        return message
    return (
        _worded(_ERRORS, kind, details, message)
        or f"{_LEADS.get(kind, '처리하지 못했어요')}. 자세한 내용(영어): {message}"
    )
