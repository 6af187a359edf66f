"""`run_question`: the one way a question is run. `rlm ask`, batch jobs (on any executor) and the
MCP server all call it; nothing else assembles an engine.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rlmcli.config import Settings, rlm_home
from rlmcli.engine import events as ev
from rlmcli.engine.budget import Budget, Limits
from rlmcli.engine.gateway import Gateway, ModelConfig, preflight
from rlmcli.engine.loop import Engine, RunResult
from rlmcli.engine.providers.base import Provider
from rlmcli.errors import UsageError
from rlmcli.records import RunStatus
from rlmcli.sandbox.interface import Repl, SandboxFactory
from rlmcli.workspace.store import Workspace

if TYPE_CHECKING:
    from rlmcli.schema import AnswerShape

NO_MODEL = ("no model is set: pass --model (any litellm model string, for example openai/gpt-4o-mini or "
            "ollama/llama3.1) or set RLM_MODEL; use --offline to search without a model")
ANSWER_SCHEMA = "rlm.answer/1"


def cache_path() -> Path:
    return rlm_home() / "cache" / "responses.sqlite"


def model_config(settings: Settings, refresh: bool = False) -> ModelConfig:
    from rlmcli.engine.providers import catalog

    if not settings.model:
        raise UsageError(NO_MODEL)
    catalog.set_prices(settings.prices)
    return ModelConfig(model=settings.model, sub_model=settings.sub_model, sub_models=list(settings.sub_models or []),
                       vision_model=settings.vision_model,
                       api_base=settings.api_base, api_key_env=settings.api_key_env,
                       request_timeout=settings.request_timeout, retries=settings.retries,
                       retry_base=settings.retry_base, cache=settings.cache, refresh=refresh,
                       transport=settings.transport)


def limits_of(settings: Settings) -> Limits:
    return Limits(max_iterations=settings.max_iterations, max_depth=settings.max_depth, max_calls=settings.max_calls,
                  max_tokens=settings.max_tokens, max_cost=settings.max_cost, timeout=settings.timeout,
                  concurrency=settings.concurrency, max_output_tokens=settings.max_output_tokens)


def unpriced_models(settings: Settings) -> list[str]:
    from rlmcli.engine.providers import catalog

    return [m for m in model_config(settings).allowed_models if not catalog.priced(m)]


def price_help(models: list[str]) -> str:
    example = models[0] if models else "openai/my-model"
    return (f"give a price in the config file ([prices] \"{example}\" = {{input = 0.15, output = 0.60}}, US dollars "
            "per million tokens; or RLM_PRICES as JSON), or limit tokens with --max-tokens instead")


def check_prices(settings: Settings, batch_max_cost: float | None = None, flag: str = "--max-cost") -> list[str]:
    """A dollar budget needs prices. A max_cost given for this run (a flag, a job line) with a model
    whose price is unknown is a usage error before any request; one from the config file or the
    environment is a warning (a global budget must not stop local models), returned as lines."""
    explicit = [f"--max-cost {batch_max_cost:g}"] if batch_max_cost is not None else []
    ambient: list[str] = []
    if settings.max_cost is not None:
        source = settings.source("max_cost")
        name = f"max_cost {settings.max_cost:g} ({source})"
        if source == "flag":
            name = f"{flag} {settings.max_cost:g}"
        (ambient if source.startswith(("environment", "config file", "default")) else explicit).append(name)
    if not explicit and not ambient:
        return []
    unpriced = unpriced_models(settings)
    if not unpriced:
        return []
    what = f"no price is known for {', '.join(unpriced)}"
    if explicit:
        raise UsageError(f"{explicit[0]} cannot be enforced: {what}; {price_help(unpriced)}")
    return [f"warning: {ambient[0]} cannot be enforced: {what} (its calls are not counted against it); "
            f"{price_help(unpriced)}"]


def sandbox_factory(settings: Settings) -> SandboxFactory:
    def start(root: Path) -> Repl:
        from rlmcli.sandbox.process import Sandbox

        return Sandbox(root, level=settings.sandbox, limits=sandbox_limits(settings)).start()
    return start


def sandbox_limits(settings: Settings) -> Any:
    from rlmcli.sandbox.process import SandboxLimits

    return SandboxLimits(cell_timeout=settings.cell_timeout, memory_mb=settings.sandbox_memory_mb,
                         scratch_mb=settings.scratch_mb, scratch_files=settings.scratch_files)


def run_question(settings: Settings, ws: Workspace, question: str, observer: ev.Observer | None = None, *,
                 stream: bool = False, sandbox: Repl | None = None, provider: Provider | None = None,
                 slots: AbstractContextManager[Any] | None = None, refresh: bool = False,
                 budget: Budget | None = None, focus: list[str] | None = None, shape: AnswerShape | None = None,
                 context: str = "", follows: str | None = None) -> RunResult:
    """Run one question over a workspace: trace it, check its citations, return the result.

    `sandbox` is a started sandbox to reuse (batch keeps them warm); `provider` replaces the
    transport (tests); `slots` bounds requests in flight across several runs (batch). `shape`
    asks for a structured answer (schema.py); `context` holds earlier questions and answers and
    `follows` the run they end with (followup.py)."""
    from rlmcli.answer import check_citations
    from rlmcli.engine.cache import ResponseCache
    from rlmcli.trace.store import TraceWriter, new_run_id

    config = model_config(settings, refresh)
    check_prices(settings)  # an unenforceable --max-cost fails before any request
    if provider is None:
        preflight(config)  # a missing key fails now, not after retries
    limits = limits_of(settings)
    run_id = new_run_id()
    trace = TraceWriter(ws.root / "runs" / f"{run_id}.jsonl")
    emit = ev.fanout(trace, observer) if observer is not None else trace
    cache = ResponseCache(cache_path()) if config.cache else None
    gateway = Gateway(config, budget or Budget(limits), emit, provider=provider, cache=cache, slots=slots)
    engine = Engine(ws.root, config, sandbox_factory(settings), limits, emit, gateway=gateway,
                    sandbox=sandbox, stream=stream, run_id=run_id, focus=focus, shape=shape, context=context,
                    follows=follows)
    ws.touch()
    try:
        result = engine.run(question)
        result.follows = follows
        if shape is not None and result.status is not RunStatus.FAILED:
            from rlmcli.schema import apply_shape

            apply_shape(shape, result, ws)  # the object, and its fields' citations checked
        else:
            answered = result.answer and result.status is not RunStatus.FAILED
            result.citations = check_citations(result.answer, ws) if answered else []
        if result.citations:  # the trace keeps the marks; a live view shows them as the run's last lines
            emit(ev.Citations(run_id=run_id, citations=[c.to_dict() for c in result.citations]))
    finally:
        trace.close()
        if cache is not None:
            cache.close()
    result.run_id, result.trace, result.workspace = run_id, str(trace.path), str(ws.root)
    result.calls = gateway.budget.call_list()
    return result


def answer_record(result: RunResult) -> dict[str, Any]:
    """The `rlm.answer/1` object: `ask --json` prints it, `batch` writes it (plus the job id)."""
    return {"schema": ANSWER_SCHEMA, "answer": result.answer, "status": result.status.value,
            "limit": result.limit.value if result.limit is not None else None,
            "error": result.error, "citations": [c.to_dict() for c in result.citations], "usage": result.usage,
            "model_calls": result.calls, "iterations": result.iterations, "seconds": round(result.seconds, 3),
            "run_id": result.run_id, "trace": result.trace, "workspace": result.workspace,
            "sandbox": result.sandbox_layers, **extras_record(result)}


def extras_record(result: RunResult) -> dict[str, Any]:
    """Fields only some runs have: `data` and `schema_errors` (--schema), `follows` (-c, chat)."""
    extra: dict[str, Any] = {}
    if result.data is not None or result.schema_errors:
        extra.update(data=result.data, schema_errors=result.schema_errors)
    if result.follows:
        extra["follows"] = result.follows
    return extra


def failed_record(error: str) -> dict[str, Any]:
    """The `rlm.answer/1` object of a run that failed before its first model call (a missing key,
    a workspace that is not there): `ask --json` still prints one object."""
    return {"schema": ANSWER_SCHEMA, "answer": "", "status": RunStatus.FAILED.value, "limit": None, "error": error, "citations": [],
            "usage": Budget(Limits()).usage(0), "model_calls": [], "iterations": 0, "seconds": 0.0, "run_id": None,
            "trace": None, "workspace": None, "sandbox": []}


ESTIMATE_SCHEMA = "rlm.estimate/1"


def dry_run_estimate(ws: Workspace, settings: Settings) -> dict[str, Any]:
    """The `rlm.estimate/1` object: the worst case, where every allowed call sends a full context
    window and gets a long reply. A price or window litellm's map does not know is None (null),
    never 0: the total is then unknown too."""
    from rlmcli.engine.providers import catalog

    config, limits = model_config(settings), limits_of(settings)
    tokens = ws.manifest()["totals"]["tokens"]
    root_calls = min(limits.max_iterations + 1, limits.max_calls)  # the iterations and one last call for a partial answer
    models = []
    total: float | None = 0.0
    for role, model, calls in (("root", config.model, root_calls),
                               ("sub", config.sub_model or config.model, max(0, limits.max_calls - root_calls))):
        info = catalog.model_info(model)
        window = catalog.context_window(model)
        prompt = window or catalog.ASSUMED_WINDOW
        reply = min(int(info.get("max_output_tokens") or 4096), 4096)
        per_call = catalog.cost(model, prompt, reply)
        price_in, price_out = info.get("input_cost_per_token"), info.get("output_cost_per_token")
        cost = None if per_call is None else round(per_call * calls, 4)
        models.append({"role": role, "model": model, "calls": calls, "context_window": window,
                       "prompt_tokens_per_call": prompt, "completion_tokens_per_call": reply,
                       "usd_per_million_input": round(price_in * 1e6, 4) if isinstance(price_in, (int, float)) else None,
                       "usd_per_million_output": round(price_out * 1e6, 4) if isinstance(price_out, (int, float)) else None,
                       "worst_case_cost": cost})
        total = None if total is None or cost is None else total + cost
    capped = total is not None and limits.max_cost is not None and total > limits.max_cost
    if total is not None:
        total = round(limits.max_cost if capped and limits.max_cost is not None else total, 4)
    return {"schema": ESTIMATE_SCHEMA, "workspace": str(ws.root), "workspace_tokens": tokens,
            "limits": {"max_iterations": limits.max_iterations, "max_calls": limits.max_calls,
                       "max_tokens": limits.max_tokens, "max_cost": limits.max_cost},
            "models": models, "worst_case_cost": total, "capped_by_max_cost": capped,
            "price_known": all(m["worst_case_cost"] is not None for m in models)}
