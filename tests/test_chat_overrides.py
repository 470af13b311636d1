"""Training requests from a chat are data: the allowlist of settings, the /train parser, the trainer
argv the bot builds, the CLI's "--", the step ceiling, the job cap on /resume, and launch failures."""

from __future__ import annotations

import asyncio
import json
import math

import pytest
import yaml

from bot.cli_runner import run_cli
from bot.config import DEFAULT_MAX_STEPS, ConfigError, load_settings
from bot.errors import Refused
from bot.train_words import parse_train_args, request_json, train_args
from bot.training import TrainingService
from pipeline.cli.main import main
from pipeline.train.chat_overrides import (
    EPOCHS,
    OPTIONS,
    ChatOptionError,
    literal,
    parse_chat_settings,
    parse_value,
    steps_option,
)
from tests.builders import store_with_dataset

USER = 42
SETTINGS = {"TELEGRAM_BOT_TOKEN": "123:abc", "ALLOWED_USER_IDS": str(USER)}
MODEL = "mobilenetv2-fpn"
# Every option of `python -m pipeline train`, and config keys that name a path, a URL, a data set,
# a device or a size the bot must decide: none may be set from a chat.
TRAINER_OPTIONS = (
    "--job-dir=/tmp/elsewhere",
    "--pretrained-url=file:///data/other/ckpt",
    "--weights-cache=/etc",
    "--model=resnet50-fpn",
    "--show-config",
    "--detach",
    "--batch-size=512",
    "--steps=5",
    "--epochs=1",
    "--no-pretrained",
    "--early-stop=1",
    "--max-recoveries=99",
    "--recovery-lr-factor=5",
    "--assume-hardware=gpus=8",
    "--url-policy=any",
    "--json",
    "-v",
    "--",
    "\u2014job-dir=/tmp/x",
)
FORBIDDEN_KEYS = (
    "task.init_checkpoint=/data/1002/ws/jobs/x/best/ckpt",
    "task.init_checkpoint_modules=all",
    "task.train_data.input_path=/data/1002/ws/data/train-*",
    "task.validation_data.input_path=/x/*",
    "task.annotation_file=/opt/detbot/.env",
    "task.train_data.tfds_name=coco/2017",
    "task.train_data.tfds_data_dir=/x",
    "task.validation_data.tfds_name=coco/2017",
    "runtime.tpu=grpc://10.0.0.1:8470",
    "runtime.distribution_strategy=tpu",
    "task.model.num_classes=1000000",
    "trainer.train_steps=1000000000",
    "task.train_data.global_batch_size=4096",
    "task.export_config.output_normalized_coordinates=false",
)


# --- the allowlist -----------------------------------------------------------------------------


@pytest.mark.parametrize("option", [o for o in OPTIONS if o.kind is not bool], ids=lambda o: o.name)
def test_each_number_setting_takes_its_range_and_nothing_beyond(option):
    assert parse_value(option, str(option.low)) == option.low
    assert parse_value(option, str(option.high)) == option.high
    below, above = option.low - (1 if option.kind is int else option.low / 2 or 1), option.high * 2 + 1
    for text in (str(below), str(above), "inf", "-inf", "nan", "1e400", "ten", "", "0x10"):
        with pytest.raises(ChatOptionError) as caught:
            parse_value(option, text)
        assert caught.value.option is option and caught.value.problem in ("range", "type")
    if option.kind is int:
        with pytest.raises(ChatOptionError, match="type"):
            parse_value(option, str(option.low + 0.5))


def test_flags_take_true_or_false_only():
    (hflip,) = [o for o in OPTIONS if o.kind is bool]
    values = [parse_value(hflip, t) for t in ("true", "Yes", "on", "1", "false", "NO", "off", "0")]
    assert values == [True] * 4 + [False] * 4
    with pytest.raises(ChatOptionError, match="type"):
        parse_value(hflip, "/etc/passwd")


@pytest.mark.parametrize("word", TRAINER_OPTIONS + FORBIDDEN_KEYS)
def test_no_trainer_option_and_no_other_config_key_is_a_setting(word):
    with pytest.raises(ChatOptionError) as caught:
        parse_chat_settings([word])
    assert caught.value.problem == "unknown" and caught.value.option is None


def test_settings_map_to_their_keys_and_options_and_come_back_canonical():
    chosen = parse_chat_settings(
        [
            "LR=1e-5",
            "batch=16",
            "eval_every=200",
            "early_stop=3",
            "hflip=no",
            "task.train_data.parser.aug_scale_max=1.5",
            "trainer.steps_per_loop=5",
        ]
    )
    assert chosen.trainer_options() == ["--batch-size", "16", "--early-stop", "3"]
    assert chosen.overrides() == [
        "trainer.optimizer_config.learning_rate.cosine.initial_learning_rate=1.0e-05",
        "trainer.validation_interval=200",
        "task.train_data.parser.aug_rand_hflip=false",
        "task.train_data.parser.aug_scale_max=1.5",
        "trainer.steps_per_loop=5",
    ]
    assert chosen.words() == (
        "lr=1.0e-05",
        "batch=16",
        "eval_every=200",
        "early_stop=3",
        "hflip=false",
        "scale_max=1.5",
        "report_every=5",
    )
    assert parse_chat_settings(chosen.words()) == chosen
    with pytest.raises(ChatOptionError, match="twice"):
        parse_chat_settings(["lr=0.1", "trainer.optimizer_config.learning_rate.cosine.initial_learning_rate=0.2"])


