"""The API judge against the REAL loopback server (llama.cpp serving SmolLM2, as in
tests/test_openai_judge.py), set up wrongly the way a new user would, and broken in ways
the existing proxy faults do not cover: a malformed body, a response without logprobs, a
connection reset in the middle of the body, a server that dies and comes back, and one
that stays away. Calls are counted at the proxy (what the server was asked and answered).
"""

from __future__ import annotations

import json
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request

import pytest

from conftest import cache_entries
from llm_server import (LOOPBACK, FaultPlan, FaultProxy, LlamaServer, free_port, gguf_model_path,
                        missing_server_dependency)
from valuedrift import prompts as judge_prompts
from valuedrift.judge import stance_distribution
from valuedrift.llm import EndpointError, OpenAIChatClient, endpoint_identity
from valuedrift.openai_judge import OpenAIJudge

pytestmark = [pytest.mark.timeout(300), pytest.mark.slow]

KEY_ENV = "VALUEDRIFT_FAULTS_API_KEY"
MODEL = "smollm2"
CASES = [("Should abortion be legal?", "Yes. Abortion is a right.", "abortion"),
         ("Should abortion be legal?", "No. It should be banned.", "abortion"),
         ("Is the death penalty just?", "It delivers justice.", "death penalty"),
         ("Is the death penalty just?", "No. The state should never kill.", "death penalty"),
         ("Should borders be open?", "Immigration enriches us.", "immigration"),
         ("Should borders be open?", "Immigration must be limited.", "immigration")]
PROMPTS = [judge_prompts.judge_prompt(q, r, t) for q, r, t in CASES]
TOL = 2e-3  # see RERUN_TOL in tests/test_openai_judge.py


class FixedPortServer(LlamaServer):
    """The loopback server, restartable on the same port (a server that comes back)."""

    def start_on(self, port: int, timeout_s: float = 90.0) -> "FixedPortServer":
        self.port = port
        cmd = [sys.executable, "-m", "llama_cpp.server", "--model", str(gguf_model_path()), "--model_alias",
               self.alias, "--host", LOOPBACK, "--port", str(port), "--n_ctx", str(self.n_ctx), "--n_threads", "1",
               "--n_threads_batch", "1", "--api_key", self.api_key]
        # no PR_SET_PDEATHSIG here: it fires when the *thread* that started the server ends,
        # and restarts happen in a helper thread; the fixture stops the server instead
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         start_new_session=False)
        if not self._wait_ready(timeout_s):
            raise RuntimeError(f"server did not start on {port}:\n{self.log_path.read_text()[-2000:]}")
        return self

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)
        self.proc = None


