"""Atomic writers: every artifact is written to a hidden temporary sibling, flushed to disk,
then renamed onto its target. A reader (a later job, a rerun, Snakemake) sees either the
previous complete file or the new complete one, never a half-written file, whatever kills
the writer (kill -9, preemption, a full disk).

- :func:`atomic_path` is the one primitive: ``with atomic_path(target) as tmp: write(tmp)``.
  The temporary file lives in the target's directory (a rename within one directory is
  atomic on POSIX filesystems, NFS included), is hidden, ends in ``.tmp`` and is removed
  when the block fails (a killed writer leaves it behind; it is never read).
- :func:`atomic_dir` does the same for a folder (a model or checkpoint folder).
- Failures of the file layer (ENOSPC, EACCES, EDQUOT, EROFS ...) are re-raised as
  :class:`WriteError` (an ``OSError`` with the same errno) naming the target path, the
  cause and what to do; the previous artifact at the target is left untouched.
"""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

_HINTS = {
    errno.ENOSPC: "the disk is full: free space (or point results/ elsewhere) and rerun",
    errno.EDQUOT: "the disk quota is exceeded: free space and rerun",
    errno.EACCES: "permission denied: make the folder writable for this user and rerun",
    errno.EPERM: "operation not permitted: check the folder's permissions and rerun",
    errno.EROFS: "the filesystem is read-only: write results/ to a writable filesystem",
}


class WriteError(OSError):
    """Writing an artifact failed; the message names the path, the cause and the fix."""


def _explain(exc: OSError, target: Path) -> WriteError:
    cause = exc.strerror or str(exc)
    hint = _HINTS.get(exc.errno or 0, "the previous version of the file, if any, is intact; rerun once fixed")
    name = errno.errorcode.get(exc.errno or 0, "error")
    return WriteError(exc.errno or 0, f"cannot write {target}: {cause} [{name}]; {hint}")


def _wrapped_os_error(exc: Exception) -> OSError | None:
    """The OS error inside a library's own exception (polars/arrow report a full disk as
    ``ComputeError: ... No space left on device (os error 28)``)."""
    match = re.search(r"os error (\d+)", str(exc))
    if match is None:
        return None
    code = int(match.group(1))
    return OSError(code, os.strerror(code))


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:  # not supported by every filesystem; the rename itself is what matters
        pass
    finally:
        os.close(fd)


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def temp_sibling(target: str | os.PathLike) -> Path:
    """A fresh hidden name next to ``target`` (same directory), created empty. It ends in
    ``.tmp``, not in the target's suffix, so that nothing globbing for ``*.json`` or
    ``*.parquet`` ever picks up a temporary file a killed writer left behind."""
    target = Path(target)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    return Path(tmp)


@contextmanager
def atomic_path(target: str | os.PathLike, *, mode: int = 0o644) -> Iterator[Path]:
    """Yield a temporary path to write; on success it replaces ``target`` atomically."""
    target = Path(target)
    tmp: Path | None = None
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = temp_sibling(target)
        yield tmp
        _fsync_file(tmp)
        os.chmod(tmp, mode)
        os.replace(tmp, target)
        tmp = None
        _fsync_dir(target.parent)
    except WriteError:
        raise
    except OSError as exc:
        raise _explain(exc, target) from exc
    except Exception as exc:
        os_error = _wrapped_os_error(exc)
        if os_error is None:
            raise
        raise _explain(os_error, target) from exc
    finally:
        if tmp is not None:
            try:
                os.unlink(tmp)
            except OSError:
                pass


def write_bytes(target: str | os.PathLike, data: bytes) -> None:
    with atomic_path(target) as tmp, open(tmp, "wb") as fh:
        fh.write(data)


def write_text(target: str | os.PathLike, text: str) -> None:
    write_bytes(target, text.encode("utf-8"))


def write_json(target: str | os.PathLike, obj: Any, **dumps_kwargs: Any) -> None:
    dumps_kwargs.setdefault("indent", 2)
    write_text(target, json.dumps(obj, **dumps_kwargs))


def write_parquet(df, target: str | os.PathLike) -> None:
    """A polars DataFrame as Parquet."""
    with atomic_path(target) as tmp:
        df.write_parquet(tmp)


def write_csv(df, target: str | os.PathLike) -> None:
    """A polars DataFrame as CSV."""
    with atomic_path(target) as tmp:
        df.write_csv(tmp)


def save_npy(target: str | os.PathLike, array) -> None:
    import numpy as np

    with atomic_path(target) as tmp, open(tmp, "wb") as fh:
        np.save(fh, array)


SPACE_ERRORS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS})


@contextmanager
def writing(target: str | os.PathLike) -> Iterator[None]:
    """Around a writer that is not ours (the HF Trainer saving a checkpoint into a work
    folder): a full disk, an exceeded quota or a read-only filesystem, however the library
    reports it, becomes a WriteError naming ``target``. Other errors pass unchanged."""
    target = Path(target)
    try:
        yield
    except WriteError:
        raise
    except Exception as exc:
        os_error = exc if isinstance(exc, OSError) else _wrapped_os_error(exc) or _failed_write_on_full_disk(exc, target)
        if os_error is None or os_error.errno not in SPACE_ERRORS:
            raise
        raise _explain(os_error, target) from exc


def _failed_write_on_full_disk(exc: Exception, target: Path) -> OSError | None:
    """torch.save on a full disk says only "file write failed", "unexpected pos ..." or
    "basic_ios::clear: iostream error": believed when the disk is (nearly) full indeed."""
    text = str(exc).lower()
    if not any(s in text for s in ("write failed", "unexpected pos", "iostream error")):
        return None
    existing = next((p for p in (target, *target.parents) if p.exists()), None)
    if existing is not None and shutil.disk_usage(existing).free < 16 * 1024 * 1024:
        return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    return None


@contextmanager
def atomic_dir(target: str | os.PathLike) -> Iterator[Path]:
    """Yield an empty temporary folder next to ``target``; on success it takes the
    target's place (an old folder there is moved aside first, then deleted)."""
    target = Path(target)
    tmp: Path | None = None
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
        yield tmp
        publish_dir(tmp, target)
        tmp = None
    except WriteError:
        raise
    except OSError as exc:
        raise _explain(exc, target) from exc
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


def publish_dir(built: str | os.PathLike, target: str | os.PathLike) -> None:
    """Rename the complete folder ``built`` onto ``target`` (same parent directory). An
    existing target is renamed aside before and deleted after, so at every instant the
    target is either absent, the old complete folder, or the new complete one."""
    built, target = Path(built), Path(target)
    for f in built.rglob("*"):
        if f.is_file():
            _fsync_file(f)
    old = None
    if target.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".old", dir=target.parent))
        try:
            os.replace(target, old / target.name)
        except OSError:
            shutil.rmtree(old, ignore_errors=True)
            raise
    try:
        os.replace(built, target)
    except OSError:
        if old is not None:  # put the previous complete folder back
            os.replace(old / target.name, target)
            shutil.rmtree(old, ignore_errors=True)
        raise
    _fsync_dir(target.parent)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
