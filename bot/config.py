"""The bot's settings, from the environment or a ``.env`` file; a bad one stops start-up.

Every setting is documented in ``.env.example``. The error names the setting and
says how to fix it, in one line, because it is the first thing a new user sees.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path

from .errors import ConfigError

CLOUD_DOWNLOAD_MB, CLOUD_UPLOAD_MB, LOCAL_LIMIT_MB = 20, 50, 2000
# Fine-tunes take a few thousand steps; 100,000 is about 7 h of the fastest detector on a 2-core CPU.
DEFAULT_MAX_STEPS = 100_000


@dataclass(frozen=True)
class Settings:
    token: str
    allowed_user_ids: frozenset[int]
    data_dir: Path
    base_url: str | None = None
    base_file_url: str | None = None
    local_mode: bool = False
    progress_interval_s: float = 30.0
    plot_interval_s: float = 300.0
    download_limit_mb: int = CLOUD_DOWNLOAD_MB
    upload_limit_mb: int = CLOUD_UPLOAD_MB
    max_jobs_per_user: int = 2
    max_gb_per_user: float = 10.0
    training_slots: int = 1  # trainings at once
    gpus_per_job: int | None = None  # None: every visible GPU with one training slot, else one each
    visible_devices: str | None = None  # CUDA_VISIBLE_DEVICES as given; None: unset, every GPU is visible
    allow_private_urls: bool = False  # URLs fetched for a chat user may name private (RFC 1918/ULA) hosts
    max_steps: int = DEFAULT_MAX_STEPS  # the most training steps a chat user may ask for
    pretrained: bool = True  # start from the catalogue's checkpoints; False: from scratch, nothing downloaded
    predict_models: int = 2  # models kept loaded for /predict at once; 0: a TensorFlow process per photo
    predict_idle_s: float = 600.0  # a loaded model unused this long is unloaded
    predict_timeout_s: float = 60.0  # the most one photo may take a loaded model
    executor: str = "local"  # where trainings, exports and predictions run: this host, or "ray"
    ray_address: str | None = None  # the Ray head's job server, http://HOST:8265
    ray_gpu_resource: str = "GPU"  # the Ray resource a training's GPUs are counted in
    stop_grace_s: float = 120.0  # after a graceful stop, how long a cluster run has before it is stopped hard

    @property
    def on_cluster(self) -> bool:
        return self.executor == "ray"

    @property
    def db_path(self) -> Path:
        return self.data_dir / "detbot.db"

    def user_dir(self, user_id: int) -> Path:
        """Where one user's files live: uploads, datasets (their jobs inside), predictions."""
        return self.data_dir / "users" / str(user_id)

    @property
    def url_policy(self) -> str:
        """The address policy of ``pipeline.fetch`` for URLs fetched on behalf of a chat user."""
        return "private" if self.allow_private_urls else "public"

    def job_gpus(self, visible: int) -> int:
        """GPUs one training gets when ``visible`` GPUs are visible to the bot."""
        if self.gpus_per_job is not None:
            return self.gpus_per_job
        return visible if self.training_slots == 1 else 1


def load_settings(environ: dict[str, str] | None = None, env_file: Path | None = Path(".env")) -> Settings:
    values = _read_env_file(env_file) | dict(os.environ if environ is None else environ)
    token = values.get("TELEGRAM_BOT_TOKEN", "").strip()
    if not token or ":" not in token:
        raise ConfigError(
            "TELEGRAM_BOT_TOKEN is missing or malformed: get a token from @BotFather (/newbot) "
            "and put TELEGRAM_BOT_TOKEN=123456:ABC... in .env (see .env.example)."
        )
    local = _flag(values, "TELEGRAM_LOCAL_MODE")
    default_limit = LOCAL_LIMIT_MB if local else None
    settings = Settings(
        token=token,
        allowed_user_ids=_ids(values.get("ALLOWED_USER_IDS", "")),
        data_dir=Path(values.get("DETBOT_DATA_DIR", "data")).expanduser(),
        base_url=values.get("TELEGRAM_BASE_URL") or None,
        base_file_url=values.get("TELEGRAM_BASE_FILE_URL") or None,
        local_mode=local,
        progress_interval_s=_number(values, "DETBOT_PROGRESS_INTERVAL_S", 30.0, minimum=1),
        plot_interval_s=_number(values, "DETBOT_PLOT_INTERVAL_S", 300.0, minimum=10),
        download_limit_mb=int(_number(values, "DETBOT_DOWNLOAD_LIMIT_MB", default_limit or CLOUD_DOWNLOAD_MB, 1)),
        upload_limit_mb=int(_number(values, "DETBOT_UPLOAD_LIMIT_MB", default_limit or CLOUD_UPLOAD_MB, 1)),
        max_jobs_per_user=int(_number(values, "DETBOT_MAX_JOBS_PER_USER", 2, minimum=1)),
        max_gb_per_user=_number(values, "DETBOT_MAX_GB_PER_USER", 10.0, minimum=0.1),
        training_slots=int(_number(values, "DETBOT_TRAINING_SLOTS", 1, minimum=1)),
        gpus_per_job=_gpu_count(values, "DETBOT_GPUS_PER_JOB"),
        # "" is not "unset": CUDA reads an empty list as no GPU at all.
        visible_devices=values.get("CUDA_VISIBLE_DEVICES"),
        allow_private_urls=_flag(values, "DETBOT_ALLOW_PRIVATE_URLS"),
        max_steps=_whole(values, "DETBOT_MAX_STEPS", DEFAULT_MAX_STEPS),
        pretrained=not _flag(values, "DETBOT_NO_PRETRAINED"),
        predict_models=int(_number(values, "DETBOT_PREDICT_MODELS", 2, minimum=0)),
        predict_idle_s=_number(values, "DETBOT_PREDICT_IDLE_S", 600.0, minimum=1),
        predict_timeout_s=_number(values, "DETBOT_PREDICT_TIMEOUT_S", 60.0, minimum=1),
        **_executor(values),
    )
    # Every node of a cluster finds the data folder by the path the bot gives it, whatever its working folder.
    return replace(settings, data_dir=settings.data_dir.absolute()) if settings.on_cluster else settings


