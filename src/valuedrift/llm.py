"""The shared LLM client: every rule that calls an LLM (V-PRISM rephrasing, naming and
filtering, synthetic data, API judging) goes through it, so every call is cached on
disk (``valuedrift.cache``), retried and accounted the same way.

Contract (implemented by the backends in this module):

    client = make_client(cfg)            # cfg: the config section of the calling stage
    results = client.complete(requests)  # list[ChatRequest] -> list[ChatResult], same order

A result whose call failed for good has ``error`` set and no text/logprobs; callers
record it as such and never make up a value.
"""

from __future__ import annotations

import ipaddress
import logging
import math
import os
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import Any, Protocol, Sequence
from urllib.parse import urlsplit

from .backends import get_model, register_model
from .cache import DiskCache, cache_key, open_cache

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ChatRequest:
    messages: tuple[tuple[str, str], ...]  # (role, content) pairs
    max_tokens: int = 256
    temperature: float = 0.0
    top_logprobs: int | None = None  # first-token alternatives wanted (logprobs=True)
    seed: int | None = None


@dataclass
class ChatResult:
    text: str | None
    first_token_logprobs: dict[str, float] | None = None  # token text -> logprob (top alternatives)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached: bool = False
    error: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class LLMClient(Protocol):
    model: str

    def complete(self, requests: Sequence[ChatRequest]) -> list[ChatResult]: ...


def user(text: str) -> tuple[tuple[str, str], ...]:
    """Messages of a single user turn."""
    return (("user", text),)


# Backends ------------------------------------------------------------------------------

RETRYABLE_STATUS = frozenset({408, 409, 429}) | frozenset(range(500, 600))
MAX_RETRY_AFTER_S = 600.0  # a Retry-After longer than this is capped (and logged)
OPENAI_DEFAULT_URL = "https://api.openai.com/v1"


class EndpointError(RuntimeError):
    """The endpoint cannot be used (unreachable, key refused, model not served): named with
    its URL, the setting to fix and the server's own words. Raised before any scoring, or
    mid-run with how many items are done (they are cached: a rerun resumes)."""


def is_loopback_url(url: str | None) -> bool:
    host = urlsplit(url or "").hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def endpoint_problem(base_url: str, *, allow_http: bool = False, setting: str = "judge.allow_http") -> str | None:
    """Why ``base_url`` is not an acceptable OpenAI-compatible endpoint (None: it is).
    It needs http(s), a host and the API's version path (``.../v1``); plain http only to
    a loopback address unless explicitly allowed (the API key would travel in clear)."""
    url = urlsplit(base_url)
    if url.scheme not in ("http", "https") or not url.hostname:
        return f"{base_url!r} is not an http(s) URL; e.g. https://api.openai.com/v1 or http://127.0.0.1:8000/v1"
    if "/v1" not in url.path:
        return (f"{base_url!r} lacks the API path: an OpenAI-compatible base_url ends in /v1 "
                f"(try {base_url.rstrip('/')}/v1)")
    if url.scheme == "http" and not allow_http and not is_loopback_url(base_url):
        return (f"{base_url!r} is plain http to a non-loopback host: the API key would be sent unencrypted; "
                f"use https, or set {setting}: true if this network is trusted")
    return None


def endpoint_identity(base_url: str | None) -> str:
    """The server part of a cache key: scheme://host:port/path, lower-cased, no trailing
    slash. Every loopback address and port is one identity ("loopback/<path>"): a server
    a job starts itself gets a fresh port every time, and is identified by the model name
    it serves (use --model_alias / --served-model-name)."""
    url = urlsplit(base_url or OPENAI_DEFAULT_URL)
    path = url.path.rstrip("/")
    if is_loopback_url(base_url):
        return f"loopback{path}"
    port = f":{url.port}" if url.port else ""
    return f"{url.scheme.lower()}://{(url.hostname or '').lower()}{port}{path}"


def server_words(exc: BaseException) -> str:
    """The server's own error message from an openai exception (its JSON body), else the text."""
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict) and inner.get("message"):
            return str(inner["message"])
        if isinstance(inner, str):
            return inner
        if body.get("detail"):
            return str(body["detail"])
    return _short(exc.__cause__ or exc) if isinstance(exc, Exception) else str(exc)


