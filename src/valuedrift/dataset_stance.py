"""Stance distribution of a training dataset (paper Appendix K.1-K.3).

``retrieve``: embed every datapoint (its user turns) and every evaluation question; a
datapoint is retrieved for a topic when its cosine similarity to some question of that
topic is >= ``min_similarity`` (0.5 in the paper). A datapoint close to questions of two
topics is retrieved once for each; close to several questions of one topic, once.

``classify``: each retrieved datapoint is judged with the prompt of Figure 18 against its
topic, by the study's configured judge (``judge.make_judge``: the same backends, caching
and option-letter scoring as the response judge). An SFT datapoint is its conversation; a
preference datapoint is judged twice, as the prompt + chosen reply and as the prompt +
rejected reply. ``distribution`` tabulates the per-topic stance distribution of each
dataset and ``distribution_chart`` draws it (Figure 19).
"""

from __future__ import annotations

import logging
import time
from typing import Any, Callable, Sequence

import numpy as np
import polars as pl

from . import prompts as prompt_files
from .judge import make_judge, stance_distribution
from .synthetic import category_scores, user_text, write_json, write_parquet
from .topics import STANCES

log = logging.getLogger("valuedrift")

ROLES = ("conversation", "chosen", "rejected")


def select_datapoints(scores: np.ndarray, topics: Sequence[str], *, min_similarity: float) -> list[tuple[int, str, float]]:
    """(datapoint index, topic, score) for every (datapoint, topic) scoring >= min_similarity."""
    rows, cols = np.nonzero(scores >= min_similarity)
    return [(int(i), topics[j], float(scores[i, j])) for i, j in zip(rows, cols)]


def retrieve(*, dataset: str, questions: str, output: str, stats: str, settings: dict[str, Any],
             embed_fn: Callable[[list[str]], np.ndarray] | None = None) -> None:
    """The retrieved (row, topic, similarity) of one prepared dataset."""
    from . import tables
    from .vprism import embed as embedding

    qs = tables.read(questions, "questions")
    df = pl.read_parquet(dataset)
    column = "messages" if "messages" in df.columns else "prompt"
    texts = [user_text(m) for m in df[column].to_list()]
    topics = sorted(qs["topic"].unique().to_list())
    if embed_fn is None:
        model = embedding.load_model(settings["embedder"])
        embed_fn = lambda t: embedding.embed(t, settings["embedder"], model)  # noqa: E731
    nonempty = [i for i, t in enumerate(texts) if t]
    vectors = embed_fn([texts[i] for i in nonempty])
    scores = category_scores(vectors, embed_fn(qs["question"].to_list()), qs["topic"].to_list(), topics)
    kept = [(nonempty[i], t, s) for i, t, s in select_datapoints(scores, topics, min_similarity=settings["min_similarity"])]
    table = pl.DataFrame([{"row": r, "topic": t, "similarity": s} for r, t, s in kept],
                         schema={"row": pl.Int64, "topic": pl.String, "similarity": pl.Float64}).sort("topic", "row")
    write_parquet(table, output)
    by_topic = {t: int(n) for t, n in table.group_by("topic").len().iter_rows()}
    write_json({"datapoints": len(df), "retrieved_pairs": len(table), "retrieved_datapoints": table["row"].n_unique(),
                "min_similarity": settings["min_similarity"], "by_topic": {t: by_topic.get(t, 0) for t in topics}}, stats)
    log.info("%s: %d of %d datapoints retrieved (%d datapoint-topic pairs)", dataset, table["row"].n_unique(),
             len(df), len(table))


def render(messages: Sequence[dict[str, str]], reply: str | None = None, *, max_chars: int | None = None) -> str:
    """A conversation as the {conversation} of Figure 18: 'User: ...' / 'Assistant: ...' turns.
    Over ``max_chars``, the middle is cut (the start says what is asked, the end the answer)."""
    turns = [*messages, *([{"role": "assistant", "content": reply}] if reply is not None else [])]
    text = "\n\n".join(f"{m['role'].capitalize()}: {m['content'].strip()}" for m in turns if m["role"] != "system")
    if max_chars and len(text) > max_chars:
        half = max_chars // 2
        text = f"{text[:half]}\n[...]\n{text[-half:]}"
    return text


def judge_items(df: pl.DataFrame, retrieved: pl.DataFrame, *, max_chars: int | None) -> list[dict[str, Any]]:
    """What is judged: (row, topic, role, conversation), chosen and rejected apart for preference data."""
    preference = "prompt" in df.columns
    rows = df.to_dicts()
    items = []
    for rec in retrieved.iter_rows(named=True):
        row = rows[rec["row"]]
        if preference:
            for role in ("chosen", "rejected"):
                items.append({**rec, "role": role, "text": render(row["prompt"], row[role], max_chars=max_chars)})
        else:
            items.append({**rec, "role": "conversation", "text": render(row["messages"], max_chars=max_chars)})
    return items


def stance_rows(items: list[dict[str, Any]], judge) -> pl.DataFrame:
    """Figure 18 judged for every item: p_support, p_neutral, p_oppose (null when unscorable)."""
    prompts = [prompt_files.dataset_stance_prompt(it["text"], it["topic"]) for it in items]
    out = []
    for it, lp in zip(items, judge.option_logprobs(prompts) if prompts else []):
        dist = stance_distribution(lp)
        probs = dict(zip([f"p_{s}" for s in STANCES], dist[:3])) if dist else dict.fromkeys(f"p_{s}" for s in STANCES)
        out.append({"row": it["row"], "topic": it["topic"], "similarity": it["similarity"], "role": it["role"],
                    **probs, "option_mass": dist[3] if dist else None, "scorable": dist is not None})
    return pl.DataFrame(out, schema={"row": pl.Int64, "topic": pl.String, "similarity": pl.Float64, "role": pl.String,
                                     "p_support": pl.Float64, "p_neutral": pl.Float64, "p_oppose": pl.Float64,
                                     "option_mass": pl.Float64, "scorable": pl.Boolean})


