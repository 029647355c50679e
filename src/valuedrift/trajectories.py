"""Bring-your-own trajectories: checkpoint series trained elsewhere, evaluated as they are.

A config block ``trajectories`` names checkpoint series that already exist (your own
training run's ``checkpoint-*`` folders, LoRA adapters over a base model, a hub repo's
revisions such as Pythia's ``stepN`` branches). Each checkpoint is imported once as a
model with the key ``external/<name>/step-<N>`` and then goes through the same
generation, judging, trajectory and drift rules as a trained checkpoint; nothing is
trained. The smallest step is the trajectory's start (t_0 of valuedrift.metrics).

    trajectories:
      my-run:
        prompt_format: chat                          # chat (default) or plain
        checkpoints:                                 # listed ...
          - {step: 0, path: runs/base}               #   a transformers model folder
          - {step: 500, hub: org/model@step500}      #   a hub repo at a revision
          - {step: 900, adapter: runs/lora-900, base: tiny}   # LoRA adapter over a `models` key or a folder
        discover:                                    # ... and/or discovered
          folder: runs/out                           #   <folder>/<pattern> (default checkpoint-*), step = trailing number
          adapter_base: tiny                         #   optional: the discovered folders are LoRA adapters
          # or  hub: EleutherAI/pythia-70m           #   the repo's branches matching `branches` (default step(\\d+))
          steps: [0, 1000, 2000]                     #   optional: keep only these steps

``sampling_seeds: [0, 1, 2]`` samples a series' checkpoints once per seed (imported once):
the trajectories ``<name>-seed<N>``, one seed group ``<name>`` (sampling noise of its drift).

Discovery runs when the workflow is loaded, so a new ``checkpoint-*`` folder becomes a
new model key and only its jobs (and the tables after them) are scheduled. Hub listing
goes through an injectable function (default: huggingface_hub.list_repo_refs).
"""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Iterable

from . import paths

NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
DEFAULT_FOLDER_PATTERN = "checkpoint-*"
DEFAULT_BRANCH_PATTERN = r"step(\d+)"


class TrajectoryError(ValueError):
    """A trajectory config problem, naming the config key."""


@dataclass(frozen=True)
class Checkpoint:
    """One checkpoint of a series: where its weights come from (exactly one source)."""

    step: int
    path: str | None = None  # a transformers model folder
    hub: str | None = None  # repo id
    revision: str | None = None  # hub revision (branch, tag or commit)
    adapter: str | None = None  # a LoRA (peft) adapter folder ...
    base: str | None = None  # ... over this base: a key of `models` or a model folder

    @property
    def source(self) -> str:
        return "local" if self.path else "hub" if self.hub else "adapter"

    def spec(self) -> dict[str, Any]:
        """What identifies the weights (a rule's params: a change re-imports the checkpoint)."""
        return {k: v for k, v in (("source", self.source), ("path", self.path), ("hub", self.hub),
                                  ("revision", self.revision), ("adapter", self.adapter),
                                  ("base", self.base)) if v is not None}


