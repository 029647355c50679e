"""Judge quality on the authored validation set -> results/bench/judge_eval.json.

1. The classifier judge (logistic regression on sentence embeddings, or with --llm on a
   causal LM's hidden states) trained on data/judge/train.jsonl: cross-validation choice,
   training time, validation accuracy / macro-F1 / ECE, and the time to score 88 responses
   (the demo's per-checkpoint load: 44 questions x 2 samples), model load included.
2. With --smollm2: the demo's judge (SmolLM2-135M-Instruct zero-shot, Figure-8 prompt,
   through the local judge) on the same set, with and without contextual calibration.

Wall times on a shared machine are noisy; the JSON records the load average next to them.

Run: .venv/bin/python bench/judge_eval.py [--embedder all-MiniLM-L6-v2] [--llm DIR --layer N] [--smollm2]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

from bench_env import REPO, SMOLLM2  # noqa: E402,F401  (first: offline hub, src/ on the path)


def classifier(args, work: Path) -> dict:
    from valuedrift.classifier_judge import ClassifierJudge, train_authored
    from valuedrift.judge import item_logprobs
    from valuedrift.judge_eval import read_items, score_validation

    spec = {"llm": "smollm2-135m", **({"layer": args.layer} if args.layer is not None else {})} if args.llm \
        else {"name": args.embedder}
    settings = {"input": args.input, "C": args.c, "folds": 5, "seed": 0}
    t0 = time.perf_counter()
    report = train_authored(train=str(REPO / "data/judge/train.jsonl"), embedder=spec, settings=settings,
                            output=str(work / "c.npz"), report=str(work / "c.json"), embed_model=args.llm)
    train_s = time.perf_counter() - t0
    result = score_validation(name="classifier", spec={"backend": "classifier", "embedder": spec},
                              judge_kwargs={"classifier": str(work / "c.npz"), "embed_model": args.llm},
                              validation=str(REPO / "data/judge/validation.jsonl"), items_out=str(work / "v.parquet"),
                              metrics_out=str(work / "v.json"), per_topic_out=str(work / "v.csv"))
    items = read_items(REPO / "data/judge/validation.jsonl").head(88)
    t1 = time.perf_counter()
    judge = ClassifierJudge(work / "c.npz", embed_model=args.llm)
    item_logprobs(judge, items["question"].to_list(), items["response"].to_list(), items["topic"].to_list())
    score_88_s = time.perf_counter() - t1
    o = result["overall"]
    return {"embedder": spec, "chosen": report["chosen"], "train_seconds": round(train_s, 1),
            "validation": {k: o[k] for k in ("n", "accuracy", "macro_f1", "ece", "chance_macro_f1")},
            "per_topic_macro_f1": {t: round(m["macro_f1"], 3) for t, m in result["per_topic"].items()},
            "score_88_seconds_with_load": round(score_88_s, 1)}


def smollm2(args, work: Path) -> dict:
    from valuedrift.judge_eval import score_validation
    from valuedrift.judge_specs import judge_kwargs, with_defaults
    from valuedrift.models import import_base_model

    model = Path(args.llm) if args.llm else work / "smollm2"
    if not (model / "config.json").exists():
        import_base_model(SMOLLM2, model)
    spec = with_defaults({"backend": "local", "model": str(model), "batch_size": 8, "calibration": "auto",
                          "cache_dir": None})
    result = score_validation(name="smollm2", spec=spec, judge_kwargs={**judge_kwargs(spec, {"judge_model": str(model)}),
                                                                       "progress": False},
                              validation=args.validation, items_out=str(work / "s.parquet"),
                              metrics_out=str(work / "s.json"), per_topic_out=str(work / "s.csv"))
    return {"variants": result["variants"], "variant_used": result["variant_used"],
            "mean_probabilities": result["overall"]["mean_probabilities"], "option_mass": result["option_mass"],
            "seconds": result["seconds"]}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--embedder", default="all-MiniLM-L6-v2")
    ap.add_argument("--llm", help="a causal LM folder: hidden-state features instead of sentence embeddings")
    ap.add_argument("--layer", type=int, default=None)
    ap.add_argument("--input", default="auto", choices=["auto", "topic", "question"])
    ap.add_argument("--c", type=float, nargs="+", default=[0.25, 1.0, 4.0])
    ap.add_argument("--smollm2", action="store_true")
    ap.add_argument("--no-classifier", action="store_true")
    ap.add_argument("--validation", default=str(REPO / "data/judge/validation.jsonl"))
    ap.add_argument("--out", default=str(REPO / "results/bench/judge_eval.json"))
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        out = {"load_average": os.getloadavg()}
        if not args.no_classifier:
            out["classifier"] = classifier(args, Path(tmp))
        if args.smollm2:
            out["smollm2"] = smollm2(args, Path(tmp))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2))
    json.dump(out, sys.stdout, indent=2)


if __name__ == "__main__":
    main()
