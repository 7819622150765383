"""The pipeline: inputs -> stages (over the scheduler) -> gate -> sinks, with checkpoints.

Every completion (records written, follow-up work queued, the item marked done) runs in
one synchronous step of the event loop, and so does a checkpoint: a checkpoint never
sees half of a completion. Items read but not completed are "in flight" and are saved
with the checkpoint; a resume runs them again while the sinks are cut back to the
checkpoint's offsets, so nothing is lost and nothing is written twice.
"""

from __future__ import annotations

import asyncio
import bisect
import itertools
import logging
import math
import random
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
import msgspec

from engine.client.protocol import ChatReply, estimate_tokens
from engine.config import Config
from engine.dedup.base import Decision, Gate
from engine.errors import EndpointError, FatalEndpointError, RateLimited, ReplyError, RetryableError
from engine.gate_window import GateWindow
from engine.ids import content_id
from engine.io import compact
from engine.io.checkpoint import Checkpointer, State, WorkItem
from engine.io.sinks import ZstdJsonlSink
from engine.io.sources import BadRecord, InputStream
from engine.records import DeadLetter, Persona, Rejected, Usage, now_iso
from engine.scheduler.backoff import backoff_delay
from engine.scheduler.progress import Progress
from engine.scheduler.router import Router
from engine.scheduler.workqueue import WorkQueue
from engine.stages.base import Outcome, Stage
from engine.stages.text_to_persona import TextToPersona

log = logging.getLogger(__name__)

SINKS = ("personas", "rejected", "dead_letter")
# request latency histogram bounds (seconds), exported through status.json to the daemon's /metrics
LATENCY_BOUNDS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, math.inf)
#: the keys of State.extra the pipeline itself writes (other keys belong to parts such as the Spawner)
PIPELINE_EXTRA = ("stages", "inputs_exhausted", "compacted", "compacting")
EMPTY_FRAME_BYTES = 16  # an empty zstd frame with checksum is 13 bytes


@dataclass
class EndpointRuntime:
    """A live endpoint: its router (one or more servers) and retry settings."""

    name: str
    router: Router
    model: str
    max_retries: int
    backoff_base: float
    backoff_max: float


