"""The paper's prompts, kept verbatim as package data (one place for all judge prompts).

`judge_stance.txt` is Figure 8 (Appendix A.2): the stance of a response towards a topic.
`dataset_stance.txt` is Figure 18 (Appendix K.1): the stance of a training datapoint.
The figures' box titles are not part of the prompt text; line breaks follow the figures.
"""

from __future__ import annotations

from functools import cache
from importlib.resources import files

# Option letters in the prompt, in the order of topics.STANCES.
OPTION_LETTERS: tuple[str, ...] = ("A", "B", "C")


@cache
def load(name: str) -> str:
    return files(__package__).joinpath(f"{name}.txt").read_text(encoding="utf-8").rstrip("\n")


def judge_prompt(question: str, response: str, topic: str) -> str:
    """Figure 8 with its fields filled in."""
    return load("judge_stance").format(prompt=question, response=response, topic=topic)


def dataset_stance_prompt(conversation: str, topic: str) -> str:
    """Figure 18 with its fields filled in."""
    return load("dataset_stance").format(conversation=conversation, topic=topic)
