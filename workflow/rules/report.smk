# One static HTML page for every run of the study (<results_dir>/report/index.html).
from valuedrift import judge_specs
from valuedrift.study import report_trigger
from valuedrift.vprism import workflow as vprism_workflow



rule report:
    input:
        **STUDY.report_inputs({"vprism": vprism_workflow.report_inputs(config), "evals": EVALS_OUTPUTS,
                               "samples": SAMPLE_TABLE_OUTPUTS, "judges": judge_specs.report_files(config)}),
    output:
        paths.report_index(),
    params:
        study=report_trigger(config),  # the study without execution settings: the page reads it from the config
        options=canonical(config["report"]),
    log:
        paths.log_file("report", "report"),
    conda:
        conda_env("analysis")
    script:
        "../scripts/report.py"
