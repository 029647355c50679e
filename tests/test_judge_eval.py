"""Judges measured, not trusted: validation metrics and floor, calibration, option-mass floor,
the classifier judge (real embedder, real scikit-learn), panel agreement, human review."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from conftest import REPO
from valuedrift import tables
from valuedrift.calibration import calibrate
from valuedrift.classifier_judge import StanceClassifier, cohen_kappa
from valuedrift.judge import stance_distribution, stance_row
from valuedrift.judge_eval import (JudgeBelowFloor, check_floor, choose_variant, classification_metrics,
                                   expected_calibration_error, read_items)
from valuedrift.topics import STANCES

JUDGE_DATA = REPO / "data" / "judge"


def need_judge_data() -> None:
    if not (JUDGE_DATA / "train.jsonl").exists() or not (JUDGE_DATA / "validation.jsonl").exists():
        pytest.skip("data/judge/{train,validation}.jsonl not present")


def onehot(stances, p=0.9):
    out = np.full((len(stances), 3), (1 - p) / 2)
    for i, s in enumerate(stances):
        out[i, STANCES.index(s)] = p
    return out


# -- metrics --------------------------------------------------------------------------------

def test_metrics_of_a_perfect_and_a_constant_judge():
    truth = ["support", "neutral", "oppose"] * 4
    perfect = classification_metrics(truth, onehot(truth))
    assert perfect["accuracy"] == perfect["macro_f1"] == 1.0
    assert perfect["ece"] == pytest.approx(0.1)  # always right at confidence 0.9
    assert perfect["chance_accuracy"] == pytest.approx(1 / 3) and perfect["chance_macro_f1"] == pytest.approx(1 / 3)
    constant = classification_metrics(truth, onehot(["support"] * 12, p=0.64))
    assert constant["accuracy"] == pytest.approx(1 / 3)  # the demo judge: support on everything
    assert constant["macro_f1"] == pytest.approx((0.5 + 0 + 0) / 3)  # F1(support) = 2 * 1/3 * 1 / (4/3)
    assert constant["confusion"]["oppose"] == {"support": 4, "neutral": 0, "oppose": 0, "unscorable": 0}


def test_an_unscorable_item_counts_as_wrong_never_imputed():
    truth = ["support", "oppose"]
    probs = np.array([[0.8, 0.1, 0.1], [np.nan, np.nan, np.nan]])
    m = classification_metrics(truth, probs)
    assert m["accuracy"] == 0.5 and m["scorable"] == 1
    assert m["confusion"]["oppose"]["unscorable"] == 1
    assert m["f1"]["oppose"] == 0.0 and m["f1"]["support"] == 1.0


def test_expected_calibration_error_by_hand():
    # confidence 0.6 in one bin, right 1 of 2 times -> |0.5 - 0.6|; confidence 1.0, right -> 0
    truth = ["support", "oppose", "neutral"]
    probs = np.array([[0.6, 0.2, 0.2], [0.6, 0.2, 0.2], [0.0, 1.0, 0.0]])
    assert expected_calibration_error(truth, probs) == pytest.approx((2 * 0.1 + 0) / 3)


def test_cohen_kappa_matches_scikit_learn():
    from sklearn.metrics import cohen_kappa_score

    rng = np.random.default_rng(0)
    a = list(rng.choice(STANCES, 50))
    b = [x if rng.random() < 0.6 else rng.choice(STANCES) for x in a]
    assert cohen_kappa(a, b) == pytest.approx(cohen_kappa_score(a, b))
    assert cohen_kappa(a, a) == 1.0


def test_read_items_names_file_and_line(tmp_path):
    good = {"id": "x1", "category": "Race and Racism", "question": "q?", "response": "r.", "stance": "oppose"}
    path = tmp_path / "v.jsonl"
    path.write_text(json.dumps(good) + "\n")
    assert read_items(path)["topic"].to_list() == ["racism"]
    for bad, message in [({"stance": "against"}, "stance 'against'"), ({"category": "Cooking"}, "unknown category"),
                         ({"response": " "}, "missing or empty response")]:
        path.write_text(json.dumps(good) + "\n" + json.dumps({**good, "id": "x2", **bad}) + "\n")
        with pytest.raises(ValueError, match=f"v.jsonl:2: .*{message}"):
            read_items(path)
    path.write_text(json.dumps(good) + "\n" + json.dumps(good) + "\n")
    with pytest.raises(ValueError, match="duplicate id 'x1'"):
        read_items(path)


def test_the_authored_sets_are_balanced_and_disjoint():
    need_judge_data()
    val, train = read_items(JUDGE_DATA / "validation.jsonl"), read_items(JUDGE_DATA / "train.jsonl")
    for items in (val, train):
        cells = items.group_by("topic", "stance").len()
        assert len(cells) == 33 and cells["len"].min() >= 10
    assert not set(val["id"]) & set(train["id"])
    assert not set(val["response"]) & set(train["response"])


# -- floor ------------------------------------------------------------------------------------

def _metrics_file(tmp_path, f1=0.2):
    path = tmp_path / "metrics.json"
    path.write_text(json.dumps({"description": "local smollm2-135m", "validation_file": "data/judge/validation.jsonl",
                                "overall": {"macro_f1": f1, "accuracy": 0.33, "chance_macro_f1": 1 / 3}}))
    return path


def test_a_judge_below_the_floor_fails_with_the_key_to_accept_it(tmp_path):
    out = tmp_path / "accepted.json"
    with pytest.raises(JudgeBelowFloor) as err:
        check_floor(name="primary", metrics=_metrics_file(tmp_path), output=out, min_macro_f1=0.5,
                    accept_below_floor=False)
    text = str(err.value)
    assert "'primary'" in text and "local smollm2-135m" in text and "0.200" in text
    assert "judge_validation.min_macro_f1 = 0.5" in text and "judge_validation.accept_below_floor: [primary]" in text
    assert not out.exists()
    with pytest.raises(JudgeBelowFloor):  # accepting another judge does not accept this one
        check_floor(name="primary", metrics=_metrics_file(tmp_path), output=out, min_macro_f1=0.5,
                    accept_below_floor=["other"])
    check_floor(name="primary", metrics=_metrics_file(tmp_path), output=out, min_macro_f1=0.5,
                accept_below_floor=["primary"])
    assert json.loads(out.read_text()) == {"judge": "primary", "macro_f1": 0.2, "min_macro_f1": 0.5, "passes": False,
                                           "accepted_below_floor": True}
    check_floor(name="good", metrics=_metrics_file(tmp_path, 0.8), output=out, min_macro_f1=0.5,
                accept_below_floor=False)
    assert json.loads(out.read_text())["passes"] is True


def test_calibration_auto_is_kept_only_where_it_raises_accuracy():
    def m(acc):
        return {"overall": {"accuracy": acc}}

    assert choose_variant("auto", {"raw": m(0.33), "calibrated": m(0.39)}) == "calibrated"
    assert choose_variant("auto", {"raw": m(0.40), "calibrated": m(0.40)}) == "raw"
    assert choose_variant("contextual", {"raw": m(0.40), "calibrated": m(0.30)}) == "calibrated"
    assert choose_variant("none", {"raw": m(0.40)}) == "raw"


# -- calibration and option mass ---------------------------------------------------------------

def test_contextual_calibration_divides_out_the_content_free_preference():
    lp = tuple(math.log(p) for p in (0.5, 0.1, 0.1))  # mass 0.7
    cf = tuple(math.log(p) for p in (0.64, 0.16, 0.20))
    row = stance_row(lp, cf)
    expected = np.array([0.5 / 0.64, 0.1 / 0.16, 0.1 / 0.20])
    assert [row["p_support"], row["p_neutral"], row["p_oppose"]] == pytest.approx(list(expected / expected.sum()))
    assert row["option_mass"] == pytest.approx(0.7)  # the raw mass, not the calibrated one
    assert stance_row(lp)["p_support"] == pytest.approx(5 / 7)
    assert calibrate(None, cf) is None and calibrate(lp, None) == lp


def test_option_mass_floor_marks_unscorable_and_keeps_the_mass():
    lp = tuple(math.log(p) for p in (0.004, 0.003, 0.003))  # 1% of the mass on the options
    row = stance_row(lp, min_option_mass=0.05)
    assert row["scorable"] is False and row["p_support"] is None and row["option_mass"] == pytest.approx(0.01)
    assert stance_row(lp, min_option_mass=0.005)["scorable"] is True
    assert stance_row(None, min_option_mass=0.05) == {"p_support": None, "p_neutral": None, "p_oppose": None,
                                                       "option_mass": None, "scorable": False}
    assert stance_distribution(lp)[3] == pytest.approx(0.01)


# -- the classifier artifact --------------------------------------------------------------------

@pytest.mark.parametrize("classes", [STANCES, ("oppose", "support")])
def test_classifier_file_reproduces_scikit_learn_without_pickle(tmp_path, classes):
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(1)
    x = rng.normal(size=(60, 8))
    y = [classes[i % len(classes)] for i in range(60)]
    x[:, 0] += [3 * classes.index(c) for c in y]
    model = LogisticRegression(max_iter=1000).fit(x, y)
    clf = StanceClassifier.from_sklearn(model, {"input": "topic", "embedder": {"name": "all-MiniLM-L6-v2"}})
    clf.save(tmp_path / "c.npz")
    loaded = StanceClassifier.load(tmp_path / "c.npz")
    p = np.exp(loaded.log_proba(x))
    for k, s in enumerate(STANCES):
        if s in classes:
            assert p[:, k] == pytest.approx(model.predict_proba(x)[:, list(model.classes_).index(s)], abs=1e-9)
        else:
            assert p[:, k].max() < 1e-9  # a stance never seen in training is never predicted
    assert loaded.settings["input"] == "topic" and loaded.settings["classes_seen"] == list(model.classes_)
    with np.load(tmp_path / "c.npz", allow_pickle=False) as data:
        assert sorted(data.files) == ["coef", "intercept", "mean", "scale", "settings"]


# -- config -------------------------------------------------------------------------------------

@pytest.mark.parametrize("mutate, message", [
    (lambda c: c.update(judges={"primary": {"backend": "classifier"}}), "'judges.primary': the name is reserved"),
    (lambda c: c.update(judges={"x": {"backend": "classifier", "train": {"path": "nope.jsonl"}}}),
     "config key 'judges.x.train.path': file not found: nope.jsonl"),
    (lambda c: c.update(judges={"x": {"backend": "classifier", "train": {"source": "distill"}}}),
     "config key 'judges.x.train.teacher' is required"),
    (lambda c: c.update(judges={"x": {"backend": "local"}}), "config key 'judges.x.model' is required"),
    (lambda c: c.update(judge={"backend": "classifier", "calibration": "auto",
                               "train": {"path": str(REPO / "data/demo/sft.jsonl")}}),
     "'judge.calibration': only LLM judges"),
    (lambda c: c["judge"].update(calibration="always"), "config key 'judge.calibration': 'always' is not a valid choice"),
    (lambda c: c.update(judge_validation={"accept_below_floor": ["gpt"]}),
     "'judge_validation.accept_below_floor': unknown judge 'gpt'"),
    (lambda c: c.update(judges={"x": {"backend": "local", "model": "tiny", "temperature": 0}}),
     "unknown config key 'temperature' in 'judges.x'"),
])
def test_judge_config_errors_name_the_key(tmp_path, mutate, message):
    from conftest import tiny_config
    from valuedrift import config as vd_config

    (tmp_path / "model").mkdir()
    cfg = tiny_config(tmp_path / "model")
    mutate(cfg)
    with pytest.raises(vd_config.ConfigError) as err:
        vd_config.validate(cfg)
    assert message in str(err.value)


def test_new_judge_keys_leave_an_existing_judge_config_as_it_was(tmp_path):
    """No schema default for the judge-evaluation keys: the judge rule's params (and so its jobs) stay."""
    from conftest import tiny_config
    from valuedrift import config as vd_config

    (tmp_path / "model").mkdir()
    cfg = vd_config.validate(tiny_config(tmp_path / "model"))
    assert not {"calibration", "min_option_mass", "embedder", "train"} & set(cfg["judge"])


