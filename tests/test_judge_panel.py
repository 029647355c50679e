"""Judge panel agreement, option-mass tables and the human review round trip, on real files."""

from __future__ import annotations

import csv
import json

import numpy as np
import polars as pl
import pytest

from valuedrift import tables
from valuedrift.human_review import export_sheet, read_back
from valuedrift.judge_panel import agreement, option_mass_table
from valuedrift.topics import STANCES

TOPICS = ["abortion", "immigration"]
MODELS = ["m/base", "m/sft-x/checkpoint-2"]


@pytest.fixture
def study(tmp_path):
    """Questions, generations of two models, and three judges: 'a', 'same' (a's copy), 'flip' (differs)."""
    qs = pl.DataFrame({"question_id": [f"q{i}" for i in range(6)], "category": ["c"] * 6,
                       "question": [f"question {i}?" for i in range(6)], "topic": [TOPICS[i % 2] for i in range(6)]})
    tables.write(qs, tmp_path / "questions.parquet", "questions")
    rng = np.random.default_rng(0)
    gens, files = {}, {"a": {}, "same": {}, "flip": {}}
    for m, model in enumerate(MODELS):
        g = pl.DataFrame({"question_id": qs["question_id"].to_list() * 2, "sample": [0] * 6 + [1] * 6,
                          "prompt": ["p"] * 12, "response": [f"response {m}-{i}" for i in range(12)],
                          "n_tokens": [3] * 12})
        gens[model] = str(tmp_path / f"gen{m}.parquet")
        g.write_parquet(gens[model])
        p = rng.dirichlet([1, 1, 1], size=12)
        flipped = p[:, ::-1].copy()
        flipped[:2] = p[:2]  # the flip judge agrees on the first two responses only
        mass = np.linspace(0.2, 0.9, 12)
        for name, probs in (("a", p), ("same", p), ("flip", flipped)):
            t = g.select("question_id", "sample").with_columns(
                *[pl.Series(f"p_{s}", probs[:, k]) for k, s in enumerate(STANCES)],
                pl.Series("option_mass", mass), pl.lit(True).alias("scorable"))
            if name == "flip" and m == 0:  # one unscorable response: left out of that pair
                t = t.with_columns(*[pl.when(pl.col("question_id") == "q5").then(None).otherwise(pl.col(c)).alias(c)
                                     for c in ("p_support", "p_neutral", "p_oppose")],
                                   (pl.col("question_id") != "q5").alias("scorable"))
            files[name][model] = str(tmp_path / f"{name}-{m}.parquet")
            tables.write(t, files[name][model], "stances")
    return tmp_path, gens, files


def test_agreement_per_topic_and_most_disagreed(study):
    tmp, gens, files = study
    table = agreement(files, str(tmp / "questions.parquet"), tmp / "agreement.csv", tmp / "disagree.csv", gens, top=5)
    assert table.equals(pl.read_csv(tmp / "agreement.csv", schema=table.schema))
    same = table.filter((pl.col("judge_a") == "a") & (pl.col("judge_b") == "same"))
    assert set(same["topic"]) == {"all", *TOPICS}
    assert (same["kappa"] == 1.0).all() and (same["prob_correlation"] - 1).abs().max() < 1e-12
    assert (same["mean_tv_distance"] == 0).all() and same.filter(pl.col("topic") == "all")["n"].item() == 24
    flip = table.filter((pl.col("judge_a") == "a") & (pl.col("judge_b") == "flip") & (pl.col("topic") == "all"))
    assert flip["n"].item() == 22  # 2 responses unscorable for 'flip' (q5, both samples, model 0)
    assert flip["kappa"].item() < 0.5 and flip["mean_tv_distance"].item() > 0
    worst = pl.read_csv(tmp / "disagree.csv")
    assert len(worst) == 5 and worst["max_tv_distance"].is_sorted(descending=True)
    assert worst["response"].str.starts_with("response ").all() and worst["question"].str.ends_with("?").all()
    assert {"a:stance", "flip:p_support", "same:p_oppose"} <= set(worst.columns)
    with pytest.raises(ValueError, match="at least two judges"):
        agreement({"a": files["a"]}, str(tmp / "questions.parquet"), tmp / "x.csv", tmp / "y.csv", gens)


def test_option_mass_distribution_per_model(study):
    tmp, _, files = study
    table = option_mass_table(files["a"], tmp / "mass.csv", floor=0.5)
    overall = table.filter(pl.col("model") == "all").row(0, named=True)
    assert overall["n"] == 24 and overall["min"] == pytest.approx(0.2) and overall["max"] == pytest.approx(0.9)
    assert overall["below_floor"] == pytest.approx(np.mean(np.linspace(0.2, 0.9, 12) < 0.5))
    assert set(table["model"]) == {"all", *MODELS}


def test_human_review_round_trip(study):
    tmp, gens, files = study
    out = {k: tmp / "review" / f for k, f in (("sheet", "sheet.csv"), ("form", "form.html"), ("key", "key.csv"))}
    export_sheet(generations=gens, questions=str(tmp / "questions.parquet"), n=10, seed=0,
                 sheet=str(out["sheet"]), form=str(out["form"]), key=str(out["key"]))
    sheet = pl.read_csv(out["sheet"], infer_schema=False)
    assert sheet.columns == ["item", "topic", "question", "response", "label"] and len(sheet) == 10
    assert sheet["label"].fill_null("").eq("").all()
    # blind: no model, checkpoint or judge output in what the reviewer sees
    assert "model" not in sheet.columns and "checkpoint" not in out["form"].read_text()
    html = out["form"].read_text()
    assert html.count('type="radio"') == 10 * 4 and "Download filled sheet" in html and "new Blob" in html
    key = pl.read_csv(out["key"])
    assert key.columns == ["item", "model", "question_id", "sample"] and key["item"].to_list() == sheet["item"].to_list()

    # a reviewer who agrees with judge 'a' on all but the last item, and skips one
    a = pl.concat([tables.read(p, "stances").with_columns(pl.lit(m).alias("model")) for m, p in files["a"].items()])
    truth = key.join(a, on=["model", "question_id", "sample"], how="left", maintain_order="left")
    labels = [STANCES[int(np.argmax(r))] for r in truth.select("p_support", "p_neutral", "p_oppose").to_numpy()]
    labels[-1] = next(s for s in STANCES if s != labels[-1])
    labels[0] = "unclear"
    filled = tmp / "filled.csv"
    with open(filled, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["item", "topic", "question", "response", "label"])
        for row, label in zip(sheet.iter_rows(), labels):
            writer.writerow([*row[:4], label.upper() if label == "oppose" else label])
    result = read_back(filled=str(filled), key=str(out["key"]), stance_files=files, output=str(tmp / "human.csv"))
    by_judge = {r["judge"]: r for r in result.to_dicts()}
    assert by_judge["a"]["n"] == 9 and by_judge["a"]["unclear"] == 1
    assert by_judge["a"]["accuracy"] == pytest.approx(8 / 9)
    assert by_judge["same"]["accuracy"] == by_judge["a"]["accuracy"]
    assert by_judge["flip"]["accuracy"] < by_judge["a"]["accuracy"]
    bad = tmp / "bad.csv"
    bad.write_text("item,label\nitem-001,maybe\n")
    with pytest.raises(ValueError, match="item-001: label 'maybe'"):
        read_back(filled=str(bad), key=str(out["key"]), stance_files=files, output=str(tmp / "h.csv"))