class Pipeline:
    """Runs one job: the same code path for `persona run` and daemon jobs."""

    def __init__(self, cfg: Config, outdir: Path, inputs: list[Path], *, endpoints: dict[str, EndpointRuntime],
                 stages: dict[str, Stage], gate: Gate | None = None, force: bool = False,
                 progress: Progress | None = None, extra_sinks: tuple[str, ...] = ()) -> None:
        self.cfg = cfg
        self.outdir = outdir
        self.inputs = inputs
        self.endpoints = endpoints
        self.stages = stages
        self.gate = gate if gate is not None else Gate()
        self.force = force
        self.counters: Counter[str] = Counter()
        self.progress = progress
        if progress is not None:
            progress.counters = self.counters
        self.fingerprint = cfg.fingerprint()
        self.ckpt = Checkpointer(outdir)
        self.sink_names = SINKS + extra_sinks
        self.sinks: dict[str, ZstdJsonlSink] = {}
        self.inflight: dict[str, WorkItem] = {}
        self._failed_over: dict[str, str] = {}  # item key -> the server it failed over from (memory only)
        self.on_accept: list[Callable[[Persona], list[WorkItem]]] = []
        self.extra_state: dict[str, Callable[[], Any]] = {}
        self.restored_extra: dict[str, Any] = {}
        self.inputs_done = False
        self.inputs_exhausted = False
        self.stream: InputStream | None = None
        self.stop_reason: str | None = None
        self.fatal: BaseException | None = None
        self._seq = 0
        self._gate_version = -1
        self._gate_dir = ""
        self._rng = random.Random()
        self.window = GateWindow(self.gate, self._complete, lambda: len(self.inflight))
        self._latency = [0] * len(LATENCY_BOUNDS)
        self._latency_sum = 0.0
        self._finished = asyncio.Event()
        self.queue = WorkQueue(self._queue_capacity())
        self.state_finished = False
        self.compacted: dict[str, int] = {}  # sink -> the offset at which it was last compacted to one frame
        self._state: State | None = None  # the last checkpoint written
        self._t0 = time.monotonic()

    # ---- set-up and resume -------------------------------------------------------------
    def _queue_capacity(self) -> int:
        if self.cfg.run.queue_size:
            return self.cfg.run.queue_size
        return 4 * sum(ep.router.capacity() for ep in self.endpoints.values()) or 64

    def open(self) -> None:
        """Open the sinks; resume from the checkpoint when there is one."""
        self.outdir.mkdir(parents=True, exist_ok=True)
        state: State | None = None
        if self.ckpt.exists():
            state = self.ckpt.load(self.fingerprint, force=self.force)
            state = compact.recover(state, self._sink_paths())
            self.compacted = dict(state.extra.get("compacted", {}))
        else:
            # a file holding only the empty frame (a kill right after creation) is not foreign output
            present = [n for n in self.sink_names
                       if (p := self.outdir / f"{n}.jsonl.zst").exists() and p.stat().st_size > EMPTY_FRAME_BYTES]
            if present and not self.force:
                from engine.errors import CheckpointError

                raise CheckpointError(f"{self.outdir} holds output files ({', '.join(present)}) but no checkpoint; "
                                      "choose another -o OUTDIR, or pass --force to overwrite them")
        for name, path in self._sink_paths().items():
            sink = ZstdJsonlSink(path)
            sink.truncate(state.sinks.get(name, 0) if state else 0)
            self.sinks[name] = sink
        limit = self.cfg.run.limit
        cursor = None
        if state is not None:
            self._seq = state.seq
            cursor = state.cursor
            self.counters.update(state.counters)
            self.inputs_exhausted = bool(state.extra.get("inputs_exhausted", state.inputs_done))
            self.restored_extra = state.extra
            for name, data in state.extra.get("stages", {}).items():
                if name in self.stages:
                    self.stages[name].restore(data)
            if state.gate_dir:
                self.gate.load(self.ckpt.dir / state.gate_dir)
                self._gate_dir = state.gate_dir
                self._gate_version = self.gate.version
            for item in state.inflight:
                self.inflight[item.key] = item
                self.queue.put_ready(item)
        self.stream = InputStream(self.inputs, text_field=self.cfg.run.text_field, id_field=self.cfg.run.id_field,
                                  max_chars=self.cfg.run.max_text_chars, cursor=cursor)
        consumed = self.stream.cursor.consumed
        self.inputs_done = self.inputs_exhausted or bool(limit and consumed >= limit)
        self.checkpoint()  # a crash before the first periodic checkpoint resumes from here

    def _sink_paths(self) -> dict[str, Path]:
        return {name: self.outdir / f"{name}.jsonl.zst" for name in self.sink_names}

    # ---- the run -----------------------------------------------------------------------
    async def run(self) -> str:
        """Run to the end or until stopped; returns "finished", "stopped" or "failed"."""
        self._finished = asyncio.Event()
        self._check_finished()
        workers = sum(ep.router.capacity() for ep in self.endpoints.values()) + 1
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._produce)
            for _ in range(workers):
                tg.start_soon(self._worker)
            tg.start_soon(self._checkpoint_loop)
            for ep in self.endpoints.values():
                tg.start_soon(ep.router.run)  # queue-metrics scrapes for adaptive limits (returns if none)
            tg.start_soon(self.window.run)
            tg.start_soon(self._status_loop)
            if self.progress is not None:
                tg.start_soon(self._progress_loop)
            await self._finished.wait()
            tg.cancel_scope.cancel()
        self.window.flush()  # decide what already came back rather than asking the endpoint again
        if self.fatal is not None:
            self.checkpoint()
            self.write_status("failed")
            return "failed"
        if self.stop_reason is not None:
            self.checkpoint()
            self.write_status("stopped")
            return "stopped"
        self.state_finished = True
        self.checkpoint()
        self.compact_outputs()
        self.write_status("finished")
        return "finished"

    def request_stop(self, reason: str = "interrupted") -> None:
        """Stop taking work; `run` then checkpoints (with the work in flight) and returns."""
        if self.stop_reason is None:
            self.stop_reason = reason
        self.queue.close()
        self._finished.set()

    def _check_finished(self) -> None:
        if self.inputs_done and not self.inflight:
            self.queue.close()
            self._finished.set()

    async def _produce(self) -> None:
        assert self.stream is not None
        limit = self.cfg.run.limit
        it = iter(self.stream)
        while not self.inputs_done and self.stop_reason is None:
            if limit and self.stream.cursor.consumed >= limit:
                self.inputs_done = True
                break
            rec = next(it, None)
            if rec is None:
                self.inputs_done = self.inputs_exhausted = True
                break
            ordinal = self.stream.cursor.consumed
            if isinstance(rec, BadRecord):
                self._dead(WorkItem(key=content_id("input", rec.source_id, ordinal), stage="input",
                                    payload={"source_id": rec.source_id, "where": rec.where}),
                           rec.reason, rec.raw, inflight=False)
                self.counters["inputs_done"] += 1
                await anyio.lowlevel.checkpoint()  # a long run of bad lines must not starve the loop
                continue
            item = TextToPersona.item(rec.source_id, rec.text, ordinal)
            self.inflight[item.key] = item
            await self.queue.put_input(item)
        self._check_finished()

    async def _worker(self) -> None:
        while True:
            item = await self.queue.get()
            if item is None:
                return
            await self._process(item)

    async def _process(self, item: WorkItem) -> None:
        stage = self.stages[item.stage]
        ep = self.endpoints[stage.endpoint]
        request = stage.request(item)
        est = estimate_tokens(request)
        self.counters["requests"] += 1
        try:
            reply = await ep.router.complete(request, est, avoid=self._failed_over.get(item.key))
        except BaseException as e:
            if isinstance(e, RateLimited):
                self.counters["rate_limited"] += 1
            if isinstance(e, RetryableError) and getattr(e, "failover", False) and item.key not in self._failed_over:
                # its server failed or was taken out: once, at once, on another server, without an attempt
                self._failed_over[item.key] = getattr(e, "endpoint", "")
                self.counters["failovers"] += 1
                self.queue.put_ready(item, front=True)
            elif isinstance(e, RateLimited):
                self._retry(item, ep, e, e.retry_after)
            elif isinstance(e, RetryableError):
                self._retry(item, ep, e, None)
            elif isinstance(e, FatalEndpointError):
                if getattr(e, "run_fatal", False):
                    self.fatal = e
                    self.request_stop("failed")
                else:
                    self._dead(item, str(e), e.body)
            else:
                raise
            return
        self._account(reply, ep, est)
        try:
            outcome = stage.parse(item, reply)
        except ReplyError as e:
            item.bad_replies += 1
            self.counters["bad_replies"] += 1
            if item.bad_replies > stage.parse_retries:
                self._dead(item, f"unusable reply after {item.bad_replies} tries: {e}", e.raw)
            else:
                self.queue.put_ready(item)
            return
        self._outcome(item, outcome)

    def _account(self, reply: ChatReply, ep: EndpointRuntime, est: int) -> None:
        c = self.counters
        c["ok"] += 1
        self._latency[bisect.bisect_left(LATENCY_BOUNDS, reply.latency)] += 1
        self._latency_sum += reply.latency
        if reply.usage is not None:
            c["prompt_tokens"] += reply.usage.prompt_tokens
            c["completion_tokens"] += reply.usage.completion_tokens
        else:
            c["usage_missing"] += 1

    def _retry(self, item: WorkItem, ep: EndpointRuntime, err: EndpointError, retry_after: float | None) -> None:
        item.attempts += 1
        item.last_error = str(err)[:500]
        if item.attempts > ep.max_retries:
            self._dead(item, f"gave up after {item.attempts} attempts: {err}", err.body)
            return
        self.counters["retries"] += 1
        delay = backoff_delay(item.attempts, ep.backoff_base, ep.backoff_max, self._rng, retry_after)
        self.queue.put_later(item, delay)

    # ---- completion (synchronous) --------------------------------------------------------
    def _outcome(self, item: WorkItem, outcome: Outcome) -> None:
        if not outcome.candidates:
            self._complete(item, outcome, [])
            return
        if self.gate.window_count <= 1 or not self.gate.heavy:
            texts = [c.persona for c in outcome.candidates]
            self._complete(item, outcome, self.gate.decide(outcome.candidates, self.gate.prepare(texts)))
            return
        self.window.add(item, outcome)

    def _complete(self, item: WorkItem, outcome: Outcome, decisions: list[Decision]) -> None:
        """Write the outcome's records, queue its follow-ups and mark the item done, in one step."""
        for sink, record in outcome.records:
            self.sinks[sink].write(record)
        follow = list(outcome.follow)
        for cand, dec in zip(outcome.candidates, decisions, strict=True):
            if dec.accepted:
                rec = Persona(id=cand.id, persona=cand.persona, source_id=cand.source_id, relation=cand.relation,
                              parent_id=cand.parent_id, root_id=cand.root_id or cand.id, depth=cand.depth,
                              model=cand.model, created_at=now_iso(),
                              usage=Usage(**cand.usage) if cand.usage else None)
                self.sinks["personas"].write(rec)
                self.counters["accepted"] += 1
                self.gate.accepted(cand)
                for hook in self.on_accept:
                    follow.extend(hook(rec))
            else:
                self.sinks["rejected"].write(Rejected(
                    id=content_id("rejected", cand.id), persona=cand.persona, source_id=cand.source_id,
                    parent_id=cand.parent_id, depth=cand.depth, stage=dec.stage, reason=dec.reason,
                    score=dec.score, duplicate_of=dec.duplicate_of, relation=cand.relation, created_at=now_iso()))
                self.counters[f"rejected.{dec.stage}"] += 1
                self.counters[f"reason.{dec.stage}.{dec.reason}"] += 1
        for f in follow:
            self.inflight[f.key] = f
            self.queue.put_ready(f)
        self._done(item)

    def _done(self, item: WorkItem) -> None:
        self.inflight.pop(item.key, None)
        self._failed_over.pop(item.key, None)
        self.counters[f"done.{item.stage}"] += 1
        if item.stage == TextToPersona.name:
            self.counters["inputs_done"] += 1
        self._check_finished()
        if self.window.pending:
            self.window.kick()

    def _dead(self, item: WorkItem, reason: str, raw: str, *, inflight: bool = True) -> None:
        self.sinks["dead_letter"].write(DeadLetter(
            id=content_id("dead", item.key), source_id=str(item.payload.get("source_id", "")), stage=item.stage,
            reason=reason, attempts=item.attempts + item.bad_replies, raw=raw[:4000],
            payload=msgspec.json.encode({k: v for k, v in item.payload.items() if k != "text"}).decode(),
            created_at=now_iso()))
        self.counters["dead"] += 1
        self.counters[f"dead.{item.stage}"] += 1
        if inflight:
            self._done(item)

    # ---- checkpoints -------------------------------------------------------------------
    async def _checkpoint_loop(self) -> None:
        while True:
            await anyio.sleep(self.cfg.run.checkpoint_interval)
            self.checkpoint()

    def checkpoint(self) -> None:
        """Sync every sink, snapshot the gate if it changed, and write the state atomically."""
        offsets = {name: sink.sync() for name, sink in self.sinks.items()}
        self._seq += 1
        if self.gate.version != self._gate_version:
            d = self.ckpt.gate_snapshot_dir(self._seq)
            self.gate.save(d)
            self._gate_dir, self._gate_version = d.name, self.gate.version
        assert self.stream is not None
        # state restored for parts not attached yet (the first checkpoint of a resume) is kept as it was
        extra = {k: v for k, v in self.restored_extra.items() if k not in PIPELINE_EXTRA}
        extra.update({name: fn() for name, fn in self.extra_state.items()})
        extra["stages"] = {n: snap for n, st in self.stages.items() if (snap := st.snapshot()) is not None}
        extra["inputs_exhausted"] = self.inputs_exhausted
        extra["compacted"] = dict(self.compacted)
        state = State(fingerprint=self.fingerprint, seq=self._seq, created_at=time.time(),
                      finished=self.state_finished, inputs=[str(p) for p in self.inputs], cursor=self.stream.cursor,
                      inputs_done=self.inputs_done, sinks=offsets, inflight=list(self.inflight.values()),
                      counters=dict(self.counters), gate_dir=self._gate_dir, extra=extra)
        self.ckpt.save(state)
        self._state = state
        self.counters["checkpoints"] += 1
        self.last_checkpoint = time.time()

    def compact_outputs(self) -> None:
        """Rewrite each output file as one zstd frame (for `datasets`), in step with the checkpoint."""
        assert self._state is not None, "compact_outputs follows a checkpoint"
        for sink in self.sinks.values():
            sink.close()
        try:
            state = compact.compact_outputs(self.ckpt, self._state, self._sink_paths())
        except OSError as e:  # the data is whole either way; a resume finishes a swap that began
            log.warning("output files left in several zstd frames (compacting them failed: %s); "
                        "pandas, DuckDB and zstd read them, datasets may not", e)
        else:
            self._state, self.compacted = state, dict(state.extra.get("compacted", {}))
        self.sinks = {name: ZstdJsonlSink(path) for name, path in self._sink_paths().items()}

    async def _status_loop(self) -> None:
        while True:
            self.write_status("running")
            await anyio.sleep(2.0)

    def write_status(self, state: str) -> None:
        """OUTDIR/checkpoint/status.json: live counters for `persona status` and the daemon."""
        doc = {
            "state": state, "updated": time.time(), "elapsed": time.monotonic() - self._t0,
            "total": self.progress.total if self.progress is not None else None,
            "counters": dict(self.counters), "in_flight": len(self.inflight),
            "queue": vars(self.queue.statistics()),
            "endpoints": {n: ep.router.statistics() for n, ep in self.endpoints.items()},
            "gate": self.gate.summary(),
            "latency_buckets": {"buckets": dict(zip(map(str, LATENCY_BOUNDS), itertools.accumulate(self._latency),
                                                    strict=True)), "sum": self._latency_sum},
        }
        path = self.ckpt.dir / "status.json"
        tmp = path.with_suffix(".tmp")
        try:
            tmp.write_bytes(msgspec.json.encode(doc))
            tmp.replace(path)
        except OSError:
            pass  # status is a convenience; the checkpoint is what counts

    async def _progress_loop(self) -> None:
        assert self.progress is not None
        self.progress.begin()
        while True:
            await anyio.sleep(self.progress.interval)
            self.progress.tick()

    def close(self) -> None:
        for sink in self.sinks.values():
            sink.close()
