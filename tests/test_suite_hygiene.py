"""The suite's own guarantees, proven on an inner pytest run that loads tests/conftest.py: a process a test
leaves behind fails the run and is killed; a test outside the slow tier that imports TensorFlow fails."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
INNER_TESTS = """
import subprocess, sys, types

import pytest


def test_leaves_a_process_behind():
    # Its own session, like the bot's detached trainers and checkers: it outlives the worker that started it.
    subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)  # the sleeper"], start_new_session=True)


def test_stops_what_it_starts():
    subprocess.run([sys.executable, "-c", "pass"], check=True)


def test_fast_but_imports_tensorflow():
    sys.modules.setdefault("tensorflow", types.ModuleType("tensorflow"))  # the guard looks at sys.modules


@pytest.mark.slow
def test_slow_and_imports_tensorflow():
    sys.modules.setdefault("tensorflow", types.ModuleType("tensorflow"))
"""


def test_leftover_processes_and_tensorflow_in_the_fast_tier_fail_the_run(tmp_path):
    (tmp_path / "pytest.ini").write_text("[pytest]\nmarkers =\n    slow: slow\n")
    (tmp_path / "test_inner.py").write_text(INNER_TESTS)
    # A fresh run marker: the inner run must find its own leftovers, not this run's processes.
    env = os.environ | {
        "PYTHONPATH": str(ROOT),
        "DETBOT_TEST_RUN": f"inner-{os.getpid()}-{time.time_ns()}",
        "DETBOT_TEST_LEFTOVER_GRACE_S": "1",
    }
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "tests.conftest", "-p", "no:cacheprovider", "-n", "2", "-q"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    out = result.stdout
    assert result.returncode == 1, out + result.stderr
    assert "1 failed, 3 passed" in out
    assert "test_fast_but_imports_tensorflow imports TensorFlow: mark it slow" in out
    reported = re.findall(r"pid (\d+): (.*)", out)
    # Only the sleeper: neither xdist's workers nor this run's processes count.
    assert [command for _, command in reported] == [f"{sys.executable} -c import time; time.sleep(300)  # the sleeper "]
    pid = int(reported[0][0])
    deadline = time.monotonic() + 10
    while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:  # killed; its new parent reaps it
        time.sleep(0.1)
    assert not Path(f"/proc/{pid}").exists()