def test_judge_params_hold_only_what_changes_its_stances(monkeypatch):
    """A judge's rule params (judge_specs.result_settings): no execution setting, no key its backend
    never reads (max_tokens is the openai judge's), and for an LLM judge the prompt's digest, so
    editing the Figure-8 prompt reruns exactly the LLM judges' jobs."""
    from valuedrift import judge_specs, prompts

    local = judge_specs.with_defaults({"backend": "local", "model": "m", "batch_size": 4})
    api = judge_specs.with_defaults({"backend": "openai", "model": "gpt-4o", "base_url": "https://x", "max_tokens": 5})
    trained = judge_specs.with_defaults({"backend": "classifier", "embedder": {"llm": "m", "layer": 3}})
    for spec in (local, api, trained):
        params = judge_specs.result_settings(spec)
        assert not {"batch_size", "concurrency", "cache_dir", "base_url", "max_unscorable_fraction"} & set(params)
        assert judge_specs.job_spec({"judge": spec, "models": {}}, "primary", params)["batch_size"] == spec["batch_size"]
    lp, ap, tp = (judge_specs.result_settings(s) for s in (local, api, trained))
    assert "max_tokens" not in lp and "top_logprobs" not in lp and lp["dtype"] == "float32"
    assert ap["max_tokens"] == 5 and "dtype" not in ap
    assert tp["embedder"]["layer"] == 3 and "prompt_sha256" not in tp and "max_tokens" not in tp
    assert judge_specs.result_settings({**local, "max_tokens": 7}) == lp  # the local judge never reads it

    load = prompts.load
    monkeypatch.setattr(prompts, "load", lambda name: load(name) + (" Answer with one letter." if name == "judge_stance"
                                                                     else ""))
    assert judge_specs.result_settings(local) != lp and judge_specs.result_settings(api) != ap
    assert judge_specs.result_settings(trained) == tp


