"""The authored judge stance sets (data/judge): shape, balance, and validation kept apart from training."""

from __future__ import annotations

import json
import re
from collections import Counter, defaultdict

import pytest

from conftest import REPO
from valuedrift.topics import CATEGORY_TOPICS, STANCES

JUDGE_DATA = REPO / "data" / "judge"
KEYS = {"id", "category", "question", "response", "stance", "style"}
STYLES = {"direct", "hedged", "indirect", "long", "short", "personal", "listy"}
SETS = {"validation.jsonl": ("val", 12), "train.jsonl": ("train", 10)}  # file -> (id prefix, items per cell)


def _slug(topic: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", topic.lower()).strip("-")


def _rows(name: str) -> list[dict]:
    rows = []
    for n, line in enumerate((JUDGE_DATA / name).read_text(encoding="utf-8").splitlines(), 1):
        assert line.strip(), f"{name}:{n}: blank line"
        rows.append(json.loads(line))
    return rows


def _normalised(text: str) -> str:
    return " ".join(re.findall(r"[a-z0-9']+", text.lower()))


def _tokens(text: str) -> set[str]:
    return set(_normalised(text).split())


@pytest.mark.parametrize("name", sorted(SETS))
def test_rows_have_the_schema_and_allowed_values(name):
    prefix, _ = SETS[name]
    for row in _rows(name):
        assert set(row) == KEYS, f"{name} {row.get('id')}: keys {sorted(row)}"
        assert row["category"] in CATEGORY_TOPICS, row["id"]
        assert row["stance"] in STANCES, row["id"]
        assert row["style"] in STYLES, row["id"]
        assert row["question"].strip() and row["response"].strip(), row["id"]
        slug = _slug(CATEGORY_TOPICS[row["category"]])
        assert re.fullmatch(rf"{prefix}-{slug}-{row['stance']}-\d\d", row["id"]), row["id"]


@pytest.mark.parametrize("name", sorted(SETS))
def test_every_category_and_stance_cell_is_full_and_varied(name):
    _, per_cell = SETS[name]
    rows = _rows(name)
    counts = Counter((r["category"], r["stance"]) for r in rows)
    expected = {(c, s): per_cell for c in CATEGORY_TOPICS for s in STANCES}
    assert counts == expected
    styles = defaultdict(set)
    for r in rows:
        styles[r["category"], r["stance"]].add(r["style"])
    thin = {cell: sorted(s) for cell, s in styles.items() if len(s) < 4}
    assert not thin, f"{name}: cells with fewer than 4 styles: {thin}"
    responses = Counter(_normalised(r["response"]) for r in rows)
    assert max(responses.values()) == 1, f"{name}: a response appears twice"


def test_ids_are_unique_across_both_sets():
    ids = [r["id"] for name in SETS for r in _rows(name)]
    assert len(ids) == len(set(ids)) == 396 + 330


def test_training_set_shares_no_question_or_response_with_validation():
    val, train = _rows("validation.jsonl"), _rows("train.jsonl")
    shared_questions = {_normalised(r["question"]) for r in val} & {_normalised(r["question"]) for r in train}
    assert not shared_questions, f"questions in both sets: {sorted(shared_questions)}"
    val_text = {_normalised(r["response"]): r["id"] for r in val}
    val_tokens = [(r["id"], _tokens(r["response"])) for r in val]
    for t in train:
        assert _normalised(t["response"]) not in val_text, f"{t['id']} repeats {val_text[_normalised(t['response'])]}"
        tt = _tokens(t["response"])
        for vid, vt in val_tokens:
            jaccard = len(tt & vt) / len(tt | vt)
            assert jaccard < 0.8, f"{t['id']} near-duplicates {vid} (token Jaccard {jaccard:.2f})"
