"""`ask(...)`: ingest as needed, run the engine, return the result. The library face of `rlm ask`."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable

from rlmcli.config import rlm_home
from rlmcli.engine.budget import Limits
from rlmcli.engine.events import Event
from rlmcli.engine.loop import Engine, RunResult
from rlmcli.engine.models import ModelConfig
from rlmcli.errors import UsageError
from rlmcli.workspace.store import Workspace

NO_MODEL = ("no model is set: pass --model (any litellm model string, for example openai/gpt-4o-mini or "
            "ollama/llama3.1) or set RLM_MODEL; use --offline to search without a model")


def resolve_model(model: str | None) -> str:
    chosen = model or os.environ.get("RLM_MODEL")
    if not chosen:
        raise UsageError(NO_MODEL)
    return chosen


def cache_path() -> Path:
    return rlm_home() / "cache" / "responses.sqlite"


def ask(ws: Workspace, question: str, config: ModelConfig, limits: Limits | None = None,
        observer: Callable[[Event], None] | None = None, sandbox: str = "auto", stream: bool = False) -> RunResult:
    engine = Engine(ws, config, limits or Limits(), observer, sandbox_level=sandbox, cache_path=cache_path(),
                    stream=stream)
    ws.touch()
    return engine.run(question)


def answer_record(result: RunResult, citations: list[Any], run_id: str, trace: Path, ws: Workspace) -> dict[str, Any]:
    """The `rlm.answer/1` object: `ask --json` prints it, `batch` writes it (plus the job id)."""
    return {"schema": "rlm.answer/1", "answer": result.answer, "status": result.status, "limit": result.limit,
            "error": result.error, "citations": [c.to_dict() for c in citations], "usage": result.usage,
            "iterations": result.iterations, "seconds": round(result.seconds, 3), "run_id": run_id,
            "trace": str(trace), "workspace": str(ws.root), "sandbox": result.sandbox_layers}


def dry_run_estimate(ws: Workspace, config: ModelConfig, limits: Limits) -> dict[str, Any]:
    """Worst-case cost: every allowed call sends a full context window and gets a long reply."""
    from rlmcli.engine.models import litellm

    lib = litellm()
    tokens = ws.manifest()["totals"]["tokens"]
    out: dict[str, Any] = {"workspace_tokens": tokens, "max_calls": limits.max_calls,
                           "max_iterations": limits.max_iterations}
    total = 0.0
    known = True
    for role, model, calls in (("root", config.model, limits.max_iterations + 1),
                               ("sub", config.sub_model or config.model, max(0, limits.max_calls - limits.max_iterations - 1))):
        try:
            info = lib.get_model_info(model)
            window = int(info.get("max_input_tokens") or 128_000)
            price_in = float(info.get("input_cost_per_token") or 0.0)
            price_out = float(info.get("output_cost_per_token") or 0.0)
            max_out = int(info.get("max_output_tokens") or 4096)
        except Exception:  # noqa: BLE001 - unknown model: no price
            window, price_in, price_out, max_out, known = 128_000, 0.0, 0.0, 4096, False
        cost = calls * (window * price_in + min(max_out, 4096) * price_out)
        out[role] = {"model": model, "calls": calls, "context_window": window, "worst_case_cost": round(cost, 4)}
        total += cost
    out["worst_case_cost"] = round(min(total, limits.max_cost) if limits.max_cost else total, 4)
    out["price_known"] = known
    return out
