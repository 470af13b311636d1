"""Lint as a test: ruff's rules and format, and the import-linter layering contracts, all from pyproject.toml.

Pure and quick (about a second in all), so it runs in the fast tier too. The tools come from the
test extra, installed next to the interpreter running the tests.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


@pytest.mark.parametrize(
    "command",
    [
        ["ruff", "check", "--no-fix", "--output-format", "concise", "."],
        ["ruff", "format", "--diff", "."],
        # No cache: it would be written into the checkout, and the whole check takes well under a second.
        ["lint-imports", "--no-cache"],
    ],
    ids=["ruff-check", "ruff-format", "import-contracts"],
)
def test_the_code_passes(command):
    tool = BIN / command[0]
    assert tool.is_file(), f"{tool} is missing: install the test extra (scripts/ensure-venv test)"
    done = subprocess.run([str(tool), *command[1:]], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"`{' '.join(command)}` failed:\n{done.stdout}\n{done.stderr}"
