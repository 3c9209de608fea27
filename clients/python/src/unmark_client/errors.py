"""Errors raised by the client, one class per kind of answer.

The server answers every error as RFC 9457 problem details (`application/problem+json`):
``{"type": "urn:unmark:problem:<slug>", "title": ..., "status": ..., "detail": ...,
"request_id": ...}``. :func:`from_response` turns such an answer into the matching
:class:`UnmarkError` subclass, so a caller can catch ``QuotaExceeded`` or ``RateLimited``
rather than compare status codes.
"""

from __future__ import annotations

from typing import Any, Dict, Mapping, Optional, Type

__all__ = [
    "UnmarkError",
    "BadRequest",
    "Unauthorized",
    "Forbidden",
    "NotFound",
    "Conflict",
    "Gone",
    "PayloadTooLarge",
    "UnsupportedMediaType",
    "Unprocessable",
    "RateLimited",
    "QuotaExceeded",
    "ServiceUnavailable",
    "GatewayTimeout",
    "ServerError",
    "JobFailed",
    "WaitTimeout",
    "from_response",
]


class UnmarkError(Exception):
    """An error answer from unmark, or a failure to reach it.

    ``status`` is the HTTP status (0 when there was no answer), ``slug`` the last part of
    the problem's ``type`` (``"invalid-parameter"``, ``"too-large"``...), ``detail`` the
    server's precise message and ``request_id`` the id to quote in a bug report.
    """

    status: int
    slug: Optional[str]
    detail: str
    request_id: Optional[str]
    headers: Dict[str, str]

    def __init__(
        self,
        detail: str,
        *,
        status: int = 0,
        slug: Optional[str] = None,
        title: Optional[str] = None,
        request_id: Optional[str] = None,
        headers: Optional[Mapping[str, str]] = None,
        problem: Optional[Mapping[str, Any]] = None,
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        self.status = status
        self.slug = slug
        self.title = title
        self.request_id = request_id
        self.headers = dict(headers or {})
        self.problem = dict(problem or {})

    def __str__(self) -> str:
        where = f" (request {self.request_id})" if self.request_id else ""
        return f"{self.status} {self.slug or self.title or 'error'}: {self.detail}{where}"


class BadRequest(UnmarkError):
    """400: a malformed or out-of-range parameter, a missing part, a mask of another size."""


class Unauthorized(UnmarkError):
    """401: no API key, or a wrong or revoked one."""


class Forbidden(UnmarkError):
    """403: the key may not use this endpoint (an admin endpoint with a plain key)."""


class NotFound(UnmarkError):
    """404: no such job, profile, plugin or endpoint."""


class Conflict(UnmarkError):
    """409: the job is still running, or an idempotent twin is being answered."""


class Gone(UnmarkError):
    """410: the result expired or was already returned."""


class PayloadTooLarge(UnmarkError):
    """413: the body, a file or the image's megapixels are over a limit."""


class UnsupportedMediaType(UnmarkError):
    """415: not an image format unmark reads, or not a body it accepts."""


class Unprocessable(UnmarkError):
    """422: a truncated or corrupt image, a plugin that failed, a profile that does not fit."""


class RateLimited(UnmarkError):
    """429: a rate limit or the key's concurrency cap; ``retry_after`` is in seconds."""

    @property
    def retry_after(self) -> Optional[float]:
        value = self.headers.get("retry-after")
        try:
            return float(value) if value is not None else None
        except ValueError:
            return None


class QuotaExceeded(RateLimited):
    """429 because the plan's quota for this period is used up."""


class ServiceUnavailable(UnmarkError):
    """503: the service is busy for this plan, or a model is not installed."""


class GatewayTimeout(UnmarkError):
    """504: the job made no progress for too long and was failed."""


class ServerError(UnmarkError):
    """Any other 5xx: a fault of the server; ``request_id`` names it in the server's log."""


class JobFailed(UnmarkError):
    """An asynchronous job ended as ``failed``; ``reason`` is its machine-readable reason."""

    def __init__(self, job_id: str, reason: str, message: str, stage: Optional[str] = None):
        super().__init__(message, slug=reason)
        self.job_id = job_id
        self.reason = reason
        self.stage = stage

    def __str__(self) -> str:
        at = f" in {self.stage}" if self.stage else ""
        return f"job {self.job_id} failed{at} ({self.reason}): {self.detail}"


class WaitTimeout(UnmarkError):
    """The job did not end within the time the caller allowed; it goes on on the server."""


_BY_STATUS: Dict[int, Type[UnmarkError]] = {
    400: BadRequest,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    410: Gone,
    413: PayloadTooLarge,
    415: UnsupportedMediaType,
    422: Unprocessable,
    429: RateLimited,
    503: ServiceUnavailable,
    504: GatewayTimeout,
}


def from_response(status: int, headers: Mapping[str, str], body: bytes) -> UnmarkError:
    """The error for an answer with an error status, read from its problem details.

    An answer that is not problem+json (a proxy's page, say) still gets the class of its
    status, with the start of its body as the detail.
    """
    import json

    lowered = {k.lower(): v for k, v in headers.items()}
    problem: Dict[str, Any] = {}
    if "json" in lowered.get("content-type", ""):
        try:
            parsed = json.loads(body)
            if isinstance(parsed, dict):
                problem = parsed
        except ValueError:
            problem = {}
    detail = str(problem.get("detail") or body[:200].decode("utf-8", "replace") or "no detail")
    kind = str(problem.get("type") or "")
    slug = kind.rsplit(":", 1)[-1] if kind else None
    cls = _BY_STATUS.get(status, ServerError if status >= 500 else UnmarkError)
    if status == 429 and slug == "quota-exhausted":
        cls = QuotaExceeded
    return cls(
        detail,
        status=status,
        slug=slug,
        title=problem.get("title"),
        request_id=problem.get("request_id") or lowered.get("x-request-id"),
        headers=lowered,
        problem=problem,
    )
