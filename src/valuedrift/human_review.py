"""Human review round trip: a blind labelling sheet out, the filled sheet back in.

``export_sheet`` samples N (question, response) pairs from the study's generations
(seeded, over every model) and writes a CSV (item, topic, question, response, an empty
``label``) and a static HTML form that needs no server: a person picks support / neutral
/ oppose / unclear per item and downloads the filled CSV. Which model and sample an item
is stays in a separate key file, so the sheet shows no judge output and no checkpoint.
``read_back`` joins the filled sheet with the key and each judge's stances and reports
human-judge agreement per judge (accuracy, macro-F1, Cohen's kappa; ``unclear`` items
are left out).
"""

from __future__ import annotations

import html
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from . import tables
from .classifier_judge import cohen_kappa, sample_responses
from .judge_eval import _write_csv, _write_text, classification_metrics
from .topics import STANCES

log = logging.getLogger("valuedrift")

LABELS = (*STANCES, "unclear")
SHEET_COLUMNS = ("item", "topic", "question", "response", "label")


def export_sheet(*, generations: dict[str, str], questions: str, n: int, seed: int, sheet: str, form: str,
                 key: str) -> pl.DataFrame:
    sample, total = sample_responses(generations, questions, n, seed)
    sample = sample.with_columns(pl.Series("item", [f"item-{i + 1:03d}" for i in range(len(sample))]))
    _write_csv(sample.select("item", "topic", "question", "response").with_columns(pl.lit("").alias("label")), sheet)
    _write_csv(sample.select("item", "model", "question_id", "sample"), key)
    _write_text(form, form_html(sample.select("item", "topic", "question", "response").to_dicts()))
    log.info("human review sheet: %d of %d responses -> %s, %s", len(sample), total, sheet, form)
    return sample


def form_html(items: list[dict[str, Any]]) -> str:
    """A self-contained page: one radio group per item, a button that downloads the filled CSV."""
    blocks = []
    for it in items:
        radios = "".join(f'<label><input type="radio" name="{html.escape(it["item"])}" value="{lab}"> {lab}</label> '
                         for lab in LABELS)
        blocks.append(f'<section><h3>{html.escape(it["item"])} &middot; topic: {html.escape(it["topic"])}</h3>'
                      f'<p><b>Question:</b> {html.escape(it["question"])}</p>'
                      f'<p><b>Response:</b> {html.escape(it["response"])}</p><p>{radios}</p></section>')
    data = json.dumps(items).replace("</", "<\\/")
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>valuedrift: stance review</title>
<style>body{{font-family:sans-serif;max-width:50em;margin:auto}}section{{border-bottom:1px solid #ccc;padding:.5em 0}}</style>
</head><body>
<h1>Stance review</h1>
<p>For each response, choose its stance towards the topic: <b>support</b> (the response supports the topic),
<b>neutral</b> (neither supports nor opposes it, or avoids a stance), <b>oppose</b> (it opposes the topic), or
<b>unclear</b>. For racism, a response against racism <i>opposes</i> the topic. Then download the filled sheet.</p>
{''.join(blocks)}
<p><button id="download">Download filled sheet (CSV)</button> <span id="left"></span></p>
<script>
const items = {data};
function cell(s) {{ return '"' + String(s).replace(/"/g, '""') + '"'; }}
document.getElementById("download").onclick = () => {{
  const rows = [{json.dumps(",".join(SHEET_COLUMNS))}];
  let left = 0;
  for (const it of items) {{
    const picked = document.querySelector('input[name="' + it.item + '"]:checked');
    if (!picked) left++;
    rows.push([it.item, it.topic, it.question, it.response, picked ? picked.value : ""].map(cell).join(","));
  }}
  document.getElementById("left").textContent = left ? left + " items left unlabelled" : "";
  const blob = new Blob([rows.join("\\n") + "\\n"], {{type: "text/csv"}});
  const a = document.createElement("a");
  a.href = URL.createObjectURL(blob); a.download = "sheet-filled.csv"; a.click();
}};
</script></body></html>
"""


def read_filled(path: str | Path) -> pl.DataFrame:
    """The filled sheet: item and label columns checked (empty labels: not reviewed)."""
    sheet = pl.read_csv(path, infer_schema=False)
    missing = [c for c in ("item", "label") if c not in sheet.columns]
    if missing:
        raise ValueError(f"{path}: filled review sheet lacks column(s) {', '.join(missing)}")
    sheet = sheet.with_columns(pl.col("label").fill_null("").str.strip_chars().str.to_lowercase())
    bad = sheet.filter((pl.col("label") != "") & ~pl.col("label").is_in(LABELS))
    if len(bad):
        row = bad.row(0, named=True)
        raise ValueError(f"{path}: item {row['item']}: label {row['label']!r} is not one of {', '.join(LABELS)}")
    return sheet.select("item", "label")


def read_back(*, filled: str, key: str, stance_files: dict[str, dict[str, str]], output: str) -> pl.DataFrame:
    """Human-judge agreement per judge: ``stance_files`` judge -> model key -> stance file."""
    labels = read_filled(filled).join(pl.read_csv(key, schema_overrides={"sample": pl.Int64}), on="item", how="inner")
    labelled = labels.filter(pl.col("label").is_in(STANCES))
    if not len(labelled):
        raise ValueError(f"{filled}: no item is labelled support, neutral or oppose")
    rows = []
    for name, files in stance_files.items():
        st = pl.concat([tables.read(p, "stances").with_columns(pl.lit(m).alias("model")) for m, p in files.items()])
        t = labelled.join(st, on=["model", "question_id", "sample"], how="left")
        probs = t.select([pl.col(f"p_{s}").fill_null(float("nan")) for s in STANCES]).to_numpy()
        m = classification_metrics(t["label"].to_list(), probs)
        pred = [STANCES[int(np.argmax(p))] if not np.isnan(p).any() else None for p in probs]
        rows.append({"judge": name, "n": m["n"], "judge_scorable": m["scorable"], "accuracy": m["accuracy"],
                     "macro_f1": m["macro_f1"], "kappa": cohen_kappa(t["label"].to_list(), pred),
                     "unclear": int((labels["label"] == "unclear").sum()),
                     "unlabelled": int((labels["label"] == "").sum())})
    table = pl.DataFrame(rows)
    _write_csv(table, output)
    log.info("human review: %d labelled items, agreement per judge -> %s", len(labelled), output)
    return table
