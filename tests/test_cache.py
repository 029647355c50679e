"""The content-addressed on-disk LLM cache (valuedrift.cache)."""

from __future__ import annotations

import json
import multiprocessing as mp
import os

import pytest

from valuedrift.cache import DiskCache, cache_key, canonical_json, fingerprint_dir, open_cache


def test_key_is_canonical_and_content_addressed():
    a = {"model": "m", "request": {"messages": [{"role": "user", "content": "é?"}], "temperature": 0.0}}
    b = {"request": {"temperature": 0.0, "messages": [{"content": "é?", "role": "user"}]}, "model": "m"}
    assert cache_key(a) == cache_key(b)
    assert len(cache_key(a)) == 64 and int(cache_key(a), 16) >= 0
    assert canonical_json(a) == canonical_json(b)
    for changed in ({**a, "model": "m2"}, {**a, "request": {**a["request"], "temperature": 0.7}},
                    {**a, "request": {**a["request"], "messages": [{"role": "user", "content": "e?"}]}}):
        assert cache_key(changed) != cache_key(a)
    with pytest.raises(ValueError):
        cache_key({"x": float("nan")})  # not JSON: refuse rather than hash something ambiguous


def test_put_get_sharded_atomic_and_counted(tmp_path):
    cache = DiskCache(tmp_path / "c")
    key = cache_key({"q": 1})
    assert cache.get(key) is None
    cache.put(key, {"text": "A", "top_logprobs": [["A", -0.1]]})
    assert cache.get(key) == {"text": "A", "top_logprobs": [["A", -0.1]]}
    path = cache.path(key)
    assert path == tmp_path / "c" / key[:2] / key[2:4] / f"{key}.json"
    assert json.loads(path.read_text())["key"] == key
    assert not [p for p in path.parent.iterdir() if p.name.endswith(".tmp")]  # no temp files left
    cache.put(key, {"text": "B"})  # overwrite is atomic too
    assert cache.get(key) == {"text": "B"}
    assert cache.stats()["cache_hits"] == 2 and cache.stats()["cache_misses"] == 1
    assert cache.stats()["cache_writes"] == 2
    assert key in cache and cache_key({"q": 2}) not in cache


def test_torn_or_foreign_entries_are_misses(tmp_path):
    cache = DiskCache(tmp_path)
    key = cache_key("torn")
    cache.path(key).parent.mkdir(parents=True)
    cache.path(key).write_text('{"key": "' + key + '", "val')  # e.g. a crash on a non-atomic FS
    assert cache.get(key) is None
    other = cache_key("other")
    cache.path(key).write_text(json.dumps({"key": other, "value": 1}))  # entry of another key
    assert cache.get(key) is None
    cache.put(key, 5)
    assert cache.get(key) == 5


def _writer(root: str, worker: int, n: int) -> None:
    cache = DiskCache(root)
    for i in range(n):
        # every worker writes the same keys (as concurrent SLURM jobs judging the same
        # responses would) with a large value, to widen any window for torn writes
        cache.put(cache_key({"i": i}), {"i": i, "pad": "x" * 20000, "by": worker})
        for j in range(i + 1):
            value = cache.get(cache_key({"i": j}))
            assert value is not None and value["i"] == j and len(value["pad"]) == 20000


def test_concurrent_processes_never_see_partial_entries(tmp_path):
    ctx = mp.get_context("fork")
    procs = [ctx.Process(target=_writer, args=(str(tmp_path), w, 25)) for w in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
    assert [p.exitcode for p in procs] == [0, 0, 0, 0]
    cache = DiskCache(tmp_path)
    assert all(cache.get(cache_key({"i": i}))["i"] == i for i in range(25))
    leftovers = [p for p in tmp_path.rglob("*") if p.is_file() and not p.name.endswith(".json")]
    assert leftovers == []
    assert sum(1 for _ in tmp_path.rglob("*.json")) == 25


def test_open_cache_config(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert str(open_cache({}).root) == "results/cache/llm"
    assert open_cache({"cache_dir": str(tmp_path / "x")}).root == tmp_path / "x"
    assert open_cache({"cache_dir": None}) is None


def test_fingerprint_dir_tracks_content(tmp_path):
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "config.json").write_text("{}")
    (tmp_path / "m" / "model.safetensors").write_bytes(b"\0" * 1000)
    first = fingerprint_dir(tmp_path / "m")
    assert fingerprint_dir(tmp_path / "m") == first
    (tmp_path / "m" / ".hidden").write_text("ignored")
    assert fingerprint_dir(tmp_path / "m") == first
    (tmp_path / "m" / "model.safetensors").write_bytes(b"\1" * 1000)
    os.utime(tmp_path / "m" / "model.safetensors", ns=(1, 1))
    assert fingerprint_dir(tmp_path / "m") != first
