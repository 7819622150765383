"""The job API's request and response types (msgspec), and the OpenAPI document built from them."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec

from engine import __version__

JobState = Literal["queued", "running", "pausing", "paused", "cancelling", "cancelled", "finished", "failed"]
ACTIVE = ("queued", "running", "pausing", "cancelling")
STATES: tuple[str, ...] = ("queued", "running", "pausing", "paused", "cancelling", "cancelled", "finished",
                           "failed")


class _Doc(msgspec.Struct, kw_only=True):
    pass  # answers accept unknown fields, so an older client can read a newer daemon


class SubmitRequest(_Doc, kw_only=True, forbid_unknown_fields=True):
    """A job: a persona config (TOML text) and its inputs; paths must lie under the daemon's roots."""

    config: Annotated[str, msgspec.Meta(description="config.toml text; endpoints name env vars, never keys")]
    inputs: list[str] = []  # [] = the config's run.inputs; relative paths are taken against base_dir
    output: str | None = None  # output directory; None = STATE_DIR/jobs/ID/out
    weight: Annotated[float, msgspec.Meta(gt=0, le=1000)] = 1.0  # share of each endpoint against other jobs
    name: Annotated[str, msgspec.Meta(max_length=200)] = ""
    base_dir: str | None = None  # relative paths (here and inside the config) resolve here; None = first root


class Requests(_Doc, kw_only=True):
    """Requests to LLM endpoints, by outcome."""

    sent: int = 0
    ok: int = 0
    retries: int = 0
    rate_limited: int = 0
    bad_replies: int = 0
    dead: int = 0


class Tokens(_Doc, kw_only=True):
    prompt: int = 0
    completion: int = 0


class GateCounts(_Doc, kw_only=True):
    """Personas the gate accepted, and rejections by stage and by `stage.reason`."""

    accepted: int = 0
    rejected: dict[str, int] = {}
    reasons: dict[str, int] = {}


class Rates(_Doc, kw_only=True):
    """Per-second rates over the last minute of samples."""

    requests: float = 0.0
    tokens: float = 0.0
    inputs: float = 0.0


class JobView(_Doc, kw_only=True):
    """A job's state, progress, rates, token counts, errors, gate counts and ETA."""

    id: str
    name: str = ""
    state: JobState
    weight: float = 1.0
    inputs: list[str] = []
    output: str = ""
    created_at: float = 0.0
    started_at: float | None = None
    finished_at: float | None = None
    exit_code: int | None = None
    error: str = ""
    launches: int = 0
    concurrency: dict[str, int] = {}  # max in flight given to this job, by endpoint name
    inputs_done: int = 0
    inputs_total: int | None = None
    in_flight: int = 0
    requests: Requests = msgspec.field(default_factory=Requests)
    tokens: Tokens = msgspec.field(default_factory=Tokens)
    gate: GateCounts = msgspec.field(default_factory=GateCounts)
    rates: Rates = msgspec.field(default_factory=Rates)
    eta_s: float | None = None
    checkpoint_age_s: float | None = None
    progress_line: str = ""  # the same line `persona run --progress log` prints
    counters: dict[str, int] = {}
    scrubbed: list[str] = []  # config keys removed because they looked like secrets (values never kept)


class JobList(_Doc, kw_only=True):
    jobs: list[JobView]


class Health(_Doc, kw_only=True):
    status: Literal["ok"] = "ok"
    version: str = __version__
    uptime_s: float = 0.0
    jobs: dict[str, int] = {}


class ErrorBody(_Doc, kw_only=True):
    """Every 4xx/5xx answer: what went wrong, and the path or config key it concerns."""

    error: str
    path: str | None = None
    key: str | None = None


class ApiError(Exception):
    """Raised by handlers for a 4xx/5xx answer; the server turns it into an `ErrorBody`."""

    def __init__(self, status: int, message: str, *, path: str | None = None, key: str | None = None) -> None:
        self.status = status
        self.body = ErrorBody(error=message, path=path, key=key)
        super().__init__(message)


_ROUTES: list[tuple[str, str, str, Any, dict[int, Any]]] = [
    ("/v1/jobs", "post", "Submit a job", SubmitRequest, {201: JobView}),
    ("/v1/jobs", "get", "List jobs", None, {200: JobList}),
    ("/v1/jobs/{id}", "get", "A job's status", None, {200: JobView}),
    ("/v1/jobs/{id}/pause", "post", "Pause (the job checkpoints and stops)", None, {200: JobView}),
    ("/v1/jobs/{id}/resume", "post", "Resume from the checkpoint", None, {200: JobView}),
    ("/v1/jobs/{id}/cancel", "post", "Cancel (outputs so far are kept)", None, {200: JobView}),
    ("/healthz", "get", "Liveness (no token needed)", None, {200: Health}),
]


def openapi() -> dict[str, Any]:
    """The OpenAPI 3.1 document; every schema comes from the msgspec types above."""
    types = [SubmitRequest, JobView, JobList, Health, ErrorBody]
    refs, components = msgspec.json.schema_components(types, ref_template="#/components/schemas/{name}")
    ref = dict(zip(types, refs, strict=True))
    err = {"description": "error", "content": {"application/json": {"schema": ref[ErrorBody]}}}
    paths: dict[str, dict[str, Any]] = {}
    for path, method, summary, body, answers in _ROUTES:
        op: dict[str, Any] = {"summary": summary, "responses": {
            str(code): {"description": "ok", "content": {"application/json": {"schema": ref[t]}}}
            for code, t in answers.items()}}
        if path != "/healthz":
            op["responses"].update({"400": err, "401": err, "403": err, "404": err, "409": err})
            op["security"] = [{"bearer": []}]
        if "{id}" in path:
            op["parameters"] = [{"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}]
        if body is not None:
            op["requestBody"] = {"required": True, "content": {"application/json": {"schema": ref[body]}}}
        paths.setdefault(path, {})[method] = op
    paths["/metrics"] = {"get": {"summary": "Prometheus metrics (text exposition format)", "security": [{"bearer": []}],
                                 "responses": {"200": {"description": "metrics",
                                                       "content": {"text/plain": {"schema": {"type": "string"}}}}}}}
    return {
        "openapi": "3.1.0",
        "info": {"title": "persona-engine daemon", "version": __version__},
        "paths": paths,
        "components": {"schemas": components,
                       "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
    }
