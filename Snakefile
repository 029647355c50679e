# valuedrift: how an LLM's values drift during post-training (see README.md).
#
#   snakemake --profile profiles/local                      # the whole study of config/config.yaml
#   snakemake --profile profiles/local results/drift/<base>/sft-<sft>/<algo>-<pref>/drift.csv
from snakemake.utils import min_version

min_version("9.0")


# The demo config is the default. A config given with --configfile replaces it instead of
# being merged into it (a merge would leak the demo's CPU hyperparameters into a study).
if not config:

    configfile: "config/config.yaml"


include: "workflow/rules/common.smk"


# Wildcards take only the names the config defines, so paths parse one way.
wildcard_constraints:
    base=_alternatives(config["models"]),
    sft=f"(?:{_alternatives(config['datasets'])})(?:-seed\\d+)?",  # a seeded SFT run: demo-seed1
    preference=_alternatives(config["datasets"]),
    dataset=_alternatives(config["datasets"]),
    algorithm=_alternatives([*registry.ALGORITHMS, *STUDY.algorithm_parts]),  # dpo or dpo-beta0.05
    step=r"\d+",
    sweep=_alternatives([s.name for s in STUDY.sweeps]) or "^$",
    run=_alternatives([run.model_path for run in RUNS]) or "^$",
    # a model key, or the key of a model's answers sampled with a run's seed (<model key>/seed-N)
    model=r"([^/]+/(base|sft-[^/]+(/[^/]+)?/checkpoint-\d+)|external/[^/]+/step-\d+)(/seed-\d+)?",


include: "workflow/rules/vprism.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/generate.smk"
include: "workflow/rules/judge.smk"
include: "workflow/rules/drift.smk"
include: "workflow/rules/analysis.smk"
include: "workflow/rules/evals.smk"
include: "workflow/rules/report.smk"
include: "workflow/rules/trajectories.smk"
include: "workflow/rules/drilldown.smk"
include: "workflow/rules/seeds.smk"
include: "workflow/rules/controlled.smk"
include: "workflow/rules/judge_eval.smk"


rule all:
    default_target: True
    input:
        paths.report_index(),
