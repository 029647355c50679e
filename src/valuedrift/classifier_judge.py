"""The ``classifier`` judge: a logistic regression on sentence embeddings.

Each response is embedded (all-MiniLM-L6-v2 by default, offline, see
``valuedrift.vprism.embed``) as one text, "topic: response" or "question response"
(``train.input``; ``auto`` picks the one, and the regularisation C, with the best
cross-validated macro-F1 on the training data only). Labels come from

- ``authored``: a labelled stance file (``data/judge/train.jsonl``, disjoint from the
  validation set), or
- ``distill``: an expensive teacher judge (an API or a large local model) on a seeded
  sample of the study's own responses; the student's agreement with the teacher is
  measured on held-out sampled items, and the report counts the teacher calls saved.

The trained judge is one ``.npz`` of plain arrays (coefficients, intercepts, the
settings as JSON text), loaded without pickle. Its stance table has the local judge's
columns; ``option_mass`` is 1 (a classifier puts all its probability on the stances).
"""

from __future__ import annotations

import json
import logging
import math
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import polars as pl

from .backends import register_model
from .topics import STANCES

log = logging.getLogger("valuedrift")

INPUT_FORMATS = {"topic": "{topic}: {response}", "question": "{question} {response}"}
# An LLM embedder (``embedder.llm``) reads a stance cue after the response; its hidden states are the features.
LLM_INPUT_FORMATS = {"topic": "Topic: {topic}\nResponse: {response}\nThe stance of the response towards {topic} is",
                     "question": "Question: {question}\nResponse: {response}\nThe stance of the response towards "
                                 "{topic} is"}
FORMAT_VERSION = 1
NEVER_LABELLED = -30.0  # intercept of a stance absent from the training labels


def item_texts(input_format: str, questions: Sequence[str], responses: Sequence[str],
               topics: Sequence[str], *, llm: bool = False) -> list[str]:
    template = (LLM_INPUT_FORMATS if llm else INPUT_FORMATS)[input_format]
    return [template.format(question=q, response=r, topic=t) for q, r, t in zip(questions, responses, topics)]


class SentenceEmbedder:
    """A sentence-transformers model (valuedrift.vprism.embed): unit-length embeddings."""

    llm = False

    def __init__(self, spec: dict[str, Any]):
        from .vprism.embed import load_model

        self.spec = spec
        self.model = load_model(spec)

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        from .vprism.embed import embed

        return embed(list(texts), self.spec, model=self.model)


class LLMEmbedder:
    """A causal LM's hidden states of layer ``layer``, averaged over the text's tokens: the
    features of a linear probe (left-padded batches with true positions)."""

    llm = True

    def __init__(self, model_dir: str, *, layer: int | None = None, batch_size: int = 8):
        from .models import load_causal_lm

        import torch

        self.model, self.tokenizer = load_causal_lm(model_dir, dtype="float32")
        self.model.eval()
        # default: the middle layer (16 of SmolLM2-135M's 30; measured best by cross-validation on train.jsonl)
        self.layer = self.model.config.num_hidden_layers // 2 + 1 if layer is None else layer
        self.batch_size = batch_size
        # Only the decoder up to the layer read runs: hidden_states[layer] is the output of decoder layer
        # layer - 1, which neither the later layers nor the LM head change (one more layer is kept, so
        # hidden_states[layer] is never the final, normed one). On SmolLM2 layer 16 that is 17 of 30
        # layers and no 49k-token LM head.
        self.body = getattr(self.model, "base_model", self.model)
        layers = getattr(self.body, "layers", None)
        if isinstance(layers, torch.nn.ModuleList) and 0 <= self.layer < len(layers) - 1:
            self.body.layers = layers[: self.layer + 1]

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        import torch

        ids = [self.tokenizer(t, add_special_tokens=False).input_ids for t in texts]
        order = sorted(range(len(ids)), key=lambda i: -len(ids[i]))
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        out: list[np.ndarray | None] = [None] * len(ids)
        device = self.model.device
        with torch.inference_mode():
            for start in range(0, len(order), self.batch_size):
                batch = order[start:start + self.batch_size]
                width = max(len(ids[i]) for i in batch)
                input_ids = torch.tensor([[pad] * (width - len(ids[i])) + ids[i] for i in batch], device=device)
                mask = torch.tensor([[0] * (width - len(ids[i])) + [1] * len(ids[i]) for i in batch], device=device)
                hidden = self.body(input_ids=input_ids, attention_mask=mask, position_ids=(mask.cumsum(-1) - 1).clamp(min=0),
                                   output_hidden_states=True, use_cache=False).hidden_states[self.layer]
                weights = mask.unsqueeze(-1).to(hidden.dtype)
                pooled = ((hidden * weights).sum(1) / weights.sum(1)).float().cpu().numpy()
                for row, i in enumerate(batch):
                    out[i] = pooled[row]
        return np.stack(out)


