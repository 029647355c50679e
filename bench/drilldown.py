"""Drill-down page benchmark -> results/bench/drilldown.json.

Builds the page for 100,000 generated answers (1,000 questions x 5 samples x 20
checkpoints by default; the paper's scale is 550 x 5 x ~20 = 55,000 per run), then loads it
in headless Chromium (no network; the DevTools pipe of tests/test_report.py) and measures:

* build_s: valuedrift.drilldown.build_data + write_data (Python, tables in memory);
* data_mb: size of the data script the page loads;
* load_ms: navigation start -> the first question on screen (performance.now() when the page
  sets window.DRILLDOWN_READY: parsing the data script included), each of ``--loads`` fresh tabs;
* interaction times measured inside the page around synchronous handlers: topic filter,
  first and repeated search through all answers, selecting a question (render of its 100 answers).

Answers are word salads of the demo SFT answers with 40-160 words each (about the paper's
answer length); stances are random Dirichlet draws, 3% unscorable.

Run: .venv/bin/python bench/drilldown.py [--questions 1000 --samples 5 --steps 20]
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl

from bench_env import REPO  # noqa: E402,F401  (first: offline hub, src/ on the path)
sys.path.insert(0, str(REPO / "tests"))

from valuedrift import drilldown, paths  # noqa: E402
from valuedrift.topics import CATEGORY_TOPICS  # noqa: E402


def synthetic(n_questions: int, samples: int, steps: list[int], seed: int = 0):
    rng = np.random.default_rng(seed)
    words = " ".join(json.loads(line)["messages"][-1]["content"]
                     for line in (REPO / "data/demo/sft.jsonl").read_text().splitlines()).split()
    demo_q = [json.loads(line) for line in (REPO / "data/demo/questions.jsonl").read_text().splitlines()]
    qs = pl.DataFrame({"question_id": [f"q{i:04d}" for i in range(n_questions)],
                       "category": [demo_q[i % len(demo_q)]["category"] for i in range(n_questions)],
                       "topic": [CATEGORY_TOPICS[demo_q[i % len(demo_q)]["category"]] for i in range(n_questions)],
                       "question": [f"{demo_q[i % len(demo_q)]['question']} (variant {i})" for i in range(n_questions)]})
    gens, stances = {}, {}
    n = n_questions * samples
    for step in steps:
        lengths = rng.integers(40, 161, size=n)
        texts = [" ".join(words[j] for j in rng.integers(0, len(words), size=k)) for k in lengths]
        ids = np.repeat(qs["question_id"].to_numpy(), samples)
        sample = np.tile(np.arange(samples), n_questions)
        gens[step] = pl.DataFrame({"question_id": ids, "sample": sample, "response": texts})
        p = rng.dirichlet([1.0, 1.0, 1.0], size=n)
        scorable = rng.random(n) > 0.03
        stances[step] = pl.DataFrame({"question_id": ids, "sample": sample, "p_support": p[:, 0],
                                      "p_neutral": p[:, 1], "p_oppose": p[:, 2], "scorable": scorable})
    return qs, gens, stances


def measure_in_chromium(page: Path, loads: int) -> dict:
    from test_report import Chromium, console_errors

    out: dict = {"load_ms": []}
    with Chromium(timeout=120) as browser:
        for i in range(loads):
            target = browser.send("Target.createTarget", {"url": "about:blank"})["targetId"]
            session = browser.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
            for domain in ("Runtime", "Log", "Page"):
                browser.send(f"{domain}.enable", session=session)
            t0 = time.perf_counter()
            browser.send("Page.navigate", {"url": page.resolve().as_uri()}, session=session)
            browser.wait_event("Page.loadEventFired", session, timeout=120)

            def js(expr):
                return browser.send("Runtime.evaluate", {"expression": expr, "returnByValue": True},
                                    session=session)["result"].get("value")

            while not js("!!window.DRILLDOWN_READY"):
                time.sleep(0.02)
            out["load_ms"].append(round(js("window.DRILLDOWN_READY.ms"), 1))
            out.setdefault("load_wall_ms", []).append(round(1000 * (time.perf_counter() - t0), 1))
            if i == loads - 1:
                timed = """(() => {
  const t = (f) => { const a = performance.now(); f(); return performance.now() - a; };
  const topic = document.getElementById('topic'), search = document.getElementById('search'),
        box = document.getElementById('in-answers');
  const r = {};
  r.topic_filter_ms = t(() => { topic.value = '1'; topic.dispatchEvent(new Event('change')); });
  topic.value = ''; topic.dispatchEvent(new Event('change'));
  search.value = 'disengagement';  // once in the demo answers' vocabulary: in ~1.3% of the answers
  r.answer_search_first_ms = t(() => box.click());   // lower-cases 100k answers once, then scans them
  r.answer_search_matches = document.getElementById('count').textContent;
  r.answer_search_again_ms = t(() => { box.click(); box.click(); }) / 2;
  topic.value = ''; search.value = ''; box.click();  // all questions listed again
  r.select_question_ms = t(() => document.querySelector('#questions li:nth-child(2)').click());
  r.answers_on_screen = document.querySelectorAll('.answer').length;
  r.heap_mb = performance.memory ? performance.memory.usedJSHeapSize / 1e6 : null;
  return r;
})()"""
                out.update({k: (round(v, 2) if isinstance(v, float) else v) for k, v in js(timed).items()})
                out["console_errors"] = console_errors(browser.events, session)
                shot = REPO / "results" / "bench" / "drilldown.png"  # the viewport, to look at
                shot.parent.mkdir(parents=True, exist_ok=True)
                shot.write_bytes(base64.b64decode(browser.send("Page.captureScreenshot", {"format": "png"},
                                                               session=session)["data"]))
            browser.send("Target.closeTarget", {"targetId": target})
    out["load_ms_median"] = statistics.median(out["load_ms"])
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--questions", type=int, default=1000)
    parser.add_argument("--samples", type=int, default=5)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--loads", type=int, default=3)
    parser.add_argument("--output", type=Path, default=REPO / paths.drilldown_bench())
    args = parser.parse_args()

    steps = [50 * i for i in range(args.steps)]
    qs, gens, stances = synthetic(args.questions, args.samples, steps)
    with tempfile.TemporaryDirectory() as tmp:
        page, data = Path(tmp) / "drilldown.html", Path(tmp) / "drilldown-data.js"
        t0 = time.perf_counter()
        built = drilldown.build_data(qs, gens, {"judge": stances}, title="drill-down benchmark")
        drilldown.write_data(built, data)
        build_s = time.perf_counter() - t0
        page.write_text(drilldown.render_page("drill-down benchmark", data.name))
        result = {"answers": len(built["a_text"]), "questions": args.questions, "samples": args.samples,
                  "checkpoints": args.steps, "build_s": round(build_s, 2),
                  "data_mb": round(data.stat().st_size / 1e6, 2),
                  "mean_answer_chars": round(float(np.mean([len(t) for t in built["a_text"]])), 1),
                  **measure_in_chromium(page, args.loads),
                  "machine": f"{platform.machine()}, {os.cpu_count()} cores",
                  "load_average_1m": round(os.getloadavg()[0], 1)}
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
