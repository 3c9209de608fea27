"""What the client returns: results, job records and job events."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional

__all__ = ["Result", "Job", "JobEvent", "TERMINAL_STATUSES"]

TERMINAL_STATUSES = frozenset({"succeeded", "failed"})
"""Job statuses after which nothing changes."""


@dataclass(frozen=True)
class Result:
    """A finished image (or mask) and what the server said about it."""

    content: bytes
    content_type: str
    job_id: Optional[str] = None
    request_id: Optional[str] = None
    processing_ms: Optional[float] = None
    credits_charged: Optional[int] = None
    quota_remaining: Optional[int] = None
    replayed: bool = False
    """True when an ``Idempotency-Key`` replayed the first answer (and charged nothing)."""

    def save(self, path: str) -> None:
        """Writes the bytes to ``path``."""
        with open(path, "wb") as f:
            f.write(self.content)

    @classmethod
    def from_http(cls, content: bytes, headers: Mapping[str, str]) -> "Result":
        h = {k.lower(): v for k, v in headers.items()}

        def number(name: str) -> Optional[float]:
            try:
                return float(h[name]) if name in h else None
            except ValueError:
                return None

        charged = number("x-credits-charged")
        remaining = number("x-quota-remaining")
        return cls(
            content=content,
            content_type=h.get("content-type", "application/octet-stream"),
            job_id=h.get("x-job-id"),
            request_id=h.get("x-request-id"),
            processing_ms=number("x-processing-ms"),
            credits_charged=None if charged is None else int(charged),
            quota_remaining=None if remaining is None else int(remaining),
            replayed=h.get("idempotent-replayed") == "true",
        )


@dataclass(frozen=True)
class Job:
    """A job record, as ``GET /api/v1/jobs/{id}`` shows it (``raw`` holds every field)."""

    id: str
    status: str
    pipeline: Optional[str] = None
    stages: List[Dict[str, Any]] = field(default_factory=list)
    error: Optional[Dict[str, Any]] = None
    result: Optional[Dict[str, Any]] = None
    raw: Dict[str, Any] = field(default_factory=dict)

    @property
    def done(self) -> bool:
        """True once the job has succeeded or failed."""
        return self.status in TERMINAL_STATUSES

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> "Job":
        return cls(
            id=str(body["id"]),
            status=str(body.get("status", "queued")),
            pipeline=body.get("pipeline"),
            stages=list(body.get("stages") or []),
            error=body.get("error"),
            result=body.get("result"),
            raw=dict(body),
        )


@dataclass(frozen=True)
class JobEvent:
    """One event of a job (``schemas/json/job-event.json``): ``accepted``, ``stage_done``,
    ``succeeded`` or ``failed``; ``data`` holds every field of the event."""

    type: str
    job_id: str
    data: Dict[str, Any]

    @property
    def terminal(self) -> bool:
        """True for the event that ends the job."""
        return self.type in TERMINAL_STATUSES

    @property
    def stage(self) -> Optional[str]:
        """The stage a ``stage_done`` or ``failed`` event names."""
        value = self.data.get("stage")
        return str(value) if value is not None else None

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> "JobEvent":
        return cls(type=str(body["type"]), job_id=str(body.get("job_id", "")), data=dict(body))
