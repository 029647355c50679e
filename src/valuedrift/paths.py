"""The one place that builds artifact paths (the layout README.md's "Artifacts" lists).

A *model key* names a model folder relative to ``results/models``:

    {base}/base                                   the imported base model
    {base}/sft-{sft}/checkpoint-{step}            an SFT checkpoint
    {base}/sft-{sft}/{algorithm}-{pref}/checkpoint-{step}   a preference-optimization checkpoint

Generations and stances of a model live at ``results/{generations,stances}/{model key}.parquet``,
so one Snakemake rule serves every model, and step 0 of a trajectory (the base model for
SFT, the final SFT checkpoint for PO) is shared rather than recomputed.
"""

from __future__ import annotations

from pathlib import PurePosixPath

DEFAULT_RESULTS = "results"
RESULTS = PurePosixPath(DEFAULT_RESULTS)
LOGS = PurePosixPath("logs")
TABLE_FORMATS = ("csv", "md", "tex")


def use_results_dir(results_dir: str | None) -> None:
    """Put every artifact of this process's study under ``results_dir`` (config ``results_dir``).

    The default keeps ``results/`` and ``logs/``; any other folder holds its own ``logs/``,
    so two studies never share (or overwrite) an artifact.
    """
    global RESULTS, LOGS
    results_dir = results_dir or DEFAULT_RESULTS
    RESULTS = PurePosixPath(results_dir)
    LOGS = PurePosixPath("logs") if results_dir == DEFAULT_RESULTS else RESULTS / "logs"


def base_model_key(base: str) -> str:
    return f"{base}/base"


def base_of(model_key: str) -> str:
    """The base model name a model key starts with."""
    return PurePosixPath(model_key).parts[0]


def is_base_model(model_key: str) -> bool:
    return PurePosixPath(model_key).name == "base"


def checkpoint_key(model_path: str, step: int | str) -> str:
    return f"{model_path}/checkpoint-{step}"


def model_dir(model_key: str) -> str:
    return str(RESULTS / "models" / model_key)


def reward_model_dir(base: str, sft: str, preference: str) -> str:
    return str(RESULTS / "models" / "reward" / base / f"sft-{sft}" / preference)


def dataset_file(name: str) -> str:
    """A training dataset, loaded and validated once by a rule."""
    return str(RESULTS / "data" / f"{name}.parquet")


def questions_file() -> str:
    return str(RESULTS / "vprism" / "questions.parquet")


def generations_file(model_key: str) -> str:
    return str(RESULTS / "generations" / f"{model_key}.parquet")


def stances_file(model_key: str) -> str:
    return str(RESULTS / "stances" / f"{model_key}.parquet")


def judge_accounting_file(model_key: str) -> str:
    return str(RESULTS / "stances" / f"{model_key}.accounting.json")


def drift_dir(model_path: str) -> str:
    return str(RESULTS / "drift" / model_path)


def trajectory_file(model_path: str) -> str:
    return f"{drift_dir(model_path)}/trajectory.parquet"


def drift_table(model_path: str) -> str:
    return f"{drift_dir(model_path)}/drift.csv"


def trajectory_plot(model_path: str, ext: str) -> str:
    return f"{drift_dir(model_path)}/trajectory.{ext}"


def report_index() -> str:
    return str(RESULTS / "report" / "index.html")


def log_file(rule: str, name: str) -> str:
    return str(LOGS / rule / f"{name}.log")


def segment_dir(model_path: str, step: int | str) -> str:
    """A training segment's output: the checkpoint folder of ``model_path`` at ``step``."""
    return model_dir(checkpoint_key(model_path, step))


def segment_log(model_path: str, step: int | str) -> str:
    return log_file("train", checkpoint_key(model_path, step))


def reward_model_log(base: str, sft: str, preference: str) -> str:
    return log_file("train", f"reward/{base}/sft-{sft}/{preference}")


# --- analysis and report (cross-run tables and figures) -------------------------------

TRAINER_STATE = "trainer_state.json"  # the HF Trainer's, inside every checkpoint folder
SEGMENT_INFO = "valuedrift_segment.json"  # what the segment that made a checkpoint did


def trainer_state_in(checkpoint_dir: str) -> str:
    """The trainer's state inside a checkpoint folder (``log_history``: the whole run so far)."""
    return f"{checkpoint_dir}/{TRAINER_STATE}"


def segment_info_in(checkpoint_dir: str) -> str:
    """What one training segment did (``log``: its own log entries), inside a checkpoint folder."""
    return f"{checkpoint_dir}/{SEGMENT_INFO}"


