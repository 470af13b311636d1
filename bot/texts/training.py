"""A job's alerts and failures, and what /train accepts and refuses."""

from __future__ import annotations

from .pipeline_errors import pipeline_error


def nan_alert(job_id: str, nan: dict) -> str:
    """A ``nan`` event: its step, whether the loss ``exploded`` (else NaN/Inf), ``rolled_back_to``, ``lr_scale``."""
    what = (
        f"the loss {'exploded' if nan['exploded'] else 'is NaN/Inf'} at step {nan['step']}: rolling back to step "
        f"{nan['rolled_back_to']} and lowering the learning rate to x{nan['lr_scale']:g}"
        if "lr_scale" in nan
        else "the loss became NaN"
    )
    return f"Alert: job {job_id} - {what}. Training goes on from the last good checkpoint. Stop it, or let it continue?"


def failed(job_id: str, event: dict, message: str, log: str = "") -> str:
    """A failed job; /resume is offered only when it can work (a checkpoint to continue from).

    ``message``: the event's, fit for the chat (shown for a cause not worded from its ``details``);
    ``log``: ``trainer_log()``, when it failed unexpectedly.
    """
    before = event.get("stage") == "start"
    head = f"Job {job_id} could not start" if before else f"Job {job_id} failed at step {event.get('step', 0)}"
    advice = (
        f"/resume {job_id} continues from its last checkpoint."
        if event.get("resumable")
        else "Nothing can be resumed: fix the cause, then start a new job with /train."
    )
    return f"{head}: {pipeline_error(event.get('cause', ''), message, event.get('details'))}\n{advice}{log}"


def interrupted(job_id: str, log_tail: str | None) -> str:
    return (
        f"Job {job_id} stopped unexpectedly (the trainer process is gone). "
        f"/resume {job_id} continues from its last checkpoint." + trainer_log(log_tail)
    )


def trainer_log(tail: str | None) -> str:
    """The end of a trainer's log (``JobPaths.log``), for a job that ended unexpectedly."""
    if tail is None:
        return "\nIts trainer left no log (train.log in the job folder)."
    return f"\nThe last lines of its trainer's log (train.log, kept in the job folder):\n{tail}"


def eval_caption(job_id: str, step: int, event: dict) -> str:
    return f"Job {job_id}, step {step}: AP {event['AP']:.3f}, AP50 {event['AP50']:.3f}"


def detections_caption(job_id: str, step: int) -> str:
    return f"Job {job_id}, step {step}: detections on validation images"


def loss_caption(job_id: str, step: int) -> str:
    return f"Job {job_id}: loss at step {step}"


def not_resumable(job_id: str) -> str:
    return (
        f"Job {job_id} failed in a way that resuming would repeat (see its failure message). "
        "Start a new job with /train."
    )


def cannot_resume(job_id: str, status: str) -> str:
    return f"Job {job_id} is {status}; only interrupted, stopped or failed jobs resume."


def not_running(job_id: str, status: str) -> str:
    return f"Job {job_id} is {status}, not running."


def export_failed(job_id: str, reason: str) -> str:
    return f"Export of job {job_id} failed: {reason}"


def stopped(job_id: str, step: int) -> str:
    return f"Job {job_id} stopped at step {step}, with a checkpoint. /resume {job_id} continues it."


# --- /train: what a chat user may set, and why a request is refused -------------------------------

TRAIN_SETTING_ABOUT = {
    "lr": "learning rate",
    "batch": "images per training step",
    "eval_every": "steps between evaluations",
    "early_stop": "stop after this many evaluations without a better AP (0: never)",
    "checkpoint_every": "steps between checkpoints",
    "report_every": "steps between progress reports",
    "hflip": "random horizontal flips",
    "scale_min": "smallest random zoom",
    "scale_max": "largest random zoom",
}


def train_settings(options) -> str:
    """The allowlist (``pipeline.train.chat_overrides.OPTIONS``), one setting a line."""
    lines = [
        "/train takes a length (/train 30 for epochs, /train 500 steps) and these settings as name=value, "
        "e.g. /train 500 steps lr=0.01 batch=16:"
    ]
    lines += [f"  {o.name}: {TRAIN_SETTING_ABOUT.get(o.name, o.target)}, {_allowed(o)}" for o in options]
    return "\n".join(lines)


def _allowed(option) -> str:
    if option.kind is bool:
        return "true or false"
    return f"{'a whole number' if option.kind is int else 'a number'} from {option.low:g} to {option.high:g}"


def _short(word: str) -> str:
    return word if len(word) <= 60 else word[:57] + "..."


def train_option_refused(word: str, options) -> str:
    return (
        f"'{_short(word)}' looks like an option of the trainer; /train passes none on, only the settings "
        f"below.\n{train_settings(options)}"
    )


def train_word_unknown(word: str, options) -> str:
    return f"I don't understand '{_short(word)}'.\n{train_settings(options)}"


def train_setting_refused(error, options) -> str:
    """A ``pipeline.train.chat_overrides.ChatOptionError``, worded for the chat."""
    option, word = error.option, _short(error.word)
    if error.problem == "unknown":
        name = _short(error.word.partition("=")[0])
        return f"'{name}' cannot be set from the chat.\n{train_settings(options)}"
    if error.problem == "twice":
        return f"{option.name} is given twice ('{word}'); give it once."
    if option.name in ("steps", "epochs"):
        limit = " (this bot's limit)" if option.name == "steps" else ""
        return f"'{word}' refused: {option.name} must be {_allowed(option)}{limit}."
    return (
        f"'{word}' refused: {option.name} ({TRAIN_SETTING_ABOUT.get(option.name, option.target)}) must be "
        f"{_allowed(option)}."
    )


BOTH_LENGTHS = "Give either steps or epochs, not both: /train 30 (epochs) or /train 500 steps."


def too_many_steps(steps: int, max_steps: int) -> str:
    return (
        f"That makes {steps} training steps; this bot allows at most {max_steps}. Ask for fewer: "
        "/train N steps, or fewer epochs."
    )


def job_cap(limit: int) -> str:
    return f"You already have {limit} jobs queued or running; wait for one to finish or /stop one."


def launch_failed(job_id: str, reason: str | None) -> str:
    return (
        f"Job {job_id} could not start: {reason or 'no reason was given'}\n"
        "Nothing ran, and it no longer holds a place in the queue. Fix the cause, then /train again."
    )


def pipeline_exit(code: int | None, detail: str) -> str:
    """Why a pipeline command gave no answer, for a job's error: its exit code and last stderr line."""
    return f"the pipeline stopped with exit code {code}" + (f" ({detail})" if detail else " and said nothing")


NO_TRAINER = "the launch reported no trainer process"


def launch_crashed(error_name: str) -> str:
    return f"the bot could not launch the trainer ({error_name}); its owner finds the details in the bot's log"


def dataset_in_use(dataset_id: str, jobs: tuple, change: str) -> str:
    """``change``: what was refused ("split", "classes"); ``jobs``: the queued/running jobs on the dataset."""
    listed = ", ".join(f"{job.id} ({job.status})" for job in jobs)
    one = len(jobs) == 1
    return (
        f"Dataset {dataset_id} is in use by job{'' if one else 's'} {listed}, so its {change} cannot change: "
        f"a job trains on exactly the records it was queued with. Wait until the job{' ends' if one else 's end'} "
        f"(or /stop {'it' if one else 'them'}), then try again; or send the zip again to get a separate copy "
        "you can change now."
    )
