"""The one place that builds artifact paths (layout fixed by DESIGN.md).

A *model key* names a model folder relative to ``results/models``:

    {base}/base                                   the imported base model
    {base}/sft-{sft}/checkpoint-{step}            an SFT checkpoint
    {base}/sft-{sft}/{algorithm}-{pref}/checkpoint-{step}   a preference-optimization checkpoint

Generations and stances of a model live at ``results/{generations,stances}/{model key}.parquet``,
so one Snakemake rule serves every model, and step 0 of a trajectory (the base model for
SFT, the final SFT checkpoint for PO) is shared rather than recomputed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import PurePosixPath

RESULTS = PurePosixPath("results")


@dataclass(frozen=True)
class Run:
    """One training phase: SFT of a base model, or PO of an SFT model.

    ``every`` is the checkpoint interval and ``max_steps`` the last step built; the
    learning-rate schedule of the whole run is set separately (see training), so
    raising ``max_steps`` adds checkpoints without making the existing ones stale.
    """

    base: str
    sft: str
    every: int
    max_steps: int
    algorithm: str | None = None
    preference: str | None = None
    sft_max_steps: int | None = None  # final step of the SFT run a PO run starts from

    @property
    def is_sft(self) -> bool:
        return self.algorithm is None

    @property
    def sft_path(self) -> str:
        return f"{self.base}/sft-{self.sft}"

    @property
    def model_path(self) -> str:
        """``{base}/sft-{sft}`` or ``{base}/sft-{sft}/{algorithm}-{preference}``."""
        if self.is_sft:
            return self.sft_path
        return f"{self.sft_path}/{self.algorithm}-{self.preference}"

    @property
    def steps(self) -> list[int]:
        """Checkpoint steps after the start: every, 2*every, ..., and max_steps itself."""
        return checkpoint_steps(self.every, self.max_steps)

    @property
    def start_model(self) -> str:
        """Model key of step 0: the base model for SFT, the final SFT checkpoint for PO."""
        if self.is_sft:
            return base_model_key(self.base)
        if self.sft_max_steps is None:
            raise ValueError(f"PO run {self.model_path} does not know its SFT run's final step")
        return checkpoint_key(self.sft_path, self.sft_max_steps)

    @property
    def sft_final_model(self) -> str:
        """Model key of the final checkpoint of the SFT run this run belongs to."""
        if self.is_sft:
            return checkpoint_key(self.sft_path, self.max_steps)
        return self.start_model

    def model_at(self, step: int) -> str:
        """Model key of the checkpoint at ``step`` (0 = start model)."""
        return self.start_model if step == 0 else checkpoint_key(self.model_path, step)

    def previous_step(self, step: int) -> int:
        """The checkpoint a segment ending at ``step`` resumes from (0 = start model)."""
        steps = [0, *self.steps]
        if step not in steps[1:]:
            raise ValueError(f"{step} is not a checkpoint step of {self.model_path}: {steps[1:]}")
        return steps[steps.index(step) - 1]


def checkpoint_steps(every: int, max_steps: int) -> list[int]:
    if every <= 0 or max_steps <= 0:
        raise ValueError(f"every ({every}) and max_steps ({max_steps}) must be positive")
    steps = list(range(every, max_steps + 1, every))
    if not steps or steps[-1] != max_steps:
        steps.append(max_steps)
    return steps


def base_model_key(base: str) -> str:
    return f"{base}/base"


def base_of(model_key: str) -> str:
    """The base model name a model key starts with."""
    return PurePosixPath(model_key).parts[0]


def is_base_model(model_key: str) -> bool:
    return PurePosixPath(model_key).name == "base"


def checkpoint_key(model_path: str, step: int) -> str:
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
    return f"logs/{rule}/{name}.log"


# --- analysis and report (cross-run tables and figures) -------------------------------

def trainer_state_file(model_key: str) -> str:
    """The trainer's state inside a checkpoint folder (``log_history``: the whole run so far)."""
    return f"{model_dir(model_key)}/trainer_state.json"


def segment_info_file(model_key: str) -> str:
    """What one training segment did (``log``: its own log entries), inside a checkpoint folder."""
    return f"{model_dir(model_key)}/valuedrift_segment.json"


def training_log(model_path: str) -> str:
    """Training curves of a run (step, metric, value), read out of its checkpoints."""
    return f"{drift_dir(model_path)}/training_log.csv"


def tables_dir() -> str:
    return str(RESULTS / "tables")


def study_drift_table() -> str:
    """drift.csv of every run in one long table, with the run's base, sft, algorithm, preference."""
    return f"{tables_dir()}/drift-all-runs.csv"


def sft_table(base: str, ext: str) -> str:
    """The paper's SFT table of a base model (Tables 9-12): topics x (SFT dataset, stance)."""
    return f"{tables_dir()}/{base}/sft-drift.{ext}"


def po_table(base: str, sft: str, ext: str) -> str:
    """The paper's PO table of an SFT model (Tables 1, 13-16): topics x (preference data, algorithm, stance)."""
    return f"{tables_dir()}/{base}/sft-{sft}/po-drift.{ext}"


def report_dir() -> str:
    return str(RESULTS / "report")


def figures_dir() -> str:
    return f"{report_dir()}/figures"


def sft_comparison_plot(base: str, ext: str) -> str:
    """SFT runs of a base model side by side (one column per SFT dataset, one row per topic)."""
    return f"{figures_dir()}/{base}/sft-datasets.{ext}"


def po_comparison_plot(base: str, sft: str, ext: str) -> str:
    """PO runs of an SFT model side by side (one column per algorithm and preference data)."""
    return f"{figures_dir()}/{base}/sft-{sft}/po-algorithms.{ext}"


def drift_heatmap(ext: str) -> str:
    """Drift magnitude (and drift time) over topics x runs."""
    return f"{figures_dir()}/drift-heatmap.{ext}"


def training_plot(ext: str) -> str:
    return f"{figures_dir()}/training-curves.{ext}"


def report_screenshot() -> str:
    """Full-page screenshot of the report, taken by the report test in headless Chromium."""
    return f"{report_dir()}/screenshot.png"


# --- issue 18: judge evaluation (validation, panel, trained judges, human review) -------
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
