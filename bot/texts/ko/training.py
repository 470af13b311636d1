"""The Korean of bot/texts/training.py: the same names and parameters (tests/test_catalogues.py)."""

from __future__ import annotations

from bot.texts.training import _short

from .files import status_word
from .pipeline_errors import pipeline_error


def nan_alert(job_id: str, nan: dict) -> str:
    what = (
        f"스텝 {nan['step']}에서 손실이 {'폭발했어요' if nan['exploded'] else 'NaN/Inf가 됐어요'}. 스텝 "
        f"{nan['rolled_back_to']}(으)로 되돌리고 학습률을 x{nan['lr_scale']:g}로 낮춰요"
        if "lr_scale" in nan
        else "손실이 NaN이 됐어요"
    )
    return f"알림: 작업 {job_id} - {what}. 마지막 정상 체크포인트부터 학습을 이어 가요. 중지할까요, 계속할까요?"


def failed(job_id: str, event: dict, message: str, log: str = "") -> str:
    before = event.get("stage") == "start"
    head = (
        f"작업 {job_id}을(를) 시작하지 못했어요"
        if before
        else f"작업 {job_id}이(가) 스텝 {event.get('step', 0)}에서 실패했어요"
    )
    advice = (
        f"/resume {job_id}로 마지막 체크포인트부터 이어 할 수 있어요."
        if event.get("resumable")
        else "이어 할 수 있는 것이 없어요. 원인을 고친 뒤 /train으로 새 작업을 시작하세요."
    )
    return f"{head}: {pipeline_error(event.get('cause', ''), message, event.get('details'))}\n{advice}{log}"


def interrupted(job_id: str, log_tail: str | None) -> str:
    return (
        f"작업 {job_id}이(가) 갑자기 멈췄어요(학습 프로세스가 없어졌어요). "
        f"/resume {job_id}로 마지막 체크포인트부터 이어 할 수 있어요." + trainer_log(log_tail)
    )


def trainer_log(tail: str | None) -> str:
    if tail is None:
        return "\n학습 프로세스가 로그를 남기지 않았어요(작업 폴더의 train.log)."
    return f"\n학습 로그의 마지막 줄들이에요(train.log, 작업 폴더에 있어요):\n{tail}"


def eval_caption(job_id: str, step: int, event: dict) -> str:
    return f"작업 {job_id}, 스텝 {step}: AP {event['AP']:.3f}, AP50 {event['AP50']:.3f}"


def detections_caption(job_id: str, step: int) -> str:
    return f"작업 {job_id}, 스텝 {step}: 검증 이미지에서 찾은 것"


def loss_caption(job_id: str, step: int) -> str:
    return f"작업 {job_id}: 스텝 {step}의 손실"


def not_resumable(job_id: str) -> str:
    return f"작업 {job_id}은(는) 이어 해도 같은 실패가 되풀이돼요(실패 메시지 참고). /train으로 새 작업을 시작하세요."


def cannot_resume(job_id: str, status: str) -> str:
    return f"작업 {job_id}은(는) {status_word(status)} 상태예요. 중단, 중지, 실패한 작업만 이어 할 수 있어요."


def not_running(job_id: str, status: str) -> str:
    return f"작업 {job_id}은(는) {status_word(status)} 상태라 실행 중이 아니에요."


def export_failed(job_id: str, reason: str) -> str:
    return f"작업 {job_id}을(를) 내보내지 못했어요: {reason}"


def stopped(job_id: str, step: int) -> str:
    return f"작업 {job_id}이(가) 스텝 {step}에서 체크포인트와 함께 멈췄어요. /resume {job_id}로 이어 할 수 있어요."


TRAIN_SETTING_ABOUT = {
    "lr": "학습률",
    "batch": "학습 스텝마다 쓰는 이미지 수",
    "eval_every": "평가 사이의 스텝 수",
    "early_stop": "AP가 나아지지 않는 평가가 이만큼 이어지면 멈춤 (0: 멈추지 않음)",
    "checkpoint_every": "체크포인트 사이의 스텝 수",
    "report_every": "진행 보고 사이의 스텝 수",
    "hflip": "무작위 좌우 뒤집기",
    "scale_min": "가장 작은 무작위 확대",
    "scale_max": "가장 큰 무작위 확대",
}


