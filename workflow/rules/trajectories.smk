# Bring-your-own trajectories (config `trajectories`, valuedrift.trajectories): checkpoint
# series trained elsewhere are imported as models external/<name>/step-<N>; the generate and
# judge rules then serve them like any checkpoint, and the rules below build their
# trajectory, drift table and plot with the same scripts as a trained run's. Nothing is trained.
from valuedrift import trajectories as vd_trajectories

try:
    TRAJECTORIES = {t.name: t for t in vd_trajectories.from_config(config, workdir=".")}
except vd_trajectories.TrajectoryError as err:
    raise WorkflowError(f"invalid config:\n{err}")


def external_trajectory(wildcards):
    return TRAJECTORIES[wildcards.trajectory]


def external_checkpoint(wildcards):
    return external_trajectory(wildcards).checkpoint(int(wildcards.step))


def external_checkpoint_inputs(wildcards):
    """The checkpoint's folder (a local model or an adapter) and an adapter's base model."""
    c = external_checkpoint(wildcards)
    inputs = {}
    if c.path or c.adapter:
        inputs["checkpoint"] = c.path or c.adapter
    if c.base:
        inputs["base"] = paths.model_dir(paths.base_model_key(c.base)) if c.base in config["models"] else c.base
    return inputs


def external_stances(wildcards):
    t = external_trajectory(wildcards)
    return {f"step_{s}": paths.stances_file(key) for s, key in t.model_keys().items()}


def external_drift_inputs(wildcards):
    t = external_trajectory(wildcards)
    return {"trajectory": paths.trajectory_file(t.model_path), "questions": paths.questions_file(),
            "start": paths.stances_file(t.model_at(t.start_step)), "end": paths.stances_file(t.model_at(t.end_step))}


def external_drift_outputs():
    out = []
    for t in TRAJECTORIES.values():
        out += [paths.drift_table(t.model_path), paths.trajectory_plot(t.model_path, "png"),
                paths.trajectory_plot(t.model_path, "html")]
    return out


wildcard_constraints:
    trajectory=_alternatives(TRAJECTORIES) or "^$",


rule import_external_checkpoint:
    input:
        unpack(external_checkpoint_inputs),
    output:
        directory(paths.model_dir(paths.external_model_key("{trajectory}", "{step}"))),
    params:
        spec=lambda wc: external_checkpoint(wc).spec(),
        dtype=lambda wc: external_trajectory(wc).dtype,
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
        unpack(external_stances),
        questions=paths.questions_file(),
    output:
        paths.trajectory_file(paths.external_trajectory_path("{trajectory}")),
    params:
        drift=config["drift"],
    log:
        paths.log_file("trajectory", paths.external_trajectory_path("{trajectory}")),
    conda:
        conda_env("analysis")
    script:
        "../scripts/trajectory.py"


rule external_drift_table:
    input:
        unpack(external_drift_inputs),
    output:
        paths.drift_table(paths.external_trajectory_path("{trajectory}")),
    params:
        drift=config["drift"],
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
        figures=config["report"]["figures"],
        title=lambda wc: f"v(T) over the checkpoints of {wc.trajectory}",
    log:
        paths.log_file("trajectory_plot", paths.external_trajectory_path("{trajectory}")),
    conda:
        conda_env("analysis")
    script:
        "../scripts/trajectory_plot.py"


# `snakemake trajectories`: every configured trajectory's drift table and plots.
rule trajectories:
    input:
        external_drift_outputs(),


workflow.localrules("external_trajectory", "external_drift_table", "external_trajectory_plot")
