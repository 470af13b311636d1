"""The Korean of bot/texts/general.py: the same names and parameters (tests/test_catalogues.py)."""

from __future__ import annotations

from .files import dataset_busy, job_not_deletable, quota_full, status_word

HELP = """detbot은 내 사진으로 물체 검출기를 학습시켜요.

1. 라벨을 단 이미지를 .zip으로 보내 주세요: Pascal VOC, COCO JSON, YOLO, LabelMe, TensorFlow CSV
(Roboflow, CVAT, Label Studio, LabelImg에서 내보낸 그대로). 확인한 뒤 보고서와 미리보기로 답해요.
2. /split [val_ratio] [seed] - 학습/검증 나누기 (기본값 0.1, 0).
3. /labels - 클래스 보기. /labels rename a=b, /labels merge a,b=c, /labels drop x, /labels file.
4. /model - 검출기 고르기 (추천 모델에 표시가 있어요).
5. /train [에폭 수 | N steps] [key=value ...] - 확인 카드가 뜨고, 그다음 학습이 시작돼요.
학습하는 동안: 여기서 실시간 진행 상황과 손실 그래프를 보여 드리고, 손실이 NaN이 되면 바로 알려 드려요.
/status, /stop, /resume, /jobs, /export - 작업을 지켜보고 다뤄요. /jobs는 디스크 사용량도 보여 주고
끝난 작업의 파일을 지워요.
/datasets - 내 데이터셋: 현재 데이터셋을 고르거나 오래된 것을 지워요.
/predict - 그다음 사진을 보내면 모델이 찾은 것을 그려 드려요.
/dataset URL - 텔레그램으로 보내기엔 너무 큰 데이터셋.
/settings - 답하는 언어 (English, 한국어), 조용한 알림, 손실 그래프 간격."""

COMMANDS = [
    ("start", "이 봇이 하는 일"),
    ("help", "전체 흐름"),
    ("split", "학습/검증 나누기"),
    ("labels", "클래스와 라벨 맵"),
    ("model", "검출기 고르기"),
    ("train", "학습 시작"),
    ("status", "작업 진행 상황"),
    ("stop", "작업 중지"),
    ("resume", "중단된 작업 이어 하기"),
    ("jobs", "내 작업"),
    ("export", "모델 다시 받기"),
    ("predict", "사진으로 모델 써 보기"),
    ("dataset", "URL에서 데이터셋 가져오기"),
    ("datasets", "내 데이터셋: 고르기, 삭제"),
    ("settings", "언어, 알림"),
]

STRANGER = "죄송해요, 이 detbot은 비공개예요. 관리자에게 내 텔레그램 id를 ALLOWED_USER_IDS에 넣어 달라고 해 주세요."
APOLOGY = "죄송해요, 제 쪽에서 문제가 생겼어요. 기록해 두었어요. 보내신 것은 그대로 있으니 다시 해 보세요."
NOT_A_ZIP = "데이터셋은 .zip 파일(이미지 + 주석: Pascal VOC, COCO JSON, YOLO, LabelMe, CSV)로 보내 주세요."
SPLIT_USAGE = "사용법: /split [val_ratio] [seed], 예: /split 0.2 1"
LABELS_USAGE = "사용법: /labels, /labels rename a=b, /labels merge a,b=c, /labels drop x, /labels file"
NO_DATASET = (
    "아직 데이터셋이 없어요. 먼저 라벨을 단 이미지를 .zip으로 보내 주세요(Pascal VOC, COCO JSON, YOLO, LabelMe, CSV)."
)
NO_JOB_YET = "아직 그런 작업이 없어요. /train으로 시작하세요."
START_BUTTON, CANCEL_BUTTON = "시작", "취소"
STOP_BUTTON, CONTINUE_BUTTON = "중지", "계속"
CONFIRM_STOP, KEEP_RUNNING = "네, 중지할게요", "아니요"
CARD_EXPIRED = "이 카드는 만료됐어요. /train을 다시 보내 주세요."
CANCELLED = "취소했어요."
ARCHIVE_CAPTION = "학습한 모델이에요: SavedModel, 라벨 맵, 설정, 지표, 예시."
NOTHING_FOUND = "찾은 것이 없어요"
FOLLOW_TELEGRAM = "텔레그램 앱 언어대로"