def test_a_distilled_judge_params_hold_its_teacher_result_settings(monkeypatch):
    """A distilled classifier's teacher is reduced like any judge: its batch size or cache never
    retrains the classifier (nor reruns its judge jobs), the Figure-8 prompt does; an authored
    classifier has no teacher in its params, so the prompt never reruns it."""
    from valuedrift import judge_specs, prompts

    teacher = {"backend": "openai", "model": "gpt-4o", "base_url": "https://x", "batch_size": 8, "cache_dir": "c"}
    distilled = judge_specs.with_defaults({"backend": "classifier", "train": {"source": "distill", "teacher": teacher}})
    authored = judge_specs.with_defaults({"backend": "classifier", "train": {"teacher": teacher}})
    faster = judge_specs.with_defaults({"backend": "classifier", "train": {
        "source": "distill", "teacher": {**teacher, "batch_size": 64, "concurrency": 32, "cache_dir": "elsewhere"}}})
    dp, ap = judge_specs.result_settings(distilled), judge_specs.result_settings(authored)
    assert not {"batch_size", "cache_dir", "base_url", "concurrency"} & set(dp["train"]["teacher"])
    assert "teacher" not in ap["train"] and "prompt_sha256" not in ap
    assert judge_specs.result_settings(faster) == dp
    assert judge_specs.training_settings(faster) == judge_specs.training_settings(distilled) == \
        {k: dp[k] for k in ("embedder", "train")}
    # the job gets the teacher's execution settings back from the config
    job = judge_specs.job_spec({"judge": distilled, "models": {}}, "primary", judge_specs.training_settings(distilled))
    assert job["train"]["teacher"]["base_url"] == "https://x" and job["train"]["teacher"]["batch_size"] == 8

    load = prompts.load
    monkeypatch.setattr(prompts, "load", lambda name: load(name) + (" Answer with one letter." if name == "judge_stance"
                                                                     else ""))
    assert judge_specs.result_settings(distilled) != dp and judge_specs.training_settings(distilled) != \
        {k: dp[k] for k in ("embedder", "train")}
    assert judge_specs.result_settings(authored) == ap


