# Runs repeated over seeds (config runs[i].seeds or seeds; valuedrift.study.Run.seed). Each
# seed is a run of its own (its own paths, trainer seed and sampling seed), so adding a seed
# schedules that seed's jobs and the across-seed tables and figures below, nothing of the
# other seeds. The external seed groups' tables (trajectories.<name>.seed_group) are in
# trajectories.smk; their seed-band figure is here.
from valuedrift import seeds as vd_seeds


wildcard_constraints:
    seedrun=_alternatives(STUDY.seed_groups) or "^$",


rule run_seed_tables:
    input:
        unpack(lambda wc: vd_seeds.seed_table_inputs(STUDY.seed_groups[wc.seedrun])),
    output:
        drift=paths.run_drift_across_seeds("{seedrun}"),
        trajectory=paths.run_trajectory_across_seeds("{seedrun}"),
    log:
        paths.log_file("seed_tables", "{seedrun}"),
    conda:
        conda_env("analysis")
    script:
        "../scripts/seed_tables.py"


# the seed-band figure of a trained run's seeds and of an external seed group: the same job
# (vd_seeds.seed_bands_*), each from its group's across-seed trajectory table
rule run_seed_bands_plot:
    input:
        paths.run_trajectory_across_seeds("{seedrun}"),
    output:
        **vd_seeds.seed_bands_outputs(paths.run_seeds_dir("{seedrun}")),
    params:
        figures=canonical(config["report"]["figures"]),
        title=lambda wc: vd_seeds.seed_bands_title(wc.seedrun, [f"seed {s}" for s in STUDY.seed_groups[wc.seedrun]]),
    log:
        paths.log_file("seed_bands_plot", "{seedrun}"),
    conda:
        conda_env("analysis")
    script:
        "../scripts/seed_bands_plot.py"


use rule run_seed_bands_plot as external_seed_bands_plot with:
    input:
        paths.trajectory_across_seeds_table("{seed_group}"),
    output:
        **vd_seeds.seed_bands_outputs(paths.seed_group_dir("{seed_group}")),
    params:
        figures=canonical(config["report"]["figures"]),
        title=lambda wc: vd_seeds.seed_bands_title(wc.seed_group, [t.name for t in SEED_GROUPS[wc.seed_group].values()]),
    log:
        paths.log_file("seed_bands_plot", paths.external_trajectory_path("{seed_group}")),


# `snakemake seeds`: the across-seed tables and seed-band figures of every seed group.
rule seeds:
    input:
        STUDY.seed_outputs(),
        [f for g in SEED_GROUPS for f in (paths.drift_across_seeds_table(g),
                                          paths.seed_bands_plot(paths.seed_group_dir(g), "png"),
                                          paths.seed_bands_plot(paths.seed_group_dir(g), "html"))],


workflow.localrules("run_seed_tables", "run_seed_bands_plot", "external_seed_bands_plot")
