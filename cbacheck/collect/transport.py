"""The HTTP session every network call goes through: CA bundle per request, timeouts, bounded urllib3 retries."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal
from urllib.parse import urljoin, urlsplit

import requests
from requests.adapters import HTTPAdapter
from urllib3.response import BaseHTTPResponse
from urllib3.util.retry import Retry

from cbacheck.config import Settings
from cbacheck.facts import Source

# A 429 storm may ask for minutes; one run must not hang on it, so no single wait is longer.
MAX_RETRY_AFTER_S = 60.0
BACKOFF_FACTOR_S = 0.5
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
# POST is retried on the read session because every POST sent through it is known to be read-only:
# the token endpoint (a new token changes nothing in the tenant), a Graph $batch of GETs only (a
# batch holding a write goes through the write session) and the Exchange probe, whose cmdlet
# `exchange.require_read_only_cmdlet` limits to Get-* before anything is sent. Graph writes go
# through `CbaSession.for_writes()`, which never repeats a request the server may have applied.
READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "POST"})
WRITE_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# Hosts outside a request's own origin that a service may send cbacheck to, by domain suffix. Empty:
# Graph, the token endpoint and the Exchange admin API answer on the origin they were asked on.
# A profile that needs Security & Compliance would add "ps.compliance.protection.outlook.com",
# whose endpoint redirects to regional hosts under that domain.
SERVICE_DOMAINS: tuple[str, ...] = ()


def utc_stamp(moment: datetime | None = None) -> str:
    """An instant as ISO 8601 UTC with milliseconds and 'Z' (now when none is given): 2026-01-01T00:00:00.000Z."""
    return (moment or datetime.now(UTC)).astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def trusted_target(origin_url: str, target_url: str, service_domains: Iterable[str] = SERVICE_DOMAINS) -> bool:
    """May a request for `origin_url` continue at `target_url` (a nextLink or a redirect) with its token?

    Only over https, and only to the same origin (scheme, host, port) or to a host under one of
    `service_domains`. This is the one place that decides it for pages and redirects alike.
    """
    origin, target = urlsplit(origin_url), urlsplit(target_url)
    if target.scheme != "https" or not target.hostname:
        return False
    if origin.scheme == "https" and (origin.hostname, origin.port) == (target.hostname, target.port):
        return True
    host = target.hostname.lower()
    return target.port is None and any(host.endswith("." + domain.lower()) for domain in service_domains)


def request_id_of(headers: Any) -> str:
    """The service's id for a request (Graph: request-id; identity platform: x-ms-request-id)."""
    return str(headers.get("request-id", "") or headers.get("x-ms-request-id", ""))


class RequestLog(list[Source]):
    """The run's request log: each entry remembers the lane (collection path) that sent it.

    The auditor's and the app's paths run on their own threads; `in_lane_order` puts the log in a
    fixed order (lane by lane, each lane in the order it sent) whatever finished first, so the
    evidence does not depend on timing. A lane may split into sub-lanes run on threads of their own
    (`sub_lane`): lane (3,) lists its own requests, then those of (3, 1), then (3, 2), then lane (4,).
    """

    def __init__(self) -> None:
        super().__init__()
        self.lanes: list[tuple[int, ...]] = []
        self._current = threading.local()
        self._lock = threading.Lock()

    def append(self, source: Source) -> None:
        with self._lock:
            super().append(source)
            self.lanes.append(self.current_lane())

    def current_lane(self) -> tuple[int, ...]:
        """The lane of the calling thread ((0,) outside any lane)."""
        rank: tuple[int, ...] = getattr(self._current, "rank", (0,))
        return rank

    @contextmanager
    def lane(self, *rank: int) -> Iterator[None]:
        """Entries this thread appends inside the block belong to lane `rank` (lower ranks come first)."""
        previous = self.current_lane()
        self._current.rank = rank
        try:
            yield
        finally:
            self._current.rank = previous

    def sub_lane(self, index: int) -> tuple[int, ...]:
        """A sub-lane of the calling thread's lane, for work it hands to another thread (listed after its own)."""
        return (*self.current_lane(), index)

    def in_lane_order(self) -> list[Source]:
        with self._lock:
            ranked = sorted(zip(self.lanes, range(len(self)), self, strict=True), key=lambda row: row[:2])
        return [source for _, _, source in ranked]


Counter = Literal["graph_round_trips", "graph_requests", "token_requests", "exchange_requests", "retries"]


