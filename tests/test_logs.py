"""Logs: replica log files (tail, rotation keeps the folder bounded), JSON log lines, reading new lines only."""

from __future__ import annotations

import io
import json
import logging
from pathlib import Path

import pytest

from actors._logging import configure_logging
from actors.serve.worker._logs import ReplicaLogs
from scripts._logs_cmd import new_lines


def test_a_replica_log_is_read_back_by_tail_and_a_missing_one_says_so(tmp_path: Path) -> None:
    logs = ReplicaLogs(tmp_path)
    logs.path_for("app.D.1").write_text("".join(f"line {i}\n" for i in range(10)))
    assert logs.tail("app.D.1", 3) == {"lines": ["line 7", "line 8", "line 9"]}
    assert "no log for replica app.D.2" in logs.tail("app.D.2", 3)["error"]
    assert "not a replica id" in logs.tail("../../etc/passwd", 3)["error"]
    with pytest.raises(ValueError, match="not a replica id"):
        logs.path_for("a/b")


def test_rotation_keeps_the_folder_bounded(tmp_path: Path) -> None:
    logs = ReplicaLogs(tmp_path, max_bytes=1000, keep=4)
    for i in range(6):
        logs.path_for(f"app.D.{i}").write_text("x" * 3000)
    logs.rotate()
    files = list(tmp_path.iterdir())
    assert len(files) <= 4, files
    assert all(f.stat().st_size <= 1000 for f in files)


def test_a_json_log_line_parses_with_its_time_level_component_and_message() -> None:
    out = io.StringIO()
    configure_logging("worker w-1", "json", stream=out)
    try:
        logging.getLogger("corral.test").warning("something %s", "happened")
    finally:
        configure_logging("test", stream=io.StringIO(), level=logging.WARNING)
    record = json.loads(out.getvalue().splitlines()[-1])
    assert record["level"] == "WARNING" and record["component"] == "worker w-1"
    assert record["logger"] == "corral.test" and record["message"] == "something happened" and "T" in record["time"]
    with pytest.raises(ValueError, match="log format must be one of text, json, got 'xml'"):
        configure_logging("x", "xml")


def test_following_a_log_prints_only_the_lines_that_came_since() -> None:
    assert new_lines([], ["a", "b"]) == ["a", "b"]
    assert new_lines(["a", "b", "c"], ["b", "c", "d", "e"]) == ["d", "e"]
    assert new_lines(["a", "b"], ["a", "b"]) == []
    assert new_lines(["a"], ["x", "y"]) == ["x", "y"], "no overlap: all of it is new"


def test_a_process_log_past_its_limit_keeps_its_last_half_in_a_dot_one_file(tmp_path: Path) -> None:
    from actors._logging import rotate_file

    path = tmp_path / "head.log"
    path.write_text("a" * 600 + "b" * 600)
    assert not rotate_file(str(path), 2000)
    assert rotate_file(str(path), 1000)
    assert path.stat().st_size == 0 and (tmp_path / "head.log.1").read_text() == "b" * 500