def request_body(model: str, req: ChatRequest) -> dict[str, Any]:
    """The chat-completions request body for ``req`` (also the cache key's request part)."""
    body: dict[str, Any] = {"model": model, "messages": [{"role": r, "content": c} for r, c in req.messages],
                            "max_tokens": req.max_tokens, "temperature": req.temperature, "n": 1}
    if req.top_logprobs is not None:
        body["logprobs"] = True
        body["top_logprobs"] = req.top_logprobs
    if req.seed is not None:
        body["seed"] = req.seed
    return body


def merge_logprobs(pairs: Sequence[Sequence[Any]]) -> dict[str, float]:
    """token -> logprob; distinct tokens with the same text are merged by log-sum-exp."""
    out: dict[str, float] = {}
    for token, lp in pairs:
        out[token] = lp if token not in out else _logaddexp(out[token], lp)
    return out


def _logaddexp(a: float, b: float) -> float:
    hi, lo = max(a, b), min(a, b)
    return hi if lo == -math.inf else hi + math.log1p(math.exp(lo - hi))


def _result_from_value(value: dict[str, Any], *, cached: bool) -> ChatResult:
    pairs = value.get("top_logprobs")
    return ChatResult(text=value.get("text"), first_token_logprobs=None if pairs is None else merge_logprobs(pairs),
                      prompt_tokens=value.get("prompt_tokens", 0), completion_tokens=value.get("completion_tokens", 0),
                      cached=cached, extra={k: value.get(k) for k in ("top_logprobs", "first_token", "positions", "finish_reason",
                                                          "model")})


def parse_retry_after(headers: Any) -> float | None:
    """Seconds to wait from ``retry-after-ms`` / ``retry-after`` (seconds or an HTTP date)."""
    if headers is None:
        return None
    for name, scale in (("retry-after-ms", 1e-3), ("retry-after", 1.0)):
        raw = headers.get(name)
        if raw is None:
            continue
        try:
            value = float(raw) * scale
        except ValueError:
            if name == "retry-after-ms":
                continue
            try:
                value = parsedate_to_datetime(raw).timestamp() - time.time()
            except (TypeError, ValueError):
                continue
        if math.isfinite(value):
            return max(0.0, value)
    return None


class _Accounting:
    """Thread-safe counters shared by the backends."""

    FIELDS = ("requests", "calls", "succeeded", "retries", "failures", "cache_hits",
              "prompt_tokens", "completion_tokens", "cached_prompt_tokens", "cached_completion_tokens")

    def __init__(self):
        self._lock = threading.Lock()
        self.counts = dict.fromkeys(self.FIELDS, 0)
        self.errors: dict[str, int] = {}
        self.wait_s = 0.0

    def add(self, **deltas: int) -> None:
        with self._lock:
            for k, v in deltas.items():
                self.counts[k] += v

    def error(self, kind: str) -> None:
        with self._lock:
            self.errors[kind] = self.errors.get(kind, 0) + 1

    def waited(self, seconds: float) -> None:
        with self._lock:
            self.wait_s += seconds

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {**self.counts, "errors": dict(sorted(self.errors.items())),
                    "backoff_wait_s": round(self.wait_s, 3)}


