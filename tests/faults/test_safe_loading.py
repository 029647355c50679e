"""Safe loading: no model code from a model folder runs, weights load only from
safetensors, and nothing in the package unpickles untrusted data.

- A static check over every module of the package (its syntax tree, so a call split over
  lines is seen too): each ``torch.load`` passes ``weights_only=True``; no ``pickle.load``,
  ``np.load(..., allow_pickle=True)`` or ``trust_remote_code`` other than False.
- A model folder whose config points at custom code (``auto_map``) is loaded without that
  code ever running; a pickle-only folder is refused by the importer with a message.
"""

from __future__ import annotations

import ast
import json
import shutil
from pathlib import Path

import pytest

from valuedrift.integrity import ModelFolderError

SRC = Path(__file__).resolve().parents[2] / "src" / "valuedrift"


def _calls(tree):
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            func = node.func
            name = ast.unparse(func)
            yield name, node


def _kw(node: ast.Call, name: str):
    for kw in node.keywords:
        if kw.arg == name:
            return kw.value
    return None


def test_no_unsafe_deserialisation_anywhere_in_the_package():
    problems, torch_loads = [], 0
    for path in sorted(SRC.rglob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        where = lambda n: f"{path.relative_to(SRC)}:{n.lineno}"  # noqa: E731
        for name, node in _calls(tree):
            if name == "torch.load":
                torch_loads += 1
                value = _kw(node, "weights_only")
                if not (isinstance(value, ast.Constant) and value.value is True):
                    problems.append(f"{where(node)}: torch.load without weights_only=True")
            if name in ("pickle.load", "pickle.loads", "torch.serialization.load", "joblib.load"):
                problems.append(f"{where(node)}: {name} unpickles")
            if name in ("np.load", "numpy.load"):
                value = _kw(node, "allow_pickle")
                if value is not None and not (isinstance(value, ast.Constant) and value.value is False):
                    problems.append(f"{where(node)}: np.load with allow_pickle")
            value = _kw(node, "trust_remote_code")
            if value is not None and not (isinstance(value, ast.Constant) and value.value is False):
                problems.append(f"{where(node)}: trust_remote_code={ast.unparse(value)}")
            if name.endswith("from_pretrained") and _kw(node, "use_safetensors") is not None:
                value = _kw(node, "use_safetensors")
                if not (isinstance(value, ast.Constant) and value.value is True):
                    problems.append(f"{where(node)}: use_safetensors={ast.unparse(value)}")
    assert torch_loads >= 2  # the check sees the real call sites (PPO's optimizer/scheduler state)
    assert not problems, "\n".join(problems)


EVIL = '''
from pathlib import Path
Path({marker!r}).write_text("custom code from the model folder ran")
from transformers import LlamaConfig, LlamaForCausalLM
class EvilConfig(LlamaConfig):
    model_type = "llama"
class EvilModel(LlamaForCausalLM):
    config_class = EvilConfig
'''


def test_custom_code_in_a_model_folder_never_runs(tiny_model, tmp_path):
    from valuedrift.models import load_causal_lm

    folder = tmp_path / "model"
    shutil.copytree(tiny_model, folder)
    marker = tmp_path / "ran"
    (folder / "evil.py").write_text(EVIL.format(marker=str(marker)))
    config = json.loads((folder / "config.json").read_text())
    config["auto_map"] = {"AutoConfig": "evil.EvilConfig", "AutoModelForCausalLM": "evil.EvilModel"}
    (folder / "config.json").write_text(json.dumps(config))
    try:
        model, _ = load_causal_lm(folder)
        assert type(model).__name__ == "LlamaForCausalLM"  # the library's own class, not the folder's
    except ValueError as err:  # or a refusal that asks for trust_remote_code
        assert "trust_remote_code" in str(err)
    assert not marker.exists(), "code shipped inside a model folder was executed"


def test_pickle_only_base_model_is_refused_by_the_importer(tiny_model, tmp_path):
    from valuedrift.models import import_base_model

    folder = tmp_path / "pickled"
    shutil.copytree(tiny_model, folder)
    (folder / "model.safetensors").unlink()
    (folder / "pytorch_model.bin").write_bytes(b"\x80\x04pickle")
    with pytest.raises(ModelFolderError, match="only pickle weights \\(pytorch_model.bin\\).*unpickling can run code"):
        import_base_model({"source": "local", "path": str(folder)}, tmp_path / "out")
    assert not (tmp_path / "out").exists()
