"""Run outputs are whole or absent, and metrics.json is strict JSON."""

from __future__ import annotations

import json
import math

import pytest

from transferlab.files import strict_json, write_atomic, write_json


def test_a_failed_write_leaves_the_old_file_and_no_temp_file(tmp_path):
    path = tmp_path / "metrics.json"
    path.write_text("old")

    def half_then_fail(tmp):
        tmp.write_text("half")
        raise OSError("disk full")

    with pytest.raises(OSError):
        write_atomic(path, half_then_fail)
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]


def test_non_finite_metrics_become_null_and_are_listed(tmp_path):
    path = write_json(tmp_path / "m.json", {"val/acc": 0.5, "train/loss": math.nan, "x": math.inf})
    record = json.loads(path.read_text(), parse_constant=lambda c: pytest.fail(f"{c} in JSON"))
    assert record == {
        "val/acc": 0.5,
        "train/loss": None,
        "x": None,
        "non_finite": ["train/loss", "x"],
    }
    assert strict_json({"a": 1.0}) == {"a": 1.0}


def test_an_atomic_write_gets_the_mode_of_an_ordinary_file(tmp_path):
    import os

    ordinary = tmp_path / "plain.txt"
    ordinary.write_text("x")
    written = write_atomic(tmp_path / "atomic.txt", lambda tmp: tmp.write_text("x"))
    assert os.stat(written).st_mode == os.stat(ordinary).st_mode