def make_embedder(spec: dict[str, Any], llm_dir: str | None = None):
    """``{name|path: ...}``: a sentence embedder; ``{llm: <model>, layer: N}``: an LLM's hidden states
    (``llm_dir``: that model's folder)."""
    if spec.get("llm"):
        if not llm_dir:
            raise ValueError(f"embedder llm {spec['llm']!r} needs its model folder")
        return LLMEmbedder(llm_dir, layer=spec.get("layer"))
    return SentenceEmbedder(spec)


def embedder_settings(spec: dict[str, Any]) -> dict[str, Any]:
    """What identifies an embedder in a classifier file."""
    return {k: spec[k] for k in ("name", "path", "llm", "layer") if spec.get(k) is not None}


class StanceClassifier:
    """Multinomial logistic regression over embeddings: p = softmax(x @ coef.T + intercept), rows in STANCES order."""

    def __init__(self, coef: np.ndarray, intercept: np.ndarray, settings: dict[str, Any],
                 mean: np.ndarray | None = None, scale: np.ndarray | None = None):
        self.coef = np.asarray(coef, dtype=np.float64)
        self.intercept = np.asarray(intercept, dtype=np.float64)
        self.settings = settings
        # features are standardised first ((x - mean) / scale; LLM hidden states), else used as they are
        self.mean = np.zeros(self.coef.shape[1]) if mean is None else np.asarray(mean, dtype=np.float64)
        self.scale = np.ones(self.coef.shape[1]) if scale is None else np.asarray(scale, dtype=np.float64)
        if self.coef.shape[0] != len(STANCES) or self.intercept.shape != (len(STANCES),):
            raise ValueError(f"classifier has {self.coef.shape[0]} classes, expected {len(STANCES)}")

    @classmethod
    def from_sklearn(cls, model, settings: dict[str, Any], scaler=None) -> "StanceClassifier":
        """A stance the labels never had (a teacher that never chose it) gets probability ~0."""
        classes = list(model.classes_)
        coef, intercept = np.asarray(model.coef_, dtype=np.float64), np.asarray(model.intercept_, dtype=np.float64)
        if len(classes) == 2:  # binary: one row of coefficients, for classes[1]
            coef, intercept = np.vstack([-coef / 2, coef / 2]), np.array([-intercept[0] / 2, intercept[0] / 2])
        rows = [coef[classes.index(s)] if s in classes else np.zeros(coef.shape[1]) for s in STANCES]
        bias = [intercept[classes.index(s)] if s in classes else NEVER_LABELLED for s in STANCES]
        return cls(np.vstack(rows), np.array(bias), {**settings, "classes_seen": classes},
                   None if scaler is None else scaler.mean_, None if scaler is None else scaler.scale_)

    def log_proba(self, x: np.ndarray) -> np.ndarray:
        z = ((np.asarray(x, dtype=np.float64) - self.mean) / self.scale) @ self.coef.T + self.intercept
        z -= z.max(axis=1, keepdims=True)
        return z - np.log(np.exp(z).sum(axis=1, keepdims=True))

    def save(self, path: str | Path) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.stem}.tmp.npz")
        np.savez(tmp, coef=self.coef, intercept=self.intercept, mean=self.mean, scale=self.scale,
                 settings=np.array(json.dumps({**self.settings, "format_version": FORMAT_VERSION})))
        tmp.replace(path)

    @classmethod
    def load(cls, path: str | Path) -> "StanceClassifier":
        with np.load(path, allow_pickle=False) as data:
            settings = json.loads(str(data["settings"]))
            if settings.get("format_version") != FORMAT_VERSION:
                raise ValueError(f"{path}: classifier format {settings.get('format_version')}, expected {FORMAT_VERSION}")
            return cls(data["coef"], data["intercept"], settings, data["mean"], data["scale"])