class OpenAIChatClient:
    """Chat completions from any OpenAI-compatible endpoint, every call through the cache.

    - The API key is read from the environment variable NAMED by ``api_key_env`` (None: the
      endpoint needs no key), only when a call is actually needed; it is never logged,
      cached or written anywhere.
    - Up to ``concurrency`` requests in flight (threads). Identical requests in one batch
      are sent once.
    - Retries (``max_retries`` per request) on 408/409/429/5xx, timeouts and connection
      errors: exponential backoff with jitter (``backoff_base_s * 2**attempt``, capped at
      ``backoff_max_s``, a uniform draw from its upper half); a ``Retry-After`` /
      ``retry-after-ms`` header is honoured (waited at least, capped at 600 s) and pauses
      all threads of this client, not only the one that got it. Other errors (400, 401,
      ...) fail at once. A failed request is returned with ``error`` set, not cached.
      A malformed response (not JSON, or not a chat completion) is retried like a 5xx.
    - Before the first call the endpoint is checked once (``check_endpoint``): reachable,
      key accepted, model listed by ``/models`` where the server lists models. A failure
      raises EndpointError at once naming the URL, the setting to fix and the server's
      words, instead of one failed call per item.
    - When the endpoint goes away mid-run (connection refused or timeouts past
      ``max_retries``), the batch stops with EndpointError saying how many items are done
      (cached) and that a rerun resumes; it does not grind through every item.
    - Plain http is refused unless the host is loopback or ``allow_http`` is set.
    - The cache key is the request body (model name, messages, max_tokens, temperature,
      logprobs, top_logprobs, seed) plus the endpoint's identity (``endpoint_identity``:
      scheme, host, port, path; every loopback server counts as one, named by the model
      it serves), or ``cache_namespace`` when given (e.g. one name for several mirrors of
      one deployment). A successful result is cached the moment it arrives, so a killed
      job loses at most the requests in flight, and a rerun costs zero calls. A sampled
      request (temperature > 0) is cached like any other: to get several samples of one
      prompt, give the requests different seeds.
    """

    backend = "openai"

    def __init__(self, *, model: str, base_url: str | None = None, api_key_env: str | None = "OPENAI_API_KEY",
                 concurrency: int = 8, max_retries: int = 6, timeout_s: float = 60.0,
                 cache: DiskCache | None = None, backoff_base_s: float = 1.0, backoff_max_s: float = 60.0,
                 price_per_million_prompt_tokens: float = 0.0, price_per_million_completion_tokens: float = 0.0,
                 progress: bool = True, desc: str = "LLM calls", allow_http: bool = False,
                 config_key: str = "judge", cache_namespace: str | None = None):
        self.model = model
        self.base_url = base_url
        self.config_key = config_key  # the config section named in error messages
        if base_url is not None:
            problem = endpoint_problem(base_url, allow_http=allow_http, setting=f"{config_key}.allow_http")
            if problem:
                raise EndpointError(f"{config_key}.base_url: {problem}")
        self.endpoint = cache_namespace or endpoint_identity(base_url)
        self.api_key_env = api_key_env
        self.concurrency = max(1, int(concurrency))
        self.max_retries = max(0, int(max_retries))
        self.timeout_s = float(timeout_s)
        self.cache = cache
        self.backoff_base_s = backoff_base_s
        self.backoff_max_s = backoff_max_s
        self.prices = (price_per_million_prompt_tokens, price_per_million_completion_tokens)
        self.progress = progress
        self.desc = desc
        self.acct = _Accounting()
        self._client = None
        self._client_lock = threading.Lock()
        self._pause_until = 0.0
        self._pause_lock = threading.Lock()
        self._rng = random.Random()
        self._checked = False
        self._abort = threading.Event()

    def __repr__(self) -> str:  # never shows the key
        return f"OpenAIChatClient(model={self.model!r}, base_url={self.base_url!r}, api_key_env={self.api_key_env!r})"

    # -- plumbing ------------------------------------------------------------------------

    def _openai(self):
        with self._client_lock:
            if self._client is None:
                import openai

                if self.api_key_env:
                    key = os.environ.get(self.api_key_env)
                    if not key:
                        raise RuntimeError(f"environment variable {self.api_key_env} (the API key for "
                                           f"{self.base_url or 'the OpenAI API'}) is not set")
                else:
                    key = "no-key"
                self._client = openai.OpenAI(base_url=self.base_url, api_key=key, timeout=self.timeout_s,
                                             max_retries=0)
            return self._client

    def _key(self, body: dict[str, Any]) -> str:
        return cache_key({"api": "chat.completions", "endpoint": self.endpoint, "request": body})

    @property
    def url(self) -> str:
        return self.base_url or OPENAI_DEFAULT_URL

    def check_endpoint(self) -> None:
        """Once per client: the endpoint answers, accepts the key and serves the model.
        Raises EndpointError naming the URL, the setting to fix and the server's words."""
        import openai

        if self._checked:
            return
        client = self._openai()
        c = self.config_key
        try:
            listed = [m.id for m in client.models.list().data]
        except openai.AuthenticationError as exc:
            key = f"the key in ${self.api_key_env}" if self.api_key_env else "no key"
            raise EndpointError(f"{self.url} refused {key} (HTTP {exc.status_code}: {server_words(exc)}); set "
                                f"{self.api_key_env or 'the key variable'} to a valid key, or point "
                                f"{c}.api_key_env at the variable that holds it") from None
        except openai.PermissionDeniedError as exc:
            raise EndpointError(f"{self.url}: the key in ${self.api_key_env} may not use this endpoint "
                                f"(HTTP 403: {server_words(exc)}); check {c}.api_key_env") from None
        except (openai.APIConnectionError, openai.APITimeoutError) as exc:
            raise EndpointError(f"cannot reach {self.url} ({server_words(exc)}); is the server running, and is "
                                f"{c}.base_url right (scheme, host, port, ending in /v1)?") from None
        except openai.NotFoundError:
            listed = []  # a server without /models: the first call will tell
            log.info("%s has no /models; model %r not checked", self.url, self.model)
        except openai.APIStatusError as exc:  # 5xx and the like: transient, the calls retry
            log.warning("checking %s/models: HTTP %s: %s", self.url, exc.status_code, server_words(exc))
            listed = []
        except (ValueError, AttributeError, TypeError):  # a /models answer we cannot read
            listed = []
        # some servers list ids with a prefix ("models/gemini-1.5-flash")
        if listed and not any(m == self.model or m.endswith("/" + self.model) for m in listed):
            raise EndpointError(f"{self.url} does not serve model {self.model!r}{_did_you_mean(self.model, listed)}; "
                                f"it lists: {', '.join(listed[:20])}; fix {c}.model")
        self._checked = True

    def _wait_for_pause(self) -> None:
        while True:
            with self._pause_lock:
                delay = self._pause_until - time.monotonic()
            if delay <= 0:
                return
            time.sleep(min(delay, 1.0))

    def _pause(self, seconds: float) -> None:
        with self._pause_lock:
            self._pause_until = max(self._pause_until, time.monotonic() + seconds)

    def backoff(self, attempt: int, retry_after: float | None) -> float:
        """Seconds to wait before retry number ``attempt + 1``."""
        ceiling = min(self.backoff_max_s, self.backoff_base_s * 2 ** attempt)
        delay = ceiling / 2 + self._rng.uniform(0, ceiling / 2)
        if retry_after is not None:
            if retry_after > MAX_RETRY_AFTER_S:
                log.warning("Retry-After of %.0f s capped at %.0f s", retry_after, MAX_RETRY_AFTER_S)
            # at least what the server asked for, plus a little jitter so that waiting
            # threads do not return all at once
            delay = min(retry_after, MAX_RETRY_AFTER_S) + self._rng.uniform(0, min(1.0, self.backoff_base_s))
        return delay

    def _call(self, body: dict[str, Any]) -> dict[str, Any] | str:
        """One request with retries: the cache value on success, an error message otherwise."""
        import openai

        client = self._openai()
        error, kind = "no attempt", "aborted"
        for attempt in range(self.max_retries + 1):
            self._wait_for_pause()
            if self._abort.is_set():
                return _Failure("stopped: the endpoint failed for another request", "aborted")
            retry_after = None
            self.acct.add(calls=1)
            try:
                response = client.chat.completions.create(**body)
                return self._value(response, body)
            except openai.APIStatusError as exc:
                status = exc.status_code
                retry_after = parse_retry_after(exc.response.headers if exc.response is not None else None)
                kind, error, retryable = (str(status), f"HTTP {status} from {self.url}: {server_words(exc)}",
                                          status in RETRYABLE_STATUS)
            except openai.APITimeoutError:
                kind, error, retryable = "timeout", f"{self.url} timed out after {self.timeout_s:g} s", True
            except openai.APIConnectionError as exc:
                kind, error, retryable = "connection", f"connection to {self.url} failed: {server_words(exc)}", True
            except _BadResponse as exc:
                kind, error, retryable = "bad_response", str(exc), False
            except (openai.APIResponseValidationError, ValueError, AttributeError, TypeError) as exc:
                # not JSON, or JSON that is not a chat completion (a broken proxy, a cut-off body)
                kind, error, retryable = "malformed_response", f"malformed response from {self.url}: {_short(exc)}", True
            self.acct.error(kind)
            if not retryable or attempt == self.max_retries:
                break
            delay = self.backoff(attempt, retry_after)
            if retry_after is not None:
                self._pause(delay)
            self.acct.add(retries=1)
            self.acct.waited(delay)
            log.debug("retrying after %s (attempt %d, waiting %.2f s)", error, attempt + 1, delay)
            self._abort.wait(delay)
        return _Failure(error, kind)

    def _value(self, response, body: dict[str, Any]) -> dict[str, Any]:
        if not response.choices:
            raise _BadResponse("response has no choices")
        choice = response.choices[0]
        value: dict[str, Any] = {"text": choice.message.content if choice.message else None,
                                 "finish_reason": choice.finish_reason, "model": response.model,
                                 "prompt_tokens": 0, "completion_tokens": 0, "top_logprobs": None,
                                 "first_token": None}
        if response.usage is not None:
            value["prompt_tokens"] = response.usage.prompt_tokens or 0
            value["completion_tokens"] = response.usage.completion_tokens or 0
        if body.get("logprobs"):
            content = choice.logprobs.content if choice.logprobs is not None else None
            if not content:
                raise _BadResponse("logprobs were requested but the response has none "
                                   "(does the endpoint support logprobs?)")
            first = content[0]
            value["first_token"] = [first.token, first.logprob]
            value["top_logprobs"] = [[t.token, t.logprob] for t in (first.top_logprobs or [])]
            # every answer position (token, logprob, its top alternatives): a judge reads the
            # first position holding an option letter (valuedrift.options.read_options)
            value["positions"] = [[c.token, c.logprob, [[t.token, t.logprob] for t in (c.top_logprobs or [])]]
                                  for c in content]
        self.acct.add(succeeded=1, prompt_tokens=value["prompt_tokens"], completion_tokens=value["completion_tokens"])
        return value

    # -- the contract --------------------------------------------------------------------

    def complete(self, requests: Sequence[ChatRequest]) -> list[ChatResult]:
        from tqdm.auto import tqdm

        bodies = [request_body(self.model, r) for r in requests]
        keys = [self._key(b) for b in bodies]
        results: list[ChatResult | None] = [None] * len(requests)
        todo: dict[str, list[int]] = {}  # key -> indices of identical requests
        for i, key in enumerate(keys):
            if key in todo:
                todo[key].append(i)
                continue
            value = self.cache.get(key) if self.cache is not None else None
            if value is not None:
                results[i] = _result_from_value(value, cached=True)
            else:
                todo[key] = [i]
        n_cached = sum(r is not None for r in results)
        self.acct.add(requests=len(requests), cache_hits=n_cached,
                      cached_prompt_tokens=sum(r.prompt_tokens for r in results if r is not None),
                      cached_completion_tokens=sum(r.completion_tokens for r in results if r is not None))
        if not todo:
            return results  # type: ignore[return-value]
        self.check_endpoint()
        self._abort.clear()
        stopped: _Failure | None = None

        def work(key: str) -> tuple[str, dict[str, Any] | str]:
            out = self._call(bodies[todo[key][0]])
            if isinstance(out, dict) and self.cache is not None:
                self.cache.put(key, out)  # at once: a killed job keeps what it has paid for
            elif getattr(out, "kind", None) in ENDPOINT_FAILURES:
                self._abort.set()  # here, not in the loop below: no queued request starts meanwhile
            return key, out

        with tqdm(total=len(requests), initial=n_cached, desc=self.desc, unit="req", disable=not self.progress) as bar, \
                ThreadPoolExecutor(max_workers=min(self.concurrency, len(todo)), thread_name_prefix="llm") as pool:
            futures = [pool.submit(work, key) for key in todo]
            try:
                for fut in as_completed(futures):
                    key, out = fut.result()
                    for j, i in enumerate(todo[key]):
                        if isinstance(out, dict):
                            results[i] = _result_from_value(out, cached=j > 0)
                        else:
                            results[i] = ChatResult(text=None, error=out)
                    if not isinstance(out, dict):
                        self.acct.add(failures=len(todo[key]))
                        if getattr(out, "kind", None) in ENDPOINT_FAILURES and stopped is None:
                            stopped = out  # the endpoint is gone: the others stopped, report progress
                        elif getattr(out, "kind", None) != "aborted":
                            log.warning("LLM request failed for good: %s", out)
                    bar.update(len(todo[key]))
                    bar.set_postfix(calls=self.acct.counts["calls"], failed=self.acct.counts["failures"], refresh=False)
            except BaseException:
                self._abort.set()
                for fut in futures:
                    fut.cancel()
                raise
        if stopped is not None:
            done = sum(r is not None and r.error is None for r in results)
            raise EndpointError(
                f"{stopped} (after {self.max_retries} retries). {done} of {len(requests)} items are done"
                f"{' and cached' if self.cache is not None else ''}; the other {len(requests) - done} are not. "
                f"Once {self.url} answers again (check {self.config_key}.base_url), rerun: it resumes "
                f"from the cache and pays only for what is missing.")
        return results  # type: ignore[return-value]

    def accounting(self) -> dict[str, Any]:
        """Calls made, cache hits, tokens paid for, failures, cost at the configured prices."""
        acct = self.acct.snapshot()
        p_price, c_price = self.prices
        acct["cost"] = round(acct["prompt_tokens"] / 1e6 * p_price + acct["completion_tokens"] / 1e6 * c_price, 6)
        acct["cost_saved_by_cache"] = round(acct["cached_prompt_tokens"] / 1e6 * p_price
                                            + acct["cached_completion_tokens"] / 1e6 * c_price, 6)
        acct["price_per_million_prompt_tokens"] = p_price
        acct["price_per_million_completion_tokens"] = c_price
        acct.update({"llm_backend": self.backend, "model": self.model, "base_url": self.base_url})
        if self.cache is not None:
            acct["cache_dir"] = str(self.cache.root)
        return acct