def training_log(model_path: str) -> str:
    """Training curves of a run (step, metric, value), read out of its checkpoints."""
    return f"{drift_dir(model_path)}/training_log.csv"


def study_drift_table() -> str:
    """drift.csv of every run in one long table, with the run's base, sft, algorithm, preference."""
    return str(RESULTS / "tables" / "drift-all-runs.csv")


def paper_table(spec: dict, ext: str) -> str:
    """The file of a table spec (``valuedrift.study.Study.table_specs``)."""
    return sft_table(spec["base"], ext) if spec["kind"] == "sft" else po_table(spec["base"], spec["sft"], ext)


def sft_table(base: str, ext: str) -> str:
    """The paper's SFT table of a base model (Tables 9-12): topics x (SFT dataset, stance)."""
    return str(RESULTS / "tables" / base / f"sft-drift.{ext}")


def po_table(base: str, sft: str, ext: str) -> str:
    """The paper's PO table of an SFT model (Tables 1, 13-16): topics x (preference data, algorithm, stance)."""
    return str(RESULTS / "tables" / base / f"sft-{sft}" / f"po-drift.{ext}")


# cross-run figures, shown by the report
FIGURES = "report/figures"


def sft_comparison_plot(base: str, ext: str) -> str:
    """SFT runs of a base model side by side (one column per SFT dataset, one row per topic)."""
    return str(RESULTS / FIGURES / base / f"sft-datasets.{ext}")


def po_comparison_plot(base: str, sft: str, ext: str) -> str:
    """PO runs of an SFT model side by side (one column per algorithm and preference data)."""
    return str(RESULTS / FIGURES / base / f"sft-{sft}" / f"po-algorithms.{ext}")


def sweep_plot(base: str, sft: str, sweep: str, ext: str) -> str:
    """One training setting's values side by side: support over steps per topic (paper Figures 15-17)."""
    return str(RESULTS / FIGURES / base / f"sft-{sft}" / f"sweep-{sweep}.{ext}")


def drift_heatmap(ext: str) -> str:
    """Drift magnitude (and drift time) over topics x runs."""
    return str(RESULTS / FIGURES / f"drift-heatmap.{ext}")


def training_plot(ext: str) -> str:
    return str(RESULTS / FIGURES / f"training-curves.{ext}")


def vprism_artifact(name: str) -> str:
    """A V-PRISM builder artifact, e.g. ``vprism_artifact("clusters.parquet")``."""
    return str(RESULTS / "vprism" / name)


# --- bring-your-own trajectories (valuedrift.trajectories) -------------------

EXTERNAL = "external"


def external_trajectory_path(name: str) -> str:
    """``external/<name>``: a checkpoint series trained elsewhere (its drift dir is drift_dir of this)."""
    return f"{EXTERNAL}/{name}"


def external_drift_root() -> str:
    """The folder holding every external trajectory's drift dir (``drift_dir`` of ``external/<name>``)."""
    return drift_dir(EXTERNAL)


def file_name(path: str) -> str:
    """The last part of an artifact path (``drift.csv`` of ``drift_table(run)``): how a reader that
    groups files by folder tells one artifact of a folder from another."""
    return PurePosixPath(path).name


def external_model_key(name: str, step: int) -> str:
    """Model key of an imported checkpoint of an external trajectory."""
    return f"{external_trajectory_path(name)}/step-{step}"


def is_external_model(model_key: str) -> bool:
    return PurePosixPath(model_key).parts[0] == EXTERNAL


def external_trajectory_of(model_key: str) -> str:
    """The trajectory name of an external model key."""
    return PurePosixPath(model_key).parts[1]


def drilldown_page(model_path: str) -> str:
    """The per-question drill-down page of a run or trajectory."""
    return f"{drift_dir(model_path)}/drilldown.html"


def drilldown_data(model_path: str) -> str:
    """The drill-down page's data (a JS file the page loads beside it)."""
    return f"{drift_dir(model_path)}/drilldown-data.js"


def drilldown_bench() -> str:
    """bench/drilldown.py's measurements (page load time at 100,000 answers)."""
    return str(RESULTS / "bench" / "drilldown.json")


def seed_group_dir(group: str) -> str:
    """Across-seed tables of the trajectories of one seed group (config trajectories.<name>.seed_group)."""
    return str(RESULTS / "drift" / "external-seeds" / group)


def drift_across_seeds_table(group: str) -> str:
    return f"{seed_group_dir(group)}/drift-across-seeds.csv"


