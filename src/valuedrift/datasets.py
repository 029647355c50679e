"""Training-data adapters: every source becomes one of two normalised tables.

  sft         ``messages``: list of {role, content}, ending with an assistant turn
  preference  ``prompt``: list of {role, content} (the conversation so far),
              ``chosen`` / ``rejected``: the two candidate assistant replies (strings)

Rows are validated on load; a malformed row raises DatasetError naming the file (or
hub dataset) and the row number, before any training starts.

Hub sources (the paper's datasets) are read through ``datasets.load_dataset`` and need
the hub; local JSONL/Parquet files in the normalised shape (or Alpaca/UltraFeedback/
HH-RLHF raw shape) need nothing.
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
    "wildchat": "allenai/WildChat-1M",
    "alpaca": "tatsu-lab/alpaca",
    "ultrafeedback": "argilla/ultrafeedback-binarized-preferences-cleaned",
    "hh-rlhf": "Anthropic/hh-rlhf",
}
# The paper downsamples HH-RLHF to the size of UltraFeedback (Appendix B.1).
HH_RLHF_PAPER_SIZE = 60_908


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
    if messages[-1]["role"] != "assistant" or not messages[-1]["content"].strip():
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
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                raise DatasetError(f"{path}:{lineno}: invalid JSON ({err.msg})") from None
            if not isinstance(row, dict):
                raise DatasetError(f"{path}:{lineno}: expected a JSON object")
            yield row


def _hub_rows(source: str, spec: dict[str, Any]) -> Iterable[dict[str, Any]]:
    from datasets import load_dataset

    name = spec.get("name", HUB_IDS[source])
    split = spec.get("split", "train")
    ds = load_dataset(name, split=split) if source != "hh-rlhf" else load_dataset(name, split=split)
    if source == "wildchat":
        ds = ds.filter(lambda r: r.get("language") == "English")
    return ds


def load_rows(spec: dict[str, Any], workdir: str | Path = ".") -> list[dict[str, Any]]:
    """Read, normalise and validate a configured dataset; seeded split/sample as configured."""
    kind, source = spec["kind"], spec["source"]
    if source == "synthetic":
        raise DatasetError("a dataset of source 'synthetic' is built by the synthetic_dataset rule "
                           "(valuedrift.synthetic.aligned_dataset), not loaded")
    normalise = NORMALISERS[kind]
    if source in ("jsonl", "parquet"):
        path = Path(workdir) / spec["path"]
        label = str(spec["path"])
        rows = _normalise_all(normalise, ((r, f"{label}:{i}") for i, r in enumerate(_read_rows(path), start=1)))
        if not rows:
            raise DatasetError(f"{label}: no rows")
    else:
        label = spec.get("name", HUB_IDS[source])
        rows = _normalise_all(normalise, ((dict(r), f"{label} row {i}") for i, r in enumerate(_hub_rows(source, spec))))
        if source in ("wildchat", "alpaca"):
            rows = train_split(rows, seed=spec.get("seed", 0))  # the paper's seeded 90/10 split
    limit = spec.get("max_examples") or (HH_RLHF_PAPER_SIZE if source == "hh-rlhf" else None)
    if limit and len(rows) > limit:
        rng = random.Random(spec.get("seed", 0))
        rows = [rows[i] for i in sorted(rng.sample(range(len(rows)), limit))]
    return rows


def _normalise_all(normalise, rows_with_place) -> list[dict[str, Any]]:
    out, skipped = [], []
    for row, where in rows_with_place:
        try:
            out.append(normalise(row, where))
        except SkipRow as why:
            skipped.append(str(why))
    if skipped:
        log.warning("skipped %d rows without a training signal, e.g. %s", len(skipped), skipped[0])
    return out


def train_split(rows: list[dict[str, Any]], *, seed: int, train_fraction: float = 0.9) -> list[dict[str, Any]]:
    order = list(range(len(rows)))
    random.Random(seed).shuffle(order)
    keep = sorted(order[: int(round(train_fraction * len(rows)))])
    return [rows[i] for i in keep]


def to_frame(rows: list[dict[str, Any]], kind: str) -> pl.DataFrame:
    msg = pl.List(pl.Struct({"role": pl.String, "content": pl.String}))
    if kind == "sft":
        return pl.DataFrame(rows, schema={"messages": msg})
    return pl.DataFrame(rows, schema={"prompt": msg, "chosen": pl.String, "rejected": pl.String})