@register_model("judge", "classifier")
class ClassifierJudge:
    """Scores (question, response, topic) items with a trained StanceClassifier."""

    def __init__(self, classifier: str | Path, *, device: str = "cpu", batch_size: int = 64,
                 embed_model: str | None = None):
        self.path = str(classifier)
        self.classifier = StanceClassifier.load(classifier)
        spec = {**self.classifier.settings["embedder"], "device": device, "batch_size": batch_size}
        self.embedder = make_embedder(spec, embed_model)
        self.calls = 0

    def item_logprobs(self, questions, responses, topics):
        if not len(responses):
            return []
        texts = item_texts(self.classifier.settings["input"], questions, responses, topics, llm=self.embedder.llm)
        logp = self.classifier.log_proba(self.embedder.encode(texts))
        self.calls += len(texts)
        return [tuple(float(v) for v in row) for row in logp]

    def accounting(self) -> dict[str, Any]:
        return {"judge_backend": "classifier", "classifier": self.path, "calls": self.calls, "cache_hits": 0,
                "prompt_tokens": 0, "completion_tokens": 0, "failures": 0, "cost": 0.0,
                "input": self.classifier.settings["input"], "embedder": self.classifier.settings["embedder"]}


# -- training -----------------------------------------------------------------------------

def _fit(x: np.ndarray, y: Sequence[str], c: float, seed: int, standardize: bool = False):
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    model = LogisticRegression(C=c, max_iter=5000, random_state=seed)
    return (make_pipeline(StandardScaler(), model) if standardize else model).fit(x, list(y))


def cross_validate(features: dict[str, np.ndarray], labels: Sequence[str], *, cs: Sequence[float], folds: int,
                   seed: int, standardize: bool = False) -> list[dict[str, Any]]:
    """Macro-F1 of every (input format, C) by stratified k-fold cross-validation."""
    from sklearn.metrics import f1_score
    from sklearn.model_selection import StratifiedKFold

    y = np.array(labels, dtype=object)
    counts = min(sum(y == s) for s in set(y))
    k = max(2, min(folds, counts))
    splits = list(StratifiedKFold(n_splits=k, shuffle=True, random_state=seed).split(np.zeros(len(y)), y))
    out = []
    for fmt, x in features.items():
        for c in cs:
            scores = [f1_score(y[te], _fit(x[tr], y[tr], c, seed, standardize).predict(x[te]), average="macro")
                      for tr, te in splits]
            out.append({"input": fmt, "C": float(c), "folds": k, "macro_f1": float(np.mean(scores)),
                        "macro_f1_sd": float(np.std(scores))})
    return out


