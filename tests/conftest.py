"""Shared fixtures: offline environment, a tiny random-init model, a tiny study config."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def demo_texts() -> list[str]:
    texts = []
    for name in ("questions.jsonl", "sft.jsonl", "preferences.jsonl"):
        for line in (REPO / "data" / "demo" / name).read_text().splitlines():
            texts.append(line)
    return texts


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    from tiny_model import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "model", demo_texts())


def tiny_config(model_dir: Path, **overrides) -> dict:
    """A whole study on the tiny model: 11 topics x 2 questions, SFT and DPO, 2 checkpoints each."""
    cfg = {
        "models": {"tiny": {"source": "local", "path": str(model_dir), "prompt_format": "plain"}},
        "datasets": {
            "demo-instruct": {"kind": "sft", "source": "jsonl", "path": str(REPO / "data/demo/sft.jsonl")},
            "demo-support": {"kind": "preference", "source": "jsonl", "path": str(REPO / "data/demo/preferences.jsonl")},
        },
        "questions": {"source": "file", "path": str(REPO / "data/demo/questions.jsonl"), "per_category": 2},
        "training": {
            "sft": {"learning_rate": 1e-3, "global_batch_size": 8, "per_device_batch_size": 8, "max_length": 128,
                    "schedule_steps": 12, "bf16": False},
            "dpo": {"learning_rate": 1e-3, "global_batch_size": 4, "per_device_batch_size": 4, "max_length": 128,
                    "schedule_steps": 12, "bf16": False},
        },
        "runs": [
            {"base": "tiny", "sft": "demo-instruct", "every": 2, "max_steps": 4},
            {"base": "tiny", "sft": "demo-instruct", "algorithm": "dpo", "preference": "demo-support", "every": 2, "max_steps": 4},
        ],
        "generation": {"samples": 2, "max_new_tokens": 8, "batch_size": 32, "dtype": "float32"},
        "judge": {"backend": "local", "model": "tiny", "batch_size": 32},
        "drift": {"bootstrap_resamples": 200},
    }
    for key, value in overrides.items():
        cfg[key] = value
    return cfg


@pytest.fixture(scope="module")
def llama_server(tmp_path_factory):
    """A real OpenAI-compatible server on loopback (tests/llm_server.py: llama.cpp serving SmolLM2
    as "smollm2") with a fresh API key; skips where llama-cpp-python is missing."""
    import secrets

    from llm_server import LlamaServer, missing_server_dependency

    why = missing_server_dependency()
    if why:
        pytest.skip(why)
    srv = LlamaServer(tmp_path_factory.mktemp("server") / "server.log", alias="smollm2",
                      api_key="sk-loopback-" + secrets.token_hex(12)).start()
    yield srv
    srv.stop()


def copy_workflow(dest: Path) -> Path:
    """``dest`` holding a copy of the workflow (Snakefile, rules, profiles, data) and an empty config/."""
    dest.mkdir(parents=True, exist_ok=True)
    for item in ("Snakefile", "workflow", "profiles", "data", "envs", "configs"):
        src = REPO / item
        if not src.exists():
            continue
        if src.is_dir():
            shutil.copytree(src, dest / item, symlinks=True)
        else:
            shutil.copy(src, dest / item)
    (dest / "config").mkdir(exist_ok=True)
    return dest


@pytest.fixture
def workdir(tmp_path) -> Path:
    """A scratch working directory holding a copy of the workflow (Snakefile, rules, data)."""
    return copy_workflow(tmp_path)


def write_config(workdir: Path, cfg: dict, name: str = "config.yaml") -> Path:
    path = workdir / "config" / name
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def no_network_prefix() -> list[str]:
    """`unshare -n` (a process without any network) where this machine allows it."""
    probe = subprocess.run(["unshare", "-n", "true"], capture_output=True) if shutil.which("unshare") else None
    return ["unshare", "-n"] if probe is not None and probe.returncode == 0 else []


def snakemake(workdir: Path, *args: str, check: bool = True, timeout: int = 1200,
              prefix: list[str] | None = None) -> subprocess.CompletedProcess:
    cmd = [*(prefix or []), sys.executable, "-m", "snakemake", "--profile", str(REPO / "profiles/local"), *args]
    proc = subprocess.run(cmd, cwd=workdir, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"})
    if check and proc.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-8000:]}")
    return proc


def planned_jobs(workdir: Path, *args: str, prefix: list[str] | None = None) -> dict[str, int]:
    """Job counts per rule that a dry run would execute ({} when nothing is to be done)."""
    proc = snakemake(workdir, *args, "-n", "--quiet", "rules", prefix=prefix)
    counts: dict[str, int] = {}
    for line in proc.stdout.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].isdigit() and parts[0] not in ("total", "job"):
            counts[parts[0]] = int(parts[1])
    return counts


# --------------------------------------------------------------------------- kill -9 helpers
# (tests/faults/test_kill_*.py, tests/test_openai_judge.py, tests/test_training_workflow.py)

def cache_entries(root: Path) -> int:
    """Entries of an LLM/judge call cache (one JSON file per cached call)."""
    return sum(1 for _ in Path(root).rglob("*.json")) if Path(root).exists() else 0


def start_snakemake(workdir: Path, *args: str) -> subprocess.Popen:
    """`snakemake --profile profiles/local ...` in the background, in a session of its own (so
    that os.killpg takes it and its jobs at once, as a node failure or ``scancel`` does). Its
    output goes to a file in ``workdir`` (a pipe nobody reads until the kill would fill and
    block Snakemake); ``_output`` reads it back."""
    cmd = [sys.executable, "-m", "snakemake", "--profile", str(REPO / "profiles/local"), *args]
    output = Path(workdir) / f"snakemake-{time.monotonic_ns()}.out"
    with open(output, "wb") as fh:
        proc = subprocess.Popen(cmd, cwd=workdir, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True,
                                env={**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"})
    proc.output_path = output
    return proc


def snakemake_job(snake: subprocess.Popen, script: str, timeout: float = 600):
    """The running job of Snakemake ``snake`` whose command line names ``script`` (a
    psutil.Process), once it has started; fails if Snakemake ends first."""
    import psutil

    parent = psutil.Process(snake.pid)
    deadline = time.monotonic() + timeout
    while True:
        for child in parent.children(recursive=True):
            try:
                if any(script in part for part in child.cmdline()):
                    return child
            except psutil.NoSuchProcess:
                continue
        if snake.poll() is not None:
            pytest.fail(f"snakemake ended before its {script} job ran:\n{_output(snake)[-3000:]}")
        if time.monotonic() > deadline:
            pytest.fail(f"no {script} job within {timeout:.0f} s")
        time.sleep(0.02)


def _output(proc: subprocess.Popen) -> str:
    if getattr(proc, "output_path", None):
        return Path(proc.output_path).read_text(errors="replace")
    out = proc.stdout.read() if proc.stdout else ""
    return out.decode(errors="replace") if isinstance(out, bytes) else out or ""


def kill9_when(proc: subprocess.Popen, ready, *, timeout: float = 300, delay: float = 0.0,
               group: bool = False, job=None) -> str:
    """SIGKILL ``proc`` (its whole process group with ``group``; or only the psutil process
    ``job`` and its children, e.g. one Snakemake job) once ``ready()`` holds, ``delay`` seconds
    later. Fails if ``proc`` (or ``job``) ends before the kill. Returns ``proc``'s output; after
    a kill of ``proc`` itself, its exit status is -SIGKILL (checked)."""
    def victim_alive():
        import psutil

        if job is None:
            return proc.poll() is None
        try:
            return job.is_running() and job.status() != "zombie"
        except psutil.NoSuchProcess:  # it ended between the two calls
            return False

    try:
        deadline = time.monotonic() + timeout
        while not ready():
            if proc.poll() is not None or not victim_alive():
                pytest.fail(f"the job ended before the kill:\n{_output(proc)[-3000:]}")
            if time.monotonic() > deadline:
                pytest.fail(f"not ready for the kill within {timeout:.0f} s")
            time.sleep(0.01)
        time.sleep(delay)
        assert proc.poll() is None and victim_alive(), "the job finished before the kill: make it slower"
        if job is not None:
            import psutil

            try:
                victims = [job, *job.children(recursive=True)]
            except psutil.NoSuchProcess:
                pytest.fail(f"the job ended before the kill:\n{_output(proc)[-3000:]}")
            for p in victims:
                try:
                    p.send_signal(signal.SIGKILL)
                except psutil.NoSuchProcess:
                    pass
        elif group:
            os.killpg(proc.pid, signal.SIGKILL)
        else:
            os.kill(proc.pid, signal.SIGKILL)
    except BaseException:  # leave nothing running behind a failed test
        if proc.poll() is None:
            own_group = os.getpgid(proc.pid) == proc.pid
            os.killpg(proc.pid, signal.SIGKILL) if own_group else proc.kill()
        proc.wait(timeout=30)
        raise
    out = proc.communicate(timeout=300)[0]
    out = out.decode(errors="replace") if isinstance(out, bytes) else out or ""
    if job is None:
        assert proc.returncode == -signal.SIGKILL, (proc.returncode, out[-2000:])
    return out


# --------------------------------------------------------------------------- the one local SLURM

@contextlib.contextmanager
def local_slurm_session(timeout: float = 3600):
    """Hold the machine's one local SLURM (tools/local-slurm.sh: one state dir, fixed ports) for a
    test module: an exclusive lock that other pytest sessions' SLURM fixtures wait for, so that no
    session restarts the daemons (in another mode) or stops them under another's running jobs."""
    import fcntl

    path = Path(os.environ.get("VALUEDRIFT_SLURM_DIR", "/tmp/valuedrift-slurm").rstrip("/") + ".session.lock")
    with open(path, "w") as fh:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    pytest.fail(f"another test session holds the local SLURM ({path}) for over {timeout:.0f} s")
                time.sleep(2)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
