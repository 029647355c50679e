"""The vLLM backends: request building and option reading (everywhere), engines (where vllm runs).

The pure parts are checked against the real local judge on the tiny model: the option
log-probabilities read from a {token id: logprob} map, as vLLM returns them, equal the
local judge's one-forward scores. The engine tests need vllm and a CUDA GPU and are
skipped elsewhere (bench/gpu.sh runs them on a GPU machine).
"""

from __future__ import annotations

import importlib
import importlib.util
import math

import pytest
import torch

from valuedrift import prompts
from valuedrift.generation import SamplingSettings
from valuedrift.judge import LocalJudge, stance_distribution
from valuedrift.vllm_backend import (MAX_LOGPROB_TOKEN_IDS, TOP_LOGPROBS, judge_sampling_kwargs, logprob_values,
                                     option_token_ids, options_from_token_logprobs, request_seed,
                                     response_token_count, sampling_kwargs, stop_token_ids,
                                     supports_logprob_token_ids)

CASES = [("Should abortion be legal?", "Yes.", "abortion"),
         ("Should guns be banned?", "No, people have a right to defend themselves.", "gun control"),
         ("Is immigration good for the economy?", "It depends, and economists disagree.", "immigration")]


@pytest.fixture(scope="module")
def judge(tiny_model):
    return LocalJudge(tiny_model, dtype="float32", batch_size=4, progress=False)


def full_logprobs(judge: LocalJudge, text: str) -> torch.Tensor:
    ids = judge.tokenizer(judge.format(text), add_special_tokens=False, return_tensors="pt").input_ids
    with torch.inference_mode():
        return torch.log_softmax(judge.model(input_ids=ids).logits[0, -1].float(), -1)


def test_request_seed_depends_on_the_prompt_and_seed_only():
    a = request_seed(0, "Should abortion be legal?", 5)
    assert a == request_seed(0, "Should abortion be legal?", 5)
    assert a != request_seed(1, "Should abortion be legal?", 5)
    assert a != request_seed(0, "Should guns be banned?", 5)
    assert 0 <= a < 2 ** 32 - 5  # vLLM seeds sample k with seed + k


def test_one_request_per_prompt_carries_all_its_samples():
    sampling = SamplingSettings(samples=5, temperature=0.7, top_p=0.9, max_new_tokens=256, seed=3)
    kw = sampling_kwargs(sampling, "q?", [7, 2])
    assert kw == {"n": 5, "temperature": 0.7, "top_p": 0.9, "max_tokens": 256, "seed": request_seed(3, "q?", 5),
                  "stop_token_ids": [7, 2], "skip_special_tokens": True}


@pytest.mark.parametrize("token_ids, finish, stop, expected", [
    ([5, 6, 2], "stop", None, 2),      # stopped on EOS: vLLM keeps it in token_ids
    ([5, 6, 9], "stop", 9, 2),         # stopped on a stop token id (end of turn)
    ([5, 6, 7], "length", None, 3),    # ran out of max_tokens
    ([5, 6, 7], "stop", "\n\n", 3),    # a stop string leaves no extra token
    ([], "stop", None, 0),
])
def test_response_token_count_excludes_the_stopping_token(token_ids, finish, stop, expected):
    assert response_token_count(token_ids, finish, stop) == expected


def test_stop_tokens_come_from_the_generation_config(judge):
    tok = judge.tokenizer
    assert stop_token_ids(tok, judge.model.generation_config) == [tok.eos_token_id]

    class Chat:  # a chat model's config lists its end-of-turn token beside EOS
        eos_token_id = [tok.eos_token_id, tok.pad_token_id]

    assert stop_token_ids(tok, Chat()) == sorted({tok.eos_token_id, tok.pad_token_id})
    assert stop_token_ids(tok, None) == [tok.eos_token_id]


def test_option_token_ids_are_the_local_judges(judge):
    assert option_token_ids(judge.tokenizer, prompts.OPTION_LETTERS) == judge.option_ids


def test_exact_ids_are_asked_for_when_they_fit():
    kw = judge_sampling_kwargs([[3, 4], [5], [6]], exact=True)
    assert kw["logprob_token_ids"] == [3, 4, 5, 6] and "logprobs" not in kw
    assert kw["max_tokens"] == 1 and kw["temperature"] == 0.0
    many = [list(range(i, MAX_LOGPROB_TOKEN_IDS + 10, 3)) for i in range(3)]
    assert judge_sampling_kwargs(many, exact=True)["logprobs"] == TOP_LOGPROBS
    assert judge_sampling_kwargs([[3], [5], [6]], exact=False)["logprobs"] == TOP_LOGPROBS


def test_exact_option_logprobs_equal_the_local_judge(judge):
    """vLLM with logprob_token_ids returns {id: Logprob} for the sampled token and every
    option token; read by id, the options equal the local judge's one-forward scores."""
    texts = [prompts.judge_prompt(*c) for c in CASES]
    local = judge.option_logprobs(texts)
    for text, expected in zip(texts, local):
        logp = full_logprobs(judge, text)
        sampled = int(logp.argmax())
        returned = {t: logp[t].item() for t in [sampled, *(i for ids in judge.option_ids for i in ids)]}
        got = options_from_token_logprobs(logprob_values(returned), judge.option_ids, exact=True)
        assert got == pytest.approx(expected, abs=1e-4)