def fit_classifier(questions, responses, topics, labels, *, embedder, embedder_spec: dict[str, Any],
                   input_format: str, cs: Sequence[float], folds: int, seed: int
                   ) -> tuple[StanceClassifier, dict[str, Any]]:
    """Pick input format and C by cross-validation on these items only, then fit on all of them."""
    if len(set(labels)) < 2:
        raise ValueError(f"training labels cover only {sorted(set(labels))}; a classifier needs two stances or more")
    formats = list(INPUT_FORMATS) if input_format == "auto" else [input_format]
    features = {f: embedder.encode(item_texts(f, questions, responses, topics, llm=embedder.llm)) for f in formats}
    cv = cross_validate(features, labels, cs=cs, folds=folds, seed=seed, standardize=embedder.llm)
    best = max(cv, key=lambda r: r["macro_f1"])  # first of equals: formats and C in config order
    fitted = _fit(features[best["input"]], labels, best["C"], seed, embedder.llm)
    settings = {"input": best["input"], "C": best["C"], "embedder": embedder_settings(embedder_spec)}
    model, scaler = (fitted[-1], fitted[0]) if embedder.llm else (fitted, None)
    return StanceClassifier.from_sklearn(model, settings, scaler), {"cross_validation": cv, "chosen": best}


def train_authored(*, train: str, embedder: dict[str, Any], settings: dict[str, Any], output: str,
                   report: str, embed_model: str | None = None) -> dict[str, Any]:
    """Train on an authored labelled stance file (``train.path``); write the classifier and its report."""
    from .judge_eval import _write_text, read_items

    items = read_items(train)
    t0 = time.perf_counter()
    clf, info = fit_classifier(items["question"].to_list(), items["response"].to_list(), items["topic"].to_list(),
                               items["stance"].to_list(), embedder=make_embedder(embedder, embed_model),
                               embedder_spec=embedder, input_format=settings["input"],
                               cs=settings["C"], folds=settings["folds"], seed=settings["seed"])
    seconds = time.perf_counter() - t0
    clf.save(output)
    result = {"source": "authored", "train_file": str(train), "items": len(items), **info,
              "train_seconds": round(seconds, 2)}
    _write_text(report, json.dumps(result, indent=2))
    log.info("classifier judge trained on %d items of %s in %.1f s: %s, C=%s (CV macro-F1 %.3f)", len(items), train,
             seconds, info["chosen"]["input"], info["chosen"]["C"], info["chosen"]["macro_f1"])
    return result


def sample_responses(generations: dict[str, str], questions: str, n: int, seed: int) -> pl.DataFrame:
    """A seeded sample of ``n`` of the study's responses (all models), with question and topic."""
    from . import tables

    qs = tables.read(questions, "questions").select("question_id", "question", "topic")
    frames = [tables.read(path, "generations").select("question_id", "sample", "response")
              .with_columns(pl.lit(key).alias("model")) for key, path in sorted(generations.items())]
    pool = pl.concat(frames).join(qs, on="question_id", how="left").sort("model", "question_id", "sample")
    take = min(n, len(pool))
    return pool.sample(n=take, seed=seed, shuffle=True), len(pool)


