"""Every output is all-or-nothing: a full disk, a read-only folder or a killed process never leaves a
half-written file, a half-replaced group of files or a stale temporary file behind for long.

Full disks and read-only folders are simulated by making ``os`` calls fail (tests run as root here,
and chmod does not stop root); kills are real SIGKILLs of a child process.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from rlport.bundle import atomic
from rlport.bundle.atomic import remove_stale_temps, temp_path, write_atomic, write_atomic_group
from rlport.cli.main import main
from rlport.errors import BundleError

ROOT = Path(__file__).resolve().parents[2]


def full_disk(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


def read_only(*args, **kwargs):
    raise OSError(errno.EROFS, "Read-only file system")


def names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def fail_on_call(real, n: int, error=full_disk):
    """``real``, except that its ``n``-th call (1-based) fails with ``error``."""
    calls = []

    def wrapper(*args, **kwargs):
        calls.append(args)
        if len(calls) == n:
            error()
        return real(*args, **kwargs)

    return wrapper


# ---- temporary file names and stale ones -------------------------------------------------------------


def test_temp_files_are_named_for_their_target_and_writer(tmp_path, monkeypatch):
    seen = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (seen.extend(names(tmp_path)), real_fsync(fd)))
    write_atomic(tmp_path / "policy.rlp", b"data")
    (tmp,) = [name for name in seen if name != "policy.rlp"]
    assert tmp.startswith(".policy.rlp.") and f"-{os.getpid()}." in tmp and tmp.endswith(".rlport-tmp")
    assert atomic._TEMP_NAME.fullmatch(tmp)
    assert names(tmp_path) == ["policy.rlp"]


def _fake_temp(target: Path, pid: int, host: str | None = None, age: float = 0.0, folder: bool = False) -> Path:
    host = host or atomic._host_tag()
    path = target.parent / f".{target.name}.{host}-{pid}.{'ab' * 8}.rlport-tmp"
    if folder:
        path.mkdir()
        (path / "inside.txt").write_text("half a pack")
    else:
        path.write_bytes(b"half a file")
    if age:
        then = time.time() - age
        os.utime(path, (then, then))
    return path


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_next_save_removes_temps_of_dead_writers_only(tmp_path):
    target = tmp_path / "policy.rlp"
    dead = _fake_temp(target, _dead_pid())
    live = _fake_temp(target, 1)  # pid 1 is always alive
    mine = _fake_temp(target, os.getpid())  # this process may be writing it right now
    other_host = _fake_temp(target, _dead_pid(), host="0" * 8 if atomic._host_tag() != "0" * 8 else "1" * 8)
    other_target = _fake_temp(tmp_path / "other.rlp", _dead_pid())
    foreign = [tmp_path / ".policy.rlp.0123456789abcdef.tmp", tmp_path / "policy.rlp.rlport-tmp"]
    for path in foreign:
        path.write_bytes(b"not ours")
    write_atomic(target, b"new")
    assert not dead.exists()
    assert live.exists() and mine.exists() and other_host.exists() and other_target.exists()
    assert all(path.exists() for path in foreign), "files of another naming are never touched"
    assert target.read_bytes() == b"new"


def test_temps_older_than_the_limit_go_whoever_wrote_them(tmp_path):
    target = tmp_path / "policy.rlp"
    old = _fake_temp(target, 1, host="f" * 8, age=atomic.STALE_TEMP_AGE + 60)
    recent = _fake_temp(target, 1, host="e" * 8, age=atomic.STALE_TEMP_AGE - 60)
    assert remove_stale_temps(target) == [old]
    assert recent.exists()


def test_stale_temp_folders_are_removed_but_links_are_not_followed(tmp_path):
    target = tmp_path / "pack"
    folder = _fake_temp(target, _dead_pid(), folder=True)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep.txt").write_text("keep me")
    link = target.parent / f".pack.{atomic._host_tag()}-{_dead_pid()}.{'cd' * 8}.rlport-tmp"
    link.symlink_to(outside, target_is_directory=True)
    removed = remove_stale_temps(target)
    assert sorted(removed) == sorted([folder, link])
    assert not folder.exists() and not link.is_symlink()
    assert (outside / "keep.txt").read_text() == "keep me"


def test_stale_temps_in_an_unreadable_folder_are_no_error(tmp_path):
    assert remove_stale_temps(tmp_path / "missing" / "policy.rlp") == []


KILLED_SAVE = """
import os, sys, time
from pathlib import Path
from rlport.bundle.container import write_atomic

def stall(fd):
    Path(sys.argv[2]).write_text("writing")
    time.sleep(60)

