"""``python -m valuedrift.plan --configfile X``: check a study and size it before running it.

Validates the config (the same check the workflow runs first), prints the warnings of
:mod:`valuedrift.preflight` and the disk and time estimate of :mod:`valuedrift.estimate`.
Exit status 1 on an invalid config; warnings do not fail it.
"""

from __future__ import annotations

import argparse
import sys

from . import config as vd_config
from . import estimate, paths, preflight


def plan_text(config: dict, workdir: str = ".", *, tflops: float = 0.1, job_overhead_s: float = 30.0) -> str:
    warnings = preflight.warnings_for(config, workdir)
    lines = [f"Warnings ({len(warnings)}):", *[f"  - {w}" for w in warnings]] if warnings else ["Warnings: none"]
    lines.append(estimate.format_estimate(estimate.estimate(config, workdir, tflops=tflops,
                                                            job_overhead_s=job_overhead_s)))
    return "\n".join(lines)


def print_at_start(config: dict, workdir: str = ".", *, dryrun: bool = False) -> None:
    """The workflow's start: warnings always, the estimate in a dry run (to stderr, apart from
    snakemake's job summary)."""
    for warning in preflight.warnings_for(config, workdir):
        print(f"valuedrift warning: {warning}", file=sys.stderr)
    if dryrun:
        print(estimate.format_estimate(estimate.estimate(config, workdir)), file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m valuedrift.plan", description=__doc__.splitlines()[0])
    parser.add_argument("--configfile", default="config/config.yaml")
    parser.add_argument("--workdir", default=".", help="where the workflow runs (paths in the config are relative to it)")
    parser.add_argument("--tflops", type=float, default=0.1,
                        help="effective TFLOP/s of your hardware for the time estimate (default 0.1: a small CPU)")
    parser.add_argument("--job-overhead-s", type=float, default=30.0,
                        help="seconds each model-loading job spends starting and loading (default 30)")
    args = parser.parse_args(argv)
    try:
        config = vd_config.load(args.configfile, args.workdir)
    except vd_config.ConfigError as err:
        print(f"invalid config:\n{err}", file=sys.stderr)
        return 1
    paths.use_results_dir(config.get("results_dir"))  # where built artifacts are looked up
    print(f"{args.configfile}: valid")
    print(plan_text(config, args.workdir, tflops=args.tflops, job_overhead_s=args.job_overhead_s))
    return 0


if __name__ == "__main__":
    sys.exit(main())