@dataclass(frozen=True)
class Trajectory:
    """A named checkpoint series; step numbers are the series' own training steps."""

    name: str
    checkpoints: tuple[Checkpoint, ...]
    prompt_format: str = "chat"
    dtype: str = "float32"
    seed: int | None = None  # with seed_group: one seed of a study repeated over seeds
    seed_group: str | None = None
    # sampling_seeds: this series is one sampling seed of the configured series `source`, whose
    # imported checkpoints it samples again with that seed (its answers: <model key>/seed-<N>)
    source: str | None = None
    sampling_seed: int | None = None
    _by_step: dict[int, Checkpoint] = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        steps = [c.step for c in self.checkpoints]
        if not steps:
            raise TrajectoryError(f"trajectory {self.name!r} has no checkpoints")
        if len(set(steps)) != len(steps):
            dup = sorted({s for s in steps if steps.count(s) > 1})
            raise TrajectoryError(f"trajectory {self.name!r}: step(s) {dup} given more than once")
        ordered = tuple(sorted(self.checkpoints, key=lambda c: c.step))
        object.__setattr__(self, "checkpoints", ordered)
        object.__setattr__(self, "_by_step", {c.step: c for c in ordered})

    @property
    def model_path(self) -> str:
        """``external/<name>``: where its trajectory and drift tables live under results/drift."""
        return paths.external_trajectory_path(self.name)

    @property
    def steps(self) -> list[int]:
        """All checkpoint steps, ascending; the first is the start."""
        return [c.step for c in self.checkpoints]

    @property
    def start_step(self) -> int:
        return self.steps[0]

    @property
    def end_step(self) -> int:
        return self.steps[-1]

    def checkpoint(self, step: int) -> Checkpoint:
        if step not in self._by_step:
            raise TrajectoryError(f"{step} is not a step of trajectory {self.name!r}: {self.steps}")
        return self._by_step[step]

    @property
    def imported_as(self) -> str:
        """The name its checkpoints are imported under (shared by every sampling seed of a series)."""
        return self.source or self.name

    def model_at(self, step: int) -> str:
        """Model key of the checkpoint at ``step``."""
        self.checkpoint(step)
        return paths.external_model_key(self.imported_as, step)

    def model_keys(self) -> dict[int, str]:
        """Model key per step, ascending."""
        return {s: self.model_at(s) for s in self.steps}

    def sampled_at(self, step: int) -> str:
        """Key of the answers at ``step``: the model key, or with a sampling seed ``<model key>/seed-<N>``."""
        key = self.model_at(step)
        return key if self.sampling_seed is None else paths.seeded_sample_key(key, self.sampling_seed)

    def sampled_keys(self) -> dict[int, str]:
        """Answer key per step, ascending."""
        return {s: self.sampled_at(s) for s in self.steps}

    # what the rules of workflow/rules/trajectories.smk ask for (paths from valuedrift.paths)

    def import_inputs(self, step: int, models: Iterable[str]) -> dict[str, str]:
        """The checkpoint's own folder (a model or an adapter) and an adapter's base model
        (the imported base model when ``base`` is a key of ``models``, else a folder)."""
        c = self.checkpoint(step)
        inputs = {}
        if c.path or c.adapter:
            inputs["checkpoint"] = c.path or c.adapter
        if c.base:
            inputs["base"] = paths.model_dir(paths.base_model_key(c.base)) if c.base in set(models) else c.base
        return inputs

    def stances_inputs(self) -> dict[str, str]:
        """Stance table of every checkpoint, named step_<N> (as the trajectory script expects)."""
        return {f"step_{s}": paths.stances_file(key) for s, key in self.sampled_keys().items()}

    def drift_inputs(self) -> dict[str, str]:
        return {"trajectory": paths.trajectory_file(self.model_path), "questions": paths.questions_file(),
                "start": paths.stances_file(self.sampled_at(self.start_step)),
                "end": paths.stances_file(self.sampled_at(self.end_step))}

    def outputs(self) -> list[str]:
        """Its drift table and trajectory plots."""
        return [paths.drift_table(self.model_path), paths.trajectory_plot(self.model_path, "png"),
                paths.trajectory_plot(self.model_path, "html")]


# --- from the config ---------------------------------------------------------------

ListDir = Callable[[Path, str], Iterable[Path]]
ListRefs = Callable[[str], Iterable[str]]


def list_folder(folder: Path, pattern: str) -> list[Path]:
    return sorted(p for p in folder.glob(pattern) if p.is_dir())


def list_hub_branches(repo: str) -> list[str]:
    """Branch names of a hub model repo (needs the hub; Pythia keeps one branch per step)."""
    from huggingface_hub import list_repo_refs

    return [ref.name for ref in list_repo_refs(repo).branches]


def _trailing_step(name: str) -> int | None:
    m = re.search(r"(\d+)$", name)
    return int(m.group(1)) if m else None


def _parse_hub(value: str) -> tuple[str, str | None]:
    repo, _, revision = value.partition("@")
    return repo, revision or None


