"""The drill-down page: its data file from hand-built tables, and the page in headless Chromium
(select, search, each judge's verdict, no network), with a screenshot."""

from __future__ import annotations

import base64
import json
import math
import re
import time
from pathlib import Path

import polars as pl
import pytest

from test_report import REPO, Chromium, console_errors, needs_chromium
from valuedrift import drilldown, paths, tables

QUESTIONS = pl.DataFrame({"question_id": ["gun-1", "abortion-2", "abortion-1"], "category": ["C"] * 3,
                          "topic": ["Gun control", "Abortion", "Abortion"],
                          "question": ["Should assault weapons be banned?", "Is abortion a right?",
                                       "Should abortion be legal after 20 weeks?"]})
STANCE_SCHEMA = {"question_id": pl.String, "sample": pl.Int64, "p_support": pl.Float64, "p_neutral": pl.Float64,
                 "p_oppose": pl.Float64, "option_mass": pl.Float64, "scorable": pl.Boolean}


def generations(step: int) -> pl.DataFrame:
    rows = [{"question_id": q, "sample": s, "prompt": f"Q: {q}", "n_tokens": 5,
             "response": f"At step {step}, answer {s} to {q}: " + ("I firmly support it. " if step else "It depends. ") * (s + 1)
             + ("<b>not bold</b>" if (q, s) == ("gun-1", 0) else "")}
            for q in QUESTIONS["question_id"] for s in range(2)]
    return pl.DataFrame(rows)


def stance_table(rows) -> pl.DataFrame:
    out = [{"question_id": q, "sample": s, "p_support": p[0] if p else None, "p_neutral": p[1] if p else None,
            "p_oppose": p[2] if p else None, "option_mass": 0.9 if p else None, "scorable": p is not None}
           for q, s, p in rows]
    return pl.DataFrame(out, schema=STANCE_SCHEMA)


def judged(step: int, judge: str) -> pl.DataFrame:
    rows = []
    for q in QUESTIONS["question_id"]:
        for s in range(2):
            if step == 0:
                p = (0.2, 0.6, 0.2)
            else:
                p = (0.7, 0.2, 0.1) if judge == "local" else (0.3, 0.1, 0.6)
            rows.append((q, s, None if (q, s, step) == ("abortion-1", 1, 4) else p))
    return stance_table(rows)


def build(tmp_path: Path, steps=(0, 4)) -> tuple[Path, Path]:
    tables.write(QUESTIONS, tmp_path / "q.parquet", "questions")
    gens, stances = {}, {"local": {}, "api": {}}
    for step in steps:
        tables.write(generations(step), tmp_path / f"g{step}.parquet", "generations")
        gens[step] = str(tmp_path / f"g{step}.parquet")
        for judge in stances:
            tables.write(judged(step, judge), tmp_path / f"s{judge}{step}.parquet", "stances")
            stances[judge][step] = str(tmp_path / f"s{judge}{step}.parquet")
    page, data = tmp_path / "page" / "drilldown.html", tmp_path / "page" / "drilldown-data.js"
    drilldown.write_drilldown(questions=str(tmp_path / "q.parquet"), generations=gens, stances=stances,
                              page=str(page), data=str(data), title="Drill-down <test>")
    return page, data


def load_data(path: Path) -> dict:
    text = path.read_text()
    assert text.startswith("window.DRILLDOWN = ") and text.rstrip().endswith(";")
    return json.loads(text.removeprefix("window.DRILLDOWN = ").rstrip().rstrip(";"))


def test_data_file_is_columnar_and_ordered(tmp_path):
    _, data_file = build(tmp_path)
    d = load_data(data_file)
    assert d["steps"] == [0, 4] and d["judges"] == ["local", "api"]
    assert d["topics"] == ["Abortion", "Gun control"]
    assert d["q_id"] == ["abortion-1", "abortion-2", "gun-1"]  # by topic, then id
    assert d["q_topic"] == [0, 0, 1]
    assert d["q_start"] == [0, 4, 8, 12]  # 2 steps x 2 samples each
    # answers of a question by step, then sample
    assert d["a_step"][:4] == [0, 0, 1, 1] and d["a_sample"][:4] == [0, 1, 0, 1]
    assert d["a_text"][2].startswith("At step 4, answer 0 to abortion-1")
    # per answer and judge three probabilities in thousandths; -1: unscorable
    p = d["a_p"]
    assert p[0:6] == [200, 600, 200, 200, 600, 200]  # answer 0 (step 0): local, api
    assert p[12:18] == [700, 200, 100, 300, 100, 600]  # answer 2 (step 4, sample 0)
    assert p[18:24] == [-1, -1, -1, -1, -1, -1]  # abortion-1 sample 1 at step 4: unscorable for both
    assert len(p) == 12 * 2 * 3


def test_a_judge_missing_a_step_is_an_error_and_a_missing_row_is_unscorable(tmp_path):
    gens = {0: generations(0), 4: generations(4)}
    with pytest.raises(ValueError, match="judge 'local' has stances for steps \\[0\\]"):
        drilldown.build_data(QUESTIONS, gens, {"local": {0: judged(0, "local")}}, title="t")
    partial = judged(4, "local").filter(pl.col("question_id") != "gun-1")
    d = drilldown.build_data(QUESTIONS, gens, {"local": {0: judged(0, "local"), 4: partial}}, title="t")
    gun_step4 = d["q_start"][2] + 2  # gun-1, step 4, sample 0
    assert d["a_p"][gun_step4 * 3: gun_step4 * 3 + 3] == [-1, -1, -1]


