"""The paper tables, figures and the report page, rendered in headless Chromium.

Chromium (Debian's ``chromium``; ``make test`` installs it) is started by the test
with --headless --no-sandbox and no network (a dead proxy, every host unresolvable),
and driven over the DevTools protocol on a pipe (--remote-debugging-pipe: no port,
no extra dependency). The page must load without a console error, every figure must
render, and a full-page screenshot of the synthetic study's report is saved in the
test's temporary folder (never into the checkout's results/).

Run ``python tests/test_report.py results/report/index.html`` to check (and
screenshot) any report the same way.
"""

from __future__ import annotations

import base64
import json
import math
import os
import re
import select
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from valuedrift import drilldown, paper_tables, paths, pipeline, report, tables
from valuedrift.study import Study, runs_of as config_runs

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium (make test installs it)")

# rules that may run when only `report` options change
REPORT_RULES = {"trajectory_plot", "sft_comparison_plot", "po_comparison_plot", "drift_heatmap", "training_plot",
                "paper_tables", "sample_tables", "alignment_plot", "aligned_tables", "report", "all"}


# --- headless Chromium over the DevTools protocol (pipe) ------------------------------------

class Chromium:
    """A headless Chromium with no network, driven over --remote-debugging-pipe."""

    def __init__(self, timeout: float = 60.0):
        self.timeout = timeout
        self.profile = tempfile.mkdtemp(prefix="vd-chromium-")
        to_browser_r, self._to_browser = os.pipe()
        self._from_browser, from_browser_w = os.pipe()
        args = [CHROMIUM, "--headless", "--no-sandbox", "--remote-debugging-pipe", f"--user-data-dir={self.profile}",
                "--proxy-server=127.0.0.1:9", "--host-resolver-rules=MAP * ~NOTFOUND", "--disable-gpu",
                "--no-first-run", "--no-default-browser-check", "--disable-extensions", "--disable-sync",
                "--disable-background-networking", "--disable-component-update", "--disable-default-apps",
                "--mute-audio", "--hide-scrollbars", "--window-size=1280,900", "about:blank"]
        # the pipe protocol reads commands from fd 3 and writes replies to fd 4 (dup2 in a tiny launcher:
        # the shell's `3<&N` takes one-digit fds only)
        launcher = "import os, sys; os.dup2(int(sys.argv[1]), 3); os.dup2(int(sys.argv[2]), 4); os.execv(sys.argv[3], sys.argv[3:])"
        self.log = Path(self.profile) / "stderr.log"  # chromium is chatty (dbus); a file never blocks it
        with open(self.log, "wb") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-c", launcher, str(to_browser_r), str(from_browser_w), *args],
                pass_fds=(to_browser_r, from_browser_w), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                stderr=err)
        os.close(to_browser_r)
        os.close(from_browser_w)
        self._buffer = b""
        self._next_id = 0
        self.events: list[dict] = []

    def _read_message(self, deadline: float) -> dict:
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("chromium did not answer in time")
            ready, _, _ = select.select([self._from_browser], [], [], left)
            if ready:
                chunk = os.read(self._from_browser, 1 << 20)
                if not chunk:
                    raise RuntimeError(f"chromium closed the DevTools pipe:\n{self.stderr_tail()}")
                self._buffer += chunk
        raw, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(raw)

    def stderr_tail(self) -> str:
        lines = self.log.read_text(errors="replace").splitlines() if self.log.exists() else []
        return "\n".join(line for line in lines if "dbus" not in line)[-3000:]

    def send(self, method: str, params: dict | None = None, session: str | None = None) -> dict:
        self._next_id += 1
        msg = {"id": self._next_id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        try:
            os.write(self._to_browser, json.dumps(msg).encode() + b"\0")
        except BrokenPipeError:
            raise RuntimeError(f"chromium is gone (exit {self.proc.poll()}):\n{self.stderr_tail()}") from None
        deadline = time.monotonic() + self.timeout
        while True:
            reply = self._read_message(deadline)
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def wait_event(self, method: str, session: str, timeout: float | None = None) -> dict:
        for i, ev in enumerate(self.events):
            if ev.get("method") == method and ev.get("sessionId") == session:
                return self.events.pop(i)
        deadline = time.monotonic() + (timeout or self.timeout)
        while True:
            ev = self._read_message(deadline)
            if ev.get("method") == method and ev.get("sessionId") == session:
                return ev
            self.events.append(ev)

    def close(self) -> None:
        try:
            self.send("Browser.close")
        except Exception:  # noqa: BLE001 - already gone
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        for fd in (self._to_browser, self._from_browser):
            try:
                os.close(fd)
            except OSError:
                pass
        shutil.rmtree(self.profile, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def console_errors(events: list[dict], session: str) -> list[str]:
    """Console errors, uncaught exceptions and failed loads seen by a page."""
    out = []
    for ev in events:
        if ev.get("sessionId") != session:
            continue
        method, p = ev.get("method"), ev.get("params", {})
        if method == "Runtime.exceptionThrown":
            d = p.get("exceptionDetails", {})
            out.append(f"exception: {d.get('exception', {}).get('description') or d.get('text')}")
        elif method == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
            out.append("console.error: " + " ".join(str(a.get("value", a.get("description", ""))) for a in p["args"]))
        elif method == "Log.entryAdded" and p.get("entry", {}).get("level") == "error":
            e = p["entry"]
            out.append(f"log ({e.get('source')}): {e.get('text')} {e.get('url', '')}")
    return out


def open_page(browser: Chromium, path: Path, check_js: str, *, settle: float = 30.0,
              screenshot: Path | None = None) -> tuple[dict, list[str]]:
    """Load a file in a fresh tab; poll ``check_js`` until it reports ``ready``; return it and the errors."""
    target = browser.send("Target.createTarget", {"url": "about:blank"})["targetId"]
    session = browser.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
    for domain in ("Runtime", "Log", "Page"):
        browser.send(f"{domain}.enable", session=session)
    browser.send("Emulation.setDeviceMetricsOverride",
                 {"width": 1280, "height": 900, "deviceScaleFactor": 1, "mobile": False}, session=session)
    browser.send("Page.navigate", {"url": path.resolve().as_uri()}, session=session)
    browser.wait_event("Page.loadEventFired", session)
    deadline = time.monotonic() + settle
    while True:
        state = browser.send("Runtime.evaluate", {"expression": check_js, "returnByValue": True},
                             session=session)["result"].get("value") or {}
        if state.get("ready") or time.monotonic() > deadline:
            break
        time.sleep(0.25)
    if screenshot is not None:
        size = browser.send("Page.getLayoutMetrics", session=session)["cssContentSize"]
        shot = browser.send("Page.captureScreenshot", {
            "format": "png", "captureBeyondViewport": True,
            "clip": {"x": 0, "y": 0, "width": math.ceil(size["width"]), "height": math.ceil(size["height"]),
                     "scale": 1}}, session=session)
        screenshot.parent.mkdir(parents=True, exist_ok=True)
        screenshot.write_bytes(base64.b64decode(shot["data"]))
    time.sleep(0.2)  # let late console messages arrive
    browser.send("Runtime.evaluate", {"expression": "1"}, session=session)
    errors = console_errors(browser.events, session)
    browser.send("Target.closeTarget", {"targetId": target})
    return state, errors


INDEX_JS = """(() => {
  const imgs = [...document.querySelectorAll('img.figure')];
  const done = imgs.every(i => i.complete);
  return {ready: done, images: imgs.map(i => ({src: i.getAttribute('src'), w: i.naturalWidth, h: i.naturalHeight})),
          text: document.body.innerText};
})()"""

VEGA_JS = """(() => {
  const svg = document.querySelector('#vis svg.marks, #vis canvas');
  const marks = document.querySelectorAll('#vis svg.marks g.mark-line path, #vis svg.marks g.mark-rect path,'
                                          + ' #vis svg.marks g.mark-area path, #vis svg.marks g.mark-symbol path').length;
  const box = svg ? svg.getBoundingClientRect() : {width: 0, height: 0};
  return {ready: !!svg && marks > 0, marks: marks, width: box.width, height: box.height};
})()"""


def check_report(index: Path, screenshot: Path | None) -> dict:
    """Render the report and every interactive figure it links; assert no errors and all figures drawn."""
    page_dir = index.parent
    html_text = index.read_text()
    hrefs = re.findall(r"href=[\"']([^\"'#][^\"']*)[\"']", html_text)
    # vega figures: every linked page but the drill-downs and the human review form
    interactive = sorted({h for h in hrefs if h.endswith(".html") and not h.endswith(("drilldown.html", "form.html"))})
    with Chromium() as browser:
        state, errors = open_page(browser, index, INDEX_JS, screenshot=screenshot)
        assert not errors, f"{index}: console errors: {errors}"
        assert state["images"], "the report shows no figure"
        broken = [i["src"] for i in state["images"] if i["w"] == 0 or i["h"] == 0]
        assert not broken, f"figures that did not render: {broken}"
        figures = {}
        for href in interactive:
            fig_state, fig_errors = open_page(browser, page_dir / href, VEGA_JS)
            assert not fig_errors, f"{href}: console errors: {fig_errors}"
            assert fig_state.get("ready"), f"{href}: the vega figure did not render: {fig_state}"
            assert fig_state["width"] > 100 and fig_state["height"] > 100, (href, fig_state)
            figures[href] = fig_state["marks"]
    missing = [h for h in hrefs if not (page_dir / h).exists()]
    assert not missing, f"links to missing artifacts: {missing}"
    return {"text": state["text"], "images": state["images"], "interactive": figures, "links": hrefs}


# --- a small synthetic study -----------------------------------------------------------------

TOPICS = ["abortion", "climate change action", "immigration"]
BASE = "toy"


def synthetic_study() -> dict:
    runs = [
        {"base": BASE, "sft": "chat-data", "every": 10, "max_steps": 50},
        {"base": BASE, "sft": "instruct-data", "every": 10, "max_steps": 50},
        {"base": BASE, "sft": "chat-data", "algorithm": "ppo", "preference": "pref-support", "every": 4, "max_steps": 16},
        {"base": BASE, "sft": "chat-data", "algorithm": "dpo", "preference": "pref-support", "every": 4, "max_steps": 16},
        {"base": BASE, "sft": "chat-data", "algorithm": "simpo", "preference": "pref-support", "every": 4, "max_steps": 16},
        {"base": BASE, "sft": "chat-data", "algorithm": "dpo", "preference": "pref-oppose", "every": 4, "max_steps": 16},
    ]
    return {
        "models": {BASE: {"source": "local", "path": "toy-model", "prompt_format": "plain", "dtype": "float32"}},
        "datasets": {"chat-data": {"kind": "sft", "source": "jsonl", "path": "chat.jsonl"},
                     "instruct-data": {"kind": "sft", "source": "jsonl", "path": "instruct.jsonl"},
                     "pref-support": {"kind": "preference", "source": "jsonl", "path": "support.jsonl"},
                     "pref-oppose": {"kind": "preference", "source": "jsonl", "path": "oppose.jsonl"}},
        "questions": {"source": "file", "path": "questions.jsonl", "per_category": None},
        "training": {},
        "runs": runs,
        "generation": {"backend": "transformers", "samples": 3, "temperature": 0.7},
        "judge": {"backend": "local", "model": BASE},
        "drift": {"bootstrap_resamples": 200, "confidence": 0.95, "seed": 0},
    }


def _target(run, step: int, topic: int) -> np.ndarray:
    """A made-up stance distribution: SFT moves early (as in the paper), DPO amplifies its preference."""
    start = np.array([0.35, 0.3, 0.35])
    if run.is_sft:
        end = np.array([0.15, 0.7, 0.15]) if run.sft == "chat-data" else np.array([0.55, 0.3, 0.15])
        w = 1 - math.exp(-step / 4)
        return (1 - w) * start + w * end
    sft_end = np.array([0.15, 0.7, 0.15])
    strength = {"ppo": 0.05, "dpo": 0.6, "simpo": 0.25}[run.algorithm] * (1 + 0.2 * topic)
    goal = np.array([0.8, 0.15, 0.05]) if run.preference == "pref-support" else np.array([0.1, 0.3, 0.6])
    w = strength * min(1.0, step / 10)
    return (1 - w) * sft_end + w * goal


def write_synthetic_artifacts(study: dict) -> None:
    """Stances, checkpoints' training logs and judge accounting, as the model rules would leave them."""
    rng = np.random.default_rng(0)
    questions = pl.DataFrame({
        "question_id": [f"{t[:4]}-{i}" for t in TOPICS for i in range(4)],
        "category": [t.title() for t in TOPICS for _ in range(4)],
        "topic": [t for t in TOPICS for _ in range(4)],
        "question": [f"Question {i} about {t}?" for t in TOPICS for i in range(4)],
    })
    tables.write(questions, paths.questions_file(), "questions")
    for name in study["datasets"]:
        Path(paths.dataset_file(name)).parent.mkdir(parents=True, exist_ok=True)
        Path(paths.dataset_file(name)).write_bytes(b"")
    for run in config_runs(study):
        if run.algorithm == "ppo":
            Path(paths.reward_model_dir(run.base, run.sft, run.preference)).mkdir(parents=True, exist_ok=True)
    seen = set()
    for run in config_runs(study):
        for step in [0, *run.steps]:
            key = run.model_at(step)
            if key not in seen:
                seen.add(key)
                rows = []
                for q in questions.iter_rows(named=True):
                    mean = _target(run, step, TOPICS.index(q["topic"]))
                    for sample in range(3):
                        p = rng.dirichlet(mean * 40 + 0.5)
                        rows.append({"question_id": q["question_id"], "sample": sample, "p_support": p[0],
                                     "p_neutral": p[1], "p_oppose": p[2], "option_mass": 0.9, "scorable": True})
                tables.write(pl.DataFrame(rows), paths.stances_file(key), "stances")
                tables.write(pl.DataFrame([{"question_id": r["question_id"], "sample": r["sample"], "prompt": "Q?",
                                            "response": f"answer {r['sample']} at {key}", "n_tokens": 4}
                                           for r in rows]), paths.generations_file(key), "generations")
                acc = Path(paths.judge_accounting_file(key))
                acc.write_text(json.dumps({"backend": "local", "responses": len(rows), "unscorable": 0,
                                           "calls": len(rows), "cache_hits": 0, "prompt_tokens": 300 * len(rows),
                                           "completion_tokens": 0, "cost": 0.0, "seconds": 1.5}))
                # what the model rules leave upstream of the report (linked, not read, by it)
                Path(paths.model_dir(key)).mkdir(parents=True, exist_ok=True)
            if step:
                ckpt = Path(paths.model_dir(key))
                ckpt.mkdir(parents=True, exist_ok=True)
                prev = run.previous_step(step)
                log = [{"step": s, "loss": 2.0 * math.exp(-s / 20) + 0.1, "learning_rate": 1e-5,
                        "grad_norm": 1.0 + 0.1 * math.sin(s), "epoch": s / run.max_steps}
                       for s in range(prev + 1, step + 1)]
                if not run.is_sft:
                    for e in log:
                        e["rewards/margins"] = 0.1 * e["step"]
                        e["rewards/accuracies"] = min(1.0, 0.5 + 0.05 * e["step"])
                Path(paths.segment_info_in(str(ckpt))).write_text(json.dumps({"step": step, "log": log}))


def build_report(root: Path, study: dict, options: dict) -> Path:
    """Everything downstream of the stances, in-process, as the drift/analysis/report rules do:
    each step gets its input and output paths (here under ``root``), nothing else."""
    model = Study(study)
    runs = model.runs
    figures = options.get("figures")
    for run in runs:
        mp = run.model_path
        pipeline.trajectory(stances={s: paths.stances_file(run.model_at(s)) for s in [0, *run.steps]},
                            questions=paths.questions_file(), output=paths.trajectory_file(mp),
                            resamples=200, confidence=0.95, seed=0)
        pipeline.drift(trajectory=paths.trajectory_file(mp), output=paths.drift_table(mp),
                       start=paths.stances_file(run.model_at(0)), end=paths.stances_file(run.model_at(run.steps[-1])),
                       questions=paths.questions_file(), resamples=200)
        report.trajectory_figure(paths.trajectory_file(mp), html=paths.trajectory_plot(mp, "html"),
                                 png=paths.trajectory_plot(mp, "png"), title=run.study_label, options=figures)
        report.write_training_log([paths.model_dir(m) for m in run.evaluated_models[1:]], paths.training_log(mp))
        steps = [0, *run.steps]
        drilldown.write_drilldown(questions=paths.questions_file(),
                                  generations={s: paths.generations_file(run.model_at(s)) for s in steps},
                                  stances={"local:toy": {s: paths.stances_file(run.model_at(s)) for s in steps}},
                                  page=paths.drilldown_page(mp), data=paths.drilldown_data(mp), title=run.study_label)
    paper_tables.write_study_drift([paths.drift_table(r.model_path) for r in runs], runs, paths.study_drift_table())
    paper_tables.write_tables(study=paths.study_drift_table(), decimals=2, outputs=[
        {"spec": spec, "files": {ext: paths.paper_table(spec, ext) for ext in paths.TABLE_FORMATS}}
        for spec in model.table_specs])
    sft = [r for r in runs if r.is_sft]
    po = [r for r in runs if not r.is_sft]
    report.comparison_figure([paths.trajectory_file(r.model_path) for r in sft], [r.sft for r in sft],
                             html=paths.sft_comparison_plot(BASE, "html"), png=paths.sft_comparison_plot(BASE, "png"),
                             title="SFT datasets side by side", column_title="SFT data", options=figures)
    report.comparison_figure([paths.trajectory_file(r.model_path) for r in po], [r.label for r in po],
                             html=paths.po_comparison_plot(BASE, "chat-data", "html"),
                             png=paths.po_comparison_plot(BASE, "chat-data", "png"),
                             title="algorithms side by side", column_title="algorithm", options=figures)
    report.heatmap_figure(paths.study_drift_table(), model.labels,
                          html=paths.drift_heatmap("html"), png=paths.drift_heatmap("png"), options=figures)
    report.training_figure([paths.training_log(r.model_path) for r in runs], [r.study_label for r in runs],
                           html=paths.training_plot("html"), png=paths.training_plot("png"), options=figures)
    report.write_report(study=study, inputs=model.report_inputs(), output=paths.report_index(), options=options)
    return Path(paths.report_index())


@pytest.fixture(scope="module")
def synthetic_report(tmp_path_factory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("study")
    study = synthetic_study()
    paths.use_results_dir(str(root / "results"))  # every artifact of this study under the temporary folder
    try:
        write_synthetic_artifacts(study)
        options = {"title": "synthetic study", "tables": {"decimals": 2},
                   "figures": {"focus_topics": ["abortion", "immigration"]}}
        index = build_report(root, study, options)
    finally:
        paths.use_results_dir(None)
    return index, study


# --- tests -------------------------------------------------------------------------------------

def test_paper_tables_have_the_papers_shape(synthetic_report):
    index, study = synthetic_report
    root = index.parents[2]
    sft = pl.read_csv(root / paths.sft_table(BASE, "csv"))
    assert sft.columns == ["metric", "topic", *[f"{d}/{s}" for d in ("chat-data", "instruct-data")
                                                 for s in ("support", "neutral", "oppose")]]
    assert sft["metric"].to_list() == ["drift magnitude"] * 3 + ["drift time"] * 3
    assert sft["topic"].to_list() == TOPICS * 2
    po = pl.read_csv(root / paths.po_table(BASE, "chat-data", "csv"))
    groups = [("pref-support", "ppo"), ("pref-support", "dpo"), ("pref-support", "simpo"), ("pref-oppose", "dpo")]
    assert po.columns[2:] == [f"{p}/{a}/{s}" for p, a in groups for s in ("support", "neutral", "oppose")]
    # the numbers are the runs' drift.csv values
    dpo = pl.read_csv(root / paths.drift_table(f"{BASE}/sft-chat-data/dpo-pref-support"))
    m = dpo.filter((pl.col("topic") == "abortion") & (pl.col("stance") == "support"))["magnitude"].item()
    assert po.filter(pl.col("topic") == "abortion")["pref-support/dpo/support"][0] == pytest.approx(m)
    assert m > 0.3  # the synthetic DPO amplifies support
    tex = (root / paths.po_table(BASE, "chat-data", "tex")).read_text()
    assert "\\multicolumn{9}{c}{pref-support}" in tex and "\\multicolumn{3}{c}{SimPO}" in tex
    assert "\\multirow{3}{*}{drift magnitude}" in tex and tex.count("\\\\") == 3 + 6
    md = (root / paths.sft_table(BASE, "md")).read_text()
    assert "| metric | topic | chat-data / support |" in md
    assert re.search(r"\| drift time \| abortion( \| \d\.\d\d){6} \|", md)


@needs_chromium
def test_report_renders_in_headless_chromium(synthetic_report):
    index, study = synthetic_report
    shot = index.parent / "screenshot-test.png"
    result = check_report(index, shot)
    runs = config_runs(study)
    # per-run figures + SFT and PO comparisons + heatmap + training curves
    assert len(result["images"]) == len(runs) + 2 + 1 + 1
    assert len(result["interactive"]) == len(runs) + 4
    text = result["text"]
    assert "shows the mechanics of the pipeline" in text and "not values" in text
    for section in ("Drift tables", "Judge accounting", "Training curves", "Study configuration", "All artifacts"):
        assert section in text
    assert shot.stat().st_size > 50_000


@needs_chromium
def test_the_chromium_check_catches_errors_and_unrendered_figures(tmp_path):
    page = tmp_path / "broken.html"
    page.write_text("<!doctype html><html><body><script>console.error('boom'); undefinedFunction();</script>"
                    "<img class=figure src='missing.png'></body></html>")
    with Chromium() as browser:
        state, errors = open_page(browser, page, INDEX_JS, settle=5)
    assert any("boom" in e for e in errors)
    assert any("undefinedFunction" in e for e in errors)
    assert any("missing.png" in e for e in errors)
    assert state["images"][0]["w"] == 0


def test_a_registered_section_renders_before_its_fixed_section(tmp_path, monkeypatch):
    """report/sections.py: a study block adds a section (and its table-of-contents entry) without
    editing the page; a view returning None leaves it out."""
    from valuedrift.report import sections

    (tmp_path / "probe_section.html.j2").write_text('<section id="probe"><h2>Probe</h2><p>{{ probe.n }}</p></section>')
    import jinja2
    from valuedrift.report import page
    env = page._environment()
    monkeypatch.setattr(env, "loader", jinja2.ChoiceLoader([env.loader, jinja2.FileSystemLoader(str(tmp_path))]))
    monkeypatch.setattr(sections, "SECTIONS", list(sections.SECTIONS))
    sections.register(sections.Section("probe", "Probe results", "probe_section.html.j2",
                                       lambda c: {"n": c.options["title"] + "!"}, before="runs"))
    sections.register(sections.Section("absent", "Absent", "probe_section.html.j2", lambda c: None, before="summary"))
    with pytest.raises(ValueError, match="registered twice"):
        sections.register(sections.Section("probe", "again", "probe_section.html.j2", lambda c: None, before="runs"))
    with pytest.raises(ValueError, match="before='nowhere'"):
        sections.Section("x", "x", "x", lambda c: None, before="nowhere")
    study = synthetic_study()
    paths.use_results_dir(str(tmp_path / "results"))
    try:
        write_synthetic_artifacts(study)
        html = build_report(tmp_path, study, {"title": "t"}).read_text()
    finally:
        paths.use_results_dir(None)
    assert '<section id="probe"><h2>Probe</h2><p>t!</p></section>' in html
    assert html.index('id="probe"') < html.index('<section id="runs">')
    assert '<a href="#probe">Probe results</a><a href="#runs">' in html
    assert 'id="absent"' not in html and "#absent" not in html


def test_a_dataset_no_run_trains_on_gets_no_link():
    """Only the datasets some run trains on are prepared; the page links no parquet that is never written."""
    from valuedrift.report import page

    study = synthetic_study()
    study["datasets"]["unused"] = {"kind": "sft", "source": "jsonl", "path": "unused.jsonl"}
    model = Study(study)
    rows = {row[0]: row[-1] for row in page.config_view(study, model, pl.DataFrame({"topic": ["abortion"]}),
                                                        page.Links("results/report/index.html"))["datasets"]}
    assert rows["unused"] == "not trained on"
    assert rows["chat-data"]["href"].endswith("chat-data.parquet")


def test_report_options_are_plot_options_only():
    """The `report` block reaches report/plot rules only (the others never read it)."""
    rules = {p.name: p.read_text() for p in (REPO / "workflow" / "rules").glob("*.smk")}
    users = {name for name, text in rules.items() if 'config["report"]' in text}
    assert users == {"drift.smk", "analysis.smk", "report.smk", "evals.smk", "trajectories.smk",
                     "controlled.smk", "seeds.smk"}  # plot rules (seeds.smk: seed bands); evals.smk: the sample tables; controlled.smk: its figures and tables
    drift_rules = rules["drift.smk"].split("rule trajectory_plot:")[0]
    assert 'config["report"]' not in drift_rules
    assert 'config["report"]' not in rules["controlled.smk"].split("rule alignment_plot:")[0]


if __name__ == "__main__":  # python tests/test_report.py results/report/index.html [screenshot.png]
    page = Path(sys.argv[1])
    out = check_report(page, Path(sys.argv[2]) if len(sys.argv) > 2 else page.parent / "screenshot.png")
    print(json.dumps({"images": out["images"], "interactive": out["interactive"]}, indent=1))