def _executor(values: dict) -> dict:
    executor = values.get("DETBOT_EXECUTOR", "").strip().lower() or "local"
    if executor not in ("local", "ray"):
        raise ConfigError(f"DETBOT_EXECUTOR={executor} is not local or ray: leave it out to train on this host.")
    address = values.get("RAY_ADDRESS", "").strip() or None
    if executor == "ray" and not (address and address.startswith(("http://", "https://"))):
        raise ConfigError(
            "DETBOT_EXECUTOR=ray needs RAY_ADDRESS, the head's job server, e.g. RAY_ADDRESS=http://127.0.0.1:8265 "
            "(README: Running on several GPU hosts)."
        )
    resource = values.get("DETBOT_RAY_GPU_RESOURCE", "").strip() or "GPU"
    if not resource.replace("_", "").isalnum():
        raise ConfigError(f"DETBOT_RAY_GPU_RESOURCE={resource} is not a Ray resource name: use letters, digits, _.")
    return {
        "executor": executor,
        "ray_address": address,
        "ray_gpu_resource": resource,
        "stop_grace_s": _number(values, "DETBOT_STOP_GRACE_S", 120.0, minimum=1),
    }


def _read_env_file(path: Path | None) -> dict[str, str]:
    if path is None or not path.exists():
        return {}
    values = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        if not sep:
            raise ConfigError(f"{path} line {number} is not KEY=VALUE: fix or remove it.")
        values[key.strip()] = value.strip().strip("'\"")
    return values


def _ids(text: str) -> frozenset[int]:
    ids = set()
    for part in filter(None, (p.strip() for p in text.split(","))):
        if not part.isdigit():
            raise ConfigError(
                f"ALLOWED_USER_IDS has '{part}', which is not a numeric Telegram user id: "
                "list ids like 12345,67890 (ask @userinfobot for yours)."
            )
        ids.add(int(part))
    if not ids:
        raise ConfigError(
            "ALLOWED_USER_IDS is empty: list the numeric Telegram ids allowed to use the bot, "
            "e.g. ALLOWED_USER_IDS=12345 (ask @userinfobot for yours)."
        )
    return frozenset(ids)


def _number(values: dict, key: str, default: float, minimum: float) -> float:
    raw = values.get(key)
    if raw in (None, ""):
        return float(default)
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{key}={raw} is not a number: set it to a number (default {default:g}).") from None
    if value < minimum:
        raise ConfigError(f"{key}={raw} is too small: use at least {minimum:g} (default {default:g}).")
    return value


def _whole(values: dict, key: str, default: int) -> int:
    # Not _number: float() takes "inf" and "1e15", which no whole-number setting should.
    raw = values.get(key, "").strip()
    if not raw:
        return default
    if not (raw.isascii() and raw.isdigit()) or int(raw) < 1:
        raise ConfigError(
            f"{key}={raw} is not a whole number of 1 or more: set it like {key}={default} "
            f"(the default), or leave it out."
        )
    return int(raw)


def _gpu_count(values: dict, key: str) -> int | None:
    raw = values.get(key, "").strip()
    if not raw:
        return None
    if not (raw.isascii() and raw.isdigit()) or int(raw) < 1:
        raise ConfigError(
            f"{key}={raw} is not a whole number of GPUs: set it to 1 or more, or leave it out for "
            "the default (every GPU with one training slot, else one GPU per training)."
        )
    return int(raw)


def _flag(values: dict, key: str) -> bool:
    raw = values.get(key, "").strip().lower()
    if raw in ("", "0", "false", "no"):
        return False
    if raw in ("1", "true", "yes"):
        return True
    raise ConfigError(f"{key}={raw} is not true/false: set it to true or false.")
