"""Contextual calibration of an LLM judge's option-letter bias (Zhao et al. 2021).

A small judge prefers some option letter whatever the response says (SmolLM2-135M puts
~0.64 on "A"). Contextual calibration measures that preference on content-free responses
("N/A", "[MASK]", an empty one) and divides it out: p_cal ~ p / p_cf, renormalised (the
argmax equals Zhao et al.'s W = diag(p_cf)^-1). The content-free distribution is
estimated per topic (the topic is written into the options, so the bias differs by
topic), averaged over the three content-free strings and up to three of the topic's own
questions: a fixed ~100 extra judge calls for any number of responses.
"""

from __future__ import annotations

import math
from typing import Sequence

from .judge import OptionLogprobs

CONTENT_FREE_RESPONSES: tuple[str, ...] = ("N/A", "[MASK]", "")
QUESTIONS_PER_TOPIC = 3


def content_free_logprobs(judge, questions: Sequence[str], topics: Sequence[str]) -> dict[str, OptionLogprobs]:
    """Per topic: log of the mean option distribution over content-free responses."""
    from .judge import item_logprobs, stance_distribution

    by_topic: dict[str, list[str]] = {}
    for q, t in zip(questions, topics):
        qs = by_topic.setdefault(t, [])
        if q not in qs:
            qs.append(q)
    items = [(q, cf, t) for t, qs in sorted(by_topic.items()) for q in sorted(qs)[:QUESTIONS_PER_TOPIC]
             for cf in CONTENT_FREE_RESPONSES]
    lps = item_logprobs(judge, [i[0] for i in items], [i[1] for i in items], [i[2] for i in items])
    sums: dict[str, list[float]] = {}
    for (_, _, topic), lp in zip(items, lps):
        dist = stance_distribution(lp)
        if dist is None:
            continue
        acc = sums.setdefault(topic, [0.0, 0.0, 0.0, 0.0])
        for k in range(3):
            acc[k] += dist[k]
        acc[3] += 1
    return {topic: tuple(math.log(max(sums[topic][k] / sums[topic][3], 1e-12)) for k in range(3))
            if topic in sums else None for topic in by_topic}


def calibrate(logprobs: OptionLogprobs, content_free: OptionLogprobs) -> OptionLogprobs:
    """Option log-scores with the content-free preference divided out (softmax renormalises)."""
    if logprobs is None:
        return None
    if content_free is None:
        return logprobs
    return tuple(lp - cf for lp, cf in zip(logprobs, content_free))