def trajectory_across_seeds_table(group: str) -> str:
    return f"{seed_group_dir(group)}/trajectory-across-seeds.parquet"


# trained runs repeated over seeds (config runs[i].seeds or seeds; valuedrift.study.Run.seed)

SEED_SAMPLE = "seed-"


def seeded_sample_key(model_key: str, seed: int | str) -> str:
    """Key of a model's answers sampled with another seed: ``<model key>/seed-<N>`` (a seeded
    run's start model, whose own answers were sampled with generation.seed)."""
    return f"{model_key}/{SEED_SAMPLE}{seed}"


def sampled_model(sample_key: str) -> str:
    """The model key an answer key was sampled from (itself, or without its ``/seed-<N>``)."""
    head, _, last = sample_key.rpartition("/")
    return head if last.startswith(SEED_SAMPLE) and last[len(SEED_SAMPLE):].isdigit() else sample_key


def run_seeds_dir(group: str) -> str:
    """Across-seed tables and figures of a trained run repeated over seeds (``group``: the
    unseeded run's model path)."""
    return str(RESULTS / "seeds" / group)


def run_drift_across_seeds(group: str) -> str:
    return f"{run_seeds_dir(group)}/drift-across-seeds.csv"


def run_trajectory_across_seeds(group: str) -> str:
    return f"{run_seeds_dir(group)}/trajectory-across-seeds.parquet"


def seed_bands_plot(seeds_dir: str, ext: str) -> str:
    """v(T) over seeds (mean and the seeds' range) beside each table of a seed group's folder."""
    return f"{seeds_dir}/seed-bands.{ext}"


# --- downstream evals (lm-evaluation-harness, Table 17) and sample tables (Tables 5-8) ---

def eval_result(model_key: str, task: str) -> str:
    """lm_eval's results for one checkpoint on one task (JSON)."""
    return str(RESULTS / "evals" / model_key / f"{task}.json")


def eval_cache(model_key: str, task: str) -> str:
    """Prefix of lm_eval's sqlite response cache for one checkpoint and task (lm_eval appends ``_rank0.db``)."""
    return str(RESULTS / "cache" / "lm_eval" / model_key / task)


def eval_log(model_key: str, task: str) -> str:
    return log_file("evals", f"{model_key}/{task}")


def evals_table(ext: str) -> str:
    """Table 17's shape: rows model/checkpoint, columns tasks (CSV: long form, full precision)."""
    return str(RESULTS / "tables" / f"downstream-evals.{ext}")


def sample_table(ext: str) -> str:
    """Tables 5-8's shape: sampled responses of chosen checkpoints beside their stance probabilities."""
    return str(RESULTS / "tables" / f"sample-responses.{ext}")



# --- controlled experiment (synthetic preference data, dataset stance, value gap) ---

def synthetic_dir() -> str:
    return str(RESULTS / "synthetic")


def synthetic_prompts_file() -> str:
    """Prompts retrieved per category from the source preference datasets."""
    return f"{synthetic_dir()}/prompts.parquet"


def synthetic_responses_file() -> str:
    """Every support and oppose generation with its check status (ok, refusal, empty, truncated, failed)."""
    return f"{synthetic_dir()}/responses.parquet"


def synthetic_pairs_file() -> str:
    """The kept (prompt, support, oppose) pairs that both synthetic datasets are made of."""
    return f"{synthetic_dir()}/pairs.parquet"


def synthetic_stats_file(stage: str) -> str:
    """Counts of a synthetic-data stage (retrieval, generation)."""
    return f"{synthetic_dir()}/stats/{stage}.json"


def dataset_stance_dir(dataset: str) -> str:
    return str(RESULTS / "dataset-stance" / dataset)


def dataset_retrieved_file(dataset: str) -> str:
    """(row, topic, similarity) of a dataset's datapoints close to an evaluation question."""
    return f"{dataset_stance_dir(dataset)}/retrieved.parquet"


def dataset_retrieval_stats(dataset: str) -> str:
    return f"{dataset_stance_dir(dataset)}/retrieval.json"


def dataset_stances_file(dataset: str) -> str:
    """Stance distribution (Figure 18 judge) of each retrieved datapoint (chosen/rejected apart)."""
    return f"{dataset_stance_dir(dataset)}/stances.parquet"


def dataset_stance_accounting(dataset: str) -> str:
    return f"{dataset_stance_dir(dataset)}/accounting.json"


def dataset_stance_table() -> str:
    """Per dataset, role and topic: the share of retrieved datapoints of each stance (Figure 19's numbers)."""
    return f"{RESULTS / 'tables'}/dataset-stance.csv"


