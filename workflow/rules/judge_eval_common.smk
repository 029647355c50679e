# Constants and input functions of workflow/rules/judge_eval.smk.
from valuedrift import judge_specs

JUDGES = judge_specs.panel(config)
PANEL_JUDGES = [name for name in JUDGES if name != paths.PRIMARY_JUDGE]
CLASSIFIER_JUDGES = [name for name, spec in JUDGES.items() if spec["backend"] == "classifier"]
JUDGE_VALIDATION = judge_specs.validation_settings(config)
NO_NAME = "(?!)"  # a wildcard constraint nothing matches


def study_model_keys():
    """Every model whose responses the study judges: each run's start model and checkpoints."""
    return sorted({run.sampled_at(step) for run in RUNS for step in [0, *run.steps]})


def judge_stance_files(name):
    return [paths.judge_stances_file(name, key) for key in study_model_keys()]


def classifier_inputs(wildcards):
    spec = JUDGES[wildcards.judge]
    train = spec["train"]
    embed = {k: v for k, v in judge_specs.judge_inputs(config, wildcards.judge).items() if k == "embed_model"}
    if train["source"] == "authored":
        return {"train": train["path"], **embed}
    teacher = judge_specs.with_defaults(train["teacher"])
    return {**embed, "generations": [paths.generations_file(k) for k in study_model_keys()],
            "questions": paths.questions_file(),
            **{k: v for k, v in judge_specs.judge_inputs(config, wildcards.judge, teacher).items() if k == "judge_model"}}


def panel_judge_inputs(wildcards):
    return {"generations": paths.generations_file(wildcards.model), "questions": paths.questions_file(),
            **judge_specs.judge_inputs(config, wildcards.judge)}


def validation_inputs(wildcards):
    """The judge's model or classifier; not the calibration choice, which validation makes."""
    inputs = judge_specs.judge_inputs(config, wildcards.judge)
    return {"validation": JUDGE_VALIDATION["path"], **{k: v for k, v in inputs.items() if k != "calibration"}}


def judge_eval_outputs():
    out = [paths.judge_floor_check(name) for name in JUDGES]
    out += [paths.judge_option_mass(name) for name in JUDGES]
    out += [paths.judge_classifier_report(name) for name in CLASSIFIER_JUDGES]
    if len(JUDGES) > 1:
        out += [paths.panel_agreement(), paths.panel_disagreements()]
    out.append(paths.human_review_sheet())
    if config["human_review"]["filled"]:
        out.append(paths.human_review_agreement())
    return out