def classify(*, dataset: str, retrieved: str, output: str, accounting: str, backend: str,
             judge_kwargs: dict[str, Any], max_chars: int | None, judge=None) -> None:
    """Stance of every retrieved datapoint of one dataset (Figure 18, the configured judge)."""
    df, ret = pl.read_parquet(dataset), pl.read_parquet(retrieved)
    if len(ret) and ret["row"].max() >= len(df):
        raise ValueError(f"{retrieved}: row {ret['row'].max()} is not a row of {dataset} ({len(df)} rows)")
    items = judge_items(df, ret, max_chars=max_chars)
    judge = judge or (make_judge(backend, **judge_kwargs) if items else None)
    t0 = time.perf_counter()
    table = stance_rows(items, judge)
    write_parquet(table, output)
    stats = {"backend": backend, "items": len(table), "unscorable": int((~table["scorable"]).sum()),
             "seconds": round(time.perf_counter() - t0, 2)}
    stats.update(getattr(judge, "accounting", lambda: {})())
    write_json(stats, accounting)
    log.info("%s: judged %d retrieved items -> %s", dataset, len(table), output)


def label(df: pl.DataFrame) -> pl.DataFrame:
    """Adds ``stance``: the most probable of the three (the datapoint's classification)."""
    probs = [f"p_{s}" for s in STANCES]
    return df.with_columns(
        pl.concat_list(probs).list.arg_max().replace_strict(list(range(len(STANCES))), list(STANCES),
                                                            return_dtype=pl.String).alias("stance"))


def distribution(stances: dict[str, str], output: str) -> None:
    """Per dataset, role and topic (and ``all topics``): datapoints, the share classified as
    each stance, and the mean stance probabilities (csv)."""
    write_parquet_or_csv(distribution_table({name: pl.read_parquet(p) for name, p in stances.items()}), output)


def distribution_table(stances: dict[str, pl.DataFrame]) -> pl.DataFrame:
    parts = []
    for name, df in stances.items():
        df = label(df.filter(pl.col("scorable")))
        both = pl.concat([df, df.with_columns(pl.lit("all topics").alias("topic"))])
        parts.append(both.group_by("role", "topic").agg(
            pl.len().alias("n"),
            *[(pl.col("stance") == s).mean().alias(f"share_{s}") for s in STANCES],
            *[pl.col(f"p_{s}").mean().alias(f"mean_p_{s}") for s in STANCES],
        ).with_columns(pl.lit(name).alias("dataset")))
    schema = {"dataset": pl.String, "role": pl.String, "topic": pl.String, "n": pl.Int64,
              **{f"share_{s}": pl.Float64 for s in STANCES}, **{f"mean_p_{s}": pl.Float64 for s in STANCES}}
    if not parts:
        return pl.DataFrame(schema=schema)
    return pl.concat(parts).select(list(schema)).cast(schema).sort("dataset", "role", "topic")


def write_parquet_or_csv(df: pl.DataFrame, path: str) -> None:
    import os
    from pathlib import Path

    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(f".{p.name}.tmp-{os.getpid()}")
    df.write_csv(tmp) if p.suffix == ".csv" else df.write_parquet(tmp)
    os.replace(tmp, p)


def distribution_chart(table: pl.DataFrame, *, title: str = "Stance distribution of the training data (App. K)"):
    """Figure 19: per dataset (column) and topic (row), the share of retrieved datapoints of each stance."""
    import altair as alt

    long = (table.unpivot(index=["dataset", "role", "topic", "n"], on=[f"share_{s}" for s in STANCES],
                          variable_name="stance", value_name="share")
            .with_columns(pl.col("stance").str.replace("share_", ""),
                          pl.format("{} ({})", "dataset", "role").alias("data")))
    colours = alt.Scale(domain=list(STANCES), range=["#1b9e77", "#999999", "#d95f02"])
    return (alt.Chart(long.to_pandas()).mark_bar()
            .encode(x=alt.X("share:Q", stack="normalize", title="share of retrieved datapoints",
                            axis=alt.Axis(format="%")),
                    y=alt.Y("topic:N", title=None, sort="ascending"),
                    color=alt.Color("stance:N", scale=colours, sort=list(STANCES)),
                    order=alt.Order("stance_order:Q"),
                    tooltip=["data:N", "topic:N", "stance:N", alt.Tooltip("share:Q", format=".1%"), "n:Q"])
            .transform_calculate(stance_order="indexof(['support','neutral','oppose'], datum.stance)")
            .properties(width=220, height=alt.Step(14))
            .facet(column=alt.Column("data:N", title=None))
            .properties(title=title))


def distribution_figure(table_csv: str, *, html: str, png: str) -> None:
    from .report.figures import save_chart

    save_chart(distribution_chart(pl.read_csv(table_csv)), html_path=html, png_path=png,
               title="Stance distribution of the training data")


def write_distribution(stances: dict[str, str], *, table: str, html: str, png: str) -> None:
    """The Figure 19 table (csv) and figure (html, png) of the datasets' stance tables."""
    distribution(stances, table)
    distribution_figure(table, html=html, png=png)
