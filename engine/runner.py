"""Run a job from a config: start endpoints, build stages and gate, handle signals, exit codes."""

from __future__ import annotations

import asyncio
import contextlib
import shlex
import signal
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

if sys.version_info < (3, 11):  # pragma: no cover
    from exceptiongroup import BaseExceptionGroup

from engine import method
from engine.client.http import EndpointClient, api_key_from_env
from engine.client.probe import MetricsProbe, metrics_url
from engine.config import Config, Endpoint
from engine.dedup.base import Gate
from engine.errors import ModelUnavailable, PersonaError
from engine.io import sources
from engine.io.checkpoint import Checkpointer
from engine.pipeline import EndpointRuntime, Pipeline
from engine.scheduler.adaptive import AdaptiveController
from engine.scheduler.breaker import BreakerSettings, CircuitBreaker
from engine.scheduler.budget import Budget
from engine.scheduler.progress import Progress, fmt_duration
from engine.scheduler.router import Member, Router

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


@dataclass
class RunResult:
    """How a run ended, with its counters."""

    status: str  # finished | stopped | failed
    counters: Counter[str]
    outdir: Path
    elapsed: float
    error: str = ""
    gate: dict[str, Any] | None = None

    @property
    def exit_code(self) -> int:
        return {"finished": EXIT_OK, "stopped": EXIT_INTERRUPTED}.get(self.status, EXIT_ERROR)


@contextlib.contextmanager
def embedded_server(cfg: Config) -> Iterator[tuple[str, str] | None]:
    """Start the embedded llama.cpp server if a used endpoint asks for it; yields (base_url, model)."""
    used: set[str] = set()
    for name in cfg.stage_endpoints().values():
        ep = cfg.endpoint(name)
        for part in (ep, cfg.endpoint(ep.overflow)) if ep.overflow else (ep,):
            used.update(part.base_urls or [part.base_url])
    if "embedded" not in used:
        yield None
        return
    from engine.local.llm import EmbeddedLLM, EmbeddedLLMError, EmbeddedSettings

    e = cfg.embedded
    settings = EmbeddedSettings(gguf=Path(e.gguf) if e.gguf else None, parallel=e.parallel, ctx_size=e.ctx_size,
                                threads=e.threads, startup_timeout=e.startup_timeout)
    llm = EmbeddedLLM(settings)
    try:
        llm.start()
    except EmbeddedLLMError as err:
        raise ModelUnavailable(f"embedded LLM endpoint could not start: {err}") from None
    try:
        yield llm.base_url, llm.model
    finally:
        llm.stop()


def build_endpoints(cfg: Config, embedded: tuple[str, str] | None) -> dict[str, EndpointRuntime]:
    """One router per endpoint name that a stage uses: its servers, then its overflow endpoint's."""
    out = {}
    for name in sorted(set(cfg.stage_endpoints().values())):
        ep = cfg.endpoint(name)
        members = _members(name, ep, embedded, priority=0)
        if ep.overflow:
            members += _members(ep.overflow, cfg.endpoint(ep.overflow), embedded, priority=1)
        out[name] = EndpointRuntime(name, Router(name, members), members[0].model or "default", ep.max_retries,
                                    ep.backoff_base, ep.backoff_max)
    return out


def _members(name: str, ep: Endpoint, embedded: tuple[str, str] | None, priority: int) -> list[Member]:
    """One router member per server of endpoint `name`: client, budget, breaker, adaptive limit."""
    urls = list(ep.base_urls) or [ep.base_url]
    out = []
    for i, base_url in enumerate(urls):
        model = ep.model
        if base_url == "embedded":
            assert embedded is not None
            base_url, model = embedded[0], ep.model or embedded[1]
        member = name if len(urls) == 1 else f"{name}[{i}]"
        client = EndpointClient(member, base_url, api_key=api_key_from_env(ep.api_key_env),
                                connect_timeout=ep.connect_timeout, request_timeout=ep.request_timeout,
                                max_connections=ep.max_in_flight, headers=ep.headers)
        budget = Budget(requests_per_minute=ep.requests_per_minute, tokens_per_minute=ep.tokens_per_minute,
                        max_in_flight=ep.max_in_flight)
        adaptive = AdaptiveController(now=time.monotonic()) if ep.adaptive else None
        probe = None
        if adaptive is not None and ep.metrics_url != "off":
            probe = MetricsProbe(ep.metrics_url or metrics_url(client.base_url))
        breaker = CircuitBreaker(BreakerSettings(failure_threshold=ep.breaker_failures, cooldown=ep.breaker_cooldown))
        out.append(Member(member, client, budget, model=model, priority=priority, tpm_counts=ep.tpm_counts,
                          breaker=breaker, adaptive=adaptive, probe=probe))
    return out


def build_gate(cfg: Config) -> Gate:
    """The dedup gate as configured (every stage can be switched off)."""
    from engine.dedup.gate import DedupGate

    return DedupGate(cfg.gate)


