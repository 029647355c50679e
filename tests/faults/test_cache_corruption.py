"""A damaged cache entry is detected, named in the log, recomputed and overwritten; it is
never returned as a result. Real calls on the tiny model (TransformersChatClient), counted.
"""

from __future__ import annotations

import json
import logging

from valuedrift.cache import DiskCache
from valuedrift.llm import ChatRequest, TransformersChatClient, user

REQUESTS = [ChatRequest(user(f"Question {i}: is it good?"), max_tokens=3, top_logprobs=5) for i in range(4)]


def _entry_files(root):
    return sorted(p for p in root.rglob("*.json"))


def _damage(files):
    truncated, bad_checksum, foreign, emptied = files
    truncated.write_bytes(truncated.read_bytes()[:-15])  # a copy or write cut short
    entry = json.loads(bad_checksum.read_text())
    entry["value"]["text"] = "tampered"  # valid JSON, wrong content
    bad_checksum.write_text(json.dumps(entry))
    other = json.loads(foreign.read_text())
    other["key"] = "0" * 64  # a file filed under the wrong name
    foreign.write_text(json.dumps(other))
    emptied.write_bytes(b"")
    return {truncated, bad_checksum, foreign, emptied}


def test_damaged_entries_are_recomputed_not_trusted(tiny_model, tmp_path, caplog):
    cache = DiskCache(tmp_path / "cache")
    first = TransformersChatClient(tiny_model, cache=cache, progress=False)
    want = first.complete(REQUESTS)
    assert first.accounting()["calls"] == len(REQUESTS)
    files = _entry_files(tmp_path / "cache")
    assert len(files) == len(REQUESTS)
    damaged = _damage(files)

    again = TransformersChatClient(tiny_model, cache=DiskCache(tmp_path / "cache"), progress=False)
    with caplog.at_level(logging.WARNING, logger="valuedrift.cache"):
        got = again.complete(REQUESTS)
    acct = again.accounting()
    assert acct["calls"] == len(damaged) and acct["cache_hits"] == 0  # every damaged entry recomputed
    assert [g.text for g in got] == [w.text for w in want]  # and nothing tampered came back
    assert [g.first_token_logprobs for g in got] == [w.first_token_logprobs for w in want]
    logged = caplog.text
    for path in damaged:
        assert str(path) in logged  # each bad entry is named
    assert "fails its checksum" in logged and "unreadable" in logged

    third = TransformersChatClient(tiny_model, cache=DiskCache(tmp_path / "cache"), progress=False)
    assert [r.text for r in third.complete(REQUESTS)] == [w.text for w in want]
    assert third.accounting()["calls"] == 0  # the rewritten entries are whole again
