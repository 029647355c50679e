# Runs repeated over seeds (config runs[i].seeds or seeds; valuedrift.study.Run.seed). Each
# seed is a run of its own (its own paths, trainer seed and sampling seed), so adding a seed
# schedules that seed's jobs and the across-seed tables and figures below, nothing of the
# other seeds. The external seed groups' tables (trajectories.<name>.seed_group) are in
# trajectories.smk; their seed-band figure is here.


wildcard_constraints:
    seedrun=_alternatives(STUDY.seed_groups) or "^$",


rule run_seed_tables:
    input:
        unpack(lambda wc: {f"{kind}_{seed}": fn(run.model_path)
                           for seed, run in STUDY.seed_groups[wc.seedrun].items()
                           for kind, fn in (("drift", paths.drift_table), ("trajectory", paths.trajectory_file))}),
    output:
        drift=paths.run_drift_across_seeds("{seedrun}"),
        trajectory=paths.run_trajectory_across_seeds("{seedrun}"),
    log:
        paths.log_file("seed_tables", "{seedrun}"),
    conda:
        conda_env("analysis")
    script:
        "../scripts/seed_tables.py"


rule run_seed_bands_plot:
    input:
        paths.run_trajectory_across_seeds("{seedrun}"),
    output:
        html=paths.seed_bands_plot(paths.run_seeds_dir("{seedrun}"), "html"),
        png=paths.seed_bands_plot(paths.run_seeds_dir("{seedrun}"), "png"),
    params:
        figures=canonical(config["report"]["figures"]),
        title=lambda wc: f"v(T) over seeds {', '.join(map(str, STUDY.seed_groups[wc.seedrun]))}: {wc.seedrun}",
    log:
        paths.log_file("seed_bands_plot", "{seedrun}"),
    conda:
        conda_env("analysis")
    script:
        "../scripts/seed_bands_plot.py"


rule external_seed_bands_plot:
    input:
        paths.trajectory_across_seeds_table("{seed_group}"),
    output:
        html=paths.seed_bands_plot(paths.seed_group_dir("{seed_group}"), "html"),
        png=paths.seed_bands_plot(paths.seed_group_dir("{seed_group}"), "png"),
    params:
        figures=canonical(config["report"]["figures"]),
        title=lambda wc: f"v(T) over the seeds of {wc.seed_group}: "
                         + ", ".join(t.name for t in SEED_GROUPS[wc.seed_group].values()),
    log:
        paths.log_file("seed_bands_plot", paths.external_trajectory_path("{seed_group}")),
    conda:
        conda_env("analysis")
    script:
        "../scripts/seed_bands_plot.py"


# `snakemake seeds`: the across-seed tables and seed-band figures of every seed group.
rule seeds:
    input:
        STUDY.seed_outputs(),
        [f for g in SEED_GROUPS for f in (paths.drift_across_seeds_table(g),
                                          paths.seed_bands_plot(paths.seed_group_dir(g), "png"),
                                          paths.seed_bands_plot(paths.seed_group_dir(g), "html"))],


workflow.localrules("run_seed_tables", "run_seed_bands_plot", "external_seed_bands_plot")
