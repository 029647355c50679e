"""Training-data adapters: every source becomes one of two normalised tables.

  sft         ``messages``: list of {role, content}, ending with an assistant turn
  preference  ``prompt``: list of {role, content} (the conversation so far),
              ``chosen`` / ``rejected``: the two candidate assistant replies (strings)

Rows are validated on load; a malformed row raises DatasetError naming the file (or
hub dataset) and the row number, before any training starts.

Hub sources (the paper's datasets) are read through ``datasets.load_dataset`` and need
the hub, or a local copy of the hub dataset's files (``path``: a folder in the hub
layout); local JSONL/Parquet files in the normalised shape (or Alpaca/UltraFeedback/
HH-RLHF raw shape) need nothing.

WildChat comes in two releases, chosen by ``name``: ``allenai/WildChat`` (the paper's:
its English part is 284,168 conversations, split 90/10 into 255,751 train and 28,417
validation, Appendix B.1) and ``allenai/WildChat-1M`` (the later, larger release; the
paper gives no counts for it). ``prepare`` logs the number of rows it built and stores
it, with the paper's expected number, in the prepared Parquet file's metadata
(``prepared_info``), so a different release or filter is visible at once.
"""

from __future__ import annotations

import gzip
import logging
import json
import random
import re
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import polars as pl

log = logging.getLogger(__name__)

ROLES = {"system", "user", "assistant"}
HUB_IDS = {
    "wildchat": "allenai/WildChat",  # the paper's release (see WILDCHAT_RELEASES)
    "alpaca": "tatsu-lab/alpaca",
    "ultrafeedback": "argilla/ultrafeedback-binarized-preferences-cleaned",
    "hh-rlhf": "Anthropic/hh-rlhf",
}
# The paper downsamples HH-RLHF to the size of UltraFeedback (Appendix B.1).
HH_RLHF_PAPER_SIZE = 60_908
# WildChat releases by hub name: English conversations, and the paper's 90/10 split of them
# (Appendix B.1) where the paper used that release. None: not stated in the paper.
WILDCHAT_RELEASES: dict[str, dict[str, int | None]] = {
    "allenai/WildChat": {"english": 284_168, "train": 255_751, "validation": 28_417},
    "allenai/WildChat-1M": {"english": None, "train": None, "validation": None},
}
# Training rows the paper reports per hub dataset (Appendix B.1), checked by ``prepare``.
PAPER_TRAIN_ROWS: dict[tuple[str, str], int] = {
    ("wildchat", "allenai/WildChat"): 255_751,
    ("alpaca", "tatsu-lab/alpaca"): 46_801,  # of 52,002 (5,201 validation)
    ("ultrafeedback", "argilla/ultrafeedback-binarized-preferences-cleaned"): 60_908,
    ("hh-rlhf", "Anthropic/hh-rlhf"): HH_RLHF_PAPER_SIZE,
}
PREPARED_INFO_KEY = "valuedrift.prepared"  # Parquet metadata key of the prepared-dataset record


class DatasetError(ValueError):
    """A training row that cannot be used, with its file and row number."""


class SkipRow(Exception):
    """A well-formed row that carries no training signal (e.g. chosen == rejected)."""


def _messages(value: Any, where: str) -> list[dict[str, str]]:
    if not isinstance(value, list) or not value:
        raise DatasetError(f"{where}: 'messages' must be a non-empty list of {{role, content}}")
    out = []
    for j, m in enumerate(value):
        if not isinstance(m, dict) or m.get("role") not in ROLES or not isinstance(m.get("content"), str):
            raise DatasetError(f"{where}: message {j} needs a role in {sorted(ROLES)} and a string content, got {m!r:.120}")
        out.append({"role": m["role"], "content": m["content"]})
    return out


def normalise_sft(row: dict[str, Any], where: str) -> dict[str, Any]:
    """An SFT row: ``messages`` (chat) or Alpaca's instruction/input/output."""
    if "messages" in row:
        messages = _messages(row["messages"], where)
    elif "conversation" in row:  # WildChat
        messages = _messages([{"role": m.get("role"), "content": m.get("content")} for m in row["conversation"]], where)
    elif "instruction" in row and "output" in row:  # Alpaca
        prompt = row["instruction"] if not row.get("input") else f"{row['instruction']}\n\n{row['input']}"
        messages = [{"role": "user", "content": prompt}, {"role": "assistant", "content": row["output"]}]
    else:
        raise DatasetError(f"{where}: an SFT row needs 'messages', 'conversation' or 'instruction'+'output'; has {sorted(row)}")
    if messages[-1]["role"] != "assistant":
        raise DatasetError(f"{where}: the last message must be a non-empty assistant reply")
    if not messages[-1]["content"].strip():
        if "conversation" in row:  # a WildChat turn whose reply failed: data as published, skipped and counted
            raise SkipRow(f"{where}: the last assistant reply is empty")
        raise DatasetError(f"{where}: the last message must be a non-empty assistant reply")
    if not any(m["role"] == "user" and m["content"].strip() for m in messages):
        raise DatasetError(f"{where}: no non-empty user message")
    return {"messages": messages}


