"""Dataset adapters: the paper's formats (real samples from ../shared/data) and bad rows."""

from __future__ import annotations

import json

import pytest

from conftest import REPO, SHARED_DATA
from valuedrift.datasets import DatasetError, SkipRow, load_rows, normalise_preference, normalise_sft, train_split


def _shared(path):
    p = SHARED_DATA / path
    if not p.exists():
        pytest.skip(f"{p} not available")
    return p


def test_alpaca_rows(tmp_path):
    rows = load_rows({"kind": "sft", "source": "jsonl", "path": str(_shared("alpaca/alpaca_sample.jsonl.gz"))})
    assert len(rows) == 2296
    with_input = [r for r in rows if "\n\n" in r["messages"][0]["content"]]
    assert len(with_input) >= 800  # 859 rows carry an `input`, appended to the instruction
    assert all(r["messages"][-1]["role"] == "assistant" for r in rows)


def test_ultrafeedback_rows():
    rows = load_rows({"kind": "preference", "source": "jsonl",
                      "path": str(_shared("ultrafeedback/train_clean_1000.jsonl.gz"))})
    assert len(rows) == 995  # 4 identical pairs and 1 empty chosen reply: skipped, with a warning
    assert rows[0]["prompt"] == [{"role": "user", "content": "how to cook t-bone in the oven"}]
    assert rows[0]["chosen"].startswith("To cook a delicious T-bone")


def test_hh_rlhf_rows_split_the_shared_prefix():
    rows = load_rows({"kind": "preference", "source": "jsonl", "max_examples": 500,
                      "path": str(_shared("hh_rlhf/harmless-base_test.jsonl.gz"))})
    assert len(rows) == 500
    r = rows[0]
    assert r["prompt"][0]["role"] == "user" and r["prompt"][-1]["role"] == "user"
    assert r["chosen"] != r["rejected"]


def test_authored_demo_data_is_valid():
    assert len(load_rows({"kind": "sft", "source": "jsonl", "path": "data/demo/sft.jsonl"}, REPO)) == 96
    assert len(load_rows({"kind": "preference", "source": "jsonl", "path": "data/demo/preferences.jsonl"}, REPO)) == 72


@pytest.mark.parametrize("line, message", [
    ('{"messages": [{"role": "user", "content": "hi"}]}', "last message must be a non-empty assistant reply"),
    ('{"messages": [{"role": "robot", "content": "hi"}]}', "needs a role in"),
    ('{"text": "hi"}', "an SFT row needs 'messages'"),
    ('not json', "invalid JSON"),
])
def test_malformed_sft_row_names_file_and_row(tmp_path, line, message):
    good = json.dumps({"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]})
    path = tmp_path / "sft.jsonl"
    path.write_text(f"{good}\n{good}\n{line}\n")
    with pytest.raises(DatasetError) as err:
        load_rows({"kind": "sft", "source": "jsonl", "path": str(path)})
    assert f"{path}:3" in str(err.value) and message in str(err.value)


@pytest.mark.parametrize("row, message", [
    ({"prompt": "q", "chosen": "a"}, "needs 'chosen' and 'rejected'"),
    ({"prompt": " ", "chosen": "a", "rejected": "b"}, "empty prompt"),
    ({"chosen": "\n\nHuman: x\n\nAssistant: y", "rejected": "\n\nHuman: z"}, "must end with an assistant turn"),
])
def test_malformed_preference_rows(row, message):
    with pytest.raises(DatasetError, match=message):
        normalise_preference(row, "f.jsonl:7")


def test_identical_pairs_are_skipped_not_fatal():
    with pytest.raises(SkipRow, match="identical"):
        normalise_preference({"prompt": "q", "chosen": "a", "rejected": "a"}, "f.jsonl:7")


def test_alpaca_shape_and_seeded_split():
    row = normalise_sft({"instruction": "Add.", "input": "2+2", "output": "4"}, "x")
    assert row["messages"][0]["content"] == "Add.\n\n2+2"
    rows = [{"i": i} for i in range(100)]
    a, b = train_split(rows, seed=1), train_split(rows, seed=1)
    assert a == b and len(a) == 90 and train_split(rows, seed=2) != a
