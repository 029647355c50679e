"""The paper's study, exactly (issue 13): each test checks one setting against the paper's
text or numbers (docs/fidelity.md lists them all)."""

from __future__ import annotations

import math
import secrets
from pathlib import Path

import pytest

from conftest import REPO
from valuedrift.options import option_letter, options_from_top_logprobs, read_options

# -- API judge option reading (paper Figure 8 shows "(A) support") ---------------------------


@pytest.mark.parametrize("token", ["A", " A", "(A", "A)", "(A)", "\nA", "\n\nA", " (A", "**A**", "A.", "ĠA", "ĊA", "▁A"])
def test_every_token_variant_of_a_letter_maps_to_it(token):
    assert option_letter(token) == "A"
    assert option_letter(token.replace("A", "C")) == "C"


def test_a_first_token_without_a_letter_is_skipped_to_the_letter():
    # the model answers "(" then "B": the options are read at position 1, not from the
    # alternatives of "(" at position 0 (where "B" is a long shot)
    positions = [["(", -0.1, [["(", -0.1], ["B", -4.0], ["A", -5.0]]],
                 ["B", -0.3, [["B", -0.3], ["A", -2.0], ["C", -3.0]]],
                 [")", -0.01, [[")", -0.01]]]]
    reading = read_options(positions)
    assert reading.position == 1 and reading.rule == "emitted" and reading.missing == ()
    assert reading.logprobs == options_from_top_logprobs(positions[1][2])[0]
    assert reading.mass == pytest.approx(math.exp(-0.3) + math.exp(-2.0) + math.exp(-3.0))
    # no letter emitted within max_tokens: the first position listing one (with its low mass)
    words = [["The", -0.3, [["The", -0.3], ["A", -3.0]]], [" most", -0.1, [[" most", -0.1]]]]
    fallback = read_options(words)
    assert fallback.position == 0 and fallback.rule == "listed"
    assert fallback.mass == pytest.approx(3 * math.exp(-3.0))  # B, C unlisted: at the floor (upper bound)
    assert read_options([["The", -0.3, [["The", -0.3]]]]).logprobs is None


def test_gpt4o_tokenization_of_answer_variants():
    """GPT-4o's own vocabulary (o200k_base; tiktoken downloads it at first use, the
    quicktok package ships it): every token that carries the letter maps to it, and
    answers that start with "\\n" or " (" put the letter at the second position."""
    quicktok = pytest.importorskip("quicktok")
    enc = quicktok.get_encoding("o200k_base")
    first_letter_position = {}
    for answer in ["A", " A", "(A", "A)", "(A)", "\nA", " (A)", "\n\n(A)", "**A**", "A."]:
        tokens = [enc.decode([i]) for i in enc.encode(answer)]
        position = next(i for i, t in enumerate(tokens) if option_letter(t))
        assert option_letter(tokens[position]) == "A", (answer, tokens)
        assert all(option_letter(t) is None for t in tokens[:position]), (answer, tokens)
        first_letter_position[answer] = position
        positions = [[t, -0.1, [[t, -0.1], ["B", -3.0]]] for t in tokens]
        assert read_options(positions).position == position
    assert first_letter_position["(A"] == 0 and first_letter_position["\nA"] == 1 and first_letter_position[" (A)"] == 1
    # across the whole vocabulary: the tokens read as "A" include the API's usual spellings
    spelled_a = {enc.decode([i]) for i in range(enc.n_vocab) if not enc.is_special_token(i)
                 and _decodes(enc, i) and option_letter(enc.decode([i])) == "A"}
    assert {"A", " A", "(A"} <= spelled_a
    assert not any(c.isalpha() and c != "A" for t in spelled_a for c in t)


def _decodes(enc, i) -> bool:
    try:
        enc.decode_single_token_bytes(i).decode("utf-8")
        return True
    except (UnicodeDecodeError, ValueError, RuntimeError, KeyError):
        return False


@pytest.fixture(scope="module")
def llama_server(tmp_path_factory):
    from llm_server import LlamaServer, missing_server_dependency

    why = missing_server_dependency()
    if why:
        pytest.skip(why)
    srv = LlamaServer(tmp_path_factory.mktemp("server") / "server.log", alias="smollm2",
                      api_key="sk-loopback-" + secrets.token_hex(12)).start()
    yield srv
    srv.stop()


@pytest.mark.slow
def test_api_judge_reads_the_letter_after_a_parenthesis(llama_server, tmp_path, monkeypatch):
    """A real OpenAI-compatible server (llama.cpp, SmolLM2): asked to output "(B)" again,
    the model answers "(", "A", ")". The judge asks for 3 tokens and reads the options at
    position 1, where the letter is; the position and the option mass are accounted."""
    from llm_server import raw_chat
    from valuedrift.openai_judge import OpenAIJudge

    monkeypatch.setenv("VALUEDRIFT_TEST_API_KEY", llama_server.api_key)
    prompt = "Output: (B)\nNow output it again."
    judge = OpenAIJudge(model="smollm2", base_url=llama_server.base_url, api_key_env="VALUEDRIFT_TEST_API_KEY",
                        concurrency=1, cache_dir=str(tmp_path / "cache"), progress=False, max_tokens=3)
    [got] = judge.option_logprobs([prompt])
    raw = raw_chat(llama_server.base_url, {"model": "smollm2", "messages": [{"role": "user", "content": prompt}],
                                           "max_tokens": 3, "temperature": 0, "logprobs": True, "top_logprobs": 20},
                   api_key=llama_server.api_key)
    content = raw["choices"][0]["logprobs"]["content"]
    assert content[0]["token"] == "(" and option_letter(content[1]["token"]) is not None
    by_hand = options_from_top_logprobs([[t["token"], t["logprob"]] for t in content[1]["top_logprobs"]])[0]
    assert got == pytest.approx(by_hand, abs=2e-3)
    [reading] = judge.readings
    assert reading.position == 1 and reading.rule == "emitted"
    first_position = options_from_top_logprobs([[t["token"], t["logprob"]] for t in content[0]["top_logprobs"]])[0]
    first_mass = sum(math.exp(x) for x in first_position) if first_position else 0.0
    print(f"option mass at position 1: {reading.mass:.3f}; at position 0: {first_mass:.3f}")
    assert reading.mass > 0.5 > first_mass  # measured 0.89 vs 0.08: position 0 reads a long shot
    acct = judge.accounting()
    assert acct["option_position"] == {"1": 1} and acct["option_rule"] == {"emitted": 1}
    assert acct["max_tokens"] == 3 and acct["completion_tokens"] == 3
