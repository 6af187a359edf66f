"""A scripted in-process provider: engine tests without HTTP.

    provider = ScriptedProvider()
    provider.script("root", ["```python\\nprint(1)\\n```", "FINAL(done)"])   # model 'openai/root'
    provider.responder("sub", lambda prompt: f"{len(prompt)} chars")
    provider.script("root", [ProviderError("rate limited", "rate_limit", 429)])

Models are matched by their bare name, as an OpenAI-compatible server would see them. Usage
counts words, like the HTTP fake in tests/fakeserver.py; costs use litellm's price map.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict, deque
from collections.abc import Callable
from dataclasses import dataclass, replace

from rlmcli.engine.providers import catalog
from rlmcli.engine.providers.base import Completion, Delta, ProviderError, Request


@dataclass
class Scripted:
    text: str = ""
    delay: float = 0.0


Reply = str | Scripted | ProviderError


class ScriptedProvider:
    name = "scripted"

    def __init__(self, windows: dict[str, int] | None = None) -> None:
        self.scripts: dict[str, deque[Reply]] = defaultdict(deque)
        self.responders: dict[str, Callable[[str], Reply]] = {}
        self.requests: list[Request] = []
        self.windows = windows or {}
        self.lock = threading.Lock()

    def script(self, model: str, replies: list[Reply]) -> None:
        with self.lock:
            self.scripts[model].extend(replies)

    def responder(self, model: str, fn: Callable[[str], Reply]) -> None:
        self.responders[model] = fn

    def calls(self, model: str) -> list[Request]:
        return [r for r in self.requests if catalog.bare_name(r.model) == model]

    def context_window(self, model: str) -> int | None:
        return self.windows.get(catalog.bare_name(model)) or catalog.context_window(model)

    def complete(self, request: Request, on_delta: Delta | None = None) -> Completion:
        model = catalog.bare_name(request.model)
        content = request.messages[-1].get("content", "") if request.messages else ""
        prompt = content if isinstance(content, str) else " ".join(
            p.get("text", "") for p in content if isinstance(p, dict))
        with self.lock:
            self.requests.append(replace(request, messages=list(request.messages)))  # as sent, not as it grows
            queued = self.scripts[model].popleft() if self.scripts[model] else None
        reply: Reply
        if queued is not None:
            reply = queued
        elif model in self.responders:
            reply = self.responders[model](prompt)
        else:
            raise ProviderError(f"scripted provider: no script for {model}", "not_found", 404)
        if isinstance(reply, ProviderError):
            raise reply
        scripted = reply if isinstance(reply, Scripted) else Scripted(reply)
        if scripted.delay:
            if scripted.delay > request.timeout:
                time.sleep(request.timeout)
                raise ProviderError(f"no complete reply within {request.timeout:g} s", "timeout")
            time.sleep(scripted.delay)
        if on_delta is not None:
            words = scripted.text.split(" ")
            for i in range(0, len(words), 3):
                on_delta(" ".join(words[i:i + 3]) + (" " if i + 3 < len(words) else ""))
        sent = sum(len(str(m.get("content", "")).split()) for m in request.messages) + 10
        done = len(scripted.text.split()) + 1
        return Completion(scripted.text, sent, done, 0, catalog.cost(request.model, sent, done))
