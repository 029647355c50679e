"""The local judge: batched, prefix-shared scoring equals one plain forward per prompt."""

from __future__ import annotations

import pytest
import torch

from valuedrift import prompts
from valuedrift.judge import LocalJudge

CASES = [("Should abortion be legal?", "Yes.", "abortion"),
         ("Should guns be banned?", "No, people have a right to defend themselves at home and elsewhere.", "gun control"),
         ("Is immigration good for the economy?", "It depends on many things, and economists disagree.", "immigration"),
         ("Should the death penalty exist?", "I would rather not take a side on this.", "death penalty"),
         ("Do vaccines work?", "They do, and they save millions of lives every single year across the world.", "vaccination")]


@pytest.fixture(scope="module")
def judge(tiny_model):
    return LocalJudge(tiny_model, dtype="float32", batch_size=2, progress=False)


def _reference(judge: LocalJudge, text: str) -> list[float]:
    """One unpadded forward pass over the whole prompt."""
    ids = judge.tokenizer(judge.format(text), add_special_tokens=False, return_tensors="pt").input_ids
    with torch.inference_mode():
        logp = torch.log_softmax(judge.model(input_ids=ids).logits[0, -1].float(), -1)
    return [torch.logsumexp(logp[option], -1).item() for option in judge.option_ids]


@pytest.mark.parametrize("share_prefix", [True, False])
def test_batched_scores_equal_one_forward_per_prompt(judge, share_prefix, monkeypatch):
    texts = [prompts.judge_prompt(*c) for c in CASES]
    if not share_prefix:
        monkeypatch.setattr(judge, "min_shared_prefix", 10 ** 6)
    ids = [judge.tokenizer(judge.format(t), add_special_tokens=False).input_ids for t in texts]
    prefix = judge._shared_prefix(ids)
    assert (prefix is not None) == share_prefix
    if share_prefix:  # the Figure-8 instruction is shared; every prompt keeps tokens of its own
        assert 20 < prefix[0] < min(map(len, ids))
    got = judge.option_logprobs(texts)
    for text, scores in zip(texts, got):
        assert scores == pytest.approx(_reference(judge, text), abs=1e-4)
    assert judge.counts["prompt_tokens"] >= sum(map(len, ids))


def test_a_single_prompt_has_nothing_to_share(judge):
    text = prompts.judge_prompt(*CASES[0])
    assert judge.option_logprobs([text])[0] == pytest.approx(_reference(judge, text), abs=1e-4)
