# Evaluation questions. `questions.source: file` reads a user's question file; the
# V-PRISM builder (source: vprism) produces the same table from PRISM prompts
# (paper App. A.1): load -> rephrase -> embed -> reduce -> cluster -> name -> select
# -> filter -> sample, one artifact per stage under results/vprism/, plus a cluster
# report. Each rule's params hold only the settings of its own stage, so changing a
# setting (a seed, say) reruns that stage and the ones downstream of it, nothing else.
from valuedrift.vprism import artifact as vprism_file
from valuedrift.vprism import workflow as vprism

QUESTIONS = config["questions"]


if QUESTIONS["source"] == "file":

    rule questions:
        input:
            QUESTIONS.get("path", []),
        output:
            paths.questions_file(),
        params:
            spec=canonical(QUESTIONS),
        log:
            paths.log_file("questions", "questions"),
        conda:
            conda_env("analysis")
        script:
            "../scripts/questions.py"

else:

    rule vprism_load:
        input:
            vprism.prompt_files(config),
        output:
            prompts=vprism_file("prompts.parquet"),
            stats=vprism_file("stats/load.json"),
        params:
            vp=vprism.params(config, "prompts"),
        log:
            paths.log_file("vprism", "load"),
        conda:
            conda_env("vprism")
        script:
            "../scripts/vprism_load.py"

    rule vprism_rephrase:
        input:
            prompts=vprism_file("prompts.parquet"),
            model=vprism.llm_model_input(config, "rephrase"),
        output:
            rephrased=vprism_file("rephrased.parquet"),
            stats=vprism_file("stats/rephrase.json"),
        params:
            vp=vprism.params(config, "rephrase", llm="rephrase"),
        log:
            paths.log_file("vprism", "rephrase"),
        threads: workflow.cores
        resources:
            **vprism_llm_resources("rephrase"),
        conda:
            conda_env("vprism")
        script:
            "../scripts/vprism_rephrase.py"

    rule vprism_embed:
        input:
            rephrased=vprism_file("rephrased.parquet"),
        output:
            embeddings=vprism_file("embeddings.npy"),
            stats=vprism_file("stats/embed.json"),
        params:
            vp=vprism.params(config, "embedder"),
        log:
            paths.log_file("vprism", "embed"),
        threads: workflow.cores
        conda:
            conda_env("vprism")
        script:
            "../scripts/vprism_embed.py"

    rule vprism_reduce:
        input:
            embeddings=vprism_file("embeddings.npy"),
        output:
            reduced=vprism_file("reduced.npy"),
            coords=vprism_file("coords2d.npy"),
        params:
            vp=vprism.params(config, "umap"),
        log:
            paths.log_file("vprism", "reduce"),
        threads: workflow.cores
        conda:
            conda_env("vprism")
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
            vp=vprism.params(config, "hdbscan"),
        log:
            paths.log_file("vprism", "cluster"),
        conda:
            conda_env("vprism")
        script:
            "../scripts/vprism_cluster.py"

    rule vprism_name:
        input:
            clusters=vprism_file("clusters.parquet"),
            model=vprism.llm_model_input(config, "name"),
        output:
            names=vprism_file("cluster_names.parquet"),
            stats=vprism_file("stats/name.json"),
        params:
            vp=vprism.params(config, "name", llm="name"),
        log:
            paths.log_file("vprism", "name"),
        threads: workflow.cores
        resources:
            **vprism_llm_resources("name"),
        conda:
            conda_env("vprism")
        script:
            "../scripts/vprism_name.py"

    rule vprism_select:
        input:
            clusters=vprism_file("clusters.parquet"),
            names=vprism_file("cluster_names.parquet"),
            embeddings=vprism_file("embeddings.npy"),
            model=vprism.llm_model_input(config, "select") if vprism.uses_llm(config, "select") else [],
        output:
            mapping=vprism_file("category_map.parquet"),
            selected=vprism_file("selected.parquet"),
            stats=vprism_file("stats/select.json"),
        params:
            vp=vprism.params(config, "select", "embedder", "categories", llm="select"),
        log:
            paths.log_file("vprism", "select"),
        threads: workflow.cores
        resources:
            **vprism_llm_resources("select"),
        conda:
            conda_env("vprism")
        script:
            "../scripts/vprism_select.py"

    rule vprism_filter:
        input:
            selected=vprism_file("selected.parquet"),
            model=vprism.llm_model_input(config, "filter"),
        output:
            filtered=vprism_file("filtered.parquet"),
            stats=vprism_file("stats/filter.json"),
        params:
            vp=vprism.params(config, "filter", llm="filter"),
        log:
            paths.log_file("vprism", "filter"),
        threads: workflow.cores
        resources:
            **vprism_llm_resources("filter"),
        conda:
            conda_env("vprism")
        script:
            "../scripts/vprism_filter.py"

    rule vprism_sample:
        input:
            filtered=vprism_file("filtered.parquet"),
        output:
            questions=paths.questions_file(),
            stats=vprism_file("stats/sample.json"),
        params:
            vp=vprism.params(config, "sample", "categories"),
        log:
            paths.log_file("vprism", "sample"),
        conda:
            conda_env("vprism")
        script:
            "../scripts/vprism_sample.py"

    rule vprism_report:
        input:
            clusters=vprism_file("clusters.parquet"),
            names=vprism_file("cluster_names.parquet"),
            mapping=vprism_file("category_map.parquet"),
            filtered=vprism_file("filtered.parquet"),
            questions=paths.questions_file(),
            stats=vprism.stats_files(),
        output:
            report=vprism_file("cluster_report.json"),
            html=vprism_file("cluster_scatter.html"),
            png=vprism_file("cluster_scatter.png"),
        log:
            paths.log_file("vprism", "report"),
        conda:
            conda_env("vprism")
        script:
            "../scripts/vprism_report.py"