def language_chosen(name: str) -> str:
    return f"이제부터 {name}로 답해요. /settings에서 바꿀 수 있어요."


def dataset_waiting(dataset_id: str, status: str) -> str:
    return f"데이터셋 {dataset_id}은(는) {status_word(status)} 상태예요. 보고서를 기다리거나 다른 zip을 보내 주세요."


def pick_model(name: str, reason: str) -> str:
    """``reason``: ``recommendation()``'s words."""
    return f"검출기를 고르세요. 추천(*): {name} - {reason}."


def model_chosen(name: str) -> str:
    return f"모델: {name}. 다음: /train (30에폭이면 /train 30)."


def no_job_in(statuses: tuple[str, ...]) -> str:
    return f"{' 또는 '.join(status_word(s) for s in statuses)} 상태인 작업이 없어요. /jobs에서 목록을 볼 수 있어요."


def confirm_stop(job_id: str) -> str:
    return f"작업 {job_id}을(를) 중지할까요? 먼저 체크포인트를 저장하고, 나중에 /resume으로 이어 할 수 있어요."


def stopping(job_id: str) -> str:
    return f"작업 {job_id}을(를) 중지하는 중이에요. 체크포인트를 저장하고 끝나요."


def nan_answer(job_id: str, stop: bool) -> str:
    return f"작업 {job_id}: " + ("중지해요." if stop else "계속해요.")


def predict_prompt(job_id: str) -> str:
    return f"사진을 보내 주세요. 작업 {job_id}의 모델로 찾아볼게요."


def detections(found: list[dict]) -> str:
    return ", ".join(f"{d['label']} {d['score']:.2f}" for d in found) or NOTHING_FOUND


_STORE_THINGS = {"job": "/jobs에서 작업 목록을 볼 수 있어요", "dataset": "/datasets에서 데이터셋 목록을 볼 수 있어요"}
_THING_NAMES = {"job": "작업", "dataset": "데이터셋"}
STORE_BUSY = "데이터베이스가 다른 일로 바빠요. 1분 뒤에 다시 해 보세요."
STORE_BROKEN = (
    "죄송해요, 데이터베이스가 그 일을 하지 못했어요. 자세한 내용은 봇 로그에 있어요(관리자용). "
    "보내신 것은 그대로 있으니 나중에 다시 해 보세요."
)


def store_error(kind: str, params: dict) -> str:
    if kind == "not_found":
        thing = params["thing"]
        where = _STORE_THINGS.get(thing, "/start를 보내 주세요")
        return f"'{params['id']}'(이)라는 {_THING_NAMES.get(thing, thing)}이(가) 없어요. {where}."
    if kind == "no_dataset":
        return NO_DATASET
    if kind == "not_ready":
        return dataset_waiting(params["id"], params["status"])
    if kind == "not_deletable":
        return job_not_deletable(params["id"], params["status"])
    if kind == "quota":
        return quota_full(params["used"], params["limit"], params["wanted"])
    if kind == "in_use":
        return dataset_busy(params["dataset_id"], params["jobs"])
    return STORE_BUSY if kind == "locked" else STORE_BROKEN


def too_big(size_mb: float, limit_mb: int, local_mode: bool) -> str:
    if local_mode:
        return f"그 파일은 {size_mb:.0f} MB예요. 이 봇은 {limit_mb} MB까지 받아요. 더 작은 zip을 보내 주세요."
    return (
        f"그 파일은 {size_mb:.0f} MB인데, 텔레그램 클라우드 Bot API의 봇은 {limit_mb} MB까지만 내려받을 수 있어요. "
        "/dataset https://... 로 URL을 보내 주시거나, 봇 관리자에게 자체 Bot API 서버로 실행해 달라고 하세요. "
        "그러면 한도가 2000 MB로 올라가요(README 참고)."
    )
