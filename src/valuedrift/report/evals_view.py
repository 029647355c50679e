"""The report's sections for the downstream evals (Table 17) and the sample tables (Tables 5-8).

Each view reads only the table files it is given (the report rule's inputs ``evals`` and
``samples``: the CSV, Markdown and LaTeX files of each table) and returns None when the study
has no such table, so the page leaves the section out.
"""

from __future__ import annotations

from typing import Any

from .. import evals, sample_tables
from .sections import Section, register


def _by_ext(files: list[str]) -> dict[str, str]:
    return {f.rsplit(".", 1)[-1]: f for f in files}


def evals_view(files: list[str], links) -> dict[str, Any] | None:
    """Table 17: header and rows (model/checkpoint x task), links to its CSV/Markdown/LaTeX."""
    by_ext = _by_ext(files or [])
    if "csv" not in by_ext:
        return None
    header, rows = evals.read_table(by_ext["csv"])
    return {"caption": evals.CAPTION, "header": header, "rows": rows,
            "files": [links(path, ext.upper()) for ext, path in by_ext.items()]}


def samples_view(files: list[str], block: dict[str, Any], links, decimals: int = 2) -> dict[str, Any] | None:
    """Tables 5-8: per topic and question, the checkpoints' responses beside their stance probabilities."""
    by_ext = _by_ext(files or [])
    if "csv" not in by_ext:
        return None
    return {"caption": sample_tables.CAPTION, "header": sample_tables.HEADER,
            "topics": sample_tables.read_view(by_ext["csv"], block, decimals),
            "files": [links(path, ext.upper()) for ext, path in by_ext.items()]}


register(Section("evals", "Downstream evals", "evals_section.html.j2",
                 lambda c: evals_view(c.inputs.get("evals"), c.links), before="runs"))
register(Section("samples", "Sample responses", "samples_section.html.j2",
                 lambda c: samples_view(c.inputs.get("samples"), c.options.get("samples") or {}, c.links, c.decimals),
                 before="runs"))
