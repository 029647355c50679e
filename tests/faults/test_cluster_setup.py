"""A SLURM cluster without accounting (no slurmdbd, AccountingStorageType=accounting_storage/none,
as many small clusters are), against real daemons: tools/local-slurm.sh with
VALUEDRIFT_SLURM_ACCOUNTING=0.

Without the check in the workflow's start hook (valuedrift.cluster), `snakemake --profile
profiles/slurm` submits the jobs, they COMPLETE, and Snakemake waits for them without end: the
plugin polls with sacct, which fails here, and logs that at debug level only. With it, the run
stops before anything is submitted (no local job runs either), naming the flag and the profile
key, also when squeue is asked for but the plugin would fall back to sacct (MinJobAge shorter
than 3 x the first status check's delay); with the flag the same command builds the target. The job's own Snakemake (`--mode
remote`, inside the SLURM job) does not repeat the planning-time warnings. Last, the two
sbatch errors users meet first (an unknown partition, more CPUs per GPU than a node has) reach
the user in SLURM's own words, and nothing finished is lost.

The opposite case, a cluster with accounting passing the check, is every run of tests/test_slurm.py.
"""

from __future__ import annotations

import copy
import os
import re
import subprocess
import time

import pytest

from conftest import REPO, copy_workflow, local_slurm_session, write_config
from test_slurm import run_snakemake, slurm_study
from valuedrift import cluster, tables

pytestmark = [pytest.mark.slurm, pytest.mark.slow, pytest.mark.timeout(900, func_only=True)]  # not the wait for the SLURM lock (another module may hold it)

TARGET = "results/generations/tiny/base.parquet"


@pytest.fixture(scope="module")
def slurm_without_accounting():
    if os.geteuid() != 0:
        pytest.skip("tools/local-slurm.sh needs root (CI runs as root)")
    script = REPO / "tools/local-slurm.sh"
    env = {**os.environ, "VALUEDRIFT_SLURM_ACCOUNTING": "0"}
    with local_slurm_session():  # never restart the daemons under another session's jobs
        up = subprocess.run([str(script), "up"], capture_output=True, text=True, timeout=1800, env=env)
        if up.returncode != 0:
            pytest.fail(f"tools/local-slurm.sh up (no accounting) failed ({up.returncode}):\n{up.stderr[-4000:]}")
        conf = re.search(r"export SLURM_CONF=(\S+)", up.stdout).group(1)
        saved = os.environ.get("SLURM_CONF")
        os.environ["SLURM_CONF"] = conf
        yield conf
        subprocess.run([str(script), "down"], capture_output=True, text=True, timeout=300, env=env)
    if saved is None:
        os.environ.pop("SLURM_CONF", None)
    else:
        os.environ["SLURM_CONF"] = saved


def slurm_jobs() -> dict[str, tuple[str, str]]:
    """Every job slurmctld knows (finished ones stay MinJobAge = 300 s): id -> (state, comment).
    A state is "FAILED:BadConstraints:00:00:00" for a request no node can satisfy (sbatch refuses it
    and SLURM records it as failed, never run)."""
    out = subprocess.run(["scontrol", "-o", "show", "jobs"], capture_output=True, text=True, check=True).stdout
    jobs = {}
    for line in out.splitlines():
        fields = dict(re.findall(r"(\w+)=(\S*)", line))
        if "JobId" in fields:
            state = fields.get("JobState")
            if state == "FAILED" and fields.get("Reason") == "BadConstraints":
                state += f":BadConstraints:{fields.get('RunTime')}"
            jobs[fields["JobId"]] = (state, fields.get("Comment", ""))
    return jobs


