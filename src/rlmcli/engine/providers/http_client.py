"""The one HTTP client both providers use: httpx, with a deadline for the whole request.

httpx bounds each network operation (connect, each read, each write), not the whole exchange, so
a server that answers a byte at a time, or stalls halfway, could hold a request for ever. Here a
request's timeout is also its deadline: httpx's timeouts (the same number) bound connecting and
waiting for the headers; from the headers on, one watcher thread for the process shuts the
connection's socket down at the deadline, which ends a blocked read at once, and `chunks` stops
a reply that keeps arriving. No thread per request, nothing left running after it.

Keep-alive connections are pooled; proxies come from HTTP(S)_PROXY / ALL_PROXY / NO_PROXY; TLS is
verified against the system's trust store (as the standard library does). This is the only
module that imports httpx.
"""

from __future__ import annotations

import heapq
import itertools
import socket
import ssl
import sys
import threading
import time
import weakref
from collections.abc import Iterator
from contextlib import contextmanager

# httpx's __init__ also loads its own command line (httpx._main: rich.syntax, pygments), a third of
# the fast path's import time and never used here; a None in sys.modules makes that import fail,
# which httpx expects (its `cli` extra may be missing) and answers with a stub.
sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]

import httpx  # noqa: E402

from rlmcli.engine.providers.base import ProviderError  # noqa: E402

DEADLINE = "rlm.deadline"  # the request extension holding its deadline (time.monotonic())


class _Watcher:
    """Shuts down the sockets of replies still open at their request's deadline."""

    def __init__(self) -> None:
        self._due: list[tuple[float, int, weakref.ref[httpx.Response], socket.socket]] = []
        self._order = itertools.count()
        self._wake = threading.Condition()
        self._thread: threading.Thread | None = None

    def watch(self, deadline: float, response: httpx.Response, sock: socket.socket) -> None:
        with self._wake:
            heapq.heappush(self._due, (deadline, next(self._order), weakref.ref(response), sock))
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="rlm-http-deadlines", daemon=True)
                self._thread.start()
            self._wake.notify()

    def _run(self) -> None:
        while True:
            with self._wake:
                while not self._due or self._due[0][0] > time.monotonic():
                    self._wake.wait(self._due[0][0] - time.monotonic() if self._due else None)
                _, _, ref, sock = heapq.heappop(self._due)
            response = ref()
            # A reply read to its end (or dropped) has given its connection back: leave it alone.
            if response is not None and not response.is_closed:
                try:  # the TCP socket itself (under TLS too): SSLSocket.shutdown would tear its state down
                    socket.socket.shutdown(sock, socket.SHUT_RDWR)
                except OSError:
                    pass  # already closed


_watcher = _Watcher()


def _on_request(request: httpx.Request) -> None:
    """A request's deadline: the one its sender set, else its read timeout from now (what
    litellm and the openai SDK pass as "the timeout")."""
    if DEADLINE not in request.extensions:
        total = request.extensions.get("timeout", {}).get("read")
        if total is not None:
            request.extensions[DEADLINE] = time.monotonic() + total


def _on_response(response: httpx.Response) -> None:
    deadline = response.request.extensions.get(DEADLINE)
    stream = response.extensions.get("network_stream")
    sock = stream.get_extra_info("socket") if stream is not None else None
    if deadline is not None and isinstance(sock, socket.socket):
        _watcher.watch(deadline, response, sock)


_client: httpx.Client | None = None
_client_lock = threading.Lock()


def client() -> httpx.Client:
    """The process's shared client (thread-safe; the Gateway bounds how many requests run)."""
    global _client
    with _client_lock:
        if _client is None:
            _client = httpx.Client(
                verify=ssl.create_default_context(),
                limits=httpx.Limits(max_connections=None, max_keepalive_connections=32),
                headers={"User-Agent": "rlm"},
                event_hooks={"request": [_on_request], "response": [_on_response]},
            )
    return _client


