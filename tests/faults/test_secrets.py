"""Secrets: a study run whose judge key is a sentinel leaves the key in no file under
results/, logs/ and .snakemake/, and in nothing Snakemake or the jobs print. The key
goes only to the configured endpoint (a real loopback server that checks it), and plain
http to anything but loopback is refused (tests/faults/test_bad_inputs.py, test_judge_endpoint.py).
"""

from __future__ import annotations

import secrets
import shutil
from pathlib import Path

import pytest

from conftest import snakemake, tiny_config, write_config
from llm_server import LlamaServer, missing_server_dependency

KEY_ENV = "VALUEDRIFT_SENTINEL_KEY"


def files_under(root: Path):
    return [p for p in root.rglob("*") if p.is_file()] if root.exists() else []


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_sentinel_key_is_nowhere_on_disk_or_in_output(workdir, tiny_model, tmp_path, monkeypatch):
    why = missing_server_dependency()
    if why:
        pytest.skip(why)
    sentinel = "sk-SENTINEL-" + secrets.token_hex(16)
    server = LlamaServer(tmp_path / "server.log", alias="smollm2", api_key=sentinel).start()
    try:
        cfg = tiny_config(tiny_model, judge={"backend": "openai", "model": "smollm2", "base_url": server.base_url,
                                              "api_key_env": KEY_ENV, "concurrency": 2, "timeout_s": 60})
        cfg["generation"]["samples"] = 1
        cfg["questions"]["per_category"] = 1
        write_config(workdir, cfg)
        monkeypatch.setenv(KEY_ENV, sentinel)
        target = "results/stances/tiny/base.parquet"
        proc = snakemake(workdir, target, timeout=900)
        assert (workdir / target).exists()
        # a second run with a revoked key and no cache: the error is printed, the key is not
        shutil.rmtree(workdir / "results/cache")
        monkeypatch.setenv(KEY_ENV, sentinel + "-revoked")
        failed = snakemake(workdir, target, "--forcerun", "judge", check=False, timeout=900)
    finally:
        server.stop()
    printed = proc.stdout + proc.stderr + failed.stdout + failed.stderr
    assert failed.returncode != 0
    judge_log = "".join(p.read_text() for p in files_under(workdir / "logs") if "judge" in str(p))
    assert f"refused the key in ${KEY_ENV}" in judge_log + printed and "Invalid API key" in judge_log + printed
    assert sentinel not in printed
    looked_at = 0
    for root in ("results", "logs", ".snakemake"):
        for path in files_under(workdir / root):
            assert sentinel.encode() not in path.read_bytes(), f"the API key leaked into {path}"
            looked_at += 1
    assert looked_at > 10  # the run wrote results, logs and Snakemake metadata
