"""Reading the judge's answer: option letters and their log-probabilities.

The judge prompt (paper Figure 8) lists "(A) support", "(B) neutral", "(C) oppose" and
asks for the option. The stance distribution is the softmax over the log-probabilities
of the three letters (paper Section 3). Both judge backends read the letters here:

* ``option_letter``: the option a token stands for. Tokenizers spell a letter in many
  ways -- "A", " A", "(A", "A)", "\\nA", "**A**", "▁A" (sentencepiece), "ĠA" (byte-level
  BPE, undecoded) -- and every variant counts.
* ``options_from_top_logprobs``: the three log-probabilities at one answer position,
  variants merged by log-sum-exp (an API lists only its top-k alternatives).
* ``read_options``: an API model may start its answer with "(", a space or a newline
  before the letter. The letters are read at the first answer position whose emitted
  token is an option letter (within the few tokens asked for); failing that, at the
  first position whose alternatives list any letter. The reading records the position
  used and the probability mass the three options held there.

No judge module imports another: ``judge`` (local backend, stance table) and
``openai_judge`` (API backend) both import from here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

from .prompts import OPTION_LETTERS

OptionLogprobs = tuple[float, float, float] | None

# Characters around a letter that still make a token read as that option: "(A", "A)",
# " A", "**A**", "A.", "[A]", "▁A" (sentencepiece), "ĠA"/"Ċ" (byte-level BPE, undecoded).
_OPTION_PREFIX = " \t\n\r([*\"'`“‘▁ĠĊ"
_OPTION_SUFFIX = " \t\n\r)]*.:,\"'`”’ĊĠ"


def option_letter(token: str, letters: Sequence[str] = OPTION_LETTERS) -> str | None:
    """The option a token stands for ("A", " A", "(A", "A)", "\\nA", ...), or None.

    Only the upper-case letter counts: a lower-case "a" is far more often the article."""
    core = token.lstrip(_OPTION_PREFIX).rstrip(_OPTION_SUFFIX)
    return core if core in letters else None


def logsumexp(values: Sequence[float]) -> float:
    top = max(values)
    if top == -math.inf:
        return top
    return top + math.log(sum(math.exp(v - top) for v in values))


def options_from_top_logprobs(pairs: Sequence[Sequence]) -> tuple[OptionLogprobs, tuple[str, ...]]:
    """Option log-probabilities from one position's top alternatives ((token, logprob) pairs).

    Variants of one letter are merged by log-sum-exp. Returns the three log-probabilities
    and the letters that were missing from the list. A missing option gets the smallest
    listed log-probability: its true value is at most that (the list is the top-k), so
    this is an upper bound -- it never calls a possible option impossible, and the error
    it introduces is below the probability of the k-th alternative. None if no option
    is listed at all (unscorable).
    """
    found: dict[str, list[float]] = {letter: [] for letter in OPTION_LETTERS}
    finite = [float(lp) for _, lp in pairs if lp is not None and math.isfinite(lp)]
    for token, lp in pairs:
        letter = option_letter(token) if isinstance(token, str) else None
        if letter is not None and lp is not None and math.isfinite(lp):
            found[letter].append(float(lp))
    missing = tuple(letter for letter in OPTION_LETTERS if not found[letter])
    if len(missing) == len(OPTION_LETTERS):
        return None, missing
    floor = min(finite)
    return tuple(logsumexp(found[letter]) if found[letter] else floor for letter in OPTION_LETTERS), missing


def option_mass(logprobs: OptionLogprobs) -> float | None:
    """Probability the three options held together (1 = the answer was surely a letter)."""
    if logprobs is None:
        return None
    return min(1.0, sum(math.exp(x) for x in logprobs))


def stance_distribution(logprobs: OptionLogprobs) -> tuple[float, float, float, float] | None:
    """Softmax over the three options, plus the probability mass they held (coverage)."""
    if logprobs is None or not all(math.isfinite(x) for x in logprobs):
        return None
    top = max(logprobs)
    exps = [math.exp(x - top) for x in logprobs]
    total = sum(exps)
    return exps[0] / total, exps[1] / total, exps[2] / total, option_mass(logprobs)


@dataclass(frozen=True)
class OptionReading:
    """The options read from one answer: at ``position`` (0 = first answer token)."""

    logprobs: OptionLogprobs
    position: int | None  # None: no position listed any option (unscorable)
    missing: tuple[str, ...]  # letters not among that position's alternatives
    mass: float | None  # probability of the three options at that position
    rule: str  # "emitted": the token emitted there is a letter; "listed": only among the alternatives


def read_options(positions: Sequence[Sequence[Any]]) -> OptionReading:
    """Options of an answer from its positions, each ``(token, logprob, top_pairs)``.

    The first position whose emitted token is an option letter is read ("(" then "A":
    position 1); if the model emitted no letter within the positions given, the first
    position whose alternatives list one (the old first-token reading, now with its
    option mass on record so a low-mass reading is visible)."""
    for rule in ("emitted", "listed"):
        for i, (token, _, pairs) in enumerate(positions):
            if rule == "emitted" and not (isinstance(token, str) and option_letter(token)):
                continue
            logprobs, missing = options_from_top_logprobs(pairs or [])
            if logprobs is not None:
                return OptionReading(logprobs, i, missing, option_mass(logprobs), rule)
    return OptionReading(None, None, tuple(OPTION_LETTERS), None, "none")