def dataset_stance_plot(ext: str) -> str:
    return f"{RESULTS / FIGURES}/dataset-stance.{ext}"


def value_gap_file(dataset: str) -> str:
    """Per preference pair of a dataset: the Euclidean distance of its chosen and rejected stances."""
    return str(RESULTS / "value-gap" / f"{dataset}.parquet")


def value_gap_table() -> str:
    """Value-gap summary statistics per preference dataset."""
    return f"{RESULTS / 'tables'}/value-gap.csv"


def value_gap_plot(ext: str) -> str:
    return f"{RESULTS / FIGURES}/value-gap.{ext}"


def aligned_table(base: str, sft: str, ext: str) -> str:
    """The PO runs of an SFT model on the synthetic data (Tables 13-16): topics x (alignment, algorithm, stance)."""
    return str(RESULTS / "tables" / base / f"sft-{sft}-aligned.{ext}")


def alignment_name(algorithm: str, seed: int | str | None = None) -> str:
    """An alignment group's path part: the algorithm, ``-seed<N>`` appended for one seed of a seeded study."""
    return algorithm if seed is None else f"{algorithm}-seed{seed}"


def alignment_plot(base: str, sft: str, name: str, ext: str) -> str:
    """A support- and an oppose-aligned run side by side per topic (Figures 7, 11-14); ``name``:
    ``alignment_name``."""
    return str(RESULTS / FIGURES / base / f"sft-{sft}" / f"aligned-{name}.{ext}")


def alignment_contrast_table(base: str, sft: str, name: str) -> str:
    """Per topic and stance: drift of the support- and of the oppose-aligned run, and their difference."""
    return str(RESULTS / "tables" / base / f"sft-{sft}-aligned-{name}.csv")


# --- judge evaluation (validation, panel, trained judges, human review) -------
# The primary judge (config `judge`) keeps its stances at stances_file(); every judge of
# the panel (config `judges`) has its own folder under results/judges/{name}/.

PRIMARY_JUDGE = "primary"


def judge_dir(name: str) -> str:
    return str(RESULTS / "judges" / name)


def judge_stances_file(name: str, model_key: str) -> str:
    """Stances of a panel judge; the primary judge's are the study's (stances_file)."""
    if name == PRIMARY_JUDGE:
        return stances_file(model_key)
    return f"{judge_dir(name)}/stances/{model_key}.parquet"


def judge_stances_accounting(name: str, model_key: str) -> str:
    if name == PRIMARY_JUDGE:
        return judge_accounting_file(model_key)
    return f"{judge_dir(name)}/stances/{model_key}.accounting.json"


def judge_classifier_file(name: str) -> str:
    """A trained classifier judge: coefficients and settings in one .npz (no pickle)."""
    return f"{judge_dir(name)}/classifier.npz"


def judge_classifier_report(name: str) -> str:
    """How the classifier was trained: cross-validation, distillation agreement, calls saved."""
    return f"{judge_dir(name)}/classifier.json"


def judge_validation_items(name: str) -> str:
    return f"{judge_dir(name)}/validation/items.parquet"


def judge_validation_metrics(name: str) -> str:
    return f"{judge_dir(name)}/validation/metrics.json"


def judge_validation_topics(name: str) -> str:
    return f"{judge_dir(name)}/validation/per-topic.csv"


def judge_floor_check(name: str) -> str:
    """Written only when the judge passes the configured macro-F1 floor (or is accepted below it)."""
    return f"{judge_dir(name)}/validation/accepted.json"


def judge_option_mass(name: str) -> str:
    return f"{judge_dir(name)}/option-mass.csv"


def panel_dir() -> str:
    return str(RESULTS / "judges" / "panel")


def panel_agreement() -> str:
    return f"{panel_dir()}/agreement.csv"


def panel_disagreements() -> str:
    return f"{panel_dir()}/disagreements.csv"


def human_review_dir() -> str:
    return str(RESULTS / "judges" / "human-review")


def human_review_sheet() -> str:
    """The blind sheet: item id, topic, question, response, an empty label column."""
    return f"{human_review_dir()}/sheet.csv"


def human_review_form() -> str:
    return f"{human_review_dir()}/form.html"


def human_review_key() -> str:
    """Which model, question and sample each sheet item is (kept out of the sheet)."""
    return f"{human_review_dir()}/key.csv"


def human_review_agreement() -> str:
    return f"{human_review_dir()}/agreement.csv"
