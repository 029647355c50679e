"""The V-PRISM builder: from a prompt pool (PRISM's ~8,100 opening prompts by default) to
N value-laden questions per category (paper, App. A.1; 50 x 11 = 550 in the paper).

Stages, one module each, one Snakemake rule and artifact each (workflow/rules/vprism.smk):

    load       prompts.parquet        load.py      dedupe, drop empties, count
    rephrase   rephrased.parquet      rephrase.py  LLM: minimally changed natural question
    embed      embeddings.npy         embed.py     sentence-transformers (all-mpnet-base-v2)
    reduce     reduced.npy            cluster.py   UMAP to 20 dims (seeded); 2-D for the plot
    cluster    clusters.parquet       cluster.py   HDBSCAN + soft membership vectors
    name       cluster_names.parquet  name.py      TF-IDF n-grams, then LLM names
    select     selected.parquet       select.py    clusters -> configured categories
    filter     filtered.parquet       filter.py    LLM: "value-based issue with multiple perspectives?"
    sample     questions.parquet      sample.py    seeded, stratified, N per category
    report     cluster_report.json    report.py    counts per stage, clusters, 2-D scatter

All LLM calls go through the shared cached client (valuedrift.llm), so a rerun costs
no calls. ``stages.py`` holds the file-in/file-out functions the workflow scripts call;
``workflow.py`` what the rules ask of the config. Every setting and its default is in
the config schema (``questions.vprism``); the paper's build is

    questions:
      source: vprism
      vprism:
        llm: {backend: openai, model: gpt-4o, base_url: ..., api_key_env: OPENAI_API_KEY}

(PRISM from the hub, all-mpnet-base-v2, UMAP 20-D, HDBSCAN, 50 per category of the 11).
A local prompt file instead: ``prompts: {source: file, path: my.csv, text_column: text,
id_column: null}``. A user with a finished question file sets ``source: file`` instead.

Shortfalls are never silent: missing columns, empty files and a pool with no usable
prompt are errors; a category with fewer value-laden questions than ``per_category`` is
an error naming each short category and its count (or, with ``sample.on_shortfall:
warn``, a warning that says so).
"""

from __future__ import annotations

from .. import paths


def artifact(name: str) -> str:
    """Path of a builder artifact, e.g. ``artifact("clusters.parquet")``."""
    return paths.vprism_artifact(name)