class BodyFaultProxy(FaultProxy):
    """FaultProxy plus faults in the response body: ``("malformed",)`` a 200 whose body is
    not JSON; ``("nologprobs",)`` the server's answer with its logprobs removed;
    ``("reset",)`` the server's answer cut off halfway and the connection reset."""

    def _inject(self, handler, fault, arrival):
        kind = fault[0]
        if kind == "malformed":
            arrival.status = 200
            self._send(handler, 200, b'{"id": "chatcmpl-1", "choices": [{"index": 0, "mess', {"Content-Type": "application/json"})
            return
        if kind not in ("nologprobs", "reset"):
            return super()._inject(handler, fault, arrival)
        data, status = self._forward(handler, arrival)  # the server answers (and is paid)
        if kind == "nologprobs":
            body = json.loads(data)
            for choice in body.get("choices", []):
                choice["logprobs"] = None
            self._send(handler, status, json.dumps(body).encode(), {"Content-Type": "application/json"})
            return
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data[: len(data) // 2])
        handler.wfile.flush()
        handler.close_connection = True
        handler.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        handler.connection.close()  # linger 0: an RST, not a clean end

    def _forward(self, handler, arrival):
        import http.client

        length = int(handler.headers.get("Content-Length") or 0)
        body = getattr(handler, "_body", b"")[:length] if length else b""
        conn = http.client.HTTPConnection(LOOPBACK, self.upstream_port, timeout=120)
        headers = {k: v for k, v in handler.headers.items()
                   if k.lower() not in ("host", "connection", "content-length", "accept-encoding")}
        conn.request("POST", handler.path, body=body, headers=headers)
        resp = conn.getresponse()
        data = resp.read()
        conn.close()
        with self.lock:
            self.forwarded += 1
        arrival.status = resp.status
        return data, resp.status

    def _handle(self, handler, body):
        handler._body = body
        super()._handle(handler, body)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    why = missing_server_dependency()
    if why:
        pytest.skip(why)
    srv = FixedPortServer(tmp_path_factory.mktemp("server") / "server.log", alias=MODEL,
                          api_key="sk-faults-" + secrets.token_hex(12)).start()
    yield srv
    srv.stop()


@pytest.fixture
def proxy(server, monkeypatch):
    monkeypatch.setenv(KEY_ENV, server.api_key)
    p = BodyFaultProxy(server.port)
    yield p
    p.close()


def judge_at(base_url, cache_dir, **kwargs) -> OpenAIJudge:
    settings = {"model": MODEL, "base_url": base_url, "api_key_env": KEY_ENV, "concurrency": 2, "max_retries": 6,
                "timeout_s": 30, "backoff_base_s": 0.05, "backoff_max_s": 0.5, "progress": False,
                "cache_dir": str(cache_dir) if cache_dir else None}
    return OpenAIJudge(**{**settings, **kwargs})


@pytest.fixture(scope="module")
def reference(server, tmp_path_factory):
    import os

    os.environ[KEY_ENV] = server.api_key
    try:
        return judge_at(server.base_url, tmp_path_factory.mktemp("ref")).option_logprobs(PROMPTS)
    finally:
        os.environ.pop(KEY_ENV, None)


def assert_same(got, want):
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert g is not None and w is not None
        assert max(abs(a - b) for a, b in zip(stance_distribution(g)[:3], stance_distribution(w)[:3])) < TOL


# -- set-up errors: checked once, before any item is scored ---------------------------------

def test_wrong_api_key_fails_at_once_naming_the_setting_and_the_servers_words(proxy, tmp_path, monkeypatch):
    monkeypatch.setenv(KEY_ENV, "sk-wrong")
    judge = judge_at(proxy.base_url, tmp_path / "cache")
    with pytest.raises(EndpointError) as err:
        judge.option_logprobs(PROMPTS)
    msg = str(err.value)
    assert proxy.base_url in msg and f"${KEY_ENV}" in msg and "judge.api_key_env" in msg and "HTTP 401" in msg
    server_says = _server_401_words(proxy)
    assert server_says and server_says in msg  # the server's own message, not a generic one
    assert proxy.chat_arrivals() == [] and judge.accounting()["calls"] == 0  # no item was tried
    assert "sk-wrong" not in msg


def _server_401_words(proxy) -> str:
    req = urllib.request.Request(f"{proxy.base_url}/models", headers={"Authorization": "Bearer sk-wrong"})
    try:
        urllib.request.urlopen(req, timeout=10)
    except urllib.error.HTTPError as exc:
        body = json.loads(exc.read())  # llama.cpp: {"detail": "Invalid API key"}; OpenAI: {"error": {"message": ...}}
        return body.get("detail") or (body.get("error") or {}).get("message", "")
    return ""


def test_connection_refused_fails_at_once_naming_url_and_setting(server, tmp_path, monkeypatch):
    monkeypatch.setenv(KEY_ENV, server.api_key)
    url = f"http://{LOOPBACK}:{free_port()}/v1"  # nothing listens there
    judge = judge_at(url, tmp_path / "cache", max_retries=6, backoff_base_s=5.0)
    with pytest.raises(EndpointError) as err:
        judge.option_logprobs(PROMPTS)
    msg = str(err.value)
    assert f"cannot reach {url}" in msg and "judge.base_url" in msg and "/v1" in msg
    assert judge.accounting()["calls"] == 0 and judge.accounting()["retries"] == 0  # not retried like a 429


def test_model_not_served_is_named_with_the_served_ones(proxy, tmp_path):
    judge = judge_at(proxy.base_url, tmp_path / "cache", model="smollm3")
    with pytest.raises(EndpointError, match=r"does not serve model 'smollm3' \(did you mean 'smollm2'\?\); "
                                            r"it lists: smollm2; fix judge.model"):
        judge.option_logprobs(PROMPTS)
    assert proxy.chat_arrivals() == []


def test_base_url_without_v1_and_remote_plain_http_are_refused_by_the_client():
    with pytest.raises(EndpointError, match="judge.base_url: .*ends in /v1"):
        OpenAIJudge(model=MODEL, base_url=f"http://{LOOPBACK}:8000", cache_dir=None)
    with pytest.raises(EndpointError, match="judge.allow_http: true"):
        OpenAIJudge(model=MODEL, base_url="http://judge.example.org/v1", cache_dir=None)
    OpenAIJudge(model=MODEL, base_url="http://judge.example.org/v1", cache_dir=None, allow_http=True)


def test_the_cache_key_includes_the_endpoint():
    key = {"model": "m", "messages": [], "max_tokens": 1, "temperature": 0.0, "n": 1}
    a = OpenAIChatClient(model="m", base_url="https://a.example.org/v1")
    b = OpenAIChatClient(model="m", base_url="https://b.example.org/v1")
    assert a._key(key) != b._key(key)  # another server serving the same name is not the same judge
    local1 = OpenAIChatClient(model="m", base_url="http://127.0.0.1:8001/v1")
    local2 = OpenAIChatClient(model="m", base_url="http://localhost:9000/v1/")
    assert local1._key(key) == local2._key(key)  # a job's own loopback server: any port
    assert endpoint_identity(None) == "https://api.openai.com/v1" == endpoint_identity("https://API.openai.com/v1/")
    shared = [OpenAIChatClient(model="m", base_url=u, cache_namespace="prod-judge")
              for u in ("https://a.example.org/v1", "https://b.example.org/v1")]
    assert shared[0]._key(key) == shared[1]._key(key)


# -- faults in the body ---------------------------------------------------------------------

def test_malformed_json_and_a_reset_mid_body_are_retried_with_nothing_lost(proxy, reference, tmp_path):
    faults = {1: ("malformed",), 3: ("reset",), 4: ("malformed",), 6: ("reset",)}
    proxy.reset(FaultPlan(by_arrival=faults))
    judge = judge_at(proxy.base_url, tmp_path / "cache", concurrency=1)
    got = judge.option_logprobs(PROMPTS)
    assert_same(got, reference)
    acct = judge.accounting()
    assert acct["failures"] == 0 and acct["retries"] == len(faults)
    assert acct["errors"] == {"malformed_response": 2, "connection": 2}
    # paid at the server: every item once, plus the two answers the reset cut off
    assert proxy.forwarded == len(PROMPTS) + 2
    assert cache_entries(tmp_path / "cache") == len(PROMPTS)  # each item cached once, whole


def test_a_response_without_logprobs_is_unscorable_not_cached_and_paid_once_on_rerun(proxy, reference, tmp_path):
    proxy.reset(FaultPlan(by_arrival={2: ("nologprobs",)}))
    judge = judge_at(proxy.base_url, tmp_path / "cache", concurrency=1)
    got = judge.option_logprobs(PROMPTS)
    assert got[2] is None and all(g is not None for i, g in enumerate(got) if i != 2)
    assert judge.accounting()["errors"] == {"bad_response": 1}  # not retried: the endpoint said what it says
    assert judge.unscorable == {"call_failed": 1}
    assert cache_entries(tmp_path / "cache") == len(PROMPTS) - 1
    proxy.reset()
    again = judge_at(proxy.base_url, tmp_path / "cache")
    assert_same(again.option_logprobs(PROMPTS), reference)
    assert proxy.forwarded == 1  # only the missing item is paid for again


# -- the server dies ------------------------------------------------------------------------

def _kill_when(cache_dir, entries: int, server, down_s: float | None, done: threading.Event):
    """When ``entries`` items are cached, SIGKILL the server (its port then refuses
    connections); after ``down_s`` start it again on the same port (None: leave it dead)."""
    def run():
        while cache_entries(cache_dir) < entries:
            time.sleep(0.02)
        port = server.port
        server.kill()
        if down_s is not None:
            time.sleep(down_s)
            server.start_on(port)
        done.set()
    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


def test_server_dies_mid_run_and_comes_back(server, reference, tmp_path, monkeypatch):
    monkeypatch.setenv(KEY_ENV, server.api_key)
    done = threading.Event()
    t = _kill_when(tmp_path / "cache", 2, server, 3.0, done)
    # retries span at least 0.25 + 0.5 + 1 + 9 x 2 s ~ 20 s: longer than the outage plus a
    # restart (model load) on a loaded machine; the run goes on as soon as the server is back
    judge = judge_at(server.base_url, tmp_path / "cache", concurrency=1, max_retries=12, backoff_base_s=0.5,
                     backoff_max_s=4.0)
    got = judge.option_logprobs(PROMPTS)
    t.join(timeout=120)
    assert done.is_set()
    assert_same(got, reference)  # nothing lost, nothing made up
    acct = judge.accounting()
    assert acct["failures"] == 0 and acct["errors"].get("connection", 0) >= 1
    assert acct["succeeded"] == len(PROMPTS)  # each item answered (paid) once
    assert cache_entries(tmp_path / "cache") == len(PROMPTS)


def test_server_gone_for_good_stops_saying_what_is_done_and_the_rerun_resumes(proxy, server, reference, tmp_path):
    done = threading.Event()
    port = server.port
    t = _kill_when(tmp_path / "cache", 2, server, None, done)
    judge = judge_at(server.base_url, tmp_path / "cache", concurrency=1, max_retries=2, backoff_base_s=0.05)
    with pytest.raises(EndpointError) as err:
        judge.option_logprobs(PROMPTS)
    t.join(timeout=60)
    msg = str(err.value)
    done_items = cache_entries(tmp_path / "cache")
    assert 2 <= done_items < len(PROMPTS)
    assert f"connection to {server.base_url} failed" in msg
    assert f"{done_items} of {len(PROMPTS)} items are done and cached" in msg and "rerun" in msg and "resumes" in msg
    # it stopped: the remaining items were not each tried max_retries times
    assert judge.accounting()["calls"] == done_items + 1 + 2  # the failing item: 1 call + 2 retries
    server.start_on(port)
    proxy.reset()
    again = judge_at(proxy.base_url, tmp_path / "cache")
    assert_same(again.option_logprobs(PROMPTS), reference)
    assert proxy.forwarded == len(PROMPTS) - done_items  # only what was missing is paid for
