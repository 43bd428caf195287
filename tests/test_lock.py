"""One writer per output: a second run into a held output stops with one line; a killed run's lock is stale."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from curate.errors import InputError
from curate.io import LOCK, OutputLock


def test_a_held_output_refuses_a_second_writer_and_is_freed_after(tmp_path: Path) -> None:
    out = str(tmp_path / "out")
    with OutputLock(out, "curate run A"):
        held = json.loads((tmp_path / "out" / LOCK).read_text())
        assert held["pid"] == os.getpid() and held["host"] == socket.gethostname() and held["command"] == "curate run A"
        with pytest.raises(InputError, match=rf"held by pid {os.getpid()} on .*curate run A"):
            with OutputLock(out, "curate run B"):
                pass
    assert not (tmp_path / "out" / LOCK).exists()
    with OutputLock(out, "curate run B"):  # free again
        pass


def test_a_killed_runs_lock_is_stale_and_taken_over(tmp_path: Path) -> None:
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / LOCK).write_text(json.dumps({"pid": int(gone.stdout), "host": socket.gethostname(),
                                                     "command": "curate run (killed)", "started": "then"}))
    with OutputLock(str(tmp_path / "out"), "curate run again"):
        assert json.loads((tmp_path / "out" / LOCK).read_text())["command"] == "curate run again"
    (tmp_path / "out" / LOCK).write_text(json.dumps({"pid": 1, "host": "another-host", "command": "x", "started": "t"}))
    with pytest.raises(InputError, match="on another-host"):  # another machine's run: never presumed dead
        with OutputLock(str(tmp_path / "out"), "curate run"):
            pass


def test_the_cli_holds_the_lock_for_the_stage_commands(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / LOCK).write_text(json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "command": "curate run",
                                        "started": "now"}))
    result = subprocess.run([sys.executable, "-m", "curate", "download", "--output", str(out)], capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
    assert f"held by pid {os.getpid()}" in result.stderr and "one run per output at a time" in result.stderr


def test_a_killed_downloads_staging_folder_is_removed_by_the_next(tmp_path: Path) -> None:
    from curate.downloader import STAGING_PREFIX, remove_stale_staging

    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = tmp_path / f"{STAGING_PREFIX}{int(gone.stdout)}-abc"
    live = tmp_path / f"{STAGING_PREFIX}{os.getpid()}-def"
    older = tmp_path / f"{STAGING_PREFIX}x1y2"  # not ours to judge: no pid in the name
    for folder in (stale, live, older):
        (folder / "out").mkdir(parents=True)
        (folder / "out" / "00000.tar").write_bytes(b"half a shard")
    assert remove_stale_staging(str(tmp_path)) == [str(stale)]
    assert not stale.exists() and live.exists() and older.exists()


def test_a_run_leaves_no_temporary_files_and_removes_a_killed_runs(tmp_path: Path) -> None:
    """Beam's local job server leaves /tmp/beam-temp* and more per pipeline; each stage runs inside a temporary
    folder of its own, removed after it, and a killed run's folder is removed by the next run."""
    from PIL import Image

    from curate.pipelines.stage import BEAM_TEMP_PREFIX

    images, tmp = tmp_path / "images", tmp_path / "tmp"
    images.mkdir()
    tmp.mkdir()
    for i, colour in enumerate(["red", "navy", "olive"]):
        Image.new("RGB", (96 + 8 * i, 80), colour).save(images / f"{i}.png")
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    killed = tmp / f"{BEAM_TEMP_PREFIX}{int(gone.stdout)}-abc"
    (killed / "beam-temp123").mkdir(parents=True)
    result = subprocess.run([sys.executable, "-m", "curate", "filter", "--input", str(images), "--output",
                             str(tmp_path / "out"), "--no-text"], capture_output=True, text=True, timeout=300,
                            env={**os.environ, "TMPDIR": str(tmp)})
    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads((tmp_path / "out" / "stats.json").read_text())["decode"]["images"]["input"] == 3
    assert sorted(p.name for p in tmp.iterdir()) == []
