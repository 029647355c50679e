"""The report's "Judge quality" section, at the top of the page (before the summary).

Every drift number is only as good as the judge that read the stances, so the report opens with
how each configured judge (the primary ``judge`` and the panel ``judges``) measured on the authored
validation set: accuracy and macro-F1 beside chance, the floor and its verdict, the confusion
matrix, expected calibration error and per-topic accuracy; the option-mass distribution of its
stances; how a trained judge was trained (for a distilled one: agreement with its teacher on
held-out responses and the teacher calls saved); with a panel, agreement per topic and the most
disagreed responses; the human review sheet and, once filled, human-judge agreement.

The view reads only the files of the report rule's input ``judges`` (``judge_specs.report_files``:
empty unless ``judge_validation.enabled``, and then the section is left out) and lays out what
``valuedrift.judge_report`` computes from them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .. import judge_report, paths
from ..topics import STANCES
from .sections import Section, register

MAX_CHARS = 300  # a disagreed response is cut here on the page (the CSV keeps it whole)
TOP_DISAGREED = 10


def _r(value: Any, decimals: int) -> Any:
    return round(value, decimals) if isinstance(value, float) else value


def verdict(row: dict[str, Any]) -> str:
    """The floor check in words: passes / accepted below the floor."""
    if row.get("passes_floor") is None:
        return "not checked"
    return "passes" if row["passes_floor"] else "below the floor, accepted by the config"


def primary_quality(files: list[str] | None) -> dict[str, Any] | None:
    """The primary judge's validation headline (for the caveat at the top): None if not measured."""
    metrics = paths.judge_validation_metrics(paths.PRIMARY_JUDGE)
    if metrics not in {str(f) for f in files or []}:
        return None
    m = json.loads(Path(metrics).read_text())
    return {"description": m["description"], **{k: m["overall"][k] for k in
                                                ("n", "accuracy", "macro_f1", "chance_macro_f1", "chance_accuracy")}}


def judges_view(files: list[str] | None, links, decimals: int = 2) -> dict[str, Any] | None:
    """Per judge: validation headline, floor verdict, confusion matrix, per-topic metrics, option mass,
    training; the panel's agreement and most disagreed responses; the human review sheet."""
    have = [str(f) for f in files or []]
    present = set(have)
    # judges in the order the study configures them (the primary first): from their metrics files
    names = [json.loads(Path(f).read_text())["judge"] for f in have if Path(f).name == "metrics.json"]
    names = [n for n in names if paths.judge_validation_metrics(n) in present]
    if not names:
        return None
    floors = {n: paths.judge_floor_check(n) for n in names if paths.judge_floor_check(n) in present}
    headline = judge_report.validation_section({n: paths.judge_validation_metrics(n) for n in names}, floors)
    mass_files = {n: paths.judge_option_mass(n) for n in names if paths.judge_option_mass(n) in present}
    mass = {r["judge"]: r for r in judge_report.option_mass_section(mass_files).to_dicts()} if mass_files else {}
    judges = []
    for row in headline.to_dicts():
        name = row["judge"]
        confusion = judge_report.validation_confusion(paths.judge_validation_metrics(name))
        topics = judge_report.validation_topics(paths.judge_validation_topics(name))
        view = {"name": name, "role": "the study's judge, whose stances feed every drift number"
                if name == paths.PRIMARY_JUDGE else "panel judge, scoring the same responses",
                "description": row["description"], "verdict": verdict(row),
                "passes": row.get("passes_floor"), "n": row["n"],
                "headline": [[name, row["n"], _r(row["accuracy"], 3), _r(row["chance_accuracy"], 3),
                              _r(row["macro_f1"], 3), _r(row["chance_macro_f1"], 3),
                              _r(row["min_macro_f1"], 3) if row["min_macro_f1"] is not None else None,
                              verdict(row), _r(row["ece"], 3) if row["ece"] is not None else None,
                              "yes" if row["calibration_used"] else "no"]],
                "confusion": [[truth, *[confusion[truth][p] for p in STANCES], confusion[truth]["unscorable"]]
                              for truth in STANCES],
                "topics": [[t["topic"], t["n"], _r(t["accuracy"], 3), _r(t["macro_f1"], 3),
                            _r(t["ece"], 3) if t["ece"] is not None else None]
                           for t in topics.iter_rows(named=True) if t["topic"] != "all"],
                "files": [links(paths.judge_validation_metrics(name)), links(paths.judge_validation_topics(name))],
                "mass": None, "trained": None}
        if name in mass:
            m = mass[name]
            view["mass"] = [[_r(m.get(k), 3) for k in ("n", "mean", "min", "p05", "median", "max")]
                            + [_r(m.get("below_floor"), 3), m.get("unscorable")]]
            view["files"].append(links(paths.judge_option_mass(name)))
        report = paths.judge_classifier_report(name)
        if report in present:
            t = judge_report.trained_judge_section(report)
            h = t["headline"]
            chosen = t["chosen"]
            view["trained"] = {"source": h["source"], "headline": h, "chosen": {k: _r(v, 3) for k, v in chosen.items()},
                               "seconds": t["train_seconds"]}
            view["files"].append(links(report))
        judges.append(view)
    out: dict[str, Any] = {"judges": judges, "panel": None, "review": None,
                           "validation_file": headline["validation_file"][0]}
    if paths.panel_agreement() in present and paths.panel_disagreements() in present:
        panel = judge_report.panel_section(paths.panel_agreement(), paths.panel_disagreements(), top=TOP_DISAGREED)
        agreement = [[r["topic"], f"{r['judge_a']} / {r['judge_b']}", r["n"], _r(r["kappa"], 3),
                      _r(r["agreement"], 3), _r(r["prob_correlation"], 3), _r(r["mean_tv_distance"], 3)]
                     for r in panel["agreement"].iter_rows(named=True)]
        stance_cols = [c for c in panel["disagreements"].columns if c.endswith(":stance")]
        disagreed = [[r["topic"], r["model"], r["question"], _cut(r["response"]), _r(r["max_tv_distance"], 3),
                      *[r[c] for c in stance_cols]] for r in panel["disagreements"].iter_rows(named=True)]
        out["panel"] = {"agreement": agreement, "disagreed": disagreed,
                        "disagreed_header": ["topic", "model", "question", "response", "max TV distance",
                                             *[c.split(":")[0] for c in stance_cols]],
                        "files": [links(paths.panel_agreement()), links(paths.panel_disagreements())]}
    if paths.human_review_sheet() in present:
        review = {"sheet": links(paths.human_review_sheet(), "blind sheet (CSV)"),
                  "form": links(paths.human_review_form(), "labelling form (HTML)")
                  if paths.human_review_form() in present else None, "agreement": None}
        if paths.human_review_agreement() in present:
            table = judge_report.human_review_section(paths.human_review_agreement())
            review["header"] = table.columns
            review["agreement"] = [[_r(v, 3) for v in row] for row in table.iter_rows()]
            review["link"] = links(paths.human_review_agreement())
        out["review"] = review
    return out


def _cut(text: str | None) -> str:
    text = text or ""
    return text if len(text) <= MAX_CHARS else text[:MAX_CHARS].rstrip() + " …"


register(Section("judges", "Judge quality", "judges_section.html.j2",
                 lambda c: judges_view(c.inputs.get("judges"), c.links, c.decimals), before="summary"))