def test_cluster_without_accounting_stops_before_submitting_and_the_named_flag_runs_it(
        slurm_without_accounting, tiny_model, tmp_path):
    # the real daemons really have no accounting
    sacct = subprocess.run(["sacct", "-X", "-n"], capture_output=True, text=True)
    assert sacct.returncode != 0 and "accounting storage is disabled" in sacct.stderr
    assert cluster.slurm_config()["AccountingStorageType"] == "accounting_storage/none"

    wd = copy_workflow(tmp_path / "study")
    cfg = slurm_study(tiny_model)
    cfg["questions"]["per_category"] = 1
    cfg["generation"].update(samples=1, max_new_tokens=4)
    write_config(wd, cfg)
    before = slurm_jobs()

    t0 = time.monotonic()
    proc = run_snakemake(wd, "--slurm-init-seconds-before-status-checks", "5", TARGET, timeout=300)
    stopped_after = time.monotonic() - t0
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out[-4000:]
    assert "SLURM job states cannot be polled with sacct: this cluster has no accounting" in out, out[-4000:]
    assert "AccountingStorageType = accounting_storage/none" in out
    assert "Slurm accounting storage is disabled" in out  # sacct's own words
    assert "--slurm-status-command squeue" in out and "`slurm-status-command: squeue` in profiles/slurm" in out
    assert slurm_jobs() == before, "a job was submitted"
    assert not (wd / "results").exists() or not any((wd / "results").rglob("*.parquet")), "a local job ran"

    # squeue asked for, but a first status check so late that MinJobAge (300 s) could lose a
    # finished job: the plugin would poll with sacct after all; the check says what to change
    proc = run_snakemake(wd, "--slurm-init-seconds-before-status-checks", "200", "--slurm-status-command", "squeue",
                         TARGET, timeout=300)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "You set the status command to squeue, but the SLURM plugin falls back to sacct because MinJobAge " \
           "(300 sec) is shorter than 3 x slurm-init-seconds-before-status-checks (200 s)" in out, out[-4000:]
    assert "lower `slurm-init-seconds-before-status-checks` in profiles/slurm/config.yaml" in out
    assert slurm_jobs() == before, "a job was submitted"

    # the fix the message names: the same command with squeue polling builds the target
    t0 = time.monotonic()
    proc = run_snakemake(wd, "--slurm-init-seconds-before-status-checks", "5", "--slurm-status-command", "squeue",
                         "--slurm-keep-successful-logs", TARGET, timeout=600)
    built_after = time.monotonic() - t0
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-6000:]
    new = {j: s for j, s in slurm_jobs().items() if j not in before}
    assert [(state, comment.split("_wildcards_")[0]) for state, comment in new.values()] == \
        [("COMPLETED", "rule_generate")], new
    assert len(tables.read(wd / TARGET, "generations")) == 11

    # planning-time warnings: printed once by the planning Snakemake, not by the job's own one
    assert "valuedrift warning: config key 'judge.model'" in out
    [job_log] = (wd / ".snakemake/slurm_logs/rule_generate").rglob("*.log")
    log = job_log.read_text()
    assert "rule generate:" in log and "Finished jobid" in log, log[-3000:]  # the job ran its rule here
    assert "valuedrift warning" not in log, log[-3000:]

    # the two sbatch errors users meet first (docs/cluster.md): SLURM's words reach the user,
    # nothing is queued, the finished generations are kept
    kept = (wd / TARGET).stat().st_mtime_ns
    for infer, said in [({"slurm_partition": "nope"}, "Invalid partition name specified"),
                        ({"cpus_per_gpu": os.cpu_count() + 1}, "Requested node configuration is not available")]:
        bad = copy.deepcopy(cfg)
        bad["resources"]["infer"].update(infer)  # resources are no rerun trigger: only the judge job is due
        write_config(wd, bad)
        proc = run_snakemake(wd, "--slurm-init-seconds-before-status-checks", "5", "--slurm-status-command", "squeue",
                             "--retries", "0", "results/stances/tiny/base.parquet", timeout=300)
        out = proc.stdout + proc.stderr
        assert proc.returncode != 0
        assert "SLURM sbatch failed. The error message was 'sbatch: error: " in out, out[-4000:]
        assert f"sbatch: error: Batch job submission failed: {said}'" in out, out[-4000:]
        assert "Error in rule judge:" in out and "Error in rule generate" not in out
    assert (wd / TARGET).stat().st_mtime_ns == kept
    refused = {j: state for j, (state, _) in slurm_jobs().items() if j not in before and j not in new}
    assert list(refused.values()) == ["FAILED:BadConstraints:00:00:00"], refused  # nothing more ran
    print(f"no accounting: stopped after {stopped_after:.1f} s, nothing submitted; "
          f"with --slurm-status-command squeue built in {built_after:.1f} s")
