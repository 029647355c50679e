"""Checks of a SLURM cluster before the first job is submitted (profiles/slurm, docs/cluster.md).

snakemake-executor-plugin-slurm learns that a job has finished by polling ``sacct``
(its default wherever the ``sacct`` binary exists) or ``squeue``. On a cluster without
accounting (no slurmdbd, ``AccountingStorageType=accounting_storage/none``) every
``sacct`` call fails, the plugin logs that at debug level only, and Snakemake waits for
jobs that have long COMPLETED, silently, for ever. :func:`check_status_polling` runs the
poll the plugin would run, once, before anything is submitted, and stops the workflow
with the flag and profile key that fix it.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Mapping

PROFILE = "profiles/slurm/config.yaml"


class ClusterError(RuntimeError):
    """The cluster cannot run this workflow as configured; the message says what to set."""


def _run(cmd: list[str], timeout: float = 30) -> tuple[int, str]:
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except FileNotFoundError:
        return 127, f"{cmd[0]}: command not found"
    except subprocess.TimeoutExpired:
        return 124, f"{' '.join(cmd[:2])}: no answer within {timeout:.0f} s"
    return proc.returncode, (proc.stderr.strip() or proc.stdout.strip())


def slurm_config() -> dict[str, str]:
    """``scontrol show config`` as a dict ({} where scontrol does not answer)."""
    try:
        out = subprocess.run(["scontrol", "show", "config"], capture_output=True, text=True, timeout=30).stdout
    except (FileNotFoundError, subprocess.TimeoutExpired):
        return {}
    conf = {}
    for line in out.splitlines():
        key, sep, value = line.partition("=")
        if sep and key.strip() and " " not in key.strip():
            conf[key.strip()] = value.strip()
    return conf


def seconds(value: str | None) -> int | None:
    """``300 sec``, ``300``, ``5 min``, ``1h`` -> seconds (None when unreadable)."""
    m = re.fullmatch(r"(\d+)\s*([a-z]*)", (value or "").strip().lower())
    if not m:
        return None
    unit = m.group(2)
    factor = 1 if unit in ("", "s", "sec", "secs", "second", "seconds") else \
        60 if unit in ("m", "min", "mins", "minute", "minutes") else \
        3600 if unit in ("h", "hour", "hours") else None
    return None if factor is None else int(m.group(1)) * factor


def polling_command(status_command: str | None, init_seconds: int, min_job_age: int | None,
                    sacct_installed: bool) -> str:
    """The command the plugin (2.8) will really poll with: its default is sacct wherever sacct is
    installed, and it falls back from squeue to sacct when squeue could miss finished jobs
    (MinJobAge shorter than 3 x the first status check's delay)."""
    command = status_command or ("sacct" if sacct_installed else "squeue")
    if command == "squeue" and sacct_installed and (min_job_age is None or min_job_age < 3 * init_seconds):
        command = "sacct"
    if command == "sacct" and not sacct_installed:
        command = "squeue"
    return command


def check_status_polling(settings: object | Mapping | None = None) -> str:
    """Raise :class:`ClusterError` when the plugin's job-status polling cannot work here.

    ``settings``: the SLURM plugin's executor settings (``workflow.executor_settings``; any
    object or mapping with ``status_command`` and ``init_seconds_before_status_checks``).
    Returns the command that will poll.
    """
    def get(name, default):
        value = settings.get(name) if isinstance(settings, Mapping) else getattr(settings, name, None)
        return default if value is None else value

    status_command = get("status_command", None)
    init_seconds = int(get("init_seconds_before_status_checks", 40))
    conf = slurm_config()
    min_job_age = seconds(conf.get("MinJobAge"))
    command = polling_command(status_command, init_seconds, min_job_age, shutil.which("sacct") is not None)
    if command != "sacct":
        return command
    # the plugin's own query (-X --parsable2 --clusters all ... --name <run id>), for a name no job has
    rc, said = _run(["sacct", "-X", "--parsable2", "--clusters", "all", "--noheader", "--format=JobIdRaw,State",
                     "--starttime", "now-1hours", "--endtime", "now", "--name", "valuedrift-accounting-check"])
    if rc == 0:
        return command
    storage = conf.get("AccountingStorageType", "unknown (scontrol show config did not answer)")
    why = ("this cluster has no accounting" if storage.endswith("/none")
           else "sacct does not work here (is slurmdbd down?)")
    if status_command == "squeue":
        fix = (f"You set the status command to squeue, but the SLURM plugin falls back to sacct because "
               f"MinJobAge ({conf.get('MinJobAge', 'unknown')}) is shorter than 3 x "
               f"slurm-init-seconds-before-status-checks ({init_seconds} s), so squeue could miss finished "
               f"jobs: lower `slurm-init-seconds-before-status-checks` in {PROFILE} (or "
               f"--slurm-init-seconds-before-status-checks) to at most MinJobAge / 3, or ask the cluster's "
               f"admins to raise MinJobAge in slurm.conf.")
    else:
        fix = (f"Poll job states with squeue instead: pass --slurm-status-command squeue, or set "
               f"`slurm-status-command: squeue` in {PROFILE} (it is there, commented out). squeue sees a "
               f"finished job for MinJobAge ({conf.get('MinJobAge', 'unknown')}; it must be at least 3 x "
               f"slurm-init-seconds-before-status-checks = {3 * init_seconds} s).")
    raise ClusterError(
        f"SLURM job states cannot be polled with sacct: {why} (AccountingStorageType = {storage}; "
        f"`sacct` says: {said.splitlines()[-1] if said else f'exit status {rc}'}). Snakemake's SLURM plugin "
        f"would submit the jobs, and then wait for them without end after they finish. Nothing was "
        f"submitted. {fix}")