def train_distilled(*, generations: dict[str, str], questions: str, teacher: dict[str, Any],
                    teacher_kwargs: dict[str, Any], embedder: dict[str, Any], settings: dict[str, Any], output: str,
                    report: str, embed_model: str | None = None) -> dict[str, Any]:
    """Label a sample of the study's responses with the teacher, fit on part, measure agreement on the rest."""
    from .judge import make_judge, stance_row
    from .judge_eval import _write_text, classification_metrics
    from .judge_specs import describe

    sample, total = sample_responses(generations, questions, settings["sample"], settings["seed"])
    teacher_judge = make_judge(teacher["backend"], **teacher_kwargs)
    from .judge import item_logprobs

    t0 = time.perf_counter()
    lps = item_logprobs(teacher_judge, sample["question"].to_list(), sample["response"].to_list(),
                        sample["topic"].to_list())
    teacher_seconds = time.perf_counter() - t0
    content_free = {}
    if teacher.get("calibration", "none") == "contextual":
        from .calibration import content_free_logprobs

        content_free = content_free_logprobs(teacher_judge, sample["question"].to_list(), sample["topic"].to_list())
    rows = [stance_row(lp, content_free.get(t), min_option_mass=teacher.get("min_option_mass", 0.0))
            for lp, t in zip(lps, sample["topic"].to_list())]
    labels = [STANCES[int(np.argmax([r[f"p_{s}"] for s in STANCES]))] if r["scorable"] else None for r in rows]
    labelled = sample.with_columns(pl.Series("label", labels, dtype=pl.String)).filter(pl.col("label").is_not_null())
    n_hold = int(round(len(labelled) * settings["holdout_fraction"]))
    if len(labelled) - n_hold < 2 * len(STANCES) or n_hold < 1:
        raise ValueError(f"distillation: {len(labelled)} teacher-labelled responses of {len(sample)} sampled are too "
                         f"few to train and hold out (raise train.sample or lower train.holdout_fraction)")
    never = sorted(set(STANCES) - set(labelled["label"].to_list()))
    if never:
        log.warning("distillation: the teacher never chose %s on %d sampled responses; the student never will",
                    ", ".join(never), len(labelled))
    held, fit_part = labelled.head(n_hold), labelled.slice(n_hold)
    student_embedder = make_embedder(embedder, embed_model)
    t1 = time.perf_counter()
    clf, info = fit_classifier(fit_part["question"].to_list(), fit_part["response"].to_list(),
                               fit_part["topic"].to_list(), fit_part["label"].to_list(), embedder=student_embedder,
                               embedder_spec=embedder, input_format=settings["input"], cs=settings["C"],
                               folds=settings["folds"], seed=settings["seed"])
    train_seconds = time.perf_counter() - t1
    x = student_embedder.encode(item_texts(clf.settings["input"], held["question"].to_list(),
                                           held["response"].to_list(), held["topic"].to_list(),
                                           llm=student_embedder.llm))
    probs = np.exp(clf.log_proba(x))
    agreement = classification_metrics(held["label"].to_list(), probs)
    teacher_pred = held["label"].to_list()
    student_pred = [STANCES[int(i)] for i in probs.argmax(axis=1)]
    clf.save(output)
    accounting = getattr(teacher_judge, "accounting", lambda: {})()
    result = {"source": "distill", "teacher": describe(teacher), "study_responses": total, "sampled": len(sample),
              "teacher_labelled": len(labelled), "teacher_never_chose": never, "trained_on": len(fit_part), "held_out": n_hold,
              "agreement": agreement["accuracy"], "agreement_macro_f1": agreement["macro_f1"],
              "kappa": cohen_kappa(teacher_pred, student_pred), "confusion": agreement["confusion"],
              "teacher_calls": accounting.get("calls", len(sample)), "teacher_cost": accounting.get("cost", 0.0),
              "calls_saved": total - len(sample), "teacher_seconds": round(teacher_seconds, 2),
              "train_seconds": round(train_seconds, 2), **info}
    _write_text(report, json.dumps(result, indent=2))
    log.info("distilled %s into a classifier: agreement %.3f (kappa %.3f) on %d held-out responses; %d of %d "
             "responses need no teacher call", result["teacher"], result["agreement"], result["kappa"], n_hold,
             result["calls_saved"], total)
    return result


def cohen_kappa(a: Sequence[str | None], b: Sequence[str | None]) -> float | None:
    """Cohen's kappa of two labelings (pairs with a missing label dropped)."""
    pairs = [(x, y) for x, y in zip(a, b) if x is not None and y is not None]
    if not pairs:
        return None
    n = len(pairs)
    observed = sum(x == y for x, y in pairs) / n
    cats = sorted({x for x, _ in pairs} | {y for _, y in pairs})
    expected = sum((sum(x == c for x, _ in pairs) / n) * (sum(y == c for _, y in pairs) / n) for c in cats)
    if math.isclose(expected, 1.0):
        return 1.0 if math.isclose(observed, 1.0) else 0.0
    return (observed - expected) / (1 - expected)
