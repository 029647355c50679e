"""Content-addressed on-disk cache for LLM calls (judging, V-PRISM, synthetic data).

Key = sha256 of the canonical JSON (sorted keys, no whitespace, UTF-8) of everything
that determines the answer: model, the full request, the settings. Value = a JSON
object. One file per entry, sharded ``<root>/<k[:2]>/<k[2:4]>/<k>.json``, so a
directory never holds more than a few thousand files even for millions of entries.

Safe under concurrent SLURM jobs on a shared filesystem: an entry is written to a
unique temporary file in its final directory, fsynced, then ``os.replace``d into
place (``valuedrift.atomic``; atomic on POSIX, also on NFS for a rename within one
directory). Readers see either no entry or a whole one; two jobs writing the same key
write the same content and the last rename wins.

An entry carries the sha256 of its value. An entry that is unreadable, truncated (e.g.
by a filesystem crash or a copy cut short), filed under another key or whose value does
not match its checksum is never trusted: it counts as a miss (logged with its path), the
call is made again and the next put overwrites it. Nothing is ever deleted by this module.

Never put secrets in a key or a value: entries are plain files.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
from pathlib import Path
from typing import Any

from . import atomic

log = logging.getLogger(__name__)

DEFAULT_CACHE_DIR = "results/cache/llm"
FORMAT = 1  # bump when the meaning of keys/values changes; old entries are then ignored


def canonical_json(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def _value_digest(value: Any) -> str:
    return hashlib.sha256(canonical_json(value).encode("utf-8")).hexdigest()


def cache_key(obj: Any) -> str:
    """Hex sha256 of the canonical JSON of ``obj`` (plus the cache format version)."""
    return hashlib.sha256(canonical_json({"format": FORMAT, "key": obj}).encode("utf-8")).hexdigest()


class DiskCache:
    """A directory of JSON entries addressed by :func:`cache_key`; thread-safe counters."""

    def __init__(self, root: str | os.PathLike = DEFAULT_CACHE_DIR):
        self.root = Path(root)
        self.hits = 0
        self.misses = 0
        self.writes = 0
        self._lock = threading.Lock()

    def path(self, key: str) -> Path:
        return self.root / key[:2] / key[2:4] / f"{key}.json"

    def get(self, key: str) -> Any | None:
        """The stored value, or None (a miss)."""
        value = self.peek(key)
        with self._lock:
            if value is None:
                self.misses += 1
            else:
                self.hits += 1
        return value

    def peek(self, key: str) -> Any | None:
        """Like :meth:`get` without touching the counters."""
        path = self.path(key)
        try:
            with open(path, encoding="utf-8") as fh:
                entry = json.load(fh)
        except (FileNotFoundError, NotADirectoryError):
            return None
        except (OSError, ValueError) as exc:  # torn or foreign file: never trusted
            log.warning("cache entry %s is unreadable (%s); recomputing it", path, type(exc).__name__)
            return None
        if not isinstance(entry, dict) or entry.get("key") != key or "value" not in entry:
            log.warning("cache entry %s is not an entry for its key; recomputing it", path)
            return None
        value = entry["value"]
        if "sha256" in entry and entry["sha256"] != _value_digest(value):
            log.warning("cache entry %s fails its checksum; recomputing it", path)
            return None
        return value

    def put(self, key: str, value: Any) -> None:
        """Store ``value`` (JSON-serialisable) atomically."""
        data = json.dumps({"key": key, "value": value, "sha256": _value_digest(value)},
                          ensure_ascii=False, allow_nan=False)
        atomic.write_text(self.path(key), data)
        with self._lock:
            self.writes += 1

    def __contains__(self, key: str) -> bool:
        return self.peek(key) is not None

    def stats(self) -> dict[str, int | str]:
        with self._lock:
            return {"cache_dir": str(self.root), "cache_hits": self.hits, "cache_misses": self.misses,
                    "cache_writes": self.writes}


def open_cache(cfg: dict[str, Any] | None = None) -> DiskCache | None:
    """The cache of a config section: ``cache_dir`` (default ``results/cache/llm``, relative
    to the working directory); ``cache_dir: null`` or ``""`` turns caching off."""
    cfg = cfg or {}
    root = cfg.get("cache_dir", DEFAULT_CACHE_DIR)
    return DiskCache(root) if root else None


_FINGERPRINTS: dict[tuple, str] = {}


def fingerprint_dir(path: str | os.PathLike) -> str:
    """sha256 over the relative names and contents of every file under ``path`` (a model
    folder): the identity of a local model in cache keys. Hidden files are skipped.
    Memoised per process on (name, size, mtime) of the files."""
    root = Path(path)
    files = sorted(p for p in root.rglob("*") if p.is_file() and not any(
        part.startswith(".") for part in p.relative_to(root).parts))
    if not files:
        raise FileNotFoundError(f"no files under {root}")
    stamp = (str(root.resolve()), *((str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in files))
    if stamp not in _FINGERPRINTS:
        digest = hashlib.sha256()
        for p in files:
            digest.update(p.relative_to(root).as_posix().encode() + b"\0")
            with open(p, "rb") as fh:
                digest.update(hashlib.file_digest(fh, "sha256").digest())
        _FINGERPRINTS[stamp] = digest.hexdigest()
    return _FINGERPRINTS[stamp]