def test_top_logprobs_are_read_by_token_id(judge):
    text = prompts.judge_prompt(*CASES[1])
    logp = full_logprobs(judge, text)
    # a top-k list that holds some option tokens but not all (the random model ranks them anywhere)
    ranks = sorted(int((logp > logp[t]).sum()) for ids in judge.option_ids for t in ids)
    top = dict(zip(*(x.tolist() for x in reversed(logp.topk(ranks[0] + 2)))))
    assert any(t not in top for ids in judge.option_ids for t in ids)
    got = options_from_token_logprobs(top, judge.option_ids, exact=False)
    floor = min(top.values())
    for ids, value in zip(judge.option_ids, got):
        listed = [top[t] for t in ids if t in top]
        assert value == pytest.approx(torch.tensor(listed).logsumexp(0).item() if listed else floor, abs=1e-6)
    # an option whose ids are all absent gets the floor, never more than the k-th alternative
    assert options_from_token_logprobs({judge.option_ids[0][0]: -1.0, 999_999: -3.0}, judge.option_ids,
                                       exact=False) == (-1.0, -3.0, -3.0)
    assert options_from_token_logprobs({999_999: -0.1}, judge.option_ids, exact=False) is None


def test_missing_exact_ids_are_an_error(judge):
    with pytest.raises(ValueError, match="no log-probability for option tokens"):
        options_from_token_logprobs({judge.option_ids[0][0]: -1.0}, judge.option_ids, exact=True)


def test_logprob_values_accept_vllm_logprob_objects():
    class Logprob:  # vllm.logprobs.Logprob's shape
        def __init__(self, logprob):
            self.logprob, self.rank, self.decoded_token = logprob, 1, None

    assert logprob_values({3: Logprob(-0.5), 4: -1.5}) == {3: -0.5, 4: -1.5}
    assert logprob_values(None) == {}


def test_logprob_token_ids_support_is_read_from_the_class():
    class Struct:  # msgspec.Struct, as vLLM's SamplingParams
        __struct_fields__ = ("n", "logprobs", "logprob_token_ids")

    class Old:
        def __init__(self, n=1, logprobs=None):
            pass

    assert supports_logprob_token_ids(Struct) and not supports_logprob_token_ids(Old)


# --- vLLM's own classes: wherever vllm imports (no GPU needed) ----------------------------------

def _vllm_module(name: str):
    try:
        return importlib.import_module(name)
    except Exception:  # not installed, or its import chain fails on this machine
        return None


@pytest.mark.skipif(_vllm_module("vllm.sampling_params") is None, reason="vllm is not importable here")
def test_requests_are_valid_vllm_sampling_params(judge):
    from vllm.logprobs import Logprob
    from vllm.sampling_params import SamplingParams

    sampling = SamplingSettings(samples=5, temperature=0.7, top_p=0.95, max_new_tokens=256, seed=1)
    params = SamplingParams(**sampling_kwargs(sampling, "Should abortion be legal?", [2, 7]))
    assert (params.n, params.max_tokens, params.seed) == (5, 256, request_seed(1, "Should abortion be legal?", 5))
    assert params.stop_token_ids == [2, 7]
    assert supports_logprob_token_ids(SamplingParams)
    jp = SamplingParams(**judge_sampling_kwargs(judge.option_ids, exact=True))
    flat = sorted(t for ids in judge.option_ids for t in ids)
    assert jp.logprob_token_ids == flat and jp.num_logprobs == len(flat) and jp.max_tokens == 1
    position = {t: Logprob(logprob=-float(i + 1)) for i, t in enumerate(flat)}
    got = options_from_token_logprobs(logprob_values(position), judge.option_ids, exact=True)
    assert got == pytest.approx([torch.tensor([position[t].logprob for t in ids]).logsumexp(0).item()
                                 for ids in judge.option_ids])


# --- engines: only where vllm imports and a GPU is visible ------------------------------------

needs_vllm = pytest.mark.skipif(importlib.util.find_spec("vllm") is None or not torch.cuda.is_available(),
                                reason="vllm and a CUDA GPU are needed (bench/gpu.sh runs these on a GPU machine)")


@pytest.fixture(scope="module")
def vllm_generator(tiny_model):
    from valuedrift.vllm_backend import VLLMGenerator

    return VLLMGenerator(tiny_model, dtype="float32", gpu_memory_utilization=0.2, max_model_len=1024)


@needs_vllm
@pytest.mark.slow
def test_vllm_generation_is_seeded_and_complete(vllm_generator):
    questions = ["Should abortion be legal?", "Should guns be banned?", "Do vaccines work?"]
    sampling = SamplingSettings(samples=3, temperature=0.7, max_new_tokens=12, seed=0)
    first = vllm_generator.generate(questions, sampling)
    assert [len(s) for s in first] == [3, 3, 3]
    assert all(0 <= n <= 12 for s in first for _, n in s)
    assert vllm_generator.generate(questions, sampling) == first
    # a question's samples do not depend on the other questions in the job
    assert vllm_generator.generate(questions[1:2], sampling)[0] == first[1]


@needs_vllm
@pytest.mark.slow
def test_vllm_judge_equals_the_local_judge(tiny_model, judge, tmp_path):
    from valuedrift.vllm_backend import VLLMJudge

    vj = VLLMJudge(tiny_model, dtype="float32", cache_dir=tmp_path / "cache", progress=False,
                   gpu_memory_utilization=0.2, max_model_len=1024)
    texts = [prompts.judge_prompt(*c) for c in CASES]
    got = vj.option_logprobs(texts)
    assert vj.exact
    for a, b in zip(got, judge.option_logprobs(texts)):
        pa, pb = stance_distribution(a), stance_distribution(b)
        assert all(math.isclose(x, y, abs_tol=2e-3) for x, y in zip(pa[:3], pb[:3]))
    again = vj.option_logprobs(texts)
    assert again == got and vj.counts["cache_hits"] == len(texts)
