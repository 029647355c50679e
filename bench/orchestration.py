"""Orchestration benchmark -> results/bench/orchestration.json.

1. Planning at paper scale: ``snakemake -n`` of config/paper.yaml (4 base models, 56 runs,
   a checkpoint every 100-500 steps: thousands of jobs) in a scratch copy of the workflow,
   timed; then the same DAG's shape (its jobs and edges, from ``--dag``) as a bare
   Snakefile -- one trivial rule per real rule, inputs from a dict -- planned and timed in
   the same run. Goal: the real workflow plans within 1.5x of the bare one; what is left
   above that is the workflow's own cost (input functions, config lookups, file checks).
   ``--profile-planning`` adds a cProfile of the real dry run (top functions).
2. The no-op rerun (``--noop-workdir DIR``, an existing finished study, e.g. a demo
   checkout after ``make demo``): the real ``snakemake`` (not ``-n``) with the demo's
   profile and config, which should find nothing to do; wall time, goal <= 5 s.

Run: .venv/bin/python bench/orchestration.py [--config config/paper.yaml] [--noop-workdir DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from bench_env import REPO  # noqa: E402,F401  (first: offline hub, src/ on the path)
SNAKEMAKE = [sys.executable, "-m", "snakemake"]


def env() -> dict:
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "src"), os.environ.get("PYTHONPATH", "")]),
            "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}


def timed(cmd: list[str], cwd: Path) -> tuple[dict, subprocess.CompletedProcess]:
    """Wall and CPU seconds of a command. On a shared machine CPU seconds are the steadier
    figure: wall time there is mostly waiting for a core."""
    r0, t0 = resource.getrusage(resource.RUSAGE_CHILDREN), time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env=env())
    wall, r1 = time.perf_counter() - t0, resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed in {cwd}:\n{proc.stderr[-3000:]}")
    cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
    return {"wall_s": round(wall, 2), "cpu_s": round(cpu, 2)}, proc


def scratch_workflow(root: Path) -> Path:
    wd = root / "workflow-copy"
    wd.mkdir()
    for item in ("Snakefile", "workflow", "profiles", "config", "data", "envs"):
        src = REPO / item
        if src.is_dir():
            shutil.copytree(src, wd / item, symlinks=True)
        elif src.exists():
            shutil.copy(src, wd / item)
    return wd


def parse_dag(dot: str) -> tuple[dict[int, str], list[tuple[int, int]]]:
    """Jobs (id -> rule) and edges (dependency -> dependent) of ``snakemake --dag`` output."""
    jobs = {int(m[1]): m[2] for m in re.finditer(r'^\s*(\d+)\[label = "([^"\\]+)', dot, re.M)}
    edges = [(int(a), int(b)) for a, b in re.findall(r"^\s*(\d+) -> (\d+)", dot, re.M)]
    return jobs, edges


def bare_snakefile(jobs: dict[int, str], edges: list[tuple[int, int]], path: Path) -> None:
    """A Snakefile with the same jobs and edges: each real rule becomes a rule with output
    out/<rule>/<job id>, inputs looked up in a dict; ``all`` requests the sinks."""
    deps: dict[int, list[int]] = {j: [] for j in jobs}
    for a, b in edges:
        deps[b].append(a)
    has_dependent = {a for a, _ in edges}
    data = {"rule": {str(j): r for j, r in jobs.items()}, "deps": {str(j): d for j, d in deps.items()},
            "sinks": [j for j in jobs if j not in has_dependent]}
    (path.parent / "dag.json").write_text(json.dumps(data))
    rules = sorted(set(jobs.values()))
    lines = ["import json", "D = json.load(open('dag.json'))",
             "def out(j): return f\"out/{D['rule'][str(j)]}/{j}\"",
             "rule all:", "    input: [out(j) for j in D['sinks']]"]
    for r in rules:
        name = "bare_" + re.sub(r"\W", "_", r)
        lines += [f"rule {name}:", f"    output: 'out/{r}/{{job}}'",
                  "    input: lambda wc: [out(d) for d in D['deps'][wc.job]]", "    shell: 'touch {output}'"]
    path.write_text("\n".join(lines) + "\n")


def planning(config: Path, profile: bool) -> dict:
    with tempfile.TemporaryDirectory(prefix="bench-orchestration-") as tmp:
        wd = scratch_workflow(Path(tmp))
        cfg = ["--configfile", str(config if config.is_absolute() else REPO / config)]
        real_s, proc = timed(SNAKEMAKE + ["-n", "--cores", "1", "-q", "rules"] + cfg, wd)
        counts = Counter()
        for line in proc.stdout.splitlines():
            m = re.match(r"^(\w+)\s+(\d+)$", line.strip())
            if m and m[1] != "total":
                counts[m[1]] = int(m[2])
        dag_s, proc = timed(SNAKEMAKE + ["--dag", "--cores", "1"] + cfg, wd)
        jobs, edges = parse_dag(proc.stdout)
        bare = Path(tmp) / "bare"
        bare.mkdir()
        bare_snakefile(jobs, edges, bare / "Snakefile")
        bare_s, _ = timed(SNAKEMAKE + ["-n", "--cores", "1", "-q", "rules"], bare)
        result = {"config": str(config), "jobs": len(jobs), "edges": len(edges), "jobs_counted_by_dry_run": counts,
                  "jobs_by_rule": dict(Counter(jobs.values()).most_common()),
                  "dry_run": real_s, "dag": dag_s, "bare_dry_run": bare_s,
                  "ratio_vs_bare_cpu": round(real_s["cpu_s"] / bare_s["cpu_s"], 2),
                  "ratio_vs_bare_wall": round(real_s["wall_s"] / bare_s["wall_s"], 2), "goal": "<= 1.5x the bare DAG"}
        if profile:
            prof = Path(tmp) / "plan.prof"
            timed([sys.executable, "-m", "cProfile", "-o", str(prof), "-m", "snakemake", "-n", "--cores", "1", "-q",
                   "rules"] + cfg, wd)
            import pstats

            stats = pstats.Stats(str(prof))
            rows = sorted(stats.stats.items(), key=lambda kv: -kv[1][3])  # by cumulative time

            def entry(f, line, name, v):
                return {"function": f"{Path(f).name}:{line}:{name}", "cumulative_s": round(v[3], 2),
                        "own_s": round(v[2], 2), "calls": v[1]}

            result["profile_top_cumulative"] = [entry(*k, v) for k, v in rows[:25]]
            # the workflow's own code: rule files (input functions, config lookups) and valuedrift
            own = [(k, v) for k, v in rows if "/workflow/" in k[0] or "Snakefile" in k[0] or "valuedrift" in k[0]]
            result["profile_workflow_functions"] = [entry(*k, v) for k, v in own[:25]]
    return result


def noop_rerun(workdir: Path, config: str) -> dict:
    times, proc = timed(SNAKEMAKE + ["--profile", "profiles/local", "--configfile", config], workdir)
    text = proc.stdout + proc.stderr
    return {"workdir": str(workdir), **times, "nothing_to_do": "Nothing to be done" in text, "goal": "<= 5 s"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", type=Path, default=Path("config/paper.yaml"))
    ap.add_argument("--profile-planning", action="store_true")
    ap.add_argument("--noop-workdir", type=Path, help="a finished study's checkout (runs real snakemake there)")
    ap.add_argument("--noop-config", default="config/config.yaml")
    ap.add_argument("--output", type=Path, default=REPO / "results/bench/orchestration.json")
    args = ap.parse_args()
    result = {"planning": planning(args.config, args.profile_planning), "load_average": os.getloadavg()}
    result["noop_rerun"] = (noop_rerun(args.noop_workdir, args.noop_config) if args.noop_workdir else
                            {"skipped": "pass --noop-workdir DIR (a checkout where `make demo` has finished)"})
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