class _BadResponse(Exception):
    pass


ENDPOINT_FAILURES = frozenset({"connection", "timeout"})  # not about one item: the endpoint is gone


class _Failure(str):
    """An error message that also says what kind of failure it was."""

    def __new__(cls, message: str, kind: str):
        obj = super().__new__(cls, message)
        obj.kind = kind
        return obj


def _did_you_mean(name: str, options) -> str:
    import difflib

    close = difflib.get_close_matches(name, list(options), n=1, cutoff=0.5)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _short(exc: BaseException, limit: int = 200) -> str:
    text = " ".join(str(exc).split())
    return text if len(text) <= limit else text[:limit] + "..."


class TransformersChatClient:
    """Greedy chat completion with a local transformers model (V-PRISM rephrasing and
    naming without an API). Batched, left-padded; first-token top log-probabilities when
    asked; cached like the API client (the model is identified by a hash of its files)."""

    backend = "transformers"

    def __init__(self, model_dir: str | os.PathLike, *, dtype: str = "float32", batch_size: int = 8,
                 cache: DiskCache | None = None, progress: bool = True, desc: str = "LLM calls"):
        from .cache import fingerprint_dir
        from .models import load_causal_lm

        self.model_dir = str(model_dir)
        self.model = f"local:{fingerprint_dir(model_dir)}"
        self.dtype = dtype
        self.lm, self.tokenizer = load_causal_lm(model_dir, dtype=None if dtype == "auto" else dtype)
        self.batch_size = batch_size
        self.cache = cache
        self.progress = progress
        self.desc = desc
        self.acct = _Accounting()

    def complete(self, requests: Sequence[ChatRequest]) -> list[ChatResult]:
        import torch
        from tqdm.auto import tqdm

        for r in requests:
            if r.temperature != 0:
                raise ValueError("the transformers client generates greedily only (temperature 0)")
        tok = self.tokenizer
        keys = [cache_key({"api": "transformers.chat", "model": self.model, "dtype": self.dtype,
                           "request": request_body(self.model, r)}) for r in requests]
        results: list[ChatResult | None] = [None] * len(requests)
        for i, key in enumerate(keys):
            value = self.cache.get(key) if self.cache is not None else None
            if value is not None:
                results[i] = _result_from_value(value, cached=True)
        todo = [i for i, r in enumerate(results) if r is None]
        self.acct.add(requests=len(requests), cache_hits=len(requests) - len(todo))
        texts = {i: tok.apply_chat_template([{"role": r, "content": c} for r, c in requests[i].messages],
                                            tokenize=False, add_generation_prompt=True) for i in todo}
        todo.sort(key=lambda i: (-len(texts[i]), requests[i].max_tokens))
        eos = {tok.eos_token_id, *(_as_list(self.lm.generation_config.eos_token_id))}
        with torch.inference_mode(), tqdm(total=len(requests), initial=len(requests) - len(todo), desc=self.desc,
                                          unit="req", disable=not self.progress) as bar:
            for start in range(0, len(todo), self.batch_size):
                batch = todo[start:start + self.batch_size]
                enc = tok([texts[i] for i in batch], return_tensors="pt", padding=True,
                          add_special_tokens=False).to(self.lm.device)
                out = self.lm.generate(**enc, do_sample=False, max_new_tokens=max(requests[i].max_tokens for i in batch),
                                       output_scores=True, return_dict_in_generate=True, pad_token_id=tok.pad_token_id)
                first = torch.log_softmax(out.scores[0].float(), dim=-1)
                prompt_len = enc["input_ids"].shape[1]
                for row, i in enumerate(batch):
                    seq = out.sequences[row, prompt_len:prompt_len + requests[i].max_tokens].tolist()
                    n = next((k for k, t in enumerate(seq) if t in eos), len(seq))
                    value = {"text": tok.decode(seq[:n], skip_special_tokens=True), "model": self.model,
                             "finish_reason": "stop" if n < len(seq) else "length",
                             "prompt_tokens": int(enc["attention_mask"][row].sum()), "completion_tokens": n,
                             "top_logprobs": None, "first_token": None}
                    if requests[i].top_logprobs:
                        lp, ids = first[row].topk(requests[i].top_logprobs)
                        value["top_logprobs"] = [[tok.decode([t]), float(v)] for v, t in zip(lp.tolist(), ids.tolist())]
                        value["first_token"] = [tok.decode([seq[0]]), float(first[row, seq[0]])] if seq else None
                    if self.cache is not None:
                        self.cache.put(keys[i], value)
                    results[i] = _result_from_value(value, cached=False)
                    self.acct.add(calls=1, succeeded=1, prompt_tokens=value["prompt_tokens"],
                                  completion_tokens=value["completion_tokens"])
                bar.update(len(batch))
        return results  # type: ignore[return-value]

    def accounting(self) -> dict[str, Any]:
        return {**self.acct.snapshot(), "cost": 0.0, "llm_backend": self.backend, "model": self.model_dir}


