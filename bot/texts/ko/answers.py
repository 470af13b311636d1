"""The Korean of bot/texts/answers.py: the same names and parameters (tests/test_catalogues.py)."""

from __future__ import annotations

from bot.texts.answers import ARCHIVE_KINDS

_NEXT = {
    "upload": "Pascal VOC 데이터셋(이미지 + LabelImg XML 파일)을 .zip으로 보내 주시면 시작해요.",
    "checking": "데이터셋을 확인하고 있어요. 곧 보고서가 와요.",
    "train": "데이터셋이 준비됐어요. /model로 검출기를 고르고 /train으로 학습을 시작하세요.",
    "training": "작업 {job}이(가) 학습 중이에요. /status로 진행 상황을 볼 수 있어요.",
    "predict": "사진(또는 파일로 보낸 이미지)을 보내 주시면 작업 {job}의 모델이 찾은 것을 그려 드려요.",
}
_FIRST = {
    "upload": "먼저 Pascal VOC 데이터셋을 .zip으로 보내 주시고, 그다음 /train 하세요.",
    "checking": "데이터셋을 확인하고 있어요. 보고서가 오면 /train 하세요.",
    "train": "데이터셋이 준비됐어요. /train으로 학습을 시작하세요.",
    "training": "작업 {job}이(가) 아직 학습 중이에요(/status로 진행 상황 확인).",
}
_MEDIA = {
    "voice": "음성 메시지",
    "audio": "오디오",
    "video": "동영상",
    "video_note": "동영상 메시지",
    "animation": "GIF",
    "sticker": "스티커",
}
CANCELLABLE = {"train_card": "/train 카드", "predict": "사진 모드(/predict)"}
NOTHING_TO_CANCEL = "취소할 것이 없어요. /help에서 할 수 있는 일을 볼 수 있어요."


def next_step(kind: str, job_id: str | None = None) -> str:
    return _NEXT[kind].format(job=job_id)


def free_text(kind: str, job_id: str | None) -> str:
    return f"저는 명령과 파일만 알아들어요. {next_step(kind, job_id)} 전체 흐름은 /help에 있어요."


def unknown_command(command: str, kind: str, job_id: str | None) -> str:
    return f"{command[:40]}은(는) 모르는 명령이에요. {next_step(kind, job_id)} 명령 목록은 /help에 있어요."


def no_model_yet(kind: str, job_id: str | None) -> str:
    return (
        "사진에서 물체를 찾으려면 내 데이터로 학습한 모델이 필요해요. "
        f"{_FIRST[kind].format(job=job_id)} 그다음 사진을 보내 주시면 모델이 찾은 것을 그려 드려요."
    )


def media_refused(kind: str) -> str:
    what = _MEDIA.get(kind, "이런 종류의 메시지")
    return (
        f"{what}은(는) 쓸 수 없어요. Pascal VOC 데이터셋 .zip, (모델 학습 후) 사진이나 이미지 파일, "
        "그리고 /help의 명령을 받아요."
    )


def other_archive(kind: str) -> str:
    return f"{ARCHIVE_KINDS[kind]} 압축 파일이에요. 같은 폴더를 .zip으로 압축해서 보내 주세요"


def other_archive_sent(kind: str) -> str:
    return other_archive(kind) + "."


def cancelled(what: list[str]) -> str:
    return "취소했어요: " + ", ".join(CANCELLABLE[item] for item in what) + "."


def album_note(count: int) -> str:
    return f"(앨범의 사진 {count}장 중 첫 장에 대한 답이에요. 나머지는 한 장씩 보내 주세요.)"


def cut_lines(count: int) -> str:
    return f"... (줄 {count}개 더 있음)"
