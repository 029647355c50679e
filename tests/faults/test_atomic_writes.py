"""Every writer is atomic, and a full disk or a permission error is reported with the path.

- A writer killed (SIGKILL) in the middle of writing leaves nothing at the target path
  (or the previous complete version), only a hidden temporary sibling; the rerun works.
  The child process writes half of its bytes, tells the parent, and is killed there:
  the kill lands mid-write every time, not by luck of timing.
- ENOSPC on a real small filesystem (a 256 KiB tmpfs, where the test may mount one) and
  ENOSPC/EACCES injected at the file layer (``os.fsync`` / ``os.replace``): a WriteError
  naming the path and the cause; the previous complete artifact intact; the rerun completes.
- A static check: no module of the package writes an artifact except through
  ``valuedrift.atomic`` (the lead's report.py/paper_tables.py/pipeline.py are listed in
  docs/reliability.md and excluded here until they are moved over).
"""

from __future__ import annotations

import errno
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import polars as pl
import pytest

from valuedrift import atomic, tables
from valuedrift.cache import DiskCache, cache_key

REPO = Path(__file__).resolve().parents[2]
SRC = REPO / "src" / "valuedrift"


def stance_frame(n: int = 50) -> pl.DataFrame:
    return pl.DataFrame({"question_id": [f"q{i}" for i in range(n)], "sample": list(range(n)),
                         "p_support": [0.5] * n, "p_neutral": [0.25] * n, "p_oppose": [0.25] * n,
                         "option_mass": [0.9] * n, "scorable": [True] * n})


# -- kill -9 mid-write --------------------------------------------------------------------

CHILD = textwrap.dedent("""
    import io, os, sys, time
    from pathlib import Path
    import polars as pl
    from valuedrift import atomic, tables
    from valuedrift.cache import DiskCache

    kind, target, ready = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])

    def stall(path, data: bytes):
        # write half, make it durable, tell the parent, wait to be killed
        with open(path, "wb") as fh:
            fh.write(data[: len(data) // 2]); fh.flush(); os.fsync(fh.fileno())
        ready.write_text(str(path))
        time.sleep(60)

    if kind == "table":
        real_write_parquet = pl.DataFrame.write_parquet
        def slow_parquet(self, path, *a, **k):
            buf = io.BytesIO()
            real_write_parquet(self, buf)
            stall(path, buf.getvalue())
        pl.DataFrame.write_parquet = slow_parquet
        df = pl.DataFrame({"question_id": ["q1"], "sample": [0], "p_support": [0.5], "p_neutral": [0.25],
                           "p_oppose": [0.25], "option_mass": [0.9], "scorable": [True]})
        tables.write(df, target, "stances")
    else:
        def slow_write_bytes(target_, data):
            with atomic.atomic_path(target_) as tmp:
                stall(tmp, data)
        atomic.write_bytes = slow_write_bytes
        if kind == "cache":
            DiskCache(target).put("ab" * 32, {"text": "x" * 10000})
        elif kind == "json":
            atomic.write_json(target, {"x": "y" * 10000})
        elif kind == "dir":
            with atomic.atomic_dir(target) as tmp:
                (tmp / "model.safetensors").write_bytes(b"w" * 10000)
                ready.write_text(str(tmp)); time.sleep(60)
""")


def kill_mid_write(kind: str, target: Path, tmp_path: Path) -> Path:
    """Run the child until it is halfway through its write, then kill -9 it; the temp path."""
    ready = tmp_path / f"ready-{kind}"
    ready.unlink(missing_ok=True)
    proc = subprocess.Popen([sys.executable, "-c", CHILD, kind, str(target), str(ready)],
                            env={**os.environ, "PYTHONPATH": str(REPO / "src")})
    try:
        for _ in range(600):
            if ready.exists() and ready.read_text():
                break
            if proc.poll() is not None:
                raise AssertionError(f"writer exited early with {proc.returncode}")
            time.sleep(0.05)
        else:
            raise AssertionError("writer never reached the middle of its write")
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    return Path(ready.read_text())


@pytest.mark.parametrize("kind", ["table", "cache", "json", "dir"])
def test_writer_killed_mid_write_leaves_no_file_at_the_target(kind, tmp_path):
    target = {"table": tmp_path / "out" / "stances.parquet", "cache": tmp_path / "cache",
              "json": tmp_path / "out" / "accounting.json", "dir": tmp_path / "out" / "checkpoint-2"}[kind]
    partial = kill_mid_write(kind, target, tmp_path)
    assert partial.exists() and partial.name.startswith(".")  # the half-written file is hidden
    if kind == "cache":
        cache = DiskCache(target)
        assert not cache.path("ab" * 32).exists() and cache.get("ab" * 32) is None
        cache.put("ab" * 32, {"text": "ok"})  # the rerun
        assert cache.get("ab" * 32) == {"text": "ok"}
    else:
        assert not target.exists()
        if kind == "table":  # the rerun writes a whole, valid table
            tables.write(stance_frame(1), target, "stances")
            assert tables.read(target, "stances").height == 1


def test_killed_rewrite_keeps_the_previous_complete_version(tmp_path):
    target = tmp_path / "out" / "stances.parquet"
    tables.write(stance_frame(3), target, "stances")
    before = target.read_bytes()
    kill_mid_write("table", target, tmp_path)
    assert target.read_bytes() == before


# -- disk full / permission denied --------------------------------------------------------

def _raise(err: int):
    def fail(*args, **kwargs):
        raise OSError(err, os.strerror(err))
    return fail


