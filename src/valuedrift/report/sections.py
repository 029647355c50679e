"""Optional report sections: one registry, so a new study block adds a section without editing the page.

A :class:`Section` names the report rule's input it reads (``Study.report_inputs`` key), a view
function that turns those files into the template's data (None: the study has no such result and
the page leaves the section out), its template, and the fixed section it goes before. The page
renders each section's template with the view as the variable named by ``Section.id``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

#: the page's fixed sections, in order: a Section goes before one of them.
FIXED = ("summary", "tables", "figures", "runs", "training", "judge", "config", "artifacts")


@dataclass(frozen=True)
class Context:
    """What every view may read: the rule's named inputs, the link builder, report options."""

    inputs: dict[str, Any]
    links: Any
    options: dict[str, Any]
    decimals: int
    study: dict[str, Any]


@dataclass(frozen=True)
class Section:
    id: str          # HTML id, table-of-contents anchor and the template's variable name
    title: str       # table-of-contents text
    template: str    # in report/templates
    view: Callable[[Context], dict[str, Any] | None]
    before: str      # one of FIXED

    def __post_init__(self):
        if self.before not in FIXED:
            raise ValueError(f"report section {self.id!r}: before={self.before!r} is not one of {FIXED}")


SECTIONS: list[Section] = []


def register(section: Section) -> Section:
    if any(s.id == section.id for s in SECTIONS):
        raise ValueError(f"report section {section.id!r} is registered twice")
    SECTIONS.append(section)
    return section


def build(context: Context) -> list[tuple[Section, dict[str, Any]]]:
    """The registered sections this study has, with their views, in registration order."""
    built = []
    for section in SECTIONS:
        view = section.view(context)
        if view is not None:
            built.append((section, view))
    return built
