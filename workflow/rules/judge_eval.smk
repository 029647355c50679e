# Judges measured, not trusted: every judge of the panel (the primary `judge`
# plus config `judges`) is scored on the authored validation set and must reach
# judge_validation.min_macro_f1 (or be accepted below it); panel judges score every
# generation into results/judges/{name}/stances/; classifier judges are trained by their
# own rule; the human review sheet goes out and comes back. Target: `judge_eval`.
include: "judge_eval_common.smk"


rule judge_classifier:
    input:
        unpack(classifier_inputs),
    output:
        classifier=paths.judge_classifier_file("{judge}"),
        report=paths.judge_classifier_report("{judge}"),
    params:
        spec=lambda wc: judge_specs.training_settings(JUDGES[wc.judge]),
        models=lambda wc: study_model_keys() if JUDGES[wc.judge]["train"]["source"] == "distill" else [],
    wildcard_constraints:
        judge=_alternatives(CLASSIFIER_JUDGES) or NO_NAME,
    log:
        paths.log_file("judge_classifier", "{judge}"),
    threads: workflow.cores
    priority: 10  # every judge job waits for it: train it early, beside the first training segments
    resources:
        **judge_resources(CLASSIFIER_JUDGES),
    conda:
        conda_env("infer")
    script:
        "../scripts/judge_classifier.py"


rule panel_judge:
    input:
        unpack(panel_judge_inputs),
    output:
        stances=paths.judge_stances_file("{judge}", "{model}"),
        accounting=paths.judge_stances_accounting("{judge}", "{model}"),
    params:
        spec=lambda wc: judge_specs.result_settings(JUDGES[wc.judge]),
    wildcard_constraints:
        judge=_alternatives(PANEL_JUDGES) or NO_NAME,
    log:
        paths.log_file("panel_judge", "{judge}/{model}"),
    threads: workflow.cores
    resources:
        **judge_resources(PANEL_JUDGES),
    conda:
        conda_env("infer")
    script:
        "../scripts/panel_judge.py"


rule judge_validation:
    input:
        unpack(validation_inputs),
    output:
        scored=paths.judge_validation_items("{judge}"),
        metrics=paths.judge_validation_metrics("{judge}"),
        per_topic=paths.judge_validation_topics("{judge}"),
    params:
        spec=lambda wc: judge_specs.result_settings(JUDGES[wc.judge]),
    wildcard_constraints:
        judge=_alternatives(JUDGES),
    log:
        paths.log_file("judge_validation", "{judge}"),
    threads: workflow.cores
    resources:
        **judge_resources(JUDGES),
    conda:
        conda_env("infer")
    script:
        "../scripts/judge_validation.py"


rule judge_floor:
    input:
        metrics=paths.judge_validation_metrics("{judge}"),
    output:
        paths.judge_floor_check("{judge}"),
    params:
        min_macro_f1=JUDGE_VALIDATION["min_macro_f1"],
        accept_below_floor=JUDGE_VALIDATION["accept_below_floor"],
    wildcard_constraints:
        judge=_alternatives(JUDGES),
    log:
        paths.log_file("judge_floor", "{judge}"),
    conda:
        conda_env("analysis")
    script:
        "../scripts/judge_floor.py"


rule judge_option_mass:
    input:
        lambda wc: judge_stance_files(wc.judge),
    output:
        paths.judge_option_mass("{judge}"),
    params:
        models=study_model_keys(),
        floor=lambda wc: JUDGES[wc.judge]["min_option_mass"],
    wildcard_constraints:
        judge=_alternatives(JUDGES),
    log:
        paths.log_file("judge_option_mass", "{judge}"),
    conda:
        conda_env("analysis")
    script:
        "../scripts/judge_option_mass.py"


rule judge_panel:
    input:
        stances=[f for name in JUDGES for f in judge_stance_files(name)],
        generations=[paths.generations_file(k) for k in study_model_keys()],
        questions=paths.questions_file(),
    output:
        agreement=paths.panel_agreement(),
        disagreements=paths.panel_disagreements(),
    params:
        judges=list(JUDGES),
        models=study_model_keys(),
    log:
        paths.log_file("judge_panel", "panel"),
    conda:
        conda_env("analysis")
    script:
        "../scripts/judge_panel.py"


rule human_review_sheet:
    input:
        generations=[paths.generations_file(k) for k in study_model_keys()],
        questions=paths.questions_file(),
    output:
        sheet=paths.human_review_sheet(),
        form=paths.human_review_form(),
        key=paths.human_review_key(),
    params:
        models=study_model_keys(),
        n_items=config["human_review"]["items"],
        seed=config["human_review"]["seed"],
    log:
        paths.log_file("human_review", "sheet"),
    conda:
        conda_env("analysis")
    script:
        "../scripts/human_review_sheet.py"


rule human_review_agreement:
    input:
        filled=config["human_review"]["filled"] or [],
        key=paths.human_review_key(),
        stances=[f for name in JUDGES for f in judge_stance_files(name)],
    output:
        paths.human_review_agreement(),
    params:
        judges=list(JUDGES),
        models=study_model_keys(),
    log:
        paths.log_file("human_review", "agreement"),
    conda:
        conda_env("analysis")
    script:
        "../scripts/human_review_agreement.py"


rule judge_eval:
    input:
        judge_specs.eval_files(config),  # the files the report's Judge quality section reads


# a job that loads a causal LM (a local judge, a classifier on an LLM's hidden states) runs on a node
workflow.localrules("judge_floor", "judge_option_mass", "judge_panel", "human_review_sheet",
                    "human_review_agreement", "judge_eval",
                    *(["judge_classifier"] if not any(judge_specs.loads_model(JUDGES[n]) for n in CLASSIFIER_JUDGES)
                      else []),
                    *(["judge_validation"] if not any(judge_specs.loads_model(s) for s in JUDGES.values()) else []))