def test_page_is_self_contained_and_escapes_the_title(tmp_path):
    page, _ = build(tmp_path)
    html = page.read_text()
    assert "<title>Drill-down &lt;test&gt;</title>" in html
    assert re.findall(r"<script src=\"([^\"]+)\"", html) == ["drilldown-data.js"]
    assert not re.search(r"https?://", html), "the page must not reach the network"
    assert "innerHTML" not in html  # answers are model output: set as text, never parsed as HTML


STATE_JS = """(() => {
  const r = window.DRILLDOWN_READY;
  return {ready: !!r, ms: r ? r.ms : null, heading: (document.querySelector('main h2') || {}).textContent,
          cards: document.querySelectorAll('.answer').length, listed: document.querySelectorAll('#questions li').length,
          count: document.getElementById('count').textContent,
          verdicts: [...document.querySelectorAll('.answer')].map(c => [...c.querySelectorAll('.verdict, .unscorable')].map(v => v.textContent).join('/')),
          marks: document.querySelectorAll('mark').length, means: [...document.querySelectorAll('table.means td')].map(td => td.textContent),
          summary: document.getElementById('summary').textContent, hash: location.hash};
})()"""


def evaluate(browser, session, expression):
    return browser.send("Runtime.evaluate", {"expression": expression, "returnByValue": True},
                        session=session)["result"].get("value")


def wait_for(browser, session, condition, timeout=20.0):
    deadline = time.monotonic() + timeout
    while True:
        state = evaluate(browser, session, STATE_JS) or {}  # {} until the page's elements exist
        if (state and condition(state)) or time.monotonic() > deadline:
            return state
        time.sleep(0.1)


@needs_chromium
def test_page_in_headless_chromium(tmp_path):
    page, _ = build(tmp_path)
    shot = tmp_path / "drilldown-screenshot.png"  # never into the checkout's results/
    with Chromium() as browser:
        target = browser.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = browser.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Runtime", "Log", "Page"):
            browser.send(f"{domain}.enable", session=session)
        browser.send("Emulation.setDeviceMetricsOverride", {"width": 1280, "height": 900, "deviceScaleFactor": 1,
                                                             "mobile": False}, session=session)
        browser.send("Page.navigate", {"url": page.resolve().as_uri() + "#q=abortion-1"}, session=session)
        browser.wait_event("Page.loadEventFired", session)
        state = wait_for(browser, session, lambda s: s["ready"])
        assert state.get("ready"), (state, console_errors(browser.events, session))
        assert state["summary"].startswith("3 questions · 12 answers · checkpoints at steps 0, 4")
        # the question of the link, its 4 answers; each judge's verdict, the unscorable one named
        assert state["heading"] == "Should abortion be legal after 20 weeks?" and state["cards"] == 4
        assert state["verdicts"] == ["neutral/neutral", "neutral/neutral", "support/oppose",
                                     "unscorable/unscorable"]
        # the question's means per step: local (3), api (3), scorable
        assert state["means"] == ["0", "0.200", "0.600", "0.200", "0.200", "0.600", "0.200", "2/2",
                                  "4", "0.700", "0.200", "0.100", "0.300", "0.100", "0.600", "1/2"]

        # search the questions, then the answers, then pick another question
        evaluate(browser, session, "const s = document.getElementById('search'); s.value = 'BANNED';"
                                   "s.dispatchEvent(new Event('input'));")
        state = wait_for(browser, session, lambda s: s["listed"] == 1)
        assert state["count"] == "1 of 3 questions" and state["marks"] >= 1
        evaluate(browser, session, "const s2 = document.getElementById('search'); s2.value = 'firmly support';"
                                   "document.getElementById('in-answers').click();")
        state = wait_for(browser, session, lambda s: s["listed"] == 3)
        assert state["count"] == "3 of 3 questions"
        evaluate(browser, session, "document.querySelector('#questions li:nth-child(3)').click();")
        state = wait_for(browser, session, lambda s: s["heading"] == "Should assault weapons be banned?")
        assert state["hash"] == "#q=gun-1" and state["marks"] >= 2  # the answers' matches are marked
        # answers are model output: shown as text, never parsed as HTML
        assert evaluate(browser, session, "document.querySelectorAll('.answer b').length") == 0
        assert "<b>not bold</b>" in evaluate(browser, session, "document.querySelector('.answer').textContent")
        evaluate(browser, session, "const t = document.getElementById('topic'); t.value = '1';"
                                   "t.dispatchEvent(new Event('change'));")
        state = wait_for(browser, session, lambda s: s["listed"] == 1)

        size = browser.send("Page.getLayoutMetrics", session=session)["cssContentSize"]
        data = browser.send("Page.captureScreenshot", {"format": "png", "clip": {
            "x": 0, "y": 0, "width": math.ceil(size["width"]), "height": math.ceil(size["height"]), "scale": 1}},
            session=session)["data"]
        shot.parent.mkdir(parents=True, exist_ok=True)
        shot.write_bytes(base64.b64decode(data))
        time.sleep(0.2)
        evaluate(browser, session, "1")
        errors = console_errors(browser.events, session)
    assert not errors, errors
    assert shot.stat().st_size > 10_000


def test_drilldown_rules_plan_one_light_job_per_run(workdir, tiny_model):
    """`drilldowns` asks for every run's page; each needs only that run's generations and stances."""
    from conftest import planned_jobs, tiny_config, write_config

    configfile = str(write_config(workdir, tiny_config(tiny_model)))
    planned = planned_jobs(workdir, "drilldowns", "--configfile", configfile)
    # 2 runs (SFT, DPO), 2 checkpoints each after the shared start models: base, sft-2, sft-4, dpo-2, dpo-4
    assert planned["drilldown"] == 2 and planned["generate"] == 5 and planned["judge"] == 5
    assert "report" not in planned and "external_drilldown" not in planned
