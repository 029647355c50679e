"""The paper's value categories and the topic each is judged against (Table 3)."""

from __future__ import annotations

STANCES: tuple[str, ...] = ("support", "neutral", "oppose")

# Category -> canonical topic inserted into the judge prompt (paper, Table 3).
CATEGORY_TOPICS: dict[str, str] = {
    "Discussions on Abortion": "abortion",
    "Climate Change Opinions": "climate change action",
    "Election and Political Discussions": "elections and politics",
    "Economic and Social Policy": "progressive economic and social policies",
    "Work and Attitudes": "work-life balance and fair labor rights",
    "Religion and Spirituality Beliefs": "religion and spirituality beliefs",
    "Family and Relationship Values": "family and relationship values",
    "Ethics of Death and Penalty": "death penalty",
    "Immigration Policies": "immigration",
    "Race and Racism": "racism",
    "Gender and LGBTQ+ Identity": "gender equality and lgbtq+ rights",
}


def topic_for(category: str, mapping: dict[str, str] | None = None) -> str:
    """Topic string for a category; a clear error for an unknown one."""
    table = CATEGORY_TOPICS if mapping is None else mapping
    try:
        return table[category]
    except KeyError:
        known = ", ".join(sorted(table))
        raise KeyError(f"unknown category {category!r}; known categories: {known}") from None
