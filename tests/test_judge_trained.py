"""Trained judges on real components: the classifier judge on the authored sets (real
all-MiniLM-L6-v2, real scikit-learn), distillation from a REAL OpenAI-compatible server
(llama.cpp serving SmolLM2 on loopback), and contextual calibration of a real local judge."""

from __future__ import annotations

import json
import math

from pathlib import Path

import numpy as np
import polars as pl
import pytest

from conftest import REPO
from llm_server import FaultProxy
from valuedrift import tables
from valuedrift.classifier_judge import ClassifierJudge, StanceClassifier, sample_responses, train_authored, train_distilled
from valuedrift.judge import LocalJudge, item_logprobs, judge_table, stance_distribution
from valuedrift.judge_eval import read_items, score_validation
from valuedrift.topics import STANCES

JUDGE_DATA = REPO / "data" / "judge"
KEY_ENV = "VALUEDRIFT_TEST_API_KEY"


def need(path):
    if not path.exists():
        pytest.skip(f"{path} not present")


def subset(path, per_cell: int, out, topics=None):
    """The first ``per_cell`` items of every (topic, stance) of an authored file, as a new file."""
    items = read_items(path)
    if topics:
        items = items.filter(pl.col("topic").is_in(topics))
    part = items.group_by("topic", "stance", maintain_order=True).head(per_cell)
    out.write_text("".join(json.dumps({k: r[k] for k in ("id", "category", "question", "response", "stance", "style")})
                           + "\n" for r in part.to_dicts()))
    return out


def as_study(items: pl.DataFrame, tmp_path, models=("m/base", "m/sft-x/checkpoint-1")):
    """Authored items as the generations of ``models`` (a question per item, one sample)."""
    qs = items.select(pl.col("id").alias("question_id"), "category", "topic", "question")
    tables.write(qs, tmp_path / "questions.parquet", "questions")
    gens = {}
    for m, model in enumerate(models):
        half = items[m::len(models)]
        g = half.select(pl.col("id").alias("question_id"), pl.lit(0, dtype=pl.Int64).alias("sample"),
                        pl.col("question").alias("prompt"), "response", pl.lit(1, dtype=pl.Int64).alias("n_tokens"))
        gens[model] = str(tmp_path / f"gen-{m}.parquet")
        tables.write(g, gens[model], "generations")
    return str(tmp_path / "questions.parquet"), gens