def test_each_judge_asks_for_its_own_model_resources():
    """judge_classifier, judge_validation and panel_judge ask for the `infer` resources of the model
    their judge loads (judge_specs.resource_model of its spec, as the judge rule), none without one."""
    from valuedrift import judge_specs, launch

    config = {"models": {"m": {}}, "resources": {"by_model": {"m": {"infer": {"mem_mb": 2000}}}},
              "judge": {"backend": "openai", "model": "gpt-4o"}}
    probe = {"backend": "classifier", "embedder": {"llm": "m", "layer": 3}}
    minilm = {"backend": "classifier", "embedder": {"name": "all-MiniLM-L6-v2"}}
    local = {"backend": "local", "model": "m"}
    assert [judge_specs.resource_model(config, s) for s in (probe, minilm, local)] == ["m", None, "m"]
    assert judge_specs.resource_model(config) is None  # the primary (API) judge
    assert [judge_specs.loads_model(s) for s in (probe, minilm, local, config["judge"])] == [True, False, True, False]
    assert launch.request(config["resources"], "infer", judge_specs.resource_model(config, probe))["mem_mb"] == 2000


def test_the_judge_eval_target_and_the_report_read_the_same_files():
    from valuedrift import judge_specs, paths

    config = {"judge": {"backend": "classifier"}, "judges": {"api": {"backend": "openai", "model": "m"}},
              "human_review": {"filled": None}, "models": {}}
    files = judge_specs.eval_files(config)
    assert paths.judge_classifier_report("primary") in files and paths.panel_agreement() in files
    assert paths.human_review_agreement() not in files
    assert judge_specs.report_files(config) == []  # judge_validation.enabled is off
    assert judge_specs.report_files({**config, "judge_validation": {"enabled": True}}) == files
