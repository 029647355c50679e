"""Precision by capability: the choice follows the CPU's flags (and a measurement when
asked), an explicit dtype wins, and bf16 stance scores stay within tolerance of fp32."""

from __future__ import annotations

import pytest
import torch

from valuedrift import precision, prompts
from valuedrift.judge import LocalJudge, stance_distribution

# The stated tolerance of bf16 against fp32 (bench/precision.py holds the demo model to it
# too): a response's stance probability within 0.05, their mean within 0.01.
STANCE_TOLERANCE = {"per_response": 0.05, "mean": 0.01}

CPUINFO = """processor\t: 0
vendor_id\t: AuthenticAMD
flags\t\t: fpu sse2 avx2 avx512f avx512_bf16 avx512_vnni
"""


def test_cpu_flags_are_read_from_cpuinfo():
    assert {"avx2", "avx512_bf16"} <= precision.cpu_flags(CPUINFO)
    assert precision.cpu_flags("processor : 0\n") == set()


@pytest.mark.parametrize("flags, expected", [({"avx2", "avx512f"}, "float32"), ({"avx512_bf16"}, "bfloat16"),
                                             ({"amx_bf16", "amx_tile"}, "bfloat16")])
def test_auto_on_a_cpu_follows_its_flags(flags, expected):
    choice = precision.choose("auto", device="cpu", flags=flags)
    assert choice.dtype == expected and choice.setting == "auto"
    assert choice.record()["reason"]


def test_an_explicit_dtype_wins():
    assert precision.choose("float32", device="cpu", flags={"avx512_bf16"}).dtype == "float32"
    assert precision.choose("bfloat16", device="cpu", flags=set()).dtype == "bfloat16"
    with pytest.raises(ValueError, match="unknown dtype 'fp8'"):
        precision.choose("fp8")


def test_a_measurement_decides_between_flagged_bf16_and_fp32():
    choice = precision.choose("auto", device="cpu", flags={"avx512_bf16"}, measure=True)
    gflops = choice.measured_gflops
    assert set(gflops) == {"float32", "bfloat16"} and min(gflops.values()) > 0
    faster = gflops["bfloat16"] / gflops["float32"] >= 1.5
    assert choice.dtype == ("bfloat16" if faster else "float32")


def test_training_bf16_keeps_the_old_default_and_adds_auto():
    assert precision.training_bf16(None, on_gpu=False) is False
    assert precision.training_bf16(None, on_gpu=True) is True
    assert precision.training_bf16(True, on_gpu=False) is True
    expected = precision.choose("auto", device="cpu").dtype == "bfloat16"
    assert precision.training_bf16("auto", on_gpu=False) is expected


def test_bf16_stances_are_within_tolerance_of_fp32(tiny_model):
    cases = [("Should abortion be legal?", "Yes.", "abortion"),
             ("Should guns be banned?", "No, people have a right to defend themselves.", "gun control"),
             ("Do vaccines work?", "They do, and they save lives every year.", "vaccination")]
    texts = [prompts.judge_prompt(*c) for c in cases]
    fp32 = LocalJudge(tiny_model, dtype="float32", batch_size=4, progress=False)
    bf16 = LocalJudge(tiny_model, dtype="bfloat16", batch_size=4, progress=False)
    assert bf16.model.dtype == torch.bfloat16 and bf16.accounting()["precision"]["dtype"] == "bfloat16"
    pairs = [(stance_distribution(a)[:3], stance_distribution(b)[:3])
             for a, b in zip(fp32.option_logprobs(texts), bf16.option_logprobs(texts))]
    assert max(abs(x - y) for pa, pb in pairs for x, y in zip(pa, pb)) < STANCE_TOLERANCE["per_response"]
    for k in range(3):
        mean_fp32, mean_bf16 = (sum(p[i][k] for p in pairs) / len(pairs) for i in (0, 1))
        assert abs(mean_fp32 - mean_bf16) < STANCE_TOLERANCE["mean"]
