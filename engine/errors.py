"""The engine's one exception tree, split by whether a retry helps.

    PersonaError
    ├── ConfigError (ValueError)        bad config.toml, override or CLI value
    ├── InputError                      an input file is missing or unreadable
    ├── EndpointError                   a request to an LLM endpoint failed
    │   ├── RetryableError              429, 5xx, timeout, reset, truncated body
    │   │   └── RateLimited             429 (carries the server's Retry-After)
    │   └── FatalEndpointError          400/401/403/404, schema errors: retrying will not help
    ├── ReplyError (ValueError)         the model's reply cannot be parsed/validated
    ├── CheckpointError                 a checkpoint is corrupt or belongs to another config
    │   └── FingerprintMismatch
    └── ModelUnavailable                an embedded model package is missing

Third-party errors (aiohttp, OSError, msgspec) are translated once, at the layer edge.
"""

from __future__ import annotations


class PersonaError(Exception):
    """Base of every error the engine raises on purpose."""


class ConfigError(PersonaError, ValueError):
    """Raised when a config value is unknown, of the wrong type or impossible; names the key."""

    def __init__(self, key: str, reason: str, source: str = "") -> None:
        self.key = key
        self.reason = reason
        self.source = source
        where = f"{source}: " if source else ""
        super().__init__(f"{where}{key}: {reason}")


class InputError(PersonaError):
    """Raised when an input file is missing, unreadable or has a bad line (names file and line)."""


class EndpointError(PersonaError):
    """Raised when a request to an LLM endpoint fails; keeps the endpoint's own message."""

    retryable = False

    def __init__(self, message: str, *, status: int | None = None, body: str = "") -> None:
        self.status = status
        self.body = body[:2000]
        super().__init__(message)


class RetryableError(EndpointError):
    """Raised for failures that may pass on retry: 429, 5xx, timeouts, resets, truncated bodies."""

    retryable = True


class EndpointDrained(RetryableError):
    """Raised by `Lease.call` when its router member was taken out of service (breaker open) mid-request."""


class RateLimited(RetryableError):
    """Raised on HTTP 429; `retry_after` is the server's requested pause in seconds, if any."""

    def __init__(self, message: str, *, retry_after: float | None = None, body: str = "") -> None:
        super().__init__(message, status=429, body=body)
        self.retry_after = retry_after


class FatalEndpointError(EndpointError):
    """Raised for failures that retrying cannot fix: 400/401/403/404, invalid response schema."""


class ReplyError(PersonaError, ValueError):
    """Raised when a model reply cannot be parsed or validated; `raw` keeps the reply text."""

    def __init__(self, message: str, raw: str = "") -> None:
        self.raw = raw
        super().__init__(message)


class CheckpointError(PersonaError):
    """Raised when a checkpoint cannot be read or does not match the output files."""


class FingerprintMismatch(CheckpointError):
    """Raised when resuming with a config whose fingerprint differs from the checkpoint's."""


class ModelUnavailable(PersonaError):
    """Raised when an embedded model file or package is missing; says how to install it."""