@contextmanager
def post(url: str, headers: dict[str, str], content: bytes, seconds: float) -> Iterator[httpx.Response]:
    """POST and hand over the reply as it starts to arrive (closed after the block: read to its end,
    its connection goes back to the pool). A network failure, here or while the block reads, is a
    classified ProviderError; past the deadline, a timeout."""
    http = client()
    request: httpx.Request | None = None
    try:
        request = http.build_request("POST", url, headers=headers, content=content, timeout=httpx.Timeout(seconds),
                                     extensions={DEADLINE: time.monotonic() + seconds})
        response = http.send(request, stream=True)
        try:
            yield response
        finally:
            response.close()
    except ProviderError as exc:
        if exc.kind in ("incomplete", "reset") and past(request):  # the watcher ended a stream: it looks clean
            raise ProviderError(f"no complete reply within {seconds:g} s", "timeout") from None
        raise
    except (httpx.HTTPError, httpx.InvalidURL) as exc:
        raise network_error(exc, request, seconds) from None


def chunks(response: httpx.Response, limit: int, seconds: float, partial: bool = False) -> Iterator[bytes]:
    """The body as it arrives (decompressed): at most `limit` bytes (past it, a ProviderError), and
    not past the deadline, so a server dripping a byte at a time ends there too. With `partial`
    (an error page), a body cut short just ends."""
    size = 0
    try:
        for chunk in response.iter_bytes():
            if past(response.request):
                raise ProviderError(f"no complete reply within {seconds:g} s", "timeout")
            size += len(chunk)
            if size > limit:
                raise ProviderError(f"the reply is larger than {limit >> 20} MB", "malformed", retryable=False)
            yield chunk
    except httpx.RemoteProtocolError:
        if not partial or past(response.request):
            raise


def past(request: httpx.Request | None) -> bool:
    """Whether the request's deadline has passed (a socket shut down by the watcher looks like a
    server that hung up: this tells the two apart)."""
    deadline = request.extensions.get(DEADLINE) if request is not None else None
    return deadline is not None and time.monotonic() >= deadline


def network_kind(exc: BaseException) -> str | None:
    """The ERROR_KINDS kind of a network failure: httpx's, or anything raised above it (litellm,
    the openai SDK) that carries one among its causes. None when it is not one."""
    chain: list[BaseException] = []
    cause: BaseException | None = exc
    while cause is not None and cause not in chain and len(chain) < 16:
        chain.append(cause)
        cause = cause.__cause__ or cause.__context__

    def first(*kinds: type[BaseException]) -> BaseException | None:
        return next((c for c in chain if isinstance(c, kinds)), None)

    if first(httpx.TimeoutException, TimeoutError):
        return "timeout"
    if first(ConnectionRefusedError):
        return "connection"
    if first(socket.gaierror):
        return "dns"
    if first(ssl.SSLError):
        return "tls"
    dropped = first(httpx.RemoteProtocolError)
    if dropped is not None:
        # h11: "peer closed connection without sending complete message body" is a body cut
        # short; "Server disconnected without sending a response" is a dropped connection.
        return "incomplete" if "complete message body" in str(dropped) else "reset"
    if first(ConnectionResetError, BrokenPipeError, httpx.ReadError, httpx.WriteError):
        return "reset"
    if first(httpx.ConnectError, httpx.ProxyError):
        return "connection"
    return None


def network_error(exc: BaseException, request: httpx.Request | None, seconds: float) -> ProviderError:
    """A failure of httpx as one classified line."""
    kind = "timeout" if past(request) else network_kind(exc)
    if kind == "timeout":
        return ProviderError(f"no complete reply within {seconds:g} s", "timeout")
    if kind == "connection" and isinstance(exc, httpx.ProxyError):
        return ProviderError(f"the proxy failed ({exc})", "connection")
    words = {"connection": "connection refused", "dns": f"cannot resolve the host ({exc})", "tls": f"TLS failed ({exc})",
             "reset": "connection reset by the server", "incomplete": f"the reply was cut short ({exc})"}
    if kind is not None:
        return ProviderError(words[kind], kind)
    if isinstance(exc, (httpx.UnsupportedProtocol, httpx.InvalidURL)):
        return ProviderError(f"not a usable --api-base: {exc}", "bad_request")
    return ProviderError(f"{type(exc).__name__}: {exc}", "error")
