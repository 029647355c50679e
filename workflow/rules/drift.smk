# Trajectories v(T) with bootstrap CIs, drift tables and per-run figures.


rule trajectory:
    input:
        unpack(trajectory_stances),
        questions=paths.questions_file(),
    output:
        paths.trajectory_file("{run}"),
    params:
        drift=canonical(config["drift"]),
    log:
        paths.log_file("trajectory", "{run}"),
    conda:
        conda_env("analysis")
    script:
        "../scripts/trajectory.py"


rule drift_table:
    input:
        unpack(drift_inputs),
    output:
        paths.drift_table("{run}"),
    params:
        drift=canonical(config["drift"]),
    log:
        paths.log_file("drift_table", "{run}"),
    conda:
        conda_env("analysis")
    script:
        "../scripts/drift_table.py"


rule trajectory_plot:
    input:
        paths.trajectory_file("{run}"),
    output:
        html=paths.trajectory_plot("{run}", "html"),
        png=paths.trajectory_plot("{run}", "png"),
    params:
        figures=canonical(config["report"]["figures"]),  # plot options only: model rules never see them
        title=lambda wc: f"v(T) over training: {run_for(wc).study_label}",
    log:
        paths.log_file("trajectory_plot", "{run}"),
    conda:
        conda_env("analysis")
    script:
        "../scripts/trajectory_plot.py"
