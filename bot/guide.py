"""Where a user is in the flow, for the answer to anything the bot cannot take as sent, and the
pending things (``/train`` cards, photo mode) that ``/cancel`` leaves."""

from __future__ import annotations

from dataclasses import dataclass

from storage import Job, Store

from . import texts
from .errors import Refused

CARD, CARD_MESSAGE, PREDICT = "train:", "card:", "predict_job"  # keys in a user's ``user_data``


@dataclass(frozen=True)
class Step:
    kind: str  # upload | checking | train | training | predict (``texts.next_step``)
    job_id: str | None = None


def next_step(store: Store, user_id: int, predict_job: str | None = None) -> Step:
    """What the user can do next: try the model they chose, follow a job, train, or send a dataset."""
    if predict_job:
        return Step("predict", predict_job)
    jobs = store.jobs(user_id)
    for wanted, kind in ((lambda job: job.active, "training"), (lambda job: job.status == "finished", "predict")):
        job = next(filter(wanted, jobs), None)
        if job:
            return Step(kind, job.id)
    datasets = store.datasets(user_id)
    if any(dataset.ready for dataset in datasets):
        return Step("train")
    return Step("checking" if any(d.status == "checking" for d in datasets) else "upload")


def model_job(store: Store, user_id: int, job_id: str | None) -> Job:
    """The finished job whose model a photo is for: the one named, else the newest; Refused, with what
    to do first, when the user has none."""
    if job_id:
        return store.job(user_id, job_id)
    for job in store.jobs(user_id):
        if job.status == "finished":
            return job
    step = next_step(store, user_id)
    raise Refused(texts.no_model_yet(step.kind, step.job_id))


def cancel(user_data: dict) -> tuple[list[str], list[tuple[int, int]]]:
    """Leave every pending card and mode: (what was left, as ``texts.CANCELLABLE`` keys; the cards'
    (chat_id, message_id), whose buttons must go)."""
    tokens = [key.removeprefix(CARD) for key in list(user_data) if key.startswith(CARD)]
    cards = [user_data.pop(CARD_MESSAGE + token, None) for token in tokens]
    for token in tokens:
        user_data.pop(CARD + token)
    left = ["train_card"] * bool(tokens) + ["predict"] * bool(user_data.pop(PREDICT, None))
    return left, [card for card in cards if card]
