"""Cluster compute: what a job asks SLURM for, and how a multi-GPU training job runs.

Resources
    The config's ``resources`` block says what each rule family asks for, per base model::

        resources:
          default: {slurm_account: my-lab}            # every cluster job
          train: {gpu: 1, cpus_per_gpu: 8}            # sft_segment, po_segment, reward_model
          infer: {gpu: 1}                             # generate, judge (local judge model)
          by_model:
            llama3-8b:
              train: {gpu: 8, mem_mb: 480000, runtime: 360}

    :func:`request` merges built-in family defaults < ``default`` < ``<family>`` <
    ``by_model.<model>.<family>``. Keys are snakemake / snakemake-executor-plugin-slurm
    resource names (``gpu``, ``cpus_per_gpu``, ``mem_mb``, ``runtime``, ``slurm_partition``,
    ``slurm_account``, ``slurm_extra``, ...), so a request reads like the sbatch line it
    becomes. Resources are not rerun triggers: changing them never rebuilds a result.

Launch
    A training job that was given N > 1 GPUs runs its segment as N processes under
    ``accelerate launch`` with an FSDP, DeepSpeed ZeRO-3 or DDP config (config
    ``resources.launcher``); with one GPU or none it runs in the job's own Python.
    :func:`accelerate_command` builds the command; :func:`run_for_job` is what the rule
    scripts call; ``python -m valuedrift.launch`` is the per-process entry point.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shlex
import socket
import subprocess
import sys
from importlib.resources import files
from pathlib import Path
from typing import Any, Callable

import yaml

log = logging.getLogger("valuedrift")

FAMILIES = ("train", "infer")
# Built-in requests; the config's resources block overrides any of them.
FAMILY_DEFAULTS: dict[str, dict[str, Any]] = {
    "train": {"slurm_partition": "gpu", "gpu": 1, "cpus_per_gpu": 8, "mem_mb": 64000, "runtime": 240},
    "infer": {"slurm_partition": "gpu", "gpu": 1, "cpus_per_gpu": 8, "mem_mb": 32000, "runtime": 120},
}
# Resource names a request may use (the config schema lists the same).
REQUEST_KEYS = ("slurm_partition", "slurm_account", "slurm_extra", "constraint", "qos", "gpu", "gpu_model",
                "cpus_per_gpu", "cpus_per_task", "mem_mb", "mem_mb_per_cpu", "runtime", "nodes", "disk_mb")
# Pairs the plugin treats as either/or: a more specific level that sets one drops the other.
ALTERNATIVES = (("cpus_per_gpu", "cpus_per_task"), ("mem_mb", "mem_mb_per_cpu"))

# accelerate configs shipped with the package (src/valuedrift/data/accelerate/)
BUILTIN_LAUNCH_CONFIGS = {"fsdp": "fsdp.yaml", "deepspeed-zero3": "deepspeed_zero3.yaml", "ddp": "ddp.yaml"}
LAUNCHER_DEFAULTS = {"kind": "accelerate", "config": "fsdp", "processes": None}
STEPS = ("train", "train_reward")  # valuedrift.pipeline functions a launch may run


# --------------------------------------------------------------------------- resources

def request(resources: dict[str, Any] | None, family: str, model: str | None = None) -> dict[str, Any]:
    """The resources one job of ``family`` (for base model ``model``) asks for."""
    if family not in FAMILIES:
        raise ValueError(f"unknown resource family {family!r}; known: {', '.join(FAMILIES)}")
    resources = resources or {}
    by_model = (resources.get("by_model") or {}).get(model) or {} if model else {}
    out: dict[str, Any] = {}
    for level in (FAMILY_DEFAULTS[family], resources.get("default"), resources.get(family), by_model.get(family)):
        for key, value in (level or {}).items():
            for pair in ALTERNATIVES:
                if key in pair:
                    for other in pair:
                        if other != key:
                            out.pop(other, None)
            out[key] = value
    return out


def request_keys(resources: dict[str, Any] | None, family: str) -> list[str]:
    """Every resource name some job of ``family`` may get (for the rule's resources directive)."""
    resources = resources or {}
    keys = dict.fromkeys(FAMILY_DEFAULTS[family])
    for level in (resources.get("default"), resources.get(family),
                  *[(m or {}).get(family) for m in (resources.get("by_model") or {}).values()]):
        keys.update(dict.fromkeys(level or {}))
    return list(keys)


def rule_resources(resources: dict[str, Any] | None, family: str,
                   model: Callable[[Any], str | None] | str | None) -> dict[str, Callable]:
    """Keyword arguments for a rule's ``resources:`` directive, one callable per resource.

    ``model`` is the base model (a name, or a function of the job's wildcards). A
    resource a job does not ask for evaluates to None, which Snakemake leaves out.
    ``runtime`` grows with the attempt: a job retried after a TIMEOUT gets twice the time.
    """

    def job_request(wildcards):
        return request(resources, family, model(wildcards) if callable(model) else model)

    def one(key):
        if key == "runtime":
            def runtime(wildcards, attempt):
                value = job_request(wildcards).get("runtime")
                return value * attempt if isinstance(value, int) else value
            return runtime
        return lambda wildcards: job_request(wildcards).get(key)

    return {key: one(key) for key in request_keys(resources, family)}


# --------------------------------------------------------------------------- launch

def launcher_settings(resources: dict[str, Any] | None) -> dict[str, Any]:
    return {**LAUNCHER_DEFAULTS, **((resources or {}).get("launcher") or {})}


def launch_config_path(name: str, workdir: str | os.PathLike = ".") -> Path:
    """A built-in accelerate config by name, or the user's file (relative to the working directory)."""
    if name in BUILTIN_LAUNCH_CONFIGS:
        return Path(str(files("valuedrift").joinpath("data/accelerate", BUILTIN_LAUNCH_CONFIGS[name])))
    path = Path(workdir) / name
    if not path.is_file():
        raise FileNotFoundError(f"accelerate config {name!r} is neither a built-in "
                                f"({', '.join(BUILTIN_LAUNCH_CONFIGS)}) nor a file")
    return path.resolve()


def processes(launcher: dict[str, Any], gpus: int | None) -> int:
    """Processes a training job runs: launcher.processes, else one per GPU allocated."""
    launcher = {**LAUNCHER_DEFAULTS, **launcher}
    if launcher["kind"] == "none":
        return 1
    if launcher.get("processes"):
        return int(launcher["processes"])
    return max(1, int(gpus or 0))


def free_port() -> int:
    """A free TCP port for the job's rendezvous (two jobs can share a node)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def accelerate_command(*, step: str, kwargs: dict[str, Any], config: str | os.PathLike, processes: int,
                       mixed_precision: str = "no", port: int = 29500, log: str | None = None,
                       python: str = sys.executable) -> list[str]:
    """``accelerate launch`` running ``valuedrift.pipeline.<step>(**kwargs)`` in ``processes`` processes.

    One machine (the job's node); ``python -m accelerate.commands.launch`` is the
    ``accelerate launch`` CLI of the job's own interpreter (no PATH lookup). A DeepSpeed
    config whose ``deepspeed_config_file`` is relative is resolved next to the config.
    """
    if step not in STEPS:
        raise ValueError(f"unknown launch step {step!r}; known: {', '.join(STEPS)}")
    if processes < 2:
        raise ValueError("accelerate launch is for 2 or more processes; run one process in-process")
    config = Path(config)
    cmd = [python, "-m", "accelerate.commands.launch", "--config_file", str(config),
           "--num_processes", str(processes), "--num_machines", "1", "--machine_rank", "0",
           "--main_process_port", str(port), "--mixed_precision", mixed_precision, "--dynamo_backend", "no"]
    ds_file = (yaml.safe_load(config.read_text()) or {}).get("deepspeed_config", {}).get("deepspeed_config_file")
    if ds_file and not Path(ds_file).is_absolute():
        cmd += ["--deepspeed_config_file", str((config.parent / ds_file).resolve())]
    cmd += ["-m", "valuedrift.launch", step, "--kwargs", json.dumps(kwargs, sort_keys=True)]
    if log:
        cmd += ["--log", str(log)]
    return cmd


def child_env(threads: int | None, processes: int, environ: dict[str, str] | None = None) -> dict[str, str]:
    """The launch's environment: CPU threads split between processes; valuedrift importable.

    A rule run in a conda env (--sdm conda) imports valuedrift through Snakemake's script
    preamble; the launched processes are fresh interpreters, so a source checkout's
    ``src`` goes on PYTHONPATH (an installed package needs nothing).
    """
    env = dict(os.environ if environ is None else environ)
    env["OMP_NUM_THREADS"] = str(max(1, (threads or 1) // processes))
    src = Path(__file__).resolve().parents[1]
    if src.name == "src":
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(src), env.get("PYTHONPATH")) if p)
    return env


def cpus_available() -> int:
    """CPUs this process may run on (the job's allocation under SLURM with cgroups)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _distributed_type(config: Path) -> str:
    return str((yaml.safe_load(config.read_text()) or {}).get("distributed_type", "")).upper()


def _mixed_precision(step: str, kwargs: dict[str, Any], cuda: bool) -> str:
    from .training import registry
    from .training.settings import RewardSettings

    overrides = kwargs.get("settings") or {}
    settings = (RewardSettings() if step == "train_reward" else registry.get(kwargs["algorithm"]).settings())
    from .precision import training_bf16

    return "bf16" if training_bf16(settings.with_overrides(overrides).bf16, on_gpu=cuda) else "no"


def run(step: str, kwargs: dict[str, Any], *, resources: dict[str, Any] | None, gpus: int | None,
        threads: int | None = None, log_path: str | None = None, workdir: str | os.PathLike = ".") -> None:
    """Run ``pipeline.<step>(**kwargs)``: in-process, or under accelerate with one process per GPU."""
    from . import pipeline

    if step not in STEPS:
        raise ValueError(f"unknown launch step {step!r}; known: {', '.join(STEPS)}")
    launcher = launcher_settings(resources)
    n = processes(launcher, gpus)
    threads = min(threads or cpus_available(), cpus_available())  # never more than the job was given
    if n == 1:
        pipeline.set_threads(threads)
        getattr(pipeline, step)(**kwargs)
        return
    import torch

    config = launch_config_path(launcher["config"], workdir)
    cuda = torch.cuda.device_count()
    dist = _distributed_type(config)
    if not cuda and dist in ("FSDP", "DEEPSPEED"):
        raise RuntimeError(
            f"accelerate config {launcher['config']!r} ({dist}) needs CUDA GPUs, but this job sees none "
            f"(CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES', '<unset>')}); run on a GPU node, "
            f"or set resources.launcher.config: ddp for {n} CPU processes")
    if cuda and n > cuda:
        raise RuntimeError(f"{n} processes requested but only {cuda} GPUs are visible to this job")
    cmd = accelerate_command(step=step, kwargs=kwargs, config=config, processes=n,
                             mixed_precision=_mixed_precision(step, kwargs, bool(cuda)), port=free_port(),
                             log=log_path)
    log.info("%d processes (%s, %s): %s", n, launcher["config"], dist or "?", shlex.join(cmd))
    proc = subprocess.run(cmd, env=child_env(threads, n))
    if proc.returncode:
        raise RuntimeError(f"accelerate launch of {n} processes exited with status {proc.returncode}")


def run_for_job(job, step: str, kwargs: dict[str, Any]) -> None:
    """:func:`run` for a rule script: ``job`` is its ``snakemake`` object (config resources,
    the GPUs and threads the job was given, its log file)."""
    from . import pipeline

    pipeline.configure_logging(job.log[0])
    run(step, kwargs, resources=job.config.get("resources"), gpus=job.resources.get("gpu"),
        threads=job.threads, log_path=job.log[0])


def main(argv: list[str] | None = None) -> None:
    """One process of a launch: ``python -m valuedrift.launch train --kwargs JSON [--log PATH]``."""
    from . import pipeline

    parser = argparse.ArgumentParser(prog="python -m valuedrift.launch", description=main.__doc__)
    parser.add_argument("step", choices=STEPS)
    parser.add_argument("--kwargs", required=True, help="keyword arguments of valuedrift.pipeline.<step>, as JSON")
    parser.add_argument("--log", help="the rule's log file (rank 0 appends to it)")
    args = parser.parse_args(argv)
    rank = int(os.environ.get("RANK", "0"))
    pipeline.configure_logging(args.log if rank == 0 else None)
    if rank:
        logging.getLogger().setLevel(logging.WARNING)
    getattr(pipeline, args.step)(**json.loads(args.kwargs))


if __name__ == "__main__":
    main()
