"""A fake OpenAI-compatible server on 127.0.0.1 that plays scripted replies over real HTTP.

    server = FakeLLM().start()
    server.script("root", ["```python\\nprint(1)\\n```", "FINAL(done)"])   # model 'openai/root'
    server.responder("sub", lambda prompt: f"summary of {len(prompt)} chars")
    server.fault("root", status=429)                                      # next reply: HTTP 429
    server.chaos(rate=0.3, seed=7)          # ~30 % of requests fail, each with a fault FAULTS names

Each reply may add latency. Requests are recorded in `server.requests`; injected faults, by kind,
in `server.injected`.
"""

from __future__ import annotations

import json
import os
import random
import socket
import struct
import threading
import time
from collections import Counter, defaultdict, deque
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Reply:
    content: str = ""
    status: int = 200
    delay: float = 0.0
    raw: bytes | None = None  # sent as the body verbatim (malformed JSON, say)
    hang: bool = False  # never answer (until the client hangs up, the server stops, or a minute passes)
    headers: dict[str, str] | None = None  # extra response headers (Retry-After, say)
    drip: float = 0.0  # send the body one byte at a time, this many seconds apart
    endless: bool = False  # a stream that never ends
    reset: bool = False  # read the request, then abort the connection (TCP RST), no reply at all
    cut: float | None = None  # send this share of the body (of a stream's chunks), then close cleanly:
    #                           a body shorter than its Content-Length; a stream with no finish_reason, no [DONE]

    pace: float = 0.0  # seconds between the chunks of a streamed reply (a model typing)

# What `chaos()` injects, and how each fault looks on the wire.
FAULTS: dict[str, Callable[[], Reply]] = {
    "429": lambda: Reply(status=429, headers={"Retry-After": "0"}),
    "500": lambda: Reply(status=500),
    "503": lambda: Reply(status=503),
    "reset": lambda: Reply(reset=True),
    "slow": lambda: Reply(delay=0.5),  # the normal reply, late
    "cut": lambda: Reply(cut=0.5),  # the normal reply, half of it
    "malformed": lambda: Reply(raw=b'{"choices": [{"message": {"content": "half'),
    "empty": lambda: Reply(""),
}