def discover(key: str, spec: dict[str, Any], *, workdir: Path, list_dir: ListDir = list_folder,
             list_refs: ListRefs = list_hub_branches) -> list[Checkpoint]:
    """The checkpoints a ``discover`` block finds (``key`` names it in errors)."""
    keep = set(spec["steps"]) if spec.get("steps") is not None else None
    found: list[Checkpoint] = []
    if "folder" in spec:
        folder = Path(spec["folder"])
        if not (workdir / folder).is_dir():
            raise TrajectoryError(f"config key '{key}.folder': not a folder: {folder}")
        pattern = spec.get("pattern", DEFAULT_FOLDER_PATTERN)
        for p in list_dir(workdir / folder, pattern):
            step = _trailing_step(p.name)
            if step is None:
                continue  # checkpoint-best and the like: no step to place it at
            rel = str(folder / p.name)
            found.append(Checkpoint(step=step, adapter=rel, base=spec["adapter_base"]) if spec.get("adapter_base")
                         else Checkpoint(step=step, path=rel))
    else:
        branch = re.compile(spec.get("branches", DEFAULT_BRANCH_PATTERN))
        if branch.groups != 1:
            raise TrajectoryError(f"config key '{key}.branches': the pattern needs one group, the step number")
        for name in list_refs(spec["hub"]):
            m = branch.fullmatch(name)
            if m:
                found.append(Checkpoint(step=int(m.group(1)), hub=spec["hub"], revision=name))
    found = sorted((c for c in found if keep is None or c.step in keep), key=lambda c: c.step)
    if not found:
        raise TrajectoryError(f"config key '{key}': discovered no checkpoints")
    return found


def from_config(config: dict[str, Any], *, workdir: str | Path = ".", list_dir: ListDir = list_folder,
                list_refs: ListRefs = list_hub_branches) -> list[Trajectory]:
    """The trajectories of a config's ``trajectories`` block (checked, discovery done)."""
    workdir = Path(workdir)
    models = config.get("models", {})
    out = []
    for name, spec in (config.get("trajectories") or {}).items():
        key = f"trajectories.{name}"
        if not NAME_PATTERN.match(name):
            raise TrajectoryError(f"config key '{key}': a name is letters, digits, '.', '_' or '-'")
        checkpoints = []
        for i, c in enumerate(spec.get("checkpoints") or []):
            ckey = f"{key}.checkpoints[{i}]"
            sources = [s for s in ("path", "hub", "adapter") if c.get(s)]
            if len(sources) != 1:
                raise TrajectoryError(f"config key '{ckey}': give exactly one of path, hub, adapter (got {sources or 'none'})")
            if c.get("path"):
                checkpoints.append(Checkpoint(step=c["step"], path=c["path"]))
            elif c.get("hub"):
                repo, revision = _parse_hub(c["hub"])
                checkpoints.append(Checkpoint(step=c["step"], hub=repo, revision=revision))
            else:
                if not c.get("base"):
                    raise TrajectoryError(f"config key '{ckey}.base' is required for an adapter")
                checkpoints.append(Checkpoint(step=c["step"], adapter=c["adapter"], base=c["base"]))
        if spec.get("discover"):
            checkpoints += discover(f"{key}.discover", spec["discover"], workdir=workdir, list_dir=list_dir,
                                    list_refs=list_refs)
        for i, c in enumerate(checkpoints):
            for folder in (c.path, c.adapter, None if c.base in models else c.base):
                if folder and not (workdir / folder).is_dir():
                    raise TrajectoryError(f"config key '{key}' (step {c.step}): not a folder: {folder}")
        if (spec.get("seed") is None) != (spec.get("seed_group") is None):
            raise TrajectoryError(f"config key '{key}': give seed and seed_group together")
        one = Trajectory(name=name, checkpoints=tuple(checkpoints), prompt_format=spec.get("prompt_format", "chat"),
                         dtype=spec.get("dtype", "float32"), seed=spec.get("seed"), seed_group=spec.get("seed_group"))
        if spec.get("sampling_seeds"):
            if spec.get("seed_group") is not None:
                raise TrajectoryError(f"config key '{key}.sampling_seeds': the series is its own seed group "
                                      f"({name}); drop seed and seed_group")
            out += [replace(one, name=f"{name}-seed{s}", source=name, sampling_seed=s, seed=s, seed_group=name)
                    for s in spec["sampling_seeds"]]
        else:
            out.append(one)
    names = [t.name for t in out]
    clash = sorted({n for n in names if names.count(n) > 1} | ({t.source for t in out if t.source} & set(names)))
    if clash:
        raise TrajectoryError(f"config key 'trajectories': {', '.join(clash)} named twice (a series with "
                              f"sampling_seeds is <name>-seed<N> per seed)")
    seed_groups(out)  # checks that no seed is given twice in a group
    return out


