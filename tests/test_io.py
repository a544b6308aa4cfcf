"""disagg_gym.io: atomic writes honour the umask, output-path checks, the append lock."""

from __future__ import annotations

import os
import stat
import threading
import time
from pathlib import Path

import pytest

from disagg_gym.errors import UserError
from disagg_gym.io import (
    atomic_write_json,
    atomic_write_text,
    check_output_dir,
    check_output_file,
    describe_os_error,
    exclusive_lock,
    lock_path,
    locked,
)


@pytest.fixture
def umask_027():  # type: ignore[no-untyped-def]
    old = os.umask(0o027)
    try:
        yield
    finally:
        os.umask(old)


def _mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


@pytest.mark.parametrize("mask", [0o022, 0o027, 0o002])
def test_new_files_get_0666_minus_the_umask(tmp_path: Path, mask: int) -> None:
    # issue #17: mkstemp + replace left every output 0600, unreadable to other users
    old = os.umask(mask)
    try:
        atomic_write_text(tmp_path / "a.txt", "x")
        atomic_write_json(tmp_path / "sub" / "b.json", {"a": 1})
        with open(tmp_path / "oracle.txt", "w") as fh:  # what open() gives is the oracle
            fh.write("x")
    finally:
        os.umask(old)
    want = _mode(tmp_path / "oracle.txt")
    assert want == 0o666 & ~mask
    assert _mode(tmp_path / "a.txt") == want
    assert _mode(tmp_path / "sub" / "b.json") == want
    assert (tmp_path / "a.txt").read_text() == "x"


def test_a_replaced_file_keeps_its_mode(tmp_path: Path, umask_027: None) -> None:
    p = tmp_path / "a.txt"
    p.write_text("old")
    p.chmod(0o644)
    atomic_write_text(p, "new")
    assert p.read_text() == "new" and _mode(p) == 0o644
    assert [q.name for q in tmp_path.iterdir()] == ["a.txt"]  # no temp file left


def test_check_output_file(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("x")
    (tmp_path / "d").mkdir()
    assert check_output_file(tmp_path / "new" / "deeper" / "x.csv", "--records")  # parents may be missing
    with pytest.raises(UserError) as exc:
        check_output_file(tmp_path / "d", "--records")
    assert str(exc.value) == f"--records {str(tmp_path / 'd')!r}: is a directory, expected a file path"
    with pytest.raises(UserError) as exc:
        check_output_file(tmp_path / "f" / "x.csv", "--out")
    assert str(exc.value) == f"--out {str(tmp_path / 'f' / 'x.csv')!r}: {str(tmp_path / 'f')!r} is a file, not a folder"


def test_check_output_dir(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("x")
    assert check_output_dir(tmp_path / "a" / "b", "--plots")
    with pytest.raises(UserError, match="is a file, expected a folder"):
        check_output_dir(tmp_path / "f", "--plots")
    with pytest.raises(UserError, match="is a file, not a folder"):
        check_output_dir(tmp_path / "f" / "sub", "--plots")


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes anywhere")
def test_check_output_unwritable_folder(tmp_path: Path) -> None:
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        with pytest.raises(UserError, match="is not writable"):
            check_output_file(ro / "x.csv", "--out")
    finally:
        ro.chmod(0o755)


def test_describe_os_error() -> None:
    exc = PermissionError(13, "Permission denied", "/x/y")
    assert describe_os_error(exc) == "'/x/y': Permission denied"


def test_exclusive_lock_serialises_holders(tmp_path: Path) -> None:
    lock = tmp_path / ".lock"
    inside = []
    overlap = []

    def hold(i: int) -> None:
        with exclusive_lock(lock):
            inside.append(i)
            if len(inside) > 1:
                overlap.append(list(inside))
            time.sleep(0.02)
            inside.remove(i)

    threads = [threading.Thread(target=hold, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert overlap == []


def test_locked_holds_the_lock_beside_the_data_file(tmp_path: Path) -> None:
    data = tmp_path / "out" / "results.csv"
    assert lock_path(data) == tmp_path / "out" / ".results.csv.lock"
    done = []

    def other() -> None:  # takes the same lock through its own name
        with exclusive_lock(tmp_path / "out" / ".results.csv.lock"):
            done.append("other")

    with locked(data):
        t = threading.Thread(target=other)
        t.start()
        time.sleep(0.05)
        assert done == []  # still waiting: the two names are one lock
        done.append("first")
    t.join()
    assert done == ["first", "other"]
    assert not data.exists()  # the data file itself is never touched


def test_a_device_is_written_through_never_replaced(tmp_path: Path) -> None:
    # renaming the temp file onto /dev/null (as root) turned the null device into a regular
    # file; a link in tmp_path keeps a regression from touching the real /dev/null
    link = tmp_path / "null"
    link.symlink_to("/dev/null")
    atomic_write_text(link, "discarded")
    assert link.is_symlink() and stat.S_ISCHR(os.stat(link).st_mode)
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)
    assert [p.name for p in tmp_path.iterdir()] == ["null"]  # no temp file left either
    with pytest.raises(IsADirectoryError):
        atomic_write_text(tmp_path, "x")


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux /proc (a folder no file can be made in)")
def test_a_failed_atomic_write_names_the_file_asked_for_not_its_temp_file() -> None:
    with pytest.raises(OSError) as info:
        atomic_write_text("/proc/disagg-gym-test.csv", "x")
    assert info.value.filename == "/proc/disagg-gym-test.csv"
    assert describe_os_error(info.value).startswith("'/proc/disagg-gym-test.csv': ")


def test_a_closed_pipe_ends_the_cli_quietly() -> None:
    import subprocess
    import sys

    # The reader is gone before the first byte (as after `| head -1` once head has its line):
    # no "Broken pipe" error line, the shell's SIGPIPE status.
    r_fd, w_fd = os.pipe()
    os.close(r_fd)
    try:
        r = subprocess.run([sys.executable, "-m", "disagg_gym.cli", "list"], stdout=w_fd, stderr=subprocess.PIPE,
                           text=True, cwd=Path(__file__).resolve().parents[1])
    finally:
        os.close(w_fd)
    assert r.stderr == "" and r.returncode == 141


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux /proc (a folder no file can be made in)")
def test_output_checks_catch_a_folder_that_takes_no_files_before_any_work() -> None:
    # access() allows root (and /proc) everything; the check creates a probe file instead.
    with pytest.raises(UserError, match=r"^--out '/proc/x\.csv': cannot create files in '/proc' "):
        check_output_file("/proc/x.csv", "--out")
    with pytest.raises(UserError, match=r"^--plots '/proc/p': cannot create files in '/proc' "):
        check_output_dir("/proc/p", "--plots")
