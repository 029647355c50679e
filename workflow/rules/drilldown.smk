# The drill-down page of a run or a bring-your-own trajectory (valuedrift.drilldown): every
# sampled answer at every checkpoint beside the judge's stance probabilities and verdict.
# Light (a table join and a JSON dump), so a local rule.


rule drilldown:
    input:
        unpack(lambda wc: {f"{kind}_{s}": fn(run_for(wc).sampled_at(s))
                           for s in [0, *run_for(wc).steps]
                           for kind, fn in (("gen", paths.generations_file), ("stances", paths.stances_file))}),
        questions=paths.questions_file(),
    output:
        page=paths.drilldown_page("{run}"),
        data=paths.drilldown_data("{run}"),
    params:
        judge=f"{config['judge']['backend']}:{config['judge'].get('model', '')}",
        title=lambda wc: f"Answers behind the drift: {run_for(wc).study_label}",
    log:
        paths.log_file("drilldown", "{run}"),
    conda:
        conda_env("analysis")
    script:
        "../scripts/drilldown.py"


rule external_drilldown:
    input:
        unpack(lambda wc: {f"{kind}_{s}": fn(key)
                           for s, key in TRAJECTORIES[wc.trajectory].sampled_keys().items()
                           for kind, fn in (("gen", paths.generations_file), ("stances", paths.stances_file))}),
        questions=paths.questions_file(),
    output:
        page=paths.drilldown_page(paths.external_trajectory_path("{trajectory}")),
        data=paths.drilldown_data(paths.external_trajectory_path("{trajectory}")),
    params:
        judge=f"{config['judge']['backend']}:{config['judge'].get('model', '')}",
        title=lambda wc: f"Answers behind the drift: {wc.trajectory}",
    log:
        paths.log_file("drilldown", paths.external_trajectory_path("{trajectory}")),
    conda:
        conda_env("analysis")
    script:
        "../scripts/drilldown.py"


# `snakemake drilldowns`: the drill-down page of every run and trajectory.
rule drilldowns:
    input:
        [paths.drilldown_page(r.model_path) for r in RUNS],
        [paths.drilldown_page(t.model_path) for t in TRAJECTORIES.values()],


workflow.localrules("drilldown", "external_drilldown")
