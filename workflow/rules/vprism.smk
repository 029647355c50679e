# Evaluation questions. `questions.source: file` reads a user's question file; the
# V-PRISM builder (source: vprism) produces the same table from PRISM prompts
# (paper App. A.1): load -> rephrase -> embed -> reduce -> cluster -> name -> select
# -> filter -> sample, one artifact per stage under results/vprism/, plus a cluster
# report. Each rule's params hold only the settings of its own stage, so changing a
# setting (a seed, say) reruns that stage and the ones downstream of it, nothing else.
import copy

from valuedrift.vprism import artifact as vprism_file

QUESTIONS = config["questions"]
VPRISM = QUESTIONS.get("vprism", {})


def vprism_llm(stage):
    """The stage's LLM settings; a key of `models` as model means its imported base model."""
    cfg = {**VPRISM.get("llm", {}), **VPRISM.get(stage, {}).get("llm", {})}
    if cfg.get("model") in config["models"] and not cfg.get("base_url"):
        cfg["model"] = paths.model_dir(paths.base_model_key(cfg["model"]))
    return cfg


def vprism_llm_model(stage):
    """The imported base model a local LLM stage needs as input (none for an API)."""
    model = {**VPRISM.get("llm", {}), **VPRISM.get(stage, {}).get("llm", {})}.get("model")
    return paths.model_dir(paths.base_model_key(model)) if model in config["models"] else []


def vprism_params(*blocks, llm=None):
    """The part of questions.vprism a rule depends on (LLM settings resolved)."""
    vp = {b: copy.deepcopy(VPRISM[b]) for b in blocks if b in VPRISM}
    if llm:
        vp["llm"] = vprism_llm(llm)
        vp.setdefault(llm, {})["llm"] = {}
    return vp


def vprism_report_inputs():
    """The cluster report files, for the HTML report (none when questions come from a file)."""
    if QUESTIONS["source"] != "vprism":
        return []
    return [vprism_file(n) for n in ("cluster_report.json", "cluster_scatter.html", "cluster_scatter.png")]


if QUESTIONS["source"] == "file":

    rule questions:
        input:
            QUESTIONS.get("path", []),
        output:
            paths.questions_file(),
        params:
            spec=QUESTIONS,
        log:
            paths.log_file("questions", "questions"),
        script:
            "../scripts/questions.py"

else:

    rule vprism_load:
        input:
            [p for p in ([VPRISM["prompts"].get("path")] if isinstance(VPRISM["prompts"].get("path"), str)
                         else VPRISM["prompts"].get("path") or [])] if VPRISM["prompts"]["source"] == "file" else [],
        output:
            prompts=vprism_file("prompts.parquet"),
            stats=vprism_file("stats/load.json"),
        params:
            vp=vprism_params("prompts"),
        log:
            paths.log_file("vprism", "load"),
        script:
            "../scripts/vprism_load.py"

    rule vprism_rephrase:
        input:
            prompts=vprism_file("prompts.parquet"),
            model=vprism_llm_model("rephrase"),
        output:
            rephrased=vprism_file("rephrased.parquet"),
            stats=vprism_file("stats/rephrase.json"),
        params:
            vp=vprism_params("rephrase", llm="rephrase"),
        log:
            paths.log_file("vprism", "rephrase"),
        threads: workflow.cores
        resources:
            **vprism_llm_resources("rephrase"),
        script:
            "../scripts/vprism_rephrase.py"

    rule vprism_embed:
        input:
            rephrased=vprism_file("rephrased.parquet"),
        output:
            embeddings=vprism_file("embeddings.npy"),
            stats=vprism_file("stats/embed.json"),
        params:
            vp=vprism_params("embedder"),
        log:
            paths.log_file("vprism", "embed"),
        threads: workflow.cores
        script:
            "../scripts/vprism_embed.py"

    rule vprism_reduce:
        input:
            embeddings=vprism_file("embeddings.npy"),
        output:
            reduced=vprism_file("reduced.npy"),
            coords=vprism_file("coords2d.npy"),
        params:
            vp=vprism_params("umap"),
        log:
            paths.log_file("vprism", "reduce"),
        threads: workflow.cores
        script:
            "../scripts/vprism_reduce.py"

    rule vprism_cluster:
        input:
            rephrased=vprism_file("rephrased.parquet"),
            reduced=vprism_file("reduced.npy"),
            coords=vprism_file("coords2d.npy"),
        output:
            clusters=vprism_file("clusters.parquet"),
            stats=vprism_file("stats/cluster.json"),
        params:
            vp=vprism_params("hdbscan"),
        log:
            paths.log_file("vprism", "cluster"),
        script:
            "../scripts/vprism_cluster.py"

    rule vprism_name:
        input:
            clusters=vprism_file("clusters.parquet"),
            model=vprism_llm_model("name"),
        output:
            names=vprism_file("cluster_names.parquet"),
            stats=vprism_file("stats/name.json"),
        params:
            vp=vprism_params("name", llm="name"),
        log:
            paths.log_file("vprism", "name"),
        threads: workflow.cores
        resources:
            **vprism_llm_resources("name"),
        script:
            "../scripts/vprism_name.py"

    rule vprism_select:
        input:
            clusters=vprism_file("clusters.parquet"),
            names=vprism_file("cluster_names.parquet"),
            embeddings=vprism_file("embeddings.npy"),
            model=vprism_llm_model("select") if VPRISM["select"]["method"] == "llm" else [],
        output:
            mapping=vprism_file("category_map.parquet"),
            selected=vprism_file("selected.parquet"),
            stats=vprism_file("stats/select.json"),
        params:
            vp=vprism_params("select", "embedder", "categories",
                             llm="select" if VPRISM["select"]["method"] == "llm" else None),
        log:
            paths.log_file("vprism", "select"),
        threads: workflow.cores
        resources:
            **vprism_llm_resources("select"),
        script:
            "../scripts/vprism_select.py"

    rule vprism_filter:
        input:
            selected=vprism_file("selected.parquet"),
            model=vprism_llm_model("filter"),
        output:
            filtered=vprism_file("filtered.parquet"),
            stats=vprism_file("stats/filter.json"),
        params:
            vp=vprism_params("filter", llm="filter"),
        log:
            paths.log_file("vprism", "filter"),
        threads: workflow.cores
        resources:
            **vprism_llm_resources("filter"),
        script:
            "../scripts/vprism_filter.py"

    rule vprism_sample:
        input:
            filtered=vprism_file("filtered.parquet"),
        output:
            questions=paths.questions_file(),
            stats=vprism_file("stats/sample.json"),
        params:
            vp=vprism_params("sample", "categories"),
        log:
            paths.log_file("vprism", "sample"),
        script:
            "../scripts/vprism_sample.py"

    rule vprism_report:
        input:
            clusters=vprism_file("clusters.parquet"),
            names=vprism_file("cluster_names.parquet"),
            mapping=vprism_file("category_map.parquet"),
            filtered=vprism_file("filtered.parquet"),
            questions=paths.questions_file(),
            stats=expand(vprism_file("stats/{stage}.json"),
                         stage=["load", "rephrase", "embed", "cluster", "name", "select", "filter", "sample"]),
        output:
            report=vprism_file("cluster_report.json"),
            html=vprism_file("cluster_scatter.html"),
            png=vprism_file("cluster_scatter.png"),
        log:
            paths.log_file("vprism", "report"),
        script:
            "../scripts/vprism_report.py"
