"""A small synchronous client of the job API (standard library HTTP), for the CLI and scripts."""

from __future__ import annotations

import os
import urllib.error
import urllib.parse
import urllib.request
from typing import Any, TypeVar

import msgspec

from engine.service.api import JobList, JobView, SubmitRequest
from engine.service.settings import DEFAULT_PORT

T = TypeVar("T")
DEFAULT_URL = f"http://127.0.0.1:{DEFAULT_PORT}"


class ServiceError(Exception):
    """Raised when the daemon cannot be reached or answers with an error (its message kept)."""

    def __init__(self, message: str, status: int | None = None) -> None:
        self.status = status
        super().__init__(message)


class Client:
    """Talks to one daemon: URL from the argument, else $PERSONA_URL; token from $PERSONA_TOKEN."""

    def __init__(self, url: str | None = None, token: str | None = None, timeout: float = 30.0) -> None:
        self.url = (url or os.environ.get("PERSONA_URL") or DEFAULT_URL).rstrip("/")
        self.token = token if token is not None else os.environ.get("PERSONA_TOKEN") or None
        self.timeout = timeout
        host = urllib.parse.urlsplit(self.url).hostname or ""
        # a proxy from the environment must not carry local calls (or the token) elsewhere
        handlers = [urllib.request.ProxyHandler({})] if host in ("127.0.0.1", "::1", "localhost") else []
        self._open = urllib.request.build_opener(*handlers).open

    def _call(self, method: str, path: str, body: Any = None, type: type[T] | None = None) -> Any:
        data = msgspec.json.encode(body) if body is not None else None
        req = urllib.request.Request(self.url + path, data=data, method=method)
        if data is not None:
            req.add_header("Content-Type", "application/json")
        if self.token:
            req.add_header("Authorization", f"Bearer {self.token}")
        try:
            with self._open(req, timeout=self.timeout) as resp:
                raw = resp.read()
        except urllib.error.HTTPError as e:
            raw = e.read()
            try:
                msg = msgspec.json.decode(raw).get("error") or raw.decode()
            except (msgspec.DecodeError, AttributeError):
                msg = raw.decode("utf-8", "replace")[:500] or e.reason
            raise ServiceError(f"{msg} (HTTP {e.code})", e.code) from None
        except (urllib.error.URLError, OSError) as e:
            reason = getattr(e, "reason", e)
            raise ServiceError(f"cannot reach the daemon at {self.url}: {reason}; is `persona serve` running? "
                               "(set --url or PERSONA_URL)") from None
        return msgspec.json.decode(raw, type=type) if type is not None else msgspec.json.decode(raw)

    def submit(self, req: SubmitRequest) -> JobView:
        return self._call("POST", "/v1/jobs", req, JobView)  # type: ignore[no-any-return]

    def jobs(self) -> list[JobView]:
        return self._call("GET", "/v1/jobs", type=JobList).jobs  # type: ignore[no-any-return]

    def job(self, job_id: str) -> JobView:
        return self._call("GET", f"/v1/jobs/{job_id}", type=JobView)  # type: ignore[no-any-return]

    def action(self, job_id: str, action: str) -> JobView:
        return self._call("POST", f"/v1/jobs/{job_id}/{action}", type=JobView)  # type: ignore[no-any-return]

    def metrics(self) -> str:
        req = urllib.request.Request(self.url + "/metrics")
        if self.token:
            req.add_header("Authorization", f"Bearer {self.token}")
        with self._open(req, timeout=self.timeout) as resp:
            return resp.read().decode()  # type: ignore[no-any-return]