@pytest.mark.parametrize("value", [1e-06, 1e-05, 0.5, 1.0, 10.0, 0.123456789, 3, True, False])
def test_values_are_written_as_yaml_reads_them_back(value):
    assert yaml.safe_load(literal(value)) == value and type(yaml.safe_load(literal(value))) is type(value)


@pytest.mark.slow
def test_every_setting_is_a_real_model_garden_key_at_both_ends_of_its_range(shapes_workspace, capsys):
    """The config is built for real (TensorFlow, Model Garden), through the CLI's "--"."""
    for bound in ("low", "high"):
        words = [f"{o.name}={getattr(o, bound) if o.kind is not bool else bound == 'high'}" for o in OPTIONS]
        chosen = parse_chat_settings(words)
        code = main(
            [
                "train",
                str(shapes_workspace),
                "--model",
                MODEL,
                "--steps",
                "10",
                *chosen.trainer_options(),
                "--show-config",
                "--json",
                "--",
                *chosen.overrides(),
            ]
        )
        config = json.loads(capsys.readouterr().out)["config"]
        assert code == 0
        for option, value in chosen.values:
            node = config
            for part in option.target.split(".") if not option.is_option else ():
                node = node[part]
            if not option.is_option:
                assert node == (pytest.approx(value) if option.kind is float else value), option.name
        if chosen.get("batch") is not None:
            assert config["task"]["train_data"]["global_batch_size"] == chosen.get("batch")


# --- the CLI: everything after "--" is an override ---------------------------------------------


@pytest.mark.slow
def test_after_double_dash_an_option_is_an_override_and_is_refused(shapes_workspace, tmp_path, capsys):
    code = main(
        [
            "train",
            str(shapes_workspace),
            "--model",
            MODEL,
            "--steps",
            "10",
            "--show-config",
            "--json",
            "--",
            f"--job-dir={tmp_path / 'elsewhere'}",
        ]
    )
    error = json.loads(capsys.readouterr().out)["error"]
    assert code == 1 and error["kind"] == "override_rejected" and "'--job-dir" in error["message"]
    assert not (tmp_path / "elsewhere").exists()


@pytest.mark.slow
def test_overrides_after_options_and_after_double_dash_both_count(shapes_workspace, capsys):
    code = main(
        [
            "train",
            str(shapes_workspace),
            "trainer.validation_interval=40",
            "--model",
            MODEL,
            "--show-config",
            "--json",
            "trainer.steps_per_loop=3",
            "--",
            "trainer.checkpoint_interval=9",
        ]
    )
    trainer = json.loads(capsys.readouterr().out)["config"]["trainer"]
    assert code == 0 and (
        trainer["validation_interval"],
        trainer["steps_per_loop"],
        trainer["checkpoint_interval"],
    ) == (40, 3, 9)


def test_a_command_without_overrides_refuses_words_after_double_dash(shapes_workspace, capsys):
    with pytest.raises(SystemExit) as caught:
        main(["split", str(shapes_workspace), "--json", "--", "a=1"])
    assert caught.value.code == 2 and "takes no overrides" in capsys.readouterr().err


# --- the bot: /train words, the trainer argv, the ceiling -----------------------------------------


@pytest.mark.parametrize(
    "words",
    [
        ["1e15", "steps"],
        ["steps=1e15"],
        ["inf"],
        ["nan"],
        ["-1"],
        ["0"],
        ["1e15"],
        ["-inf", "steps"],
        ["2.5", "steps"],
        ["101", "steps"],
        ["steps=abc"],
    ],
)
def test_lengths_must_be_finite_positive_and_within_the_ceiling(words):
    with pytest.raises(Refused, match="refused: (steps|epochs) must be"):
        parse_train_args(words, MODEL, max_steps=100)


@pytest.mark.parametrize("word", TRAINER_OPTIONS + FORBIDDEN_KEYS)
def test_train_refuses_every_option_and_key_and_lists_what_is_allowed(word):
    with pytest.raises(Refused) as caught:
        parse_train_args(["1", "steps", word], MODEL, max_steps=DEFAULT_MAX_STEPS)
    text = str(caught.value)
    assert "option of the trainer" in text or "cannot be set from the chat" in text
    assert all(f"  {option.name}:" in text for option in OPTIONS)