@dataclass
class TransportStats:
    """Counters and the request log one run shares across Graph, token and Exchange calls."""

    graph_round_trips: int = 0
    graph_requests: int = 0
    token_requests: int = 0
    exchange_requests: int = 0
    retries: int = 0
    waits_s: list[float] = field(default_factory=list)
    sources: RequestLog = field(default_factory=RequestLog)
    # Replaceable so tests can observe waits without spending them.
    sleep: Callable[[float], None] = time.sleep
    # msal's http_cache, shared by every identity of the run (discovery.py may fill it from disk), and the lock
    # that lets one identity's tenant discovery finish before another reads the cache.
    http_cache: dict[str, Any] = field(default_factory=dict)
    discovery_lock: threading.Lock = field(default_factory=threading.Lock)

    # The auditor's and the app's paths run in threads: `+=` on a shared int is not atomic, so counts go
    # through count().
    counter_lock: threading.Lock = field(default_factory=threading.Lock)

    def count(self, counter: Counter, n: int = 1) -> None:
        """Add n to one of the request counters, safely from any collection thread."""
        with self.counter_lock:
            setattr(self, counter, getattr(self, counter) + n)

    def pause(self, seconds: float) -> None:
        self.waits_s.append(seconds)
        if seconds > 0:
            self.sleep(seconds)