_HH_TURN = re.compile(r"\n\n(Human|Assistant): ")


def split_hh_transcript(text: str, where: str) -> list[dict[str, str]]:
    """'\\n\\nHuman: ...\\n\\nAssistant: ...' -> chat messages."""
    parts = _HH_TURN.split(text)
    if len(parts) < 3 or parts[0].strip():
        raise DatasetError(f"{where}: not an HH-RLHF transcript ('\\n\\nHuman: ... \\n\\nAssistant: ...')")
    return [{"role": "user" if who == "Human" else "assistant", "content": body.strip()}
            for who, body in zip(parts[1::2], parts[2::2])]


def normalise_preference(row: dict[str, Any], where: str) -> dict[str, Any]:
    """A preference row: plain prompt/chosen/rejected strings, chat-list chosen/rejected
    (UltraFeedback), or two full HH-RLHF transcripts sharing their prefix."""
    chosen, rejected = row.get("chosen"), row.get("rejected")
    if chosen is None or rejected is None:
        raise DatasetError(f"{where}: a preference row needs 'chosen' and 'rejected'; has {sorted(row)}")
    prompt = row.get("prompt")
    if isinstance(chosen, list) and isinstance(rejected, list):  # chat lists ending in the reply
        c, r = _messages(chosen, where), _messages(rejected, where)
        if c[:-1] != r[:-1]:
            raise DatasetError(f"{where}: chosen and rejected conversations differ before the last reply")
        prompt_msgs, chosen, rejected = c[:-1], c[-1]["content"], r[-1]["content"]
    elif prompt is None and isinstance(chosen, str) and chosen.startswith("\n\nHuman:"):  # HH-RLHF
        c, r = split_hh_transcript(chosen, where), split_hh_transcript(rejected, where)
        if c[-1]["role"] != "assistant" or r[-1]["role"] != "assistant":
            raise DatasetError(f"{where}: HH-RLHF transcripts must end with an assistant turn")
        if c[:-1] != r[:-1]:  # ~0.2% of HH-RLHF: the two transcripts diverge before the last turn
            raise SkipRow(f"{where}: HH-RLHF chosen/rejected do not share the conversation before the last reply")
        prompt_msgs, chosen, rejected = c[:-1], c[-1]["content"], r[-1]["content"]
    elif isinstance(prompt, str) and isinstance(chosen, str) and isinstance(rejected, str):
        prompt_msgs = [{"role": "user", "content": prompt}]
    elif isinstance(prompt, list):
        prompt_msgs = _messages(prompt, where)
    else:
        raise DatasetError(f"{where}: cannot read prompt/chosen/rejected of types "
                           f"{type(prompt).__name__}/{type(chosen).__name__}/{type(rejected).__name__}")
    if not prompt_msgs or not any(m["content"].strip() for m in prompt_msgs):
        raise DatasetError(f"{where}: empty prompt")
    if not str(chosen).strip():
        raise SkipRow(f"{where}: empty chosen reply")  # an empty *rejected* reply is a valid bad answer
    if chosen == rejected:
        raise SkipRow(f"{where}: chosen and rejected replies are identical")
    return {"prompt": prompt_msgs, "chosen": chosen, "rejected": rejected}


NORMALISERS: dict[str, Callable[[dict[str, Any], str], dict[str, Any]]] = {
    "sft": normalise_sft, "preference": normalise_preference}