class _Server(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that hangs up (a killed batch) is not the server's error: no traceback for it."""
        import sys

        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


def _abort(sock: socket.socket) -> None:
    """Close with a TCP reset: SO_LINGER 0, and the descriptor closed here so no FIN goes first."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    os.close(sock.detach())


class FakeLLM:
    def __init__(self, default_delay: float = 0.0, count_tokens: Callable[[str], int] | None = None) -> None:
        self.count_tokens = count_tokens or (lambda text: len(text.split()))
        self.scripts: dict[str, deque[Reply]] = defaultdict(deque)
        self.responders: dict[str, Callable[[str], str | Reply]] = {}
        self.whole: set[str] = set()
        self.requests: list[dict[str, Any]] = []
        self.usage_sent: list[dict[str, int]] = []  # the usage each successful reply reported
        self.default_delay = default_delay
        self.lock = threading.Lock()
        self.in_flight = 0
        self.max_in_flight = 0
        self.hangups = 0  # replies the client walked away from before they ended (hung, dripping, endless)
        self.httpd: ThreadingHTTPServer | None = None
        self.stopped = threading.Event()
        self.chaos_rate = 0.0
        self.chaos_rng = random.Random(0)
        self.chaos_kinds: list[str] = []
        self.injected: Counter[str] = Counter()

    # ---- scripting ------------------------------------------------------------------------------
    def script(self, model: str, replies: list[str | Reply]) -> None:
        for r in replies:
            self.scripts[model].append(r if isinstance(r, Reply) else Reply(r))

    def responder(self, model: str, fn: Callable[[str], str | Reply], whole: bool = False) -> None:
        """`fn(prompt)` answers each request; with whole=True the prompt is every message of the
        conversation joined (so a reply can depend on the question after a nudge, say)."""
        self.responders[model] = fn
        if whole:
            self.whole.add(model)

    def fault(self, model: str, status: int = 500, raw: bytes | None = None, hang: bool = False) -> None:
        self.scripts[model].appendleft(Reply(status=status, raw=raw, hang=hang))

    def chaos(self, rate: float, seed: int, kinds: list[str] | None = None) -> None:
        """From now on a share `rate` of requests (drawn from a seeded generator) meets a fault."""
        self.chaos_rate, self.chaos_rng, self.chaos_kinds = rate, random.Random(seed), list(kinds or FAULTS)

    def calls(self, model: str) -> list[dict[str, Any]]:
        return [r for r in self.requests if r["model"] == model]

    @property
    def base(self) -> str:
        assert self.httpd is not None
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    # ---- serving --------------------------------------------------------------------------------
    def _next(self, model: str, prompt: str) -> Reply:
        kind = ""
        with self.lock:
            if self.chaos_rate and self.chaos_rng.random() < self.chaos_rate:
                kind = self.chaos_rng.choice(self.chaos_kinds)
                self.injected[kind] += 1
        fault = FAULTS[kind]() if kind else None
        if fault is not None and kind not in ("slow", "cut"):
            return fault  # instead of the reply: the script is not consumed
        reply = self._answer(model, prompt)
        if fault is not None:  # the reply itself, late or cut
            reply = Reply(**{**reply.__dict__, "delay": max(reply.delay, fault.delay), "cut": fault.cut})
        return reply

    def _answer(self, model: str, prompt: str) -> Reply:
        with self.lock:
            if self.scripts[model]:
                return self.scripts[model].popleft()
        fn = self.responders.get(model) or self.responders.get("*")  # "*": any model without its own
        if fn is not None:
            r = fn(prompt)
            return r if isinstance(r, Reply) else Reply(r)
        return Reply(status=500, raw=json.dumps({"error": {"message": f"fake server: no script for {model}"}}).encode())

    def _prompt(self, model: str, messages: list[Any]) -> str:
        """What a responder sees: the last message's text, or the whole conversation (`whole`)."""
        if model in self.whole or ("*" in self.whole and model not in self.responders):
            return "\n".join(str(m.get("content", "")) for m in messages)
        prompt = messages[-1].get("content", "") if messages else ""
        if isinstance(prompt, list):
            prompt = " ".join(p.get("text", "") for p in prompt if isinstance(p, dict))
        return str(prompt)

    def _payload(self, model: str, messages: list[Any], reply: Reply) -> bytes:
        """The body of a reply that is not streamed."""
        if reply.raw is not None:
            return reply.raw
        if reply.status != 200:
            return json.dumps({"error": {"message": f"fake error {reply.status}", "type": "server_error",
                                         "code": reply.status}}).encode()
        words = sum(self.count_tokens(str(m.get("content", ""))) for m in messages)
        with self.lock:
            self.usage_sent.append({"prompt_tokens": words + 10, "completion_tokens": self.count_tokens(reply.content) + 1})
        return json.dumps({
            "id": "chatcmpl-fake", "object": "chat.completion", "created": int(time.time()), "model": model,
            "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": reply.content}}],
            "usage": {"prompt_tokens": words + 10, "completion_tokens": self.count_tokens(reply.content) + 1,
                      "total_tokens": words + 11 + self.count_tokens(reply.content)},
        }).encode()

    def _hung_up(self) -> None:
        with self.lock:
            self.hangups += 1

    def _until_hangup(self, sock: socket.socket, seconds: float) -> None:
        """Say nothing until the client closes the connection (counted), the server stops, or `seconds` pass."""
        import select

        end = time.monotonic() + seconds
        while not self.stopped.is_set() and time.monotonic() < end:
            if select.select([sock], [], [], 0.05)[0]:
                try:
                    gone = sock.recv(1, socket.MSG_PEEK) == b""
                except OSError:
                    gone = True
                if gone:
                    self._hung_up()
                    return
                self.stopped.wait(0.05)  # the client sent more (it should not): keep waiting

    def wait_hangups(self, count: int, seconds: float = 30.0) -> int:
        """The hang-ups seen, once there are `count` (a client's close takes the server a moment to notice)."""
        end = time.monotonic() + seconds
        while self.hangups < count and time.monotonic() < end:
            time.sleep(0.02)
        return self.hangups

    def start(self) -> FakeLLM:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                model = body.get("model", "")
                messages = body.get("messages", [])
                prompt = server._prompt(model, messages)
                with server.lock:
                    server.requests.append({"model": model, "messages": messages, "time": time.time(),
                                            "auth": self.headers.get("Authorization", ""),
                                            "params": {k: v for k, v in body.items() if k != "messages"}})
                    server.in_flight += 1
                    server.max_in_flight = max(server.max_in_flight, server.in_flight)
                try:
                    reply = server._next(model, prompt)
                    if server.stopped.wait(reply.delay or server.default_delay):
                        return
                    if reply.hang:
                        server._until_hangup(self.connection, 60)
                        return
                    if reply.reset:
                        self.close_connection = True
                        _abort(self.connection)
                        return
                    if body.get("stream") and reply.raw is None and reply.status == 200:
                        self._stream(body, model, messages, reply)
                        return
                    payload = server._payload(model, messages, reply)
                    self.send_response(reply.status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    for name, value in (reply.headers or {}).items():
                        self.send_header(name, value)
                    self.end_headers()
                    if reply.cut is not None:
                        self.wfile.write(payload[:int(len(payload) * reply.cut)])
                        self.close_connection = True
                    elif reply.drip:
                        for i in range(len(payload)):
                            self.wfile.write(payload[i:i + 1])
                            self.wfile.flush()
                            if server.stopped.wait(reply.drip):
                                return
                    else:
                        self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):
                    server._hung_up()
                finally:
                    with server.lock:
                        server.in_flight -= 1

            def _stream(self, body: dict[str, Any], model: str, messages: list[Any], reply: Reply) -> None:
                """Server-sent events, a few words per chunk, usage in the last one when asked."""
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Connection", "close")
                self.end_headers()
                self.close_connection = True
                base = {"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": int(time.time()), "model": model}
                words = reply.content.split(" ")
                if reply.endless:  # the same piece for ever, until the client hangs up
                    chunk = dict(base, choices=[{"index": 0, "delta": {"content": "more "}, "finish_reason": None}])
                    while not server.stopped.wait(0.05):
                        self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
                        self.wfile.flush()
                    return
                starts = range(0, len(words), 3)
                for n, i in enumerate(starts):
                    if reply.cut is not None and n >= int(len(starts) * reply.cut):
                        self.wfile.flush()
                        return  # a clean close mid-reply: no finish_reason, no [DONE]
                    piece = " ".join(words[i:i + 3]) + (" " if i + 3 < len(words) else "")
                    chunk = dict(base, choices=[{"index": 0, "delta": {"role": "assistant", "content": piece},
                                                 "finish_reason": None}])
                    self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
                    self.wfile.flush()
                    if reply.pace and server.stopped.wait(reply.pace):
                        return
                last = dict(base, choices=[{"index": 0, "delta": {}, "finish_reason": "stop"}])
                self.wfile.write(f"data: {json.dumps(last)}\n\n".encode())
                if (body.get("stream_options") or {}).get("include_usage"):
                    prompt = sum(server.count_tokens(str(m.get("content", ""))) for m in messages) + 10
                    done = server.count_tokens(reply.content) + 1
                    usage = dict(base, choices=[], usage={"prompt_tokens": prompt, "completion_tokens": done,
                                                          "total_tokens": prompt + done})
                    self.wfile.write(f"data: {json.dumps(usage)}\n\n".encode())
                self.wfile.write(b"data: [DONE]\n\n")
                self.wfile.flush()

        self.httpd = _Server(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()
        return self

    def stop(self) -> None:
        """Stops at once: hanging and dripping replies end, the accept loop exits within 20 ms."""
        self.stopped.set()
        if self.httpd is not None:
            self.httpd.shutdown()
            self.httpd.server_close()


ANSWER = "```python\nn = len(grep('fee'))\nFINAL('answer to: ' + {q!r})\n```"  # --answer-questions


def answer_question(prompt: str) -> str:
    """The model code that answers `answer to: <the question>`."""
    question = prompt.split("Question: ", 1)[1].split("\n", 1)[0] if "Question: " in prompt else ""
    return ANSWER.format(q=question)


def main() -> None:
    """`python tests/fakeserver.py --reply TEXT --delay S`: serve one fixed reply in its own process
    (benchmarks use this so the server does not share the client's interpreter lock).
    `--answer-questions --chaos 0.26 --seed 7 --stats F`: answer each question with its own answer,
    a share of requests meeting faults; the faults injected go to F as JSON when stdin closes."""
    import argparse
    import sys

    parser = argparse.ArgumentParser()
    parser.add_argument("--reply")
    parser.add_argument("--answer-questions", action="store_true")
    parser.add_argument("--delay", type=float, default=0.0)
    parser.add_argument("--chaos", type=float, default=0.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--stats", help="write the injected faults and the request count here as JSON")
    parser.add_argument("--stamps", help="append the wall-clock time each request arrives to this file")
    args = parser.parse_args()
    server = FakeLLM(default_delay=args.delay)
    if args.answer_questions:
        server.responder("*", answer_question, whole=True)
        server.chaos(args.chaos, args.seed)
    else:
        def reply(model: str, prompt: str) -> Reply:
            if args.stamps:
                with open(args.stamps, "a") as fh:
                    fh.write(f"{time.time()}\n")
            return Reply(args.reply or "")

        server._next = reply  # type: ignore[method-assign]
    server.start()
    print(server.base, flush=True)
    sys.stdin.read()  # until the parent closes our stdin
    server.stop()
    if args.stats:
        with open(args.stats, "w") as fh:
            json.dump({"requests": len(server.requests), "injected": dict(server.injected)}, fh)


if __name__ == "__main__":
    main()
