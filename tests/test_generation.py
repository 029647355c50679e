"""The transformers generation backend: its own decode loop against transformers' generate."""

from __future__ import annotations

import pytest
import torch

from valuedrift.generation import SamplingSettings, TransformersGenerator, sample_next

PROMPTS = ["Question: Should the death penalty be abolished?\nResponse:", "Is immigration good?\nResponse:",
           "Tell me about taxes.\nResponse:", "Why?\nResponse:", "What do you think of guns?\nResponse:"]


@pytest.fixture(scope="module")
def generator(tiny_model):
    return TransformersGenerator(tiny_model, dtype="float32", batch_size=2)


def test_greedy_decoding_equals_transformers_generate(generator):
    """Prefill once, left padding, position ids, KV cache repeated per sample: none of it
    changes a token (greedy, so both must pick the same argmax at every step)."""
    tok, model = generator.tokenizer, generator.model
    ours = generator.generate(PROMPTS, SamplingSettings(samples=1, temperature=0, max_new_tokens=12))
    for prompt, [(text, n)] in zip(PROMPTS, ours):
        enc = tok([prompt], return_tensors="pt", add_special_tokens=False)
        with torch.inference_mode():
            ref = model.generate(**enc, do_sample=False, max_new_tokens=12, pad_token_id=tok.pad_token_id)
        ref_ids = ref[0, enc["input_ids"].shape[1]:].tolist()
        cut = next((i for i, t in enumerate(ref_ids) if t in generator.eos_ids), len(ref_ids))
        assert n == cut and text == tok.decode(ref_ids[:cut], skip_special_tokens=True)


def test_finished_rows_leave_the_batch_without_changing_the_others(generator):
    """A row that ends early is dropped from the batch and the KV cache; every other row
    samples exactly what it samples when nobody ends (the cache selection is right)."""
    tok = generator.tokenizer
    enc = tok(PROMPTS[:3], return_tensors="pt", padding=True, add_special_tokens=False)
    s = SamplingSettings(samples=2, temperature=1.0, max_new_tokens=12)
    eos_ids = generator.eos_ids
    try:
        generator.eos_ids = [-1]  # nothing ends
        with torch.inference_mode():
            full = generator._decode(enc, s, torch.Generator().manual_seed(0))
        stop = full[0][4]  # a token some rows emit mid-way now ends them
        generator.eos_ids = [stop]
        with torch.inference_mode():
            early = generator._decode(enc, s, torch.Generator().manual_seed(0))
    finally:
        generator.eos_ids = eos_ids
    assert len(early[0]) <= 4
    for f, e in zip(full, early):
        cut = f.index(stop) if stop in f else len(f)
        assert e == f[:cut]
    assert any(len(e) == 12 for e in early), "no row outlived the early ones"


def test_sampling_is_seeded(generator):
    s = SamplingSettings(samples=3, temperature=0.7, max_new_tokens=10, seed=5)
    first = generator.generate(PROMPTS, s)
    assert first == generator.generate(PROMPTS, s)  # each batch has its own seeded generator
    assert all(len(samples) == 3 for samples in first)
    assert all(0 <= n <= 10 for samples in first for _, n in samples)
    assert len({text for samples in first for text, _ in samples}) > len(PROMPTS)  # samples differ
    assert first != generator.generate(PROMPTS, SamplingSettings(samples=3, temperature=0.7, max_new_tokens=10, seed=6))


def test_inverse_cdf_sampling_draws_from_the_softmax():
    logits = torch.tensor([[2.0, 1.0, 0.0, -1.0, -30.0]]).repeat(20000, 1)
    rng = torch.Generator().manual_seed(0)
    uniform = lambda: torch.rand(len(logits), generator=rng)  # noqa: E731
    draws = sample_next(logits, 1.0, 1.0, uniform())
    freq = torch.bincount(draws, minlength=5).float() / len(draws)
    assert torch.allclose(freq, torch.softmax(logits[0], -1), atol=0.012)
    assert freq[4] == 0
    # temperature sharpens; nucleus (top_p) keeps the smallest set reaching the mass
    cold = torch.bincount(sample_next(logits, 0.5, 1.0, uniform()), minlength=5).float() / len(draws)
    assert torch.allclose(cold, torch.softmax(logits[0] / 0.5, -1), atol=0.012)
    nucleus = sample_next(logits, 1.0, 0.8, uniform())  # p = .64, .24, .09, ...: {0, 1} reach 0.8
    assert set(nucleus.tolist()) == {0, 1}
    p01 = torch.softmax(logits[0], -1)[:2]
    assert (nucleus == 0).float().mean().item() == pytest.approx((p01[0] / p01.sum()).item(), abs=0.012)
    assert sample_next(logits[:3], 0.0, 1.0, uniform()[:3]).tolist() == [0, 0, 0]