def imported(trajectories: Iterable[Trajectory]) -> dict[str, Trajectory]:
    """One trajectory per name its checkpoints are imported under (the import rule's lookup)."""
    return {t.imported_as: t for t in trajectories}


def sampling_seeds(trajectories: Iterable[Trajectory]) -> dict[str, int]:
    """The sampling seed of every answer key of a series with sampling_seeds."""
    return {key: t.sampling_seed for t in trajectories if t.sampling_seed is not None
            for key in t.sampled_keys().values()}


def seed_groups(trajectories: Iterable[Trajectory]) -> dict[str, dict[int, Trajectory]]:
    """The trajectories of each seed group, by seed (the across-seed tables' inputs)."""
    groups: dict[str, dict[int, Trajectory]] = {}
    for t in trajectories:
        if t.seed_group is None:
            continue
        group = groups.setdefault(t.seed_group, {})
        if t.seed in group:
            raise TrajectoryError(f"config key 'trajectories.{t.name}.seed': seed {t.seed} of seed group "
                                  f"{t.seed_group!r} is also trajectory {group[t.seed].name!r}")
        group[t.seed] = t
    return groups


# --- importing one checkpoint ---------------------------------------------------------

def import_checkpoint(spec: dict[str, Any], output: str | os.PathLike, *, base_dir: str | None = None,
                      dtype: str = "float32") -> None:
    """Materialise one checkpoint as a safetensors model folder at ``output`` (atomically).

    ``spec`` is :meth:`Checkpoint.spec`; ``base_dir`` the adapter's base model folder. An
    adapter is merged into its base (peft's merge_and_unload), so every later rule sees an
    ordinary model folder; the price is a full model's disk space per checkpoint.
    """
    from .models import import_base_model

    source = spec["source"]
    if source == "local":
        import_base_model({"source": "local", "path": spec["path"], "dtype": dtype}, output)
    elif source == "hub":
        import_base_model({"source": "hub", "name": spec["hub"], "revision": spec.get("revision"), "dtype": dtype},
                          output)
    elif source == "adapter":
        _merge_adapter(spec["adapter"], base_dir or spec["base"], output, dtype)
    else:
        raise ValueError(f"unknown checkpoint source {source!r}")


def _merge_adapter(adapter: str, base_dir: str, output: str | os.PathLike, dtype: str) -> None:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from .models import torch_dtype

    if not (Path(adapter) / "adapter_config.json").is_file():
        raise FileNotFoundError(f"{adapter}: not a LoRA adapter folder (no adapter_config.json)")
    output = Path(output)
    tmp = output.with_name(f".{output.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    base = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch_dtype(dtype))
    model = PeftModel.from_pretrained(base, adapter).merge_and_unload()
    # the adapter's own tokenizer if it saved one (added tokens), else the base's
    tok = AutoTokenizer.from_pretrained(adapter if (Path(adapter) / "tokenizer_config.json").is_file() else base_dir)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    model.save_pretrained(tmp, safe_serialization=True)
    tok.save_pretrained(tmp)
    shutil.rmtree(output, ignore_errors=True)
    os.replace(tmp, output)
