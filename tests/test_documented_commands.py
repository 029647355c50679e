"""Every `snakemake` command the docs show runs (as a dry run, offline), so none can rot.

Commands come from README.md, docs/*.md and the comments of config/ and profiles/ files;
a command with a placeholder (`<run>`, `...`) or one that acts on the lock (`--unlock`) is
not a runnable example and is skipped. `--profile slurm` (the link `make slurm-profile`
makes) is run as `--profile profiles/slurm`.
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO, no_network_prefix

SOURCES = ["README.md", *sorted(str(p.relative_to(REPO)) for p in (REPO / "docs").glob("*.md")),
           *sorted(str(p.relative_to(REPO)) for p in (REPO / "config").glob("*.yaml")),
           *sorted(str(p.relative_to(REPO)) for p in (REPO / "profiles").glob("*/config.yaml"))]


def documented_commands() -> list[tuple[str, str]]:
    """(source file, command) for every `snakemake ...` command line, continuation lines joined."""
    found = []
    for source in SOURCES:
        lines = (REPO / source).read_text().splitlines()
        i = 0
        while i < len(lines):
            line = re.sub(r"^\s*#?\s*", "", lines[i])
            if line.startswith("snakemake ") and "`" not in line:
                command = line
                while command.endswith("\\") and i + 1 < len(lines):
                    i += 1
                    command = command[:-1].rstrip() + " " + re.sub(r"^\s*#?\s*", "", lines[i])
                found.append((source, command.split("  #")[0].strip()))
            i += 1
    return found


def runnable(command: str) -> bool:
    return not re.search(r"<[^>]+>|\.\.\.|--unlock", command)


def test_the_docs_show_commands():
    commands = documented_commands()
    assert any("config/paper.yaml" in c for _, c in commands)
    assert sum(runnable(c) for _, c in commands) >= 4


@pytest.mark.parametrize("source,command", [c for c in documented_commands() if runnable(c[1])],
                         ids=lambda v: v if "/" in v and " " not in v else None)
def test_documented_command_dry_runs(source, command, tmp_path):
    args = shlex.split(command)[1:]
    configs = args[args.index("--configfile") + 1:] if "--configfile" in args else []
    missing = [c for c in configs if not (REPO / c).exists()]
    if missing:  # a file the reader writes first (docs/own-study.md: tested by tests/test_own_study.py)
        pytest.skip(f"{source}: {missing} is written by the reader")
    if any("../shared" in (REPO / c).read_text() for c in configs):
        if not (REPO.parent / "shared").exists():
            pytest.skip("needs ../shared beside the checkout")
        (tmp_path / "shared").symlink_to(REPO.parent / "shared")
    workdir = tmp_path / "wd"  # so that ../shared is the checkout's neighbour, as in a real checkout
    workdir.mkdir()
    for item in ("Snakefile", "workflow", "profiles", "data", "envs", "config"):
        src = REPO / item
        (shutil.copytree if src.is_dir() else shutil.copy)(src, workdir / item)
    args = ["profiles/slurm" if a == "slurm" and args[i - 1] == "--profile" else a for i, a in enumerate(args)]
    if "-n" not in args:
        args.insert(0, "-n")
    proc = subprocess.run([*no_network_prefix(), sys.executable, "-m", "snakemake", *args], cwd=workdir,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"{source}: `{command}` failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