@pytest.mark.parametrize("err,where", [(errno.ENOSPC, "fsync"), (errno.EACCES, "replace"), (errno.EDQUOT, "fsync")])
def test_injected_write_errors_name_the_path_and_keep_the_old_table(err, where, tmp_path, monkeypatch):
    target = tmp_path / "results" / "stances.parquet"
    tables.write(stance_frame(3), target, "stances")
    before = target.read_bytes()
    with monkeypatch.context() as m:
        m.setattr(os, where, _raise(err))
        with pytest.raises(atomic.WriteError) as info:
            tables.write(stance_frame(5), target, "stances")
    msg = str(info.value)
    assert str(target) in msg and os.strerror(err) in msg and info.value.errno == err
    assert "rerun" in msg
    assert target.read_bytes() == before
    assert [p.name for p in target.parent.iterdir()] == [target.name]  # no temp file left behind
    tables.write(stance_frame(5), target, "stances")  # space freed / permission fixed: the rerun works
    assert tables.read(target, "stances").height == 5


def test_injected_errors_in_the_cache_and_a_checkpoint_folder(tmp_path, monkeypatch):
    cache = DiskCache(tmp_path / "cache")
    key = cache_key({"q": 1})
    cache.put(key, {"text": "old"})
    ckpt = tmp_path / "run" / "checkpoint-2"
    with atomic.atomic_dir(ckpt) as d:
        (d / "model.safetensors").write_bytes(b"old weights")
    with monkeypatch.context() as m:
        m.setattr(os, "replace", _raise(errno.EACCES))
        with pytest.raises(atomic.WriteError, match=re.escape(str(cache.path(key))) + ".*Permission denied"):
            cache.put(key, {"text": "new"})
        with pytest.raises(atomic.WriteError, match=re.escape(str(ckpt)) + ".*Permission denied"):
            with atomic.atomic_dir(ckpt) as d:
                (d / "model.safetensors").write_bytes(b"new weights")
    assert cache.get(key) == {"text": "old"}
    assert (ckpt / "model.safetensors").read_bytes() == b"old weights"
    assert sorted(p.name for p in ckpt.parent.iterdir()) == ["checkpoint-2"]
    cache.put(key, {"text": "new"})
    assert cache.get(key) == {"text": "new"}


@pytest.fixture
def small_fs(tmp_path):
    """A real 256 KiB tmpfs (needs root and mount rights; skipped elsewhere)."""
    mnt = tmp_path / "small"
    mnt.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mnt)],
                                           capture_output=True).returncode != 0:
        pytest.skip("cannot mount a small tmpfs here (not root or no mount rights)")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", str(mnt)], check=True)


def test_real_disk_full_while_writing_a_table_the_cache_and_a_checkpoint(small_fs):
    table = small_fs / "stances.parquet"
    tables.write(stance_frame(3), table, "stances")
    cache = DiskCache(small_fs / "cache")
    cache.put(cache_key(1), {"text": "small"})
    ballast = small_fs / "ballast"
    # fill the disk up completely
    fd = os.open(ballast, os.O_WRONLY | os.O_CREAT)
    try:
        while True:
            os.write(fd, b"\0" * 4096)
    except OSError as exc:
        assert exc.errno == errno.ENOSPC
    finally:
        os.close(fd)
    before = table.read_bytes()
    big = stance_frame(20000)
    with pytest.raises(atomic.WriteError, match=re.escape(str(table)) + ".*No space left on device.*ENOSPC"):
        tables.write(big, table, "stances")
    with pytest.raises(atomic.WriteError, match="No space left"):
        cache.put(cache_key(2), {"text": "z" * 100_000})
    with pytest.raises(atomic.WriteError, match=re.escape(str(small_fs / "checkpoint-4")) + ".*No space"):
        with atomic.atomic_dir(small_fs / "checkpoint-4") as d:
            (d / "model.safetensors").write_bytes(b"w" * 100_000)
    assert table.read_bytes() == before and cache.get(cache_key(1)) == {"text": "small"}
    assert not (small_fs / "checkpoint-4").exists()
    assert sorted(p.name for p in small_fs.iterdir()) == ["ballast", "cache", "stances.parquet"]
    ballast.unlink()  # space freed: the rerun completes
    tables.write(big, table, "stances")
    cache.put(cache_key(2), {"text": "z" * 100_000})
    assert tables.read(table, "stances").height == 20000 and cache.get(cache_key(2))


# -- every writer goes through valuedrift.atomic ------------------------------------------

LEAD_OWNED: set[str] = set()
WRITE_CALL = re.compile(r"(?<!atomic)\.(write_parquet|write_csv|write_text|write_bytes|write_ndjson|write_json)\((?!\))|"
                        r"\bnp\.save\(|\btorch\.save\(|json\.dump\(|open\([^)]*['\"][wa]b?['\"]")
# writes into a folder that is published by a rename afterwards (segment/lora/ppo work dirs)
INSIDE_UNPUBLISHED_FOLDER = {("training/segment.py", "segment_info_in")}


def test_every_writer_in_the_package_is_atomic():
    offenders = []
    for path in sorted(SRC.rglob("*.py")):
        rel = path.relative_to(SRC).as_posix()
        if rel in LEAD_OWNED or rel == "atomic.py":
            continue
        for lineno, line in enumerate(path.read_text().splitlines(), start=1):
            code = line.split("#", 1)[0]
            if WRITE_CALL.search(code) and "tmp" not in code and "buf" not in code \
                    and not any(rel == f and marker in code for f, marker in INSIDE_UNPUBLISHED_FOLDER):
                offenders.append(f"{rel}:{lineno}: {line.strip()}")
    assert not offenders, "writers not going through valuedrift.atomic:\n" + "\n".join(offenders)
