"""Bot settings: defaults, every documented setting, and one-line errors that name the setting."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from bot.config import ConfigError, load_settings

ROOT = Path(__file__).resolve().parents[1]
GOOD = {"TELEGRAM_BOT_TOKEN": "123:abc", "ALLOWED_USER_IDS": "1, 2"}


def test_defaults_and_local_mode(tmp_path):
    settings = load_settings(GOOD, env_file=None)
    assert settings.allowed_user_ids == {1, 2} and settings.download_limit_mb == 20 and settings.upload_limit_mb == 50
    local = load_settings(GOOD | {"TELEGRAM_LOCAL_MODE": "true", "TELEGRAM_BASE_URL": "http://h:8081/bot"}, None)
    assert local.local_mode and local.download_limit_mb == 2000 and local.base_url == "http://h:8081/bot"


def test_pretrained_starts_are_the_default_and_can_be_turned_off():
    assert load_settings(GOOD, env_file=None).pretrained is True
    assert load_settings(GOOD | {"DETBOT_NO_PRETRAINED": "true"}, env_file=None).pretrained is False


def test_env_file_is_read_and_environment_wins(tmp_path):
    env = tmp_path / ".env"
    env.write_text("# comment\nTELEGRAM_BOT_TOKEN='9:file'\nALLOWED_USER_IDS=5\nDETBOT_DATA_DIR=/srv/detbot\n")
    settings = load_settings({"ALLOWED_USER_IDS": "7"}, env_file=env)
    assert settings.token == "9:file" and settings.allowed_user_ids == {7}
    assert settings.db_path == Path("/srv/detbot/detbot.db")


@pytest.mark.parametrize(
    "changes, setting",
    [
        ({"TELEGRAM_BOT_TOKEN": ""}, "TELEGRAM_BOT_TOKEN"),
        ({"ALLOWED_USER_IDS": "alice"}, "ALLOWED_USER_IDS"),
        ({"ALLOWED_USER_IDS": ""}, "ALLOWED_USER_IDS"),
        ({"DETBOT_PROGRESS_INTERVAL_S": "soon"}, "DETBOT_PROGRESS_INTERVAL_S"),
        ({"DETBOT_MAX_JOBS_PER_USER": "0"}, "DETBOT_MAX_JOBS_PER_USER"),
        ({"TELEGRAM_LOCAL_MODE": "maybe"}, "TELEGRAM_LOCAL_MODE"),
        ({"DETBOT_NO_PRETRAINED": "offline"}, "DETBOT_NO_PRETRAINED"),
    ],
)
def test_bad_settings_name_the_setting(changes, setting):
    with pytest.raises(ConfigError, match=setting):
        load_settings(GOOD | changes, env_file=None)


def test_env_example_documents_every_setting_the_bot_reads():
    source = (ROOT / "bot" / "config.py").read_text()
    read = set(re.findall(r'"((?:TELEGRAM|DETBOT|ALLOWED)_[A-Z_]+)"', source))
    example = (ROOT / ".env.example").read_text()
    assert read and all(name in example for name in read), read


def test_missing_token_stops_start_up_in_one_line(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "bot"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)},
    )
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "TELEGRAM_BOT_TOKEN" in result.stderr


def test_bot_starts_without_tensorflow_or_pandas():
    # As ``python -m bot`` starts: its entry point first, then the application and its services' modules.
    code = (
        "import sys, bot.__main__, bot.app, storage, pipeline.executors.ray_jobs; "
        "loaded = sorted(m for m in ('tensorflow', 'pandas') if sys.modules.get(m)); assert not loaded, loaded"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