def _as_list(value) -> list:
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]


def make_client(cfg: dict[str, Any]) -> LLMClient:
    """The client of a config section.

    ``backend``: ``openai`` (default when ``base_url`` is given) or ``transformers``
    (alias ``local``). openai keys: ``model``, ``base_url``, ``api_key_env``,
    ``concurrency``, ``max_retries``, ``timeout_s``, ``price_per_million_prompt_tokens``,
    ``price_per_million_completion_tokens``, ``allow_http`` (plain http to a non-loopback
    host), ``cache_namespace`` (replaces the endpoint in cache keys), ``config_key`` (the
    section named in errors; default ``questions.vprism.llm``). transformers keys: ``model_dir`` (or
    ``model``: a model folder), ``dtype``, ``batch_size``. Both: ``cache_dir`` (default
    ``results/cache/llm``; null turns the cache off), ``progress``, ``desc``.
    """
    backend = cfg.get("backend") or ("openai" if cfg.get("base_url") else "transformers")
    return get_model("llm", backend)(cfg)


def _common(cfg: dict[str, Any]) -> dict[str, Any]:
    return {k: cfg[k] for k in ("progress", "desc") if k in cfg}


@register_model("llm", "openai")
def openai_client(cfg: dict[str, Any]) -> OpenAIChatClient:
    keys = ("base_url", "api_key_env", "concurrency", "max_retries", "timeout_s", "backoff_base_s",
            "backoff_max_s", "price_per_million_prompt_tokens", "price_per_million_completion_tokens",
            "allow_http", "cache_namespace", "config_key")
    settings = {"config_key": "questions.vprism.llm", **{k: cfg[k] for k in keys if k in cfg}}
    return OpenAIChatClient(model=cfg["model"], cache=open_cache(cfg), **_common(cfg), **settings)


@register_model("llm", "transformers", "local")
def transformers_client(cfg: dict[str, Any]) -> TransformersChatClient:
    kwargs = {k: cfg[k] for k in ("dtype", "batch_size") if k in cfg}
    return TransformersChatClient(cfg.get("model_dir") or cfg["model"], cache=open_cache(cfg), **_common(cfg),
                                  **kwargs)