async def _run_async(cfg: Config, outdir: Path, inputs: list[Path], endpoints: dict[str, EndpointRuntime],
                     *, force: bool, progress: Progress | None, gate: Gate) -> tuple[str, Pipeline]:
    ckpt = Checkpointer(outdir)
    if ckpt.exists():
        ckpt.load(cfg.fingerprint(), force=force)  # refuse a changed config before any request is sent
    for ep in endpoints.values():
        await ep.router.start()
    pipe: Pipeline | None = None
    loop = asyncio.get_running_loop()
    signals = (signal.SIGINT, signal.SIGTERM)
    try:
        demo = await _demo_personas(cfg, endpoints, outdir, progress)
        pipe = Pipeline(cfg, outdir, inputs, endpoints=endpoints, stages=method.build_stages(cfg, endpoints, demo),
                        gate=gate, force=force, progress=progress, extra_sinks=method.task_sinks(cfg))
        for sig in signals:
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, pipe.request_stop, "interrupted")
        pipe.open()
        method.Spawner(cfg, pipe)
        if progress is not None:
            progress.total = await asyncio.to_thread(_total, inputs, cfg.run.limit)
        try:
            status = await pipe.run()
        except BaseExceptionGroup as group:  # noqa: F821 - builtin on 3.11, backport below
            raise _first_persona_error(group) from None
    finally:
        for sig in signals:
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.remove_signal_handler(sig)
        for ep in endpoints.values():
            await ep.router.close()
        if progress is not None:
            progress.end()
        if pipe is not None:
            pipe.close()
    return status, pipe


async def _demo_personas(cfg: Config, endpoints: dict[str, EndpointRuntime], outdir: Path,
                         progress: Progress | None = None) -> dict[str, str]:
    """Personas for demonstrations that lack one, when a task runs in persona-enhanced mode."""
    syn = cfg.synthesis
    if not (syn.enabled and syn.tasks):
        return {}
    from engine.demo_personas import derive
    from engine.stages.synthesis import demos_missing_personas
    from engine.stages.text_to_persona import TextToPersona

    texts = demos_missing_personas(syn)
    if not texts:
        return {}
    t2p = cfg.text_to_persona
    stage = TextToPersona(t2p, model=endpoints[t2p.endpoint].model,
                          structured=cfg.endpoint(t2p.endpoint).structured_output)
    cache = outdir / "checkpoint" / "demo_personas.json"
    if progress is not None and not cache.exists():
        progress.note(f"deriving personas for {len(texts)} demonstrations (persona-enhanced few-shot) ...")
    return await derive(texts, stage, endpoints[t2p.endpoint], cache)


def _first_persona_error(group: BaseException) -> BaseException:
    """The engine's own error inside a task group's exception group (else the group itself)."""
    if isinstance(group, PersonaError):
        return group
    for exc in getattr(group, "exceptions", ()):
        found = _first_persona_error(exc)
        if isinstance(found, PersonaError):
            return found
    return group


def _total(inputs: list[Path], limit: int) -> int | None:
    try:
        n = sources.count_records(inputs)
    except Exception:  # a progress total is a nicety; the run itself reports bad inputs
        return limit or None
    return min(n, limit) if limit else n


def run_event_loop(coro: Any) -> Any:
    """Run a coroutine on uvloop where it is installed, else on asyncio."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    return uvloop.run(coro)


def execute(cfg: Config, outdir: Path, inputs: list[str], *, force: bool = False,
            progress_mode: str | None = None) -> RunResult:
    """Run (or resume) a job to its end or to an interruption."""
    paths = sources.resolve(inputs)
    t0 = time.monotonic()
    progress = None
    mode = progress_mode or cfg.run.progress
    if mode != "off":
        progress = Progress(Counter(), mode=mode, interval=cfg.run.log_interval)
    gate = build_gate(cfg)
    with embedded_server(cfg) as emb:
        endpoints = build_endpoints(cfg, emb)
        status, pipe = run_event_loop(_run_async(cfg, outdir, paths, endpoints, force=force, progress=progress,
                                                 gate=gate))
    err = str(pipe.fatal) if pipe.fatal is not None else ""
    return RunResult(status, Counter(pipe.counters), outdir, time.monotonic() - t0, err, gate.summary())


def summary(result: RunResult) -> str:
    """The end-of-run summary: counts per stage, rejects by gate stage, tokens, files."""
    c = result.counters
    rejected = {k.split(".", 1)[1]: v for k, v in c.items() if k.startswith("rejected.")}
    lines = [
        f"status      {result.status} in {fmt_duration(result.elapsed)}",
        f"inputs      {c.get('inputs_done', 0)} done",
        f"personas    {c.get('accepted', 0)} accepted, {sum(rejected.values())} rejected"
        + (f" ({', '.join(f'{k} {v}' for k, v in sorted(rejected.items()))})" if rejected else ""),
        f"requests    {c.get('requests', 0)} sent, {c.get('retries', 0)} retried, "
        f"{c.get('rate_limited', 0)} rate-limited, "
        f"{c.get('bad_replies', 0)} unusable replies, {c.get('dead', 0)} dead-lettered",
        f"tokens      {c.get('prompt_tokens', 0)} prompt + {c.get('completion_tokens', 0)} completion",
        f"output      {result.outdir}/",
    ]
    gate = result.gate or {}
    reasons = {k.split(".", 1)[1]: v for k, v in c.items() if k.startswith("reason.")}
    if reasons:
        lines.insert(3, "  rejected  " + ", ".join(f"{k} {v}" for k, v in sorted(reasons.items())))
    if "minhash" in gate:
        m = gate["minhash"]
        lines.append(f"gate        minhash {m['bands']} bands x {m['rows']} rows at Jaccard {m['threshold']}"
                     + (f"; semantic cosine {gate['semantic']['threshold']} on {gate['semantic']['provider']}"
                        if "semantic" in gate else ""))
    return "\n".join(lines)


def resume_command() -> str:
    """The command line that resumes this run (the same command)."""
    return "persona " + " ".join(shlex.quote(a) for a in sys.argv[1:])
