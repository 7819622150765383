"""The HTTP API (aiohttp): jobs, health, metrics, OpenAPI; bearer-token check on every route but /healthz."""

from __future__ import annotations

import hmac
import logging
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import msgspec
from aiohttp import web

from engine.service import metrics, tomlw
from engine.service.api import (
    ACTIVE,
    STATES,
    ApiError,
    GateCounts,
    Health,
    JobList,
    JobView,
    Rates,
    Requests,
    SubmitRequest,
    Tokens,
    openapi,
)
from engine.service.jobs import Job, new_id
from engine.service.paths import PathPolicy
from engine.service.submit import prepare
from engine.service.supervisor import Conflict, Supervisor

log = logging.getLogger("persona.service")
_ENC = msgspec.json.Encoder()
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
OPEN_PATHS = frozenset({"/healthz"})


def _json(obj: object, status: int = 200) -> web.Response:
    return web.Response(body=_ENC.encode(obj), status=status, content_type="application/json")


def view(sup: Supervisor, job: Job) -> JobView:
    """What the API says about a job: its record plus its live status."""
    t = sup.trackers.get(job.id)
    c = dict(t.snap.counters) if t is not None else {}
    rps, tps, ips = t.rates() if t is not None else (0.0, 0.0, 0.0)
    active = job.state in ACTIVE
    age = None
    if t is not None and t.snap.checkpoint_mtime is not None:
        age = max(0.0, time.time() - t.snap.checkpoint_mtime)
    return JobView(
        id=job.id, name=job.name, state=job.state, weight=job.weight, inputs=job.inputs, output=job.output,
        created_at=job.created_at, started_at=job.started_at, finished_at=job.finished_at,
        exit_code=job.exit_code, error=job.error, launches=job.launches,
        concurrency={n: int(a[0]) for n, a in job.allot.items()},
        inputs_done=c.get("inputs_done", 0), inputs_total=t.snap.total if t is not None else None,
        in_flight=t.snap.in_flight if t is not None and active else 0,
        requests=Requests(sent=c.get("requests", 0), ok=c.get("ok", 0), retries=c.get("retries", 0),
                          rate_limited=c.get("rate_limited", 0), bad_replies=c.get("bad_replies", 0),
                          dead=c.get("dead", 0)),
        tokens=Tokens(prompt=c.get("prompt_tokens", 0), completion=c.get("completion_tokens", 0)),
        gate=GateCounts(accepted=c.get("accepted", 0),
                        rejected={k[9:]: v for k, v in c.items() if k.startswith("rejected.")},
                        reasons={k[7:]: v for k, v in c.items() if k.startswith("reason.")}),
        rates=Rates(requests=rps, tokens=tps, inputs=ips) if active else Rates(),
        eta_s=t.eta() if t is not None and active else None,
        checkpoint_age_s=age, progress_line=t.line if t is not None else "", counters=c, scrubbed=job.scrubbed)


class Api:
    """The route handlers, over one supervisor and one path policy."""

    def __init__(self, sup: Supervisor, policy: PathPolicy, token: str | None) -> None:
        self.sup = sup
        self.policy = policy
        self.token = token
        self.started = time.monotonic()
        self.registry = metrics.registry(sup)

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._errors, self._auth], client_max_size=16 << 20)
        r = app.router
        r.add_post("/v1/jobs", self.submit)
        r.add_get("/v1/jobs", self.list)
        r.add_get("/v1/jobs/{id}", self.get)
        r.add_post("/v1/jobs/{id}/{action:pause|resume|cancel}", self.action)
        r.add_get("/healthz", self.health)
        r.add_get("/metrics", self.metrics)
        r.add_get("/openapi.json", self.openapi)
        return app

    @web.middleware
    async def _errors(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            return await handler(request)
        except ApiError as e:
            return _json(e.body, e.status)
        except web.HTTPException as e:
            if e.status >= 400:
                return _json({"error": e.reason}, e.status)
            raise
        except Exception:
            log.exception("request failed", extra={"fields": {"method": request.method, "path": request.path}})
            return _json({"error": "internal error; see the daemon's log"}, 500)

    @web.middleware
    async def _auth(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if self.token and request.path not in OPEN_PATHS:
            given = request.headers.get("Authorization", "").encode()
            if not hmac.compare_digest(given, f"Bearer {self.token}".encode()):
                resp = _json({"error": "missing or wrong bearer token"}, 401)
                resp.headers["WWW-Authenticate"] = 'Bearer realm="persona"'
                return resp
        return await handler(request)

    def _job(self, request: web.Request) -> Job:
        job = self.sup.jobs.get(request.match_info["id"])
        if job is None:
            raise ApiError(404, f"no job {request.match_info['id']!r}")
        return job

    async def submit(self, request: web.Request) -> web.Response:
        try:
            req = msgspec.json.decode(await request.read(), type=SubmitRequest)
        except (msgspec.DecodeError, msgspec.ValidationError) as e:
            raise ApiError(400, f"bad request body: {e}") from None
        job = self._create(req)
        self.sup.add(job)
        self.sup.step()
        return _json(view(self.sup, job), 201)

    def _create(self, req: SubmitRequest) -> Job:
        """Check the request and write the job's folder (config.toml); raises ApiError naming the fault."""
        job_id = new_id()
        d = self.sup.store.dir(job_id)
        p = prepare(req, self.policy, d / "out")
        for other in self.sup.jobs.values():
            if other.output == p.output and other.state in (*ACTIVE, "paused", "failed"):
                raise ApiError(409, f"output {p.output} belongs to job {other.id} ({other.state})", path=p.output)
        out = Path(p.output)
        empty = not out.exists() or not any(out.iterdir())
        d.mkdir(parents=True)
        (d / "config.toml").write_text(tomlw.dumps(p.doc), encoding="utf-8")
        return Job(id=job_id, name=req.name, weight=req.weight, inputs=p.inputs, output=p.output,
                   output_was_empty=empty, created_at=time.time(), scrubbed=p.scrubbed, secret_envs=p.secret_envs)

    async def list(self, request: web.Request) -> web.Response:
        jobs = sorted(self.sup.jobs.values(), key=lambda j: j.created_at)
        return _json(JobList(jobs=[view(self.sup, j) for j in jobs]))

    async def get(self, request: web.Request) -> web.Response:
        return _json(view(self.sup, self._job(request)))

    async def action(self, request: web.Request) -> web.Response:
        job = self._job(request)
        action = request.match_info["action"]
        try:
            getattr(self.sup, action)(job)
        except Conflict as e:
            raise ApiError(409, str(e)) from None
        log.info(f"job {action}", extra={"fields": {"job": job.id, "state": job.state}})
        self.sup.step()
        return _json(view(self.sup, job))

    async def health(self, request: web.Request) -> web.Response:
        jobs = {s: n for s in STATES if (n := self.sup.count(s))}
        return _json(Health(uptime_s=time.monotonic() - self.started, jobs=jobs))

    async def metrics(self, request: web.Request) -> web.Response:
        return web.Response(body=metrics.render(self.registry), headers={"Content-Type": metrics.CONTENT_TYPE})

    async def openapi(self, request: web.Request) -> web.Response:
        return _json(openapi())