def test_the_trainer_argv_is_built_from_checked_values_only(tmp_path):
    request = parse_train_args(
        ["500", "steps", "lr=0.02", "batch=16", "early_stop=2", "eval_every=200"], MODEL, max_steps=1000
    )
    assert (request.steps, request.batch_size, request.early_stop_evals) == (500, 16, 2)
    job = _Job(request_json(request), tmp_path / "job")
    argv = train_args(job, load_settings(SETTINGS, env_file=None))
    cut = argv.index("--")
    assert argv[:cut] == [
        "--model",
        MODEL,
        "--job-dir",
        str(tmp_path / "job"),
        "--url-policy",
        "public",
        "--steps",
        "500",
        "--batch-size",
        "16",
        "--early-stop",
        "2",
        "--detach",
        "--json",
    ]
    assert argv[cut + 1 :] == [
        "trainer.optimizer_config.learning_rate.cosine.initial_learning_rate=0.02",
        "trainer.validation_interval=200",
    ]
    private = load_settings(SETTINGS | {"DETBOT_ALLOW_PRIVATE_URLS": "true"}, env_file=None)
    assert train_args(job, private)[5] == "private"


def test_a_stored_request_is_checked_again_before_it_reaches_the_trainer(tmp_path):
    """A job queued before the allowlist existed (or a tampered row) never launches as it was stored."""
    settings = load_settings(SETTINGS, env_file=None)
    for request in (
        {"steps": 5, "overrides": ["--job-dir=/tmp/x"]},
        {"steps": 10**15},
        {"epochs": math.inf},
        {"steps": 5, "overrides": ["task.init_checkpoint=/x"]},
    ):
        with pytest.raises(Refused):
            train_args(_Job(request, tmp_path / "job"), settings)


def test_the_step_ceiling_is_a_setting():
    assert load_settings(SETTINGS, env_file=None).max_steps == DEFAULT_MAX_STEPS == 100_000
    assert load_settings(SETTINGS | {"DETBOT_MAX_STEPS": "2500"}, env_file=None).max_steps == 2500
    for bad in ("0", "-5", "1e15", "inf", "nan", "2.5", "many"):
        with pytest.raises(ConfigError, match="DETBOT_MAX_STEPS"):
            load_settings(SETTINGS | {"DETBOT_MAX_STEPS": bad}, env_file=None)
    assert steps_option(2500).high == 2500 and EPOCHS.high < math.inf


class _Job:
    model = MODEL

    def __init__(self, request: dict, job_dir):
        self.request, self.job_dir = request, job_dir


# --- the job cap on /resume, and a launch that fails --------------------------------------------


@pytest.fixture
def store(tmp_path):
    store, dataset = store_with_dataset(tmp_path / "detbot.db", USER, tmp_path / "ws")
    yield store, dataset
    store.close()


def test_resume_counts_against_the_job_cap(store, tmp_path):
    store, dataset = store
    svc = TrainingService(store, load_settings(SETTINGS | {"DETBOT_MAX_JOBS_PER_USER": "2"}, env_file=None))
    jobs = [store.add_job(USER, USER, dataset.id, tmp_path / f"job{n}", MODEL, {"steps": 5}) for n in range(3)]
    store.update_job(jobs[0].id, status="stopped")
    for job in jobs[1:]:
        store.update_job(job.id, status="running", started=0.0)
    with pytest.raises(Refused, match="already have 2 jobs"):
        asyncio.run(svc.resume(USER, jobs[0].id))
    assert store.job_by_id(jobs[0].id).status == "stopped" and store.count_active(USER) == 2


def test_a_launch_the_cli_refuses_is_an_error_with_its_reason_and_keeps_its_stderr(tmp_path):
    """The real CLI exits on an option it does not know (argparse, exit 2, nothing on stdout)."""
    job_dir = tmp_path / "ws" / "jobs" / "j"
    out = asyncio.run(run_cli(["train", str(tmp_path / "ws"), "--job-dir", str(job_dir), "--no-such-option", "--json"]))
    message = out["error"]["message"]
    assert "exit code 2" in message and "unrecognized arguments: --no-such-option" in message
    log = (job_dir / "launch.log").read_text()
    assert "exit 2" in log and "usage: python -m pipeline" in log


def test_a_job_whose_launch_fails_is_failed_at_once_with_the_reason(store, tmp_path):
    store, dataset = store
    (tmp_path / "ws").mkdir()  # a workspace without records: the real trainer refuses it before starting
    svc = TrainingService(store, load_settings(SETTINGS | {"DETBOT_MAX_JOBS_PER_USER": "1"}, env_file=None))
    job = svc.enqueue(USER, USER, store.dataset(USER, dataset.id), parse_train_args(["5", "steps"], MODEL, 100))
    (started,) = asyncio.run(svc.start_queued())
    assert started.status == "failed" and "no train/val records" in started.error and started.pid is None
    assert store.active_jobs() == [] and store.count_active(USER) == 0
    assert "exit 1" in (job.job_dir / "launch.log").read_text()