def _read_rows(path: Path) -> Iterator[dict[str, Any]]:
    if path.suffix == ".parquet":
        yield from pl.read_parquet(path).iter_rows(named=True)
        return
    if not path.is_file():
        raise DatasetError(f"{path}: dataset file not found")
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as fh:
        for lineno, raw in enumerate(fh, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as err:
                raise DatasetError(f"{path}:{lineno}: not UTF-8 (byte {raw[err.start]:#04x} at column {err.start + 1}); "
                                   f"re-encode the file as UTF-8") from None
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                cut = " (the line is cut off: was the file copied or written completely?)" \
                    if not raw.endswith(b"\n") else ""
                raise DatasetError(f"{path}:{lineno}: invalid JSON ({err.msg} at column {err.colno}){cut}") from None
            if not isinstance(row, dict):
                raise DatasetError(f"{path}:{lineno}: expected a JSON object")
            yield row


def _hub_rows(source: str, spec: dict[str, Any], workdir: Path, info: dict[str, Any]) -> Iterable[dict[str, Any]]:
    from datasets import load_dataset

    name = spec.get("name", HUB_IDS[source])
    if source == "wildchat" and name not in WILDCHAT_RELEASES:
        log.warning("WildChat release %r is not one of %s; no expected row count", name, ", ".join(WILDCHAT_RELEASES))
    where = str(workdir / spec["path"]) if spec.get("path") else name  # a local copy in the hub layout
    ds = load_dataset(where, split=spec.get("split", "train"))
    info["hub_rows"] = len(ds)
    if source == "wildchat":
        ds = ds.filter(lambda language: language == "English", input_columns="language")
        info["english_rows"] = len(ds)
    return ds


def load_rows(spec: dict[str, Any], workdir: str | Path = ".", info: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """Read, normalise and validate a configured dataset; seeded split/sample as configured.
    ``info``, when given, receives the row counts of every stage (see ``prepare``)."""
    info = {} if info is None else info
    kind, source = spec["kind"], spec["source"]
    if source == "synthetic":
        raise DatasetError("a dataset of source 'synthetic' is built by the synthetic_dataset rule "
                           "(valuedrift.synthetic.aligned_dataset), not loaded")
    normalise = NORMALISERS[kind]
    if source in ("jsonl", "parquet"):
        path = Path(workdir) / spec["path"]
        label = str(spec["path"])
        rows = _normalise_all(normalise, ((r, f"{label}:{i}") for i, r in enumerate(_read_rows(path), start=1)), info)
        if not rows:
            raise DatasetError(f"{label}: no rows")
    else:
        label = spec.get("name", HUB_IDS[source])
        hub = _hub_rows(source, spec, Path(workdir), info)
        rows = _normalise_all(normalise, ((dict(r), f"{label} row {i}") for i, r in enumerate(hub)), info)
        if source in ("wildchat", "alpaca"):
            info["before_split"] = len(rows)
            rows = train_split(rows, seed=spec.get("seed", 0))  # the paper's seeded 90/10 split
    limit = spec.get("max_examples") or (HH_RLHF_PAPER_SIZE if source == "hh-rlhf" else None)
    if limit and len(rows) > limit:
        rng = random.Random(spec.get("seed", 0))
        rows = [rows[i] for i in sorted(rng.sample(range(len(rows)), limit))]
    info["rows"] = len(rows)
    return rows


def _normalise_all(normalise, rows_with_place, info: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    out, skipped = [], []
    for row, where in rows_with_place:
        try:
            out.append(normalise(row, where))
        except SkipRow as why:
            skipped.append(str(why))
    if skipped:
        log.warning("skipped %d rows without a training signal, e.g. %s", len(skipped), skipped[0])
    if info is not None:
        info["skipped"] = len(skipped)
    return out


def train_split(rows: list[dict[str, Any]], *, seed: int, train_fraction: float = 0.9) -> list[dict[str, Any]]:
    """The seeded train part of a split: floor(0.9 n) rows, as the paper's counts show
    (WildChat 284,168 -> 255,751; Alpaca 52,002 -> 46,801)."""
    order = list(range(len(rows)))
    random.Random(seed).shuffle(order)
    keep = sorted(order[: int(train_fraction * len(rows))])
    return [rows[i] for i in keep]


def expected_train_rows(spec: dict[str, Any]) -> int | None:
    """The paper's training-row count for a configured hub dataset (None: not the paper's)."""
    if spec["source"] in ("jsonl", "parquet") or spec.get("max_examples") not in (None, HH_RLHF_PAPER_SIZE):
        return None
    return PAPER_TRAIN_ROWS.get((spec["source"], spec.get("name", HUB_IDS[spec["source"]])))


def prepare(spec: dict[str, Any], output: str | Path, *, workdir: str | Path = ".") -> dict[str, Any]:
    """Build the normalised training table at ``output`` (atomically) and record in its
    Parquet metadata how many rows it holds, beside the number the paper reports."""
    info: dict[str, Any] = {"source": spec["source"], "name": spec.get("name", HUB_IDS.get(spec["source"])),
                            "kind": spec["kind"]}
    rows = load_rows(spec, workdir, info)
    info["expected_rows"] = expected_train_rows(spec)
    info["matches_paper"] = None if info["expected_rows"] is None else info["rows"] == info["expected_rows"]
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.with_name(f".{output.name}.tmp")
    to_frame(rows, spec["kind"]).write_parquet(tmp, metadata={PREPARED_INFO_KEY: json.dumps(info)})
    tmp.replace(output)
    if info["matches_paper"] is False:
        log.warning("%s: built %d training rows, the paper's %s has %d (Appendix B.1)", output, info["rows"],
                    info["name"], info["expected_rows"])
    log.info("prepared %d %s rows from %s into %s (%s)", info["rows"], spec["kind"], info["name"] or spec.get("path"),
             output, ", ".join(f"{k} {v}" for k, v in info.items() if k.endswith("_rows") or k == "skipped"))
    return info


def prepared_info(path: str | Path) -> dict[str, Any] | None:
    """The row-count record ``prepare`` stored in a prepared dataset (None for older files)."""
    raw = pl.read_parquet_metadata(path).get(PREPARED_INFO_KEY)
    return json.loads(raw) if raw else None


def to_frame(rows: list[dict[str, Any]], kind: str) -> pl.DataFrame:
    msg = pl.List(pl.Struct({"role": pl.String, "content": pl.String}))
    if kind == "sft":
        return pl.DataFrame(rows, schema={"messages": msg})
    return pl.DataFrame(rows, schema={"prompt": msg, "chosen": pl.String, "rejected": pl.String})