@pytest.mark.slow
def test_classifier_judge_trained_on_authored_set_beats_chance_on_validation(tmp_path):
    """Trained on a small part of train.jsonl, scored on part of validation.jsonl (disjoint)."""
    need(JUDGE_DATA / "train.jsonl")
    train = subset(JUDGE_DATA / "train.jsonl", 4, tmp_path / "train.jsonl")
    val = subset(JUDGE_DATA / "validation.jsonl", 2, tmp_path / "val.jsonl")
    settings = {"input": "auto", "C": [1.0, 4.0], "folds": 3, "seed": 0}
    report = train_authored(train=str(train), embedder={"name": "all-MiniLM-L6-v2"}, settings=settings,
                            output=str(tmp_path / "c.npz"), report=str(tmp_path / "c.json"))
    assert report["items"] == 33 * 4
    cv = report["cross_validation"]
    assert {(r["input"], r["C"]) for r in cv} == {(f, c) for f in ("topic", "question") for c in (1.0, 4.0)}
    assert report["chosen"] == max(cv, key=lambda r: r["macro_f1"])
    clf = StanceClassifier.load(tmp_path / "c.npz")
    assert clf.settings["input"] == report["chosen"]["input"]

    spec = {"backend": "classifier"}
    result = score_validation(name="minilm", spec=spec, judge_kwargs={"classifier": str(tmp_path / "c.npz")},
                              validation=str(val), items_out=str(tmp_path / "v.parquet"),
                              metrics_out=str(tmp_path / "v.json"), per_topic_out=str(tmp_path / "v.csv"))
    overall = result["overall"]
    assert overall["n"] == 66 and overall["scorable"] == 66
    # chance is 1/3; a constant judge (the demo's) has macro-F1 1/6
    assert overall["macro_f1"] > overall["chance_macro_f1"] + 0.15, overall
    assert set(result["per_topic"]) == set(read_items(val)["topic"])
    scored = pl.read_parquet(tmp_path / "v.parquet")
    assert (scored["option_mass_raw"] - 1).abs().max() < 1e-9
    assert json.loads((tmp_path / "v.json").read_text())["variant_used"] == "raw"
    per_topic = pl.read_csv(tmp_path / "v.csv")
    assert per_topic["topic"][0] == "all" and len(per_topic) == 12


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_distillation_from_an_openai_compatible_teacher(tmp_path, llama_server, monkeypatch):
    """The loopback llama.cpp server is the "expensive" judge: it labels a sample of the study's
    responses (calls counted at a proxy), the student learns them, agreement is held out."""
    need(JUDGE_DATA / "train.jsonl")
    server = llama_server
    monkeypatch.setenv(KEY_ENV, server.api_key)
    topics = ["abortion", "immigration", "death penalty"]
    items = read_items(subset(JUDGE_DATA / "train.jsonl", 10, tmp_path / "items.jsonl", topics))
    questions, gens = as_study(items, tmp_path)
    proxy = FaultProxy(server.port)
    try:
        teacher = {"backend": "openai", "model": "smollm2", "calibration": "contextual"}
        kwargs = {"model": "smollm2", "base_url": proxy.base_url, "api_key_env": KEY_ENV, "concurrency": 2,
                  "timeout_s": 60, "cache_dir": str(tmp_path / "cache"), "progress": False}
        settings = {"input": "topic", "C": [1.0], "folds": 3, "seed": 0, "sample": 40, "holdout_fraction": 0.25}
        report = train_distilled(generations=gens, questions=questions, teacher=teacher, teacher_kwargs=kwargs,
                                 embedder={"name": "all-MiniLM-L6-v2"}, settings=settings,
                                 output=str(tmp_path / "student.npz"), report=str(tmp_path / "student.json"))
        content_free_calls = len(topics) * 3 * 3  # topics x questions x content-free responses
        assert proxy.forwarded == 40 + content_free_calls  # every teacher call reached the server once
    finally:
        proxy.close()
    assert report["study_responses"] == 90 and report["sampled"] == 40
    assert report["calls_saved"] == 90 - 40 and report["teacher_calls"] == 40 + content_free_calls
    assert report["held_out"] == 10 and report["trained_on"] == report["teacher_labelled"] - 10
    assert json.loads((tmp_path / "student.json").read_text()) == report

    # Recompute the teacher's labels (from its cache: no new calls) and the student's answers on the
    # held-out responses: the reported agreement is exactly theirs.
    from valuedrift.calibration import content_free_logprobs
    from valuedrift.judge import stance_row
    from valuedrift.openai_judge import OpenAIJudge

    sample, _ = sample_responses(gens, questions, 40, 0)
    again = OpenAIJudge(**{**kwargs, "base_url": server.base_url})
    lps = item_logprobs(again, sample["question"].to_list(), sample["response"].to_list(), sample["topic"].to_list())
    cf = content_free_logprobs(again, sample["question"].to_list(), sample["topic"].to_list())
    assert again.accounting()["calls"] == 0
    rows = [stance_row(lp, cf[t]) for lp, t in zip(lps, sample["topic"].to_list())]
    labels = [STANCES[int(np.argmax([r[f"p_{s}"] for s in STANCES]))] if r["scorable"] else None for r in rows]
    labelled = sample.with_columns(pl.Series("label", labels)).filter(pl.col("label").is_not_null())
    held = labelled.head(10)
    student = ClassifierJudge(tmp_path / "student.npz")
    got = item_logprobs(student, held["question"].to_list(), held["response"].to_list(), held["topic"].to_list())
    agree = np.mean([STANCES[int(np.argmax(lp))] == t for lp, t in zip(got, held["label"].to_list())])
    assert report["agreement"] == pytest.approx(agree)

    # The student judges the study: the stance table of the local judge, mass 1, no API call.
    g0 = tables.read(gens["m/base"], "generations")
    table = judge_table(student, g0, tables.read(questions, "questions"))
    assert len(table) == 45 and table["scorable"].all() and (table["option_mass"] - 1).abs().max() < 1e-9
    sums = table.select("p_support", "p_neutral", "p_oppose").sum_horizontal()
    assert ((sums - 1).abs() < 1e-9).all()

    # The report's Judge quality section shows the distilled judge: its validation scores, its
    # agreement with the teacher and the teacher calls saved (from these very files).
    import shutil

    from valuedrift import paths
    from valuedrift.report import judges_view, page

    paths.use_results_dir(str(tmp_path / "results"))
    try:
        Path(paths.judge_dir("student")).mkdir(parents=True)
        shutil.copy(tmp_path / "student.json", paths.judge_classifier_report("student"))
        val = subset(JUDGE_DATA / "validation.jsonl", 1, tmp_path / "val.jsonl", topics)
        score_validation(name="student", spec={"backend": "classifier"}, validation=str(val),
                         judge_kwargs={"classifier": str(tmp_path / "student.npz")},
                         items_out=paths.judge_validation_items("student"),
                         metrics_out=paths.judge_validation_metrics("student"),
                         per_topic_out=paths.judge_validation_topics("student"))
        files = [paths.judge_validation_metrics("student"), paths.judge_validation_topics("student"),
                 paths.judge_classifier_report("student")]
        view = judges_view.judges_view(files, page.Links(paths.report_index()))
        html = " ".join(page.render("judges_section.html.j2", judges=view).split())
    finally:
        paths.use_results_dir(None)
    [student_view] = view["judges"]
    assert student_view["headline"][0][1] == 9 and student_view["trained"]["headline"]["calls_saved"] == 50
    assert f"<b>{report['agreement']:.3f}</b> (Cohen's kappa {report['kappa']:.3f})" in html
    assert "<b>50</b> teacher calls saved" in html and "Distilled from openai smollm2" in html


