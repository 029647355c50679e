"""Bad inputs are rejected before any expensive work, with an error that names the file,
row or config key and suggests the fix. One parametrised case per bad input; each asserts
the exact pieces a user needs (where, what, how to fix) and that nothing was written.
"""

from __future__ import annotations

import copy
import json
import shutil
import struct
from pathlib import Path

import polars as pl
import pytest

from conftest import REPO, tiny_config
from valuedrift import config as vd_config
from valuedrift import datasets, integrity, questions, tables

# -- config ---------------------------------------------------------------------------------


def _set(path: str, value):
    """A mutation setting ``path`` (dots; [i] for list items) to ``value``."""
    def mutate(cfg):
        node = cfg
        parts = path.replace("]", "").replace("[", ".").split(".")
        for part in parts[:-1]:
            node = node[int(part)] if part.isdigit() else node.setdefault(part, {})
        last = parts[-1]
        node[int(last) if last.isdigit() else last] = value
    return mutate


def _openai(**judge):
    return _set("judge", {"backend": "openai", **judge})


def _add_run(**run):
    def mutate(cfg):
        cfg["runs"].append({"base": "tiny", "sft": "demo-instruct", "every": 2, "max_steps": 4, **run})
    return mutate


def _rename_model(new):
    def mutate(cfg):
        cfg["models"][new] = cfg["models"].pop("tiny")
        for run in cfg["runs"]:
            run["base"] = new
        cfg["judge"]["model"] = new
    return mutate


CONFIG_CASES = {
    "misspelt key": (_set("generation.temprature", 0.5),
                     ["generation", "'temprature'", "did you mean 'temperature'"]),
    "misspelt section": (lambda c: c.update(judeg=c.pop("judge")), ["top level", "did you mean 'judge'"]),
    "misspelt nested key": (_set("training.sft.learning_rte", 1e-3), ["training.sft", "did you mean 'learning_rate'"]),
    "number in quotes": (_set("generation.samples", "5"),
                         ["generation.samples", "expected an integer", "without quotes"]),
    "wrong type (list for number)": (_set("drift.confidence", [0.9]), ["drift.confidence", "expected a number"]),
    "misspelt enum value": (_set("judge.backend", "opanai"), ["judge.backend", "did you mean 'openai'", "'local'"]),
    "interval beyond max_steps": (_set("runs[0].every", 10),
                                  ["runs[0].every", "(10) is larger than runs[0].max_steps (4)", "every <= max_steps"]),
    "unknown model": (_set("runs[0].base", "tinny"), ["runs[0].base", "'tinny'", "did you mean 'tiny'"]),
    "unknown dataset": (_set("runs[0].sft", "demo-instruc"), ["runs[0].sft", "did you mean 'demo-instruct'"]),
    "unknown algorithm": (_set("runs[1].algorithm", "dop"), ["runs[1].algorithm", "did you mean 'dpo'"]),
    "unknown judge model": (_set("judge.model", "tinyy"), ["judge.model", "did you mean 'tiny'"]),
    "missing dataset file": (_set("datasets.demo-instruct.path", "data/nope.jsonl"),
                             ["datasets.demo-instruct.path", "file not found: data/nope.jsonl"]),
    "missing questions file": (_set("questions.path", "nope/questions.jsonl"), ["questions.path", "file not found"]),
    "openai judge without model": (_openai(base_url="https://api.openai.com/v1"),
                                   ["judge.model' is required for the openai judge", "/models"]),
    "openai judge without base_url": (_openai(model="gpt-4o"), ["judge.base_url' is required"]),
    "base_url without /v1": (_openai(model="m", base_url="http://127.0.0.1:8000"),
                             ["judge.base_url", "ends in /v1", "http://127.0.0.1:8000/v1"]),
    "plain http to a remote host": (_openai(model="m", base_url="http://judge.example.org/v1"),
                                    ["judge.base_url", "unencrypted", "judge.allow_http: true"]),
    "base_url not a URL": (_openai(model="m", base_url="api.openai.com/v1"), ["judge.base_url", "not an http(s) URL"]),
    "two runs, one output path": (_add_run(algorithm="dpo", preference="demo-support"),
                                  ["runs[2]", "both write the run tiny/sft-demo-instruct/dpo-demo-support", "runs[1]"]),
    "duplicate SFT run": (_add_run(), ["runs[2]", "duplicate SFT run"]),
    "two seeded runs, one output path": (  # runs[1] is DPO without seeds: seeds [1, 2] twice collide per seed
        lambda cfg: (cfg["runs"].__setitem__(1, {**cfg["runs"][1], "seeds": [1, 2]}),
                     cfg["runs"].append({**cfg["runs"][1]})),
        ["'runs[1] (seed 1)' and 'runs[2] (seed 1)' both write the run tiny/sft-demo-instruct/dpo-seed1-demo-support"]),
    "model name with a slash": (_rename_model("org/tiny"), ["models.org/tiny", "no '/'"]),
}


