# Bring-your-own trajectories (config `trajectories`, valuedrift.trajectories): checkpoint
# series trained elsewhere are imported as models external/<name>/step-<N>; the generate and
# judge rules then serve them like any checkpoint, and the rules below build their
# trajectory, drift table and plot with the same scripts as a trained run's. Nothing is trained.
from valuedrift import seeds as vd_seeds
from valuedrift import trajectories as vd_trajectories

try:
    TRAJECTORIES = {t.name: t for t in vd_trajectories.from_config(config, workdir=".")}
except vd_trajectories.TrajectoryError as err:
    raise WorkflowError(f"invalid config:\n{err}")
IMPORTED = vd_trajectories.imported(TRAJECTORIES.values())  # a series' sampling seeds share its imports
EXTERNAL_SAMPLING_SEEDS = vd_trajectories.sampling_seeds(TRAJECTORIES.values())


wildcard_constraints:
    trajectory=_alternatives({*TRAJECTORIES, *IMPORTED}) or "^$",
    seed_group=r"[A-Za-z0-9][A-Za-z0-9._-]*",


rule import_external_checkpoint:
    input:
        unpack(lambda wc: IMPORTED[wc.trajectory].import_inputs(int(wc.step), config["models"])),
    output:
        directory(paths.model_dir(paths.external_model_key("{trajectory}", "{step}"))),
    params:
        spec=lambda wc: IMPORTED[wc.trajectory].checkpoint(int(wc.step)).spec(),
        dtype=lambda wc: IMPORTED[wc.trajectory].dtype,
    log:
        paths.log_file("import_external_checkpoint", paths.external_model_key("{trajectory}", "{step}")),
    resources:
        mem_mb=8000,
    conda:
        conda_env("infer")
    script:
        "../scripts/import_checkpoint.py"


rule external_trajectory:
    input:
        unpack(lambda wc: TRAJECTORIES[wc.trajectory].stances_inputs()),
        questions=paths.questions_file(),
    output:
        paths.trajectory_file(paths.external_trajectory_path("{trajectory}")),
    params:
        drift=canonical(config["drift"]),
    log:
        paths.log_file("trajectory", paths.external_trajectory_path("{trajectory}")),
    conda:
        conda_env("analysis")
    script:
        "../scripts/trajectory.py"


rule external_drift_table:
    input:
        unpack(lambda wc: TRAJECTORIES[wc.trajectory].drift_inputs()),
    output:
        paths.drift_table(paths.external_trajectory_path("{trajectory}")),
    params:
        drift=canonical(config["drift"]),
    log:
        paths.log_file("drift_table", paths.external_trajectory_path("{trajectory}")),
    conda:
        conda_env("analysis")
    script:
        "../scripts/drift_table.py"


rule external_trajectory_plot:
    input:
        paths.trajectory_file(paths.external_trajectory_path("{trajectory}")),
    output:
        html=paths.trajectory_plot(paths.external_trajectory_path("{trajectory}"), "html"),
        png=paths.trajectory_plot(paths.external_trajectory_path("{trajectory}"), "png"),
    params:
        figures=canonical(config["report"]["figures"]),
        title=lambda wc: f"v(T) over the checkpoints of {wc.trajectory}",
    log:
        paths.log_file("trajectory_plot", paths.external_trajectory_path("{trajectory}")),
    conda:
        conda_env("analysis")
    script:
        "../scripts/trajectory_plot.py"


# A study repeated over seeds (trajectories sharing a seed_group): drift and v(T) across seeds.
# Each seed's own jobs are its own trajectory's, so adding a seed reruns nothing of the others.
SEED_GROUPS = vd_trajectories.seed_groups(TRAJECTORIES.values())


rule seed_group_tables:
    input:
        unpack(lambda wc: vd_seeds.seed_table_inputs(SEED_GROUPS[wc.seed_group])),
    output:
        drift=paths.drift_across_seeds_table("{seed_group}"),
        trajectory=paths.trajectory_across_seeds_table("{seed_group}"),
    log:
        paths.log_file("seed_group_tables", "{seed_group}"),
    conda:
        conda_env("analysis")
    script:
        "../scripts/seed_tables.py"


# `snakemake trajectories`: every configured trajectory's drift table and plots, and the
# across-seed tables and seed-band figure of every seed group (rule in seeds.smk).
rule trajectories:
    input:
        [out for t in TRAJECTORIES.values() for out in t.outputs()],
        [f for g in SEED_GROUPS for f in (paths.drift_across_seeds_table(g),
                                          paths.seed_bands_plot(paths.seed_group_dir(g), "png"))],


workflow.localrules("external_trajectory", "external_drift_table", "external_trajectory_plot", "seed_group_tables")