class CountingRetry(Retry):
    """urllib3 Retry that counts each retry, caps Retry-After and waits through `TransportStats.pause`.

    The wait happens in `increment()` rather than `sleep()` so that it is the same whether urllib3
    or a test double (responses calls only `increment`) drives the retry.
    """

    def __init__(self, *args: Any, stats: TransportStats | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.stats = stats if stats is not None else TransportStats()

    def new(self, **kw: Any) -> CountingRetry:
        fresh = super().new(**kw)
        fresh.stats = self.stats
        return fresh

    def increment(self, *args: Any, **kwargs: Any) -> CountingRetry:
        fresh = super().increment(*args, **kwargs)  # raises MaxRetryError when the budget is spent
        self.stats.count("retries")
        response: BaseHTTPResponse | None = kwargs.get("response")
        if response is None and len(args) >= 3:
            response = args[2]
        self.stats.pause(fresh.wait_before_retry(response))
        return fresh

    def wait_before_retry(self, response: BaseHTTPResponse | None) -> float:
        answered_with_wait = response is not None and response.status in self.RETRY_AFTER_STATUS_CODES
        if self.respect_retry_after_header and response is not None and answered_with_wait:
            retry_after = self.get_retry_after(response)
            if retry_after is not None:
                return min(retry_after, MAX_RETRY_AFTER_S)
        return self.get_backoff_time()

    def sleep(self, response: BaseHTTPResponse | None = None) -> None:
        # Already waited in increment(); waiting again here would double every pause.
        return None


def make_retry(retries: int, stats: TransportStats, *, repeat_after_answer: bool) -> CountingRetry:
    """Bounded retries; `repeat_after_answer=False` retries only failures to connect (nothing was sent)."""
    return CountingRetry(
        total=retries,
        connect=retries,
        read=retries if repeat_after_answer else 0,
        status=retries if repeat_after_answer else 0,
        other=0,
        redirect=0,
        allowed_methods=READ_METHODS if repeat_after_answer else WRITE_SAFE_METHODS,
        status_forcelist=RETRY_STATUSES if repeat_after_answer else frozenset(),
        backoff_factor=BACKOFF_FACTOR_S,
        backoff_max=MAX_RETRY_AFTER_S,
        retry_after_max=int(MAX_RETRY_AFTER_S),
        respect_retry_after_header=True,
        raise_on_status=False,  # the last answer reaches the caller, whose error names status and body
        raise_on_redirect=False,
        stats=stats,
    )


class CbaSession(requests.Session):
    """A requests.Session whose CA bundle wins over REQUESTS_CA_BUNDLE and whose requests all time out.

    requests lets REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE override `Session.verify` (it only merges the
    environment when the per-request `verify` is unset or True), so the bundle is passed per request.
    `trust_env` stays on: proxies from the environment keep working.
    """

    def __init__(
        self,
        *,
        ca_bundle: str | None,
        timeout_s: float,
        retries: int,
        stats: TransportStats | None = None,
        repeat_after_answer: bool = True,
    ) -> None:
        super().__init__()
        self.ca_bundle = ca_bundle
        self.timeout_s = timeout_s
        self.retries = retries
        self.stats = stats if stats is not None else TransportStats()
        self.repeat_after_answer = repeat_after_answer
        self._writes: CbaSession | None = None
        adapter = HTTPAdapter(max_retries=make_retry(retries, self.stats, repeat_after_answer=repeat_after_answer))
        self.mount("https://", adapter)
        self.mount("http://", adapter)

    def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> requests.Response:
        if kwargs.get("timeout") is None:
            kwargs["timeout"] = self.timeout_s
        if self.ca_bundle and kwargs.get("verify") in (None, True):
            kwargs["verify"] = self.ca_bundle
        text_url = url.decode() if isinstance(url, bytes) else url
        text_method = method.decode() if isinstance(method, bytes) else method
        if not is_token_request(text_method, text_url):
            return super().request(method, url, *args, **kwargs)
        self.stats.count("token_requests")
        # Only method, URL (no query: the form body holds the assertion) and status are kept.
        shown_url = text_url.split("?", 1)[0]
        sent = _send_recorded(self.stats, text_method, shown_url, super().request, method, url, **kwargs)
        if sent.failure is not None:
            raise sent.failure
        assert sent.response is not None
        return sent.response

    def get_redirect_target(self, resp: requests.Response) -> str | None:
        """Follow a redirect only where `trusted_target` allows; otherwise the 3xx answer reaches the caller."""
        target = super().get_redirect_target(resp)
        if target is None or trusted_target(resp.url, urljoin(resp.url, target)):
            return target
        return None

    def for_writes(self) -> CbaSession:
        """A sibling session for Graph writes: same CA, timeout and counters, no repeat once a request was sent."""
        if not self.repeat_after_answer:
            return self
        if self._writes is None:
            self._writes = CbaSession(
                ca_bundle=self.ca_bundle,
                timeout_s=self.timeout_s,
                retries=self.retries,
                stats=self.stats,
                repeat_after_answer=False,
            )
            self._writes.proxies = self.proxies
        return self._writes


def is_token_request(method: str, url: str) -> bool:
    """An OAuth token request (identity platform `/oauth2/v2.0/token` or a managed identity endpoint)."""
    path = urlsplit(url).path.rstrip("/")
    return path.endswith("/token") and "oauth2" in path and method.upper() in ("POST", "GET")


def build_session(settings: Settings, *, stats: TransportStats | None = None) -> CbaSession:
    """The session for one run: `settings.ca_bundle`, `timeout_s` and `retries` applied to every request."""
    return CbaSession(
        ca_bundle=str(settings.ca_bundle) if settings.ca_bundle else None,
        timeout_s=settings.timeout_s,
        retries=settings.retries,
        stats=stats,
    )


def stats_of(session: requests.Session) -> TransportStats:
    """The counters of a session; a plain requests.Session gets some attached on first use."""
    existing = getattr(session, "stats", None)
    if isinstance(existing, TransportStats):
        return existing
    created = TransportStats()
    session.stats = created  # type: ignore[attr-defined]
    return created


def writes_session(session: requests.Session) -> requests.Session:
    """The session Graph writes use: never repeats a request the server may have applied."""
    if isinstance(session, CbaSession):
        return session.for_writes()
    return session


@dataclass(frozen=True)
class Sent:
    """One request sent: its answer (None when none came), the Source recorded for it, and why none came."""

    response: requests.Response | None
    source: Source
    failure: requests.RequestException | None = None


def send(session: requests.Session, method: str, url: str, **kwargs: Any) -> Sent:
    """Send one request and record its Source (time, status, request id) in the session's log.

    A session other than CbaSession follows no redirect at all, since it cannot tell where one leads.
    """
    if not isinstance(session, CbaSession):
        kwargs.setdefault("allow_redirects", False)
    return _send_recorded(stats_of(session), method, url, session.request, method, url, **kwargs)


def _send_recorded(
    stats: TransportStats,
    method: str,
    shown_url: str,
    request: Callable[..., requests.Response],
    *args: Any,
    **kwargs: Any,
) -> Sent:
    at = utc_stamp()
    started = time.perf_counter()
    response: requests.Response | None = None
    failure: requests.RequestException | None = None
    try:
        response = request(*args, **kwargs)
    except requests.RequestException as err:
        failure = err
    source = Source(
        method.upper(),
        shown_url,
        response.status_code if response is not None else None,
        request_id=request_id_of(response.headers) if response is not None else "",
        elapsed_ms=(time.perf_counter() - started) * 1000,
        at=at,
    )
    stats.sources.append(source)
    return Sent(response, source, failure)
