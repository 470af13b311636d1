"""Fixtures shared across test modules."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.data.steps import PrepareOptions, prepare
from pipeline.data.synthetic import SyntheticSpec, make_voc_zip
from tests.fake_telegram import DEFAULT_TOKEN, FakeTelegram


def pytest_collection_modifyitems(items):
    """Slow files first: the workers share them out from the start instead of one waiting on the last."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


@pytest.fixture(scope="session")
def shapes_workspace(tmp_path_factory) -> Path:
    """A prepared workspace of 40 generated shapes images (32 train, 8 val, 3 classes). Read-only."""
    base = tmp_path_factory.mktemp("shapes")
    archive = make_voc_zip(base / "shapes.zip", SyntheticSpec(images=40, seed=7))
    prepare(archive, base / "ws", PrepareOptions(val_ratio=0.2))
    return base / "ws"


@pytest.fixture
def tg():
    """The fake Bot API server on 127.0.0.1, for a real bot process or a python-telegram-bot client."""
    with FakeTelegram(DEFAULT_TOKEN) as server:
        yield server