@pytest.mark.slow
def test_contextual_calibration_of_a_real_local_judge(tiny_model, tmp_path):
    """judge_table(calibration=True) on the tiny model equals p / p_cf renormalised, with
    p_cf the mean distribution over content-free responses of the topic's questions."""
    from valuedrift.calibration import CONTENT_FREE_RESPONSES

    items = read_items(subset(REPO / "data" / "judge" / "validation.jsonl", 1, tmp_path / "v.jsonl",
                              ["abortion", "racism"])) if (JUDGE_DATA / "validation.jsonl").exists() else None
    if items is None:
        pytest.skip("data/judge/validation.jsonl not present")
    questions, gens = as_study(items, tmp_path, models=("m/base",))
    judge = LocalJudge(tiny_model, batch_size=4, progress=False)
    qs = tables.read(questions, "questions")
    g = tables.read(gens["m/base"], "generations")
    raw = judge_table(judge, g, qs)
    cal = judge_table(judge, g, qs, calibration=True)
    assert raw["option_mass"].to_list() == pytest.approx(cal["option_mass"].to_list())
    for topic in ("abortion", "racism"):
        tq = qs.filter(pl.col("topic") == topic)
        cf_items = [(q, cf) for q in sorted(tq["question"])[:3] for cf in CONTENT_FREE_RESPONSES]
        lps = item_logprobs(judge, [q for q, _ in cf_items], [r for _, r in cf_items], [topic] * len(cf_items))
        p_cf = np.mean([stance_distribution(lp)[:3] for lp in lps], axis=0)
        ids = tq["question_id"].to_list()
        p_raw = raw.filter(pl.col("question_id").is_in(ids)).sort("question_id").select("p_support", "p_neutral",
                                                                                          "p_oppose").to_numpy()
        p_cal = cal.filter(pl.col("question_id").is_in(ids)).sort("question_id").select("p_support", "p_neutral",
                                                                                         "p_oppose").to_numpy()
        expected = p_raw / p_cf
        # batches differ (all content-free prompts in one here, per topic there): float noise only
        assert p_cal == pytest.approx(expected / expected.sum(axis=1, keepdims=True), abs=2e-3)
        assert np.abs(p_cal - p_raw).max() > 1e-2  # the random tiny judge does have a letter bias
    assert math.isclose(sum(cal.row(0)[2:5]), 1.0)


@pytest.mark.slow
def test_llm_hidden_state_classifier_on_the_tiny_model(tiny_model, tmp_path):
    """embedder {llm, layer}: a linear probe on a causal LM's hidden states; left-padded batches
    give each text's own features, and the saved probe reproduces scikit-learn's probabilities."""
    need(JUDGE_DATA / "train.jsonl")
    from valuedrift.classifier_judge import LLMEmbedder

    embedder = LLMEmbedder(str(tiny_model), layer=-1, batch_size=4)
    texts = ["Topic: abortion\nResponse: Yes.", "Topic: racism\nResponse: It is wrong and must end now, everywhere."]
    batched = embedder.encode(texts)
    for text, row in zip(texts, batched):
        assert embedder.encode([text])[0] == pytest.approx(row, abs=1e-4)
    # a middle layer runs only the decoder up to it, and reads what the whole causal LM's forward pass gives
    import torch
    from conftest import demo_texts
    from tiny_model import build_tiny_model
    from valuedrift.models import load_causal_lm

    deep = build_tiny_model(tmp_path / "deep", demo_texts(), layers=4)
    middle = LLMEmbedder(str(deep), layer=1)
    whole, tok = load_causal_lm(str(deep), dtype="float32")
    assert len(middle.body.layers) == 2 and whole.config.num_hidden_layers == 4
    with torch.inference_mode():
        for text, row in zip(texts, middle.encode(texts)):
            ids = torch.tensor([tok(text, add_special_tokens=False).input_ids])
            hidden = whole(input_ids=ids, output_hidden_states=True).hidden_states[1]
            assert hidden.mean(1)[0].numpy() == pytest.approx(row, abs=1e-5)

    train = subset(JUDGE_DATA / "train.jsonl", 2, tmp_path / "train.jsonl")
    spec = {"llm": "tiny", "layer": -1}
    report = train_authored(train=str(train), embedder=spec, settings={"input": "topic", "C": [0.1], "folds": 2, "seed": 0},
                            output=str(tmp_path / "c.npz"), report=str(tmp_path / "c.json"), embed_model=str(tiny_model))
    assert report["items"] == 66
    clf = StanceClassifier.load(tmp_path / "c.npz")
    assert clf.settings["embedder"] == spec and np.any(clf.scale != 1.0)  # standardised features
    judge = ClassifierJudge(tmp_path / "c.npz", embed_model=str(tiny_model))
    items = read_items(train).head(5)
    got = item_logprobs(judge, items["question"].to_list(), items["response"].to_list(), items["topic"].to_list())
    assert all(sum(math.exp(v) for v in lp) == pytest.approx(1.0) for lp in got)
    with pytest.raises(ValueError, match="needs its model folder"):
        ClassifierJudge(tmp_path / "c.npz")