@pytest.fixture
def cfg(tmp_path):
    """A valid study on a model folder that passes validation (config.json, whole weights, a
    chat template), so each case's error is the only one."""
    import torch
    from safetensors.torch import save_file

    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{}")
    (model / "chat_template.jinja").write_text("{{ messages }}")
    save_file({"w": torch.zeros(2)}, str(model / "model.safetensors"))
    return tiny_config(model)


@pytest.mark.parametrize("case", sorted(CONFIG_CASES))
def test_bad_config_is_rejected_naming_key_and_fix(case, cfg, tmp_path):
    mutate, expected = CONFIG_CASES[case]
    mutate(cfg)
    with pytest.raises(vd_config.ConfigError) as err:
        vd_config.validate(cfg, workdir=tmp_path)
    for piece in expected:
        assert piece in str(err.value), f"{piece!r} missing from:\n{err.value}"


def test_plain_http_is_fine_to_loopback_or_when_allowed(cfg, tmp_path):
    for judge in ({"base_url": "http://127.0.0.1:8000/v1"}, {"base_url": "http://localhost:8000/v1"},
                  {"base_url": "http://judge.example.org/v1", "allow_http": True},
                  {"base_url": "https://api.openai.com/v1"}):
        c = copy.deepcopy(cfg)
        c["judge"] = {"backend": "openai", "model": "gpt-4o", **judge}
        vd_config.validate(c, workdir=tmp_path)


def test_config_file_errors_name_the_file(cfg, tmp_path):
    import yaml

    cfg["generation"]["temprature"] = 0.5
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(cfg))
    with pytest.raises(vd_config.ConfigError, match=f"^{path}: unknown config key 'temprature'"):
        vd_config.load(path, workdir=tmp_path)


# -- model folders ----------------------------------------------------------------------------

def _header_only(folder: Path):
    (folder / "model.safetensors").unlink()


def _pickle_only(folder: Path):
    (folder / "model.safetensors").unlink()
    (folder / "pytorch_model.bin").write_bytes(b"\x80\x04not really a pickle")


def _truncate(folder: Path):
    w = folder / "model.safetensors"
    data = w.read_bytes()
    w.write_bytes(data[: len(data) - 1000])


def _cut_header(folder: Path):
    (folder / "model.safetensors").write_bytes(b"\x10\x00")


def _no_config(folder: Path):
    (folder / "config.json").unlink()