def train_settings(options) -> str:
    lines = [
        "/train은 길이(에폭이면 /train 30, 스텝이면 /train 500 steps)와 아래 설정을 name=value로 받아요. "
        "예: /train 500 steps lr=0.01 batch=16:"
    ]
    lines += [f"  {o.name}: {TRAIN_SETTING_ABOUT.get(o.name, o.target)}, {_allowed(o)}" for o in options]
    return "\n".join(lines)


def _allowed(option) -> str:
    if option.kind is bool:
        return "true 또는 false"
    return f"{option.low:g}부터 {option.high:g}까지의 {'정수' if option.kind is int else '수'}"


def train_option_refused(word: str, options) -> str:
    return (
        f"'{_short(word)}'은(는) 학습 프로그램의 옵션 같아요. /train은 아래 설정만 전달해요.\n{train_settings(options)}"
    )


def train_word_unknown(word: str, options) -> str:
    return f"'{_short(word)}'은(는) 알아들을 수 없어요.\n{train_settings(options)}"


def train_setting_refused(error, options) -> str:
    option, word = error.option, _short(error.word)
    if error.problem == "unknown":
        name = _short(error.word.partition("=")[0])
        return f"'{name}'은(는) 채팅에서 바꿀 수 없어요.\n{train_settings(options)}"
    if error.problem == "twice":
        return f"{option.name}이(가) 두 번 주어졌어요('{word}'). 한 번만 주세요."
    if option.name in ("steps", "epochs"):
        limit = " (이 봇의 한도)" if option.name == "steps" else ""
        return f"'{word}' 거절: {option.name}은(는) {_allowed(option)}여야 해요{limit}."
    return (
        f"'{word}' 거절: {option.name}({TRAIN_SETTING_ABOUT.get(option.name, option.target)})은(는) "
        f"{_allowed(option)}여야 해요."
    )


BOTH_LENGTHS = "스텝이나 에폭 중 하나만 주세요: /train 30 (에폭) 또는 /train 500 steps."


def too_many_steps(steps: int, max_steps: int) -> str:
    return (
        f"그러면 학습 스텝이 {steps}개예요. 이 봇은 최대 {max_steps}개까지 허용해요. 더 적게 주세요: "
        "/train N steps, 또는 더 적은 에폭."
    )


def job_cap(limit: int) -> str:
    return f"이미 작업 {limit}개가 대기 중이거나 실행 중이에요. 하나가 끝나길 기다리거나 /stop 하세요."


def launch_failed(job_id: str, reason: str | None) -> str:
    return (
        f"작업 {job_id}을(를) 시작하지 못했어요: {reason or '이유가 주어지지 않았어요'}\n"
        "아무것도 실행되지 않았고, 대기열 자리도 비웠어요. 원인을 고친 뒤 다시 /train 하세요."
    )


def pipeline_exit(code: int | None, detail: str) -> str:
    return f"파이프라인이 종료 코드 {code}로 멈췄어요" + (f" ({detail})" if detail else ", 아무 말도 없이")


NO_TRAINER = "실행이 학습 프로세스를 알려 주지 않았어요"


def launch_crashed(error_name: str) -> str:
    return f"봇이 학습 프로그램을 실행하지 못했어요({error_name}). 관리자가 봇 로그에서 자세한 내용을 볼 수 있어요"


def dataset_in_use(dataset_id: str, jobs: tuple, change: str) -> str:
    listed = ", ".join(f"{job.id} ({status_word(job.status)})" for job in jobs)
    what = _CHANGES.get(change, change)
    return (
        f"작업 {listed}이(가) 데이터셋 {dataset_id}을(를) 쓰고 있어서 {what}을(를) 바꿀 수 없어요. 작업은 대기열에 "
        "들어간 그대로의 레코드로 학습해요. 작업이 끝날 때까지 기다리거나(/stop으로 멈출 수도 있어요) 다시 시도하세요. "
        "zip을 다시 보내면 지금 바꿀 수 있는 별도 사본이 생겨요."
    )


_CHANGES = {"split": "분할", "classes": "클래스"}