os.fsync = stall
write_atomic(Path(sys.argv[1]), b"new content " * 1000)
"""


def test_a_killed_save_leaves_the_old_file_and_the_next_save_removes_its_temp(tmp_path):
    target = tmp_path / "policy.rlp"
    target.write_bytes(b"old content")
    marker = tmp_path / "marker"
    child = subprocess.Popen([sys.executable, "-c", KILLED_SAVE, str(target), str(marker)], cwd=ROOT)
    try:
        deadline = time.monotonic() + 30
        while not marker.exists() and time.monotonic() < deadline and child.poll() is None:
            time.sleep(0.02)
        assert marker.exists(), "the child never reached the write"
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    marker.unlink()
    (stale,) = [name for name in names(tmp_path) if name != "policy.rlp"]
    assert f"-{child.pid}." in stale and stale.endswith(".rlport-tmp")
    assert target.read_bytes() == b"old content"
    write_atomic(target, b"next")
    assert names(tmp_path) == ["policy.rlp"] and target.read_bytes() == b"next"


# ---- write_atomic_group -------------------------------------------------------------------------------


def _two_files(tmp_path: Path, existing: bool = True) -> tuple[Path, Path]:
    a, b = tmp_path / "model.zip", tmp_path / "stats" / "vecnormalize.pkl"
    b.parent.mkdir()
    if existing:
        a.write_bytes(b"old model")
        b.write_bytes(b"old stats")
    return a, b


def test_group_writes_every_file(tmp_path):
    a, b = _two_files(tmp_path)
    write_atomic_group([(a, b"new model", "the model"), (b, b"new stats", "the statistics")])
    assert a.read_bytes() == b"new model" and b.read_bytes() == b"new stats"
    assert names(tmp_path) == ["model.zip", "stats"] and names(b.parent) == ["vecnormalize.pkl"]


@pytest.mark.parametrize("existing", [True, False], ids=["replacing", "new-files"])
def test_a_failed_second_rename_puts_the_first_file_back(tmp_path, monkeypatch, existing):
    a, b = _two_files(tmp_path, existing)
    monkeypatch.setattr(os, "replace", fail_on_call(os.replace, 2))
    with pytest.raises(BundleError, match=r"cannot save the statistics to .*vecnormalize.pkl.*No space left.*put back"):
        write_atomic_group([(a, b"new model", "the model"), (b, b"new stats", "the statistics")])
    if existing:
        assert a.read_bytes() == b"old model" and b.read_bytes() == b"old stats"
        assert names(tmp_path) == ["model.zip", "stats"]
    else:
        assert names(tmp_path) == ["stats"]
    assert names(b.parent) == (["vecnormalize.pkl"] if existing else [])


def test_a_full_disk_while_writing_changes_nothing(tmp_path, monkeypatch):
    a, b = _two_files(tmp_path)
    monkeypatch.setattr(os, "fsync", fail_on_call(os.fsync, 2))
    with pytest.raises(BundleError, match="No space left on device; free some disk space"):
        write_atomic_group([(a, b"new model", "the model"), (b, b"new stats", "the statistics")])
    assert a.read_bytes() == b"old model" and b.read_bytes() == b"old stats"
    assert names(tmp_path) == ["model.zip", "stats"] and names(b.parent) == ["vecnormalize.pkl"]


def test_every_destination_is_checked_before_anything_is_written(tmp_path):
    a = tmp_path / "model.zip"
    with pytest.raises(BundleError, match=r"directory .*missing' does not exist; create it first"):
        write_atomic_group([(a, b"model", "the model"), (tmp_path / "missing" / "x.pkl", b"stats", "the statistics")])
    assert names(tmp_path) == []


def test_the_same_target_twice_is_refused(tmp_path):
    with pytest.raises(BundleError, match="another output of this save goes there too"):
        write_atomic_group([(tmp_path / "a", b"1", "one"), (tmp_path / "." / "a", b"2", "two")])
    assert names(tmp_path) == []


def test_without_hard_links_the_backup_is_a_copy(tmp_path, monkeypatch):
    a, b = _two_files(tmp_path)
    monkeypatch.setattr(os, "link", lambda *args, **kwargs: read_only())
    monkeypatch.setattr(os, "replace", fail_on_call(os.replace, 2))
    with pytest.raises(BundleError):
        write_atomic_group([(a, b"new model", "the model"), (b, b"new stats", "the statistics")])
    assert a.read_bytes() == b"old model" and names(tmp_path) == ["model.zip", "stats"]


def test_an_interrupt_between_renames_rolls_back_too(tmp_path, monkeypatch):
    a, b = _two_files(tmp_path)

    def interrupted():
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", fail_on_call(os.replace, 2, interrupted))
    with pytest.raises(KeyboardInterrupt):
        write_atomic_group([(a, b"new model", "the model"), (b, b"new stats", "the statistics")])
    assert a.read_bytes() == b"old model" and b.read_bytes() == b"old stats"
    assert names(tmp_path) == ["model.zip", "stats"] and names(b.parent) == ["vecnormalize.pkl"]


def test_a_read_only_folder_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setattr(os, "open", lambda *args, **kwargs: read_only())
    with pytest.raises(BundleError, match="Read-only file system; the file system is read-only; choose another"):
        write_atomic(tmp_path / "policy.rlp", b"data")


def test_a_temp_name_is_fresh_each_time(tmp_path):
    assert temp_path(tmp_path / "x") != temp_path(tmp_path / "x")


# ---- rlport fingerprint -o ------------------------------------------------------------------------------


FINGERPRINT = ["fingerprint", "--env", "CartPole-v1", "--episodes", "1", "--steps", "5"]


def test_fingerprint_on_a_full_disk_keeps_the_previous_file(tmp_path, monkeypatch, capsys):
    target = tmp_path / "fp.json"
    assert main([*FINGERPRINT, "-o", str(target)]) == 0
    before = target.read_bytes()
    json.loads(before)
    monkeypatch.setattr(os, "fsync", full_disk)
    capsys.readouterr()
    assert main([*FINGERPRINT, "--seed", "7", "-o", str(target)]) == 2
    err = capsys.readouterr().err
    assert "rlport fingerprint: cannot save the fingerprint to" in err and "free some disk space" in err
    assert target.read_bytes() == before and names(tmp_path) == ["fp.json"]


@pytest.mark.parametrize("where", ["directory", "missing-folder"])
def test_fingerprint_output_is_checked_before_recording(tmp_path, monkeypatch, capsys, where):
    import rlport.verify.fingerprint

    def never(*args, **kwargs):
        raise AssertionError("recorded before the output was checked")

    monkeypatch.setattr(rlport.verify.fingerprint, "record_fingerprint", never)
    output = tmp_path if where == "directory" else tmp_path / "missing" / "fp.json"
    assert main([*FINGERPRINT, "-o", str(output)]) == 2
    err = capsys.readouterr().err
    assert ("is a directory" if where == "directory" else "does not exist; create it first") in err


# ---- rlport pack ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def bundle_path(tmp_path_factory) -> Path:
    from stable_baselines3 import PPO

    import rlport

    path = tmp_path_factory.mktemp("outputs") / "cartpole.rlp"
    model = PPO("MlpPolicy", "CartPole-v1", policy_kwargs={"net_arch": [8]}, device="cpu", seed=0)
    rlport.from_sb3(model, env_id="CartPole-v1", fingerprint=False, evaluate=0, probes=4).save(path)
    return path


def _previous_pack(bundle_path: Path, folder: Path) -> dict[str, bytes]:
    from rlport.deploy import pack

    out = pack(bundle_path, folder / "out")
    (out / "requirements.txt").write_text("the previous pack\n")
    return {p.relative_to(out).as_posix(): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}


def _contents(out: Path) -> dict[str, bytes]:
    return {p.relative_to(out).as_posix(): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}


def test_pack_onto_a_full_disk_keeps_the_previous_pack(bundle_path, tmp_path, monkeypatch, capsys):
    before = _previous_pack(bundle_path, tmp_path)
    monkeypatch.setattr(shutil, "copytree", full_disk)
    assert main(["pack", str(bundle_path), "-o", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "rlport pack: cannot write the pack" in err and "free some disk space" in err
    assert "any previous pack there is unchanged" in err
    assert _contents(tmp_path / "out") == before and names(tmp_path) == ["out"]


def test_pack_into_a_read_only_folder_writes_nothing(bundle_path, tmp_path, monkeypatch):
    from rlport.deploy import pack

    monkeypatch.setattr(os, "mkdir", read_only)
    with pytest.raises(BundleError, match="read-only; choose another output folder"):
        pack(bundle_path, tmp_path / "out")
    assert names(tmp_path) == []


def test_pack_whose_swap_fails_puts_the_previous_pack_back(bundle_path, tmp_path, monkeypatch):
    from rlport.deploy import pack

    before = _previous_pack(bundle_path, tmp_path)
    monkeypatch.setattr(Path, "rename", fail_on_call(Path.rename, 2))  # out -> aside works, staging -> out fails
    with pytest.raises(BundleError, match="No space left on device"):
        pack(bundle_path, tmp_path / "out")
    assert _contents(tmp_path / "out") == before and names(tmp_path) == ["out"]


def test_pack_removes_staging_folders_of_killed_packs(bundle_path, tmp_path):
    from rlport.deploy import pack

    stale = _fake_temp(tmp_path / "out", _dead_pid(), folder=True)
    pack(bundle_path, tmp_path / "out")
    assert not stale.exists() and names(tmp_path) == ["out"]


def test_a_killed_pack_in_a_subprocess_leaves_the_previous_pack(bundle_path, tmp_path):
    before = _previous_pack(bundle_path, tmp_path)
    marker = tmp_path.parent / f"{tmp_path.name}-marker"
    script = textwrap.dedent("""
        import shutil, sys, time
        from pathlib import Path
        from rlport.deploy import pack

        def stall(*args, **kwargs):
            Path(sys.argv[3]).write_text("copying")
            time.sleep(60)

        shutil.copytree = stall
        pack(sys.argv[1], sys.argv[2])
    """)
    child = subprocess.Popen([sys.executable, "-c", script, str(bundle_path), str(tmp_path / "out"), str(marker)])
    try:
        deadline = time.monotonic() + 30
        while not marker.exists() and time.monotonic() < deadline and child.poll() is None:
            time.sleep(0.02)
        assert marker.exists(), "the child never reached the copy"
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    assert _contents(tmp_path / "out") == before
    assert len(names(tmp_path)) == 2, "the killed pack's staging folder is there until the next pack"
    _previous_pack(bundle_path, tmp_path)
    assert names(tmp_path) == ["out"]
