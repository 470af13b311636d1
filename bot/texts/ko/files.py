"""The Korean of bot/texts/files.py: the same names and parameters (tests/test_catalogues.py)."""

from __future__ import annotations

from bot.texts.files import size_text

_STATUS = {
    "checking": "확인 중",
    "ready": "준비됨",
    "failed": "실패",
    "queued": "대기 중",
    "starting": "시작 중",
    "running": "학습 중",
    "finished": "완료",
    "stopped": "중지됨",
    "interrupted": "중단됨",
    "stopping": "중지하는 중",
}


def status_word(status: str) -> str:
    """A dataset's or job's status as stored, in words (the English catalogue shows it as it is)."""
    return _STATUS.get(status, status)


def checking(name: str) -> str:
    return f"{name} 받았어요. 확인하고 있어요(압축 풀기, 모든 이미지와 XML)..."


def could_not_use(name: str, error: str | None) -> str:
    return f"{name}을(를) 쓸 수 없었어요: {error}"


PREVIEW_CAPTION = "상자를 그린 예시 이미지예요. 문제가 있는 이미지가 먼저 나오고 빨간 테두리를 둘렀어요."
DOWNLOADING = "내려받는 중..."
URL_USAGE = ".zip 파일의 http(s) URL을 주세요: /dataset https://example.com/data.zip"
URL_REFUSED = (
    "그 URL은 내려받을 수 없었어요. 연결할 수 없거나, 허용되지 않거나, 너무 느려요. .zip 파일을 가리키는 "
    "공개 http(s) 링크인지 확인하고 다시 해 보세요."
)


def url_too_large(cap: int, by_quota: bool) -> str:
    why = "남은 디스크 할당량" if by_quota else "이 봇이 받을 수 있는 최대 크기"
    return f"그 파일은 {size_text(cap)}({why})보다 커요. 더 작은 zip을 보내 주세요." + (
        " /datasets와 /jobs에서 지울 수 있는 것을 볼 수 있어요." if by_quota else ""
    )


def downloads_busy(count: int) -> str:
    return f"이미 내려받기 {count}개가 진행 중이에요. 끝날 때까지 기다렸다가 다시 해 보세요."


def quota_full(used: int, limit: int, wanted: int | None = None) -> str:
    need = f"{size_text(wanted)}가 더 필요한데 들어가지 않아요" if wanted else "더는 들어가지 않아요"
    return (
        f"파일이 {size_text(limit)} 중 {size_text(used)}를 쓰고 있어서 {need}. 오래된 데이터셋(/datasets)이나 "
        "작업 파일(/jobs)을 지우거나, 봇 관리자에게 공간을 더 달라고 해 주세요."
    )


_CRASHES = {
    "disk_full": "서버 디스크가 가득 찼어요. 봇 관리자에게 알려 주세요. 보내신 것은 남기지 않았어요.",
    "name_too_long": "안에 있는 파일 경로가 서버 디스크에 비해 너무 길어요. 폴더와 파일 이름을 줄여 "
    "다시 압축해서 보내 주세요.",
    "memory": "확인하는 데 허용된 것보다 많은 메모리가 필요했어요. 더 작은 데이터셋을 보내거나 나눠 주세요.",
    "worker_died": "확인 프로그램이 갑자기 멈췄어요(메모리가 부족했을 수 있어요). zip을 다시 보내 주시고, "
    "또 그러면 더 작은 데이터셋을 보내 주세요.",
    "internal": "확인하다가 제 쪽에 문제가 생겼어요. 기록해 두었어요. zip을 다시 보내 주세요.",
}


def check_crashed(kind: str) -> str:
    return _CRASHES.get(kind, _CRASHES["internal"])


CHECK_INTERRUPTED = "확인 도중 봇이 다시 시작됐어요. zip을 다시 보내 주세요."


def check_interrupted(dataset_id: str, name: str) -> str:
    return f"{name}(데이터셋 {dataset_id})을(를) 확인하는 도중 다시 시작해서 확인이 멈췄어요. 다시 보내 주세요."


def usage_line(usage) -> str:
    return (
        f"디스크: {size_text(usage.limit)} 중 {size_text(usage.total)} (데이터셋 {size_text(usage.datasets)}, "
        f"작업 {size_text(usage.jobs)}, 예측 {size_text(usage.predictions)})."
    )


CONFIRM_DELETE = "네, 삭제할게요"
KEEP = "아니요, 둘게요"
DELETE_PREDICTIONS_BUTTON = "예측 삭제"


def confirm_delete_dataset(dataset) -> str:
    return (
        f"데이터셋 {dataset.id}({dataset.name}, {size_text(dataset.size_bytes)})을(를) 삭제할까요? 파일과 "
        "끝난 작업(모델 포함)도 함께 삭제돼요. 되돌릴 수 없어요."
    )


def dataset_deleted(dataset_id: str) -> str:
    return f"데이터셋 {dataset_id}을(를) 삭제했어요."


def dataset_current(dataset_id: str) -> str:
    return f"이제 데이터셋 {dataset_id}이(가) 현재 데이터셋이에요. /train, /split, /labels가 이걸 써요."


def dataset_not_ready(dataset_id: str, status: str) -> str:
    return (
        f"데이터셋 {dataset_id}은(는) {status_word(status)} 상태예요. 준비된 데이터셋만 쓸 수 있고, "
        "준비됐거나 실패한 것만 삭제할 수 있어요."
    )


def dataset_busy(dataset_id: str, jobs: tuple) -> str:
    listed = ", ".join(job.id for job in jobs)
    return f"작업 {listed}이(가) 데이터셋 {dataset_id}을(를) 쓰고 있어요. 중지하거나 끝난 뒤에 삭제하세요."


def confirm_delete_job(job_id: str, size: int) -> str:
    return (
        f"작업 {job_id}의 파일({size_text(size)}: 체크포인트와 내보낸 모델)을 삭제할까요? "
        "/jobs에서 사라지고, 되돌릴 수 없어요."
    )


def job_deleted(job_id: str) -> str:
    return f"작업 {job_id}과(와) 그 파일을 삭제했어요."


def job_not_deletable(job_id: str, status: str) -> str:
    return f"작업 {job_id}은(는) {status_word(status)} 상태예요. 완료, 실패, 중지된 작업만 삭제할 수 있어요."


def confirm_delete_predictions(size: int) -> str:
    return f"/predict로 보낸 사진과 그린 결과({size_text(size)})를 삭제할까요?"


PREDICTIONS_DELETED = "예측을 삭제했어요."
CANCELLED_DELETE = "그대로 두었어요."