def _missing_shard(folder: Path):
    w = folder / "model.safetensors"
    w.rename(folder / "model-00001-of-00002.safetensors")
    (folder / "model.safetensors.index.json").write_text(json.dumps({"weight_map": {
        "a": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors"}}))


def _bad_header_json(folder: Path):
    (folder / "model.safetensors").write_bytes(struct.pack("<Q", 4) + b"nope" + b"\0" * 16)


FOLDER_CASES = {
    "no weights": (_header_only, ["has no weights (*.safetensors)"]),
    "pickle-only weights": (_pickle_only, ["only pickle weights (pytorch_model.bin)", "safe_serialization=True"]),
    "truncated safetensors": (_truncate, ["model.safetensors: truncated safetensors file", "re-copy"]),
    "safetensors cut inside its header": (_cut_header, ["model.safetensors: truncated safetensors file"]),
    "corrupt safetensors header": (_bad_header_json, ["model.safetensors: corrupt safetensors header"]),
    "half-copied (no config.json)": (_no_config, ["has no config.json", "half-copied"]),
    "half-copied (a shard missing)": (_missing_shard, ["model.safetensors.index.json", "model-00002-of-00002.safetensors",
                                                        "half-copied"]),
}


@pytest.fixture
def broken_model(tiny_model, tmp_path):
    def make(case):
        folder = tmp_path / "models" / "base"
        shutil.copytree(tiny_model, folder)
        FOLDER_CASES[case][0](folder)
        return folder
    return make


@pytest.mark.parametrize("case", sorted(FOLDER_CASES))
def test_broken_model_folder_is_refused_by_config_validation(case, broken_model, tmp_path):
    folder = broken_model(case)
    cfg = tiny_config(folder)
    with pytest.raises(vd_config.ConfigError) as err:
        vd_config.validate(cfg, workdir=tmp_path)
    assert "models.tiny.path" in str(err.value)
    for piece in FOLDER_CASES[case][1]:
        assert piece in str(err.value), f"{piece!r} missing from:\n{err.value}"


@pytest.mark.parametrize("case", ["truncated safetensors", "no weights", "pickle-only weights"])
def test_broken_checkpoint_is_never_loaded(case, broken_model):
    """A checkpoint folder (what generation, judging and the next segment load) that is
    not whole is refused by the loader itself, naming the file."""
    from valuedrift.models import load_causal_lm

    folder = broken_model(case)
    with pytest.raises(integrity.ModelFolderError) as err:
        load_causal_lm(folder)
    assert str(folder) in str(err.value) and FOLDER_CASES[case][1][0] in str(err.value)


def test_empty_local_model_folder_is_refused_by_the_import_job(tmp_path):
    from valuedrift.models import import_base_model

    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="empty is not a transformers model folder \\(no config.json\\)"):
        import_base_model({"source": "local", "path": str(tmp_path / "empty")}, tmp_path / "out", name="tiny")
    assert not (tmp_path / "out").exists()


def test_whole_model_folder_passes(tiny_model):
    assert integrity.check_model_folder(tiny_model) == tiny_model


# -- dataset rows -----------------------------------------------------------------------------

GOOD_SFT = json.dumps({"messages": [{"role": "user", "content": "Hi?"}, {"role": "assistant", "content": "Hello."}]})
ROW_CASES = {
    "missing fields": ("sft", [GOOD_SFT, json.dumps({"prompt": "x"})], [":2:", "needs 'messages'"]),
    "empty response": ("sft", [json.dumps({"messages": [{"role": "user", "content": "Hi"},
                                                        {"role": "assistant", "content": "  "}]})],
                       [":1:", "non-empty assistant reply"]),
    "wrong role": ("sft", [GOOD_SFT, GOOD_SFT, json.dumps({"messages": [{"role": "human", "content": "Hi"},
                                                                        {"role": "assistant", "content": "Yo"}]})],
                   [":3:", "'human'", "role in ['assistant', 'system', 'user']"]),
    "not a JSON object": ("sft", [GOOD_SFT, "[1, 2]"], [":2:", "expected a JSON object"]),
    "cut-off JSON line": ("sft", [GOOD_SFT, GOOD_SFT[:40]], [":2:", "invalid JSON", "cut off"]),
    "preference without rejected": ("preference", [json.dumps({"prompt": "p", "chosen": "c"})],
                                    [":1:", "needs 'chosen' and 'rejected'"]),
    "preference with empty prompt": ("preference", [json.dumps({"prompt": " ", "chosen": "c", "rejected": "r"})],
                                     [":1:", "empty prompt"]),
}


@pytest.mark.parametrize("case", sorted(ROW_CASES))
def test_malformed_dataset_rows_name_file_and_line(case, tmp_path):
    kind, lines, expected = ROW_CASES[case]
    path = tmp_path / "train.jsonl"
    text = "\n".join(lines)
    path.write_text(text if case == "cut-off JSON line" else text + "\n")
    with pytest.raises(datasets.DatasetError) as err:
        datasets.load_rows({"kind": kind, "source": "jsonl", "path": "train.jsonl"}, workdir=tmp_path)
    assert "train.jsonl" in str(err.value)
    for piece in expected:
        assert piece in str(err.value), f"{piece!r} missing from:\n{err.value}"


def test_non_utf8_bytes_name_the_line_and_the_fix(tmp_path):
    path = tmp_path / "train.jsonl"
    path.write_bytes((GOOD_SFT + "\n").encode() + GOOD_SFT.replace("Hello.", "Caf\xe9.").encode("latin-1") + b"\n")
    with pytest.raises(datasets.DatasetError, match=r"train.jsonl:2: not UTF-8 \(byte 0xe9 .*re-encode the file as UTF-8"):
        datasets.load_rows({"kind": "sft", "source": "jsonl", "path": "train.jsonl"}, workdir=tmp_path)


def test_missing_dataset_file_is_named(tmp_path):
    with pytest.raises(datasets.DatasetError, match="nope.jsonl: dataset file not found"):
        datasets.load_rows({"kind": "sft", "source": "jsonl", "path": "nope.jsonl"}, workdir=tmp_path)


# -- question files and tables ----------------------------------------------------------------

def test_question_file_with_an_unknown_category(tmp_path):
    path = tmp_path / "q.jsonl"
    path.write_text(json.dumps({"question_id": "q1", "category": "Discussions on Abortoin", "question": "Why?"}) + "\n")
    with pytest.raises(questions.QuestionError) as err:
        questions.read_question_file(path)
    msg = str(err.value)
    assert str(path) in msg and "Discussions on Abortoin" in msg and "add a 'topic' column" in msg
    assert "Discussions on Abortion" in msg  # the valid names are listed


def test_question_file_with_duplicate_ids(tmp_path):
    path = tmp_path / "q.jsonl"
    rows = [{"question_id": "q1", "category": "Immigration Policies", "question": "Open borders?"},
            {"question_id": "q1", "category": "Race and Racism", "question": "Is racism over?"}]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(tables.TableError, match=f"{path}: column 'question_id' has values duplicated \\('q1'\\)"):
        questions.read_question_file(path)


TABLE_CASES = {
    "generations: missing column": ("generations", {"question_id": ["q"], "sample": [0], "prompt": ["p"], "response": ["r"]},
                                    ["missing columns ['n_tokens']"]),
    "generations: negative sample": ("generations", {"question_id": ["q"], "sample": [-1], "prompt": ["p"],
                                                     "response": ["r"], "n_tokens": [3]}, ["column 'sample'", "below minimum 0"]),
    "generations: null response": ("generations", {"question_id": ["q"], "sample": [0], "prompt": ["p"],
                                                   "response": pl.Series([None], dtype=pl.String), "n_tokens": [3]},
                                   ["column 'response' row 0 is null"]),
    "stances: probability above 1": ("stances", {"question_id": ["q"], "sample": [0], "p_support": [1.5], "p_neutral": [0.0],
                                                 "p_oppose": [0.0], "option_mass": [0.9], "scorable": [True]},
                                     ["column 'p_support'", "above maximum 1"]),
    "stances: string probabilities": ("stances", {"question_id": ["q"], "sample": [0], "p_support": ["0.5"],
                                                  "p_neutral": [0.25], "p_oppose": [0.25], "option_mass": [0.9],
                                                  "scorable": [True]}, ["column 'p_support' has type String"]),
}


@pytest.mark.parametrize("case", sorted(TABLE_CASES))
def test_table_violating_its_schema_is_refused_on_read(case, tmp_path):
    name, columns, expected = TABLE_CASES[case]
    path = tmp_path / f"{name}.parquet"
    pl.DataFrame(columns).write_parquet(path)  # written behind the package's back
    with pytest.raises(tables.TableError) as err:
        tables.read(path, name)
    assert str(err.value).startswith(str(path))
    for piece in expected:
        assert piece in str(err.value), f"{piece!r} missing from:\n{err.value}"


def test_truncated_table_file_is_refused_naming_it(tmp_path):
    path = tmp_path / "stances.parquet"
    pl.DataFrame({"question_id": ["q"] * 100, "sample": list(range(100)), "p_support": [0.5] * 100,
                  "p_neutral": [0.25] * 100, "p_oppose": [0.25] * 100, "option_mass": [0.9] * 100,
                  "scorable": [True] * 100}).write_parquet(path)
    path.write_bytes(path.read_bytes()[:-200])
    with pytest.raises(tables.TableError, match=f"{path}: unreadable stances table"):
        tables.read(path, "stances")


def test_shipped_config_still_valid():
    vd_config.load(REPO / "config/config.yaml", workdir=REPO)
