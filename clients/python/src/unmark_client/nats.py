"""Submitting jobs over NATS and following their events (needs ``nats-py``:
``pip install unmark-client[nats]``).

A gateway started with ``--nats URL`` answers ``unmark.jobs.submit`` (request/reply) and
publishes each job's events on ``unmark.events.<id>`` in the JetStream stream
``UNMARK_EVENTS`` (``docs/nats.md``). The result is a key in unmark's blob store; any HTTP
client can also fetch it from ``GET /api/v1/jobs/<id>/result``.

>>> async def main():                                              # doctest: +SKIP
...     async with await NatsClient.connect("nats://127.0.0.1:4222") as client:
...         job = await client.submit_watermark(open("photo.png", "rb").read())
...         done = await client.wait(job.id)
...         print(done.data["result"]["key"])
"""

from __future__ import annotations

import asyncio
import base64
import json
from dataclasses import dataclass
from typing import Any, AsyncGenerator, Callable, Dict, Mapping, Optional

from .errors import JobFailed, UnmarkError, WaitTimeout
from .types import JobEvent

try:
    import nats as _nats
except ImportError as e:  # pragma: no cover - depends on the installation
    raise ImportError(
        "unmark_client.nats needs nats-py: pip install 'unmark-client[nats]'"
    ) from e

__all__ = ["SUBMIT_SUBJECT", "Accepted", "Rejected", "NatsClient", "events_subject"]

SUBMIT_SUBJECT = "unmark.jobs.submit"
"""The request/reply subject that takes a ``SubmitRequest``."""


def events_subject(job_id: str) -> str:
    """The subject of one job's events."""
    return f"unmark.events.{job_id}"


@dataclass(frozen=True)
class Accepted:
    """A submission the gateway accepted (``schemas/json/submit-reply.json``)."""

    id: str
    events_subject: str


class Rejected(UnmarkError):
    """A submission the gateway refused before starting anything; ``reason`` is
    machine-readable (``invalid_parameter``, ``too_large``...)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message, slug=reason)
        self.reason = reason

    def __str__(self) -> str:
        return f"rejected ({self.reason}): {self.detail}"


def _inline(data: bytes) -> Dict[str, str]:
    return {"base64": base64.b64encode(data).decode()}


class NatsClient:
    """A NATS connection that submits unmark jobs and follows them."""

    def __init__(self, connection: Any, *, request_timeout: float = 10.0) -> None:
        self.nc = connection
        self.request_timeout = request_timeout

    @classmethod
    async def connect(cls, url: str = "nats://127.0.0.1:4222", **options: Any) -> "NatsClient":
        """Connects to ``url`` (``options`` go to ``nats.connect``)."""
        return cls(await _nats.connect(url, **options))

    async def close(self) -> None:
        """Drains and closes the connection."""
        await self.nc.drain()

    async def __aenter__(self) -> "NatsClient":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()

    async def submit(self, request: Mapping[str, Any]) -> Accepted:
        """Publishes a ``SubmitRequest`` and waits for the reply; raises :class:`Rejected`."""
        message = await self.nc.request(
            SUBMIT_SUBJECT, json.dumps(request).encode(), timeout=self.request_timeout
        )
        reply = json.loads(message.data)
        if reply.get("status") != "accepted":
            raise Rejected(str(reply.get("reason", "unknown")), str(reply.get("message", "")))
        return Accepted(id=str(reply["id"]), events_subject=str(reply["events_subject"]))

    async def submit_watermark(
        self,
        image: bytes,
        mask: Optional[bytes] = None,
        *,
        callback_url: Optional[str] = None,
        **params: Any,
    ) -> Accepted:
        """Submits a watermark removal with inline inputs; ``params`` as in the HTTP form
        (``engine``, ``radius``, ``format``...)."""
        request: Dict[str, Any] = {"pipeline": "remove-watermark", "image": _inline(image)}
        if mask is not None:
            request["mask"] = _inline(mask)
        if params:
            request["params"] = params
        if callback_url:
            request["callback_url"] = callback_url
        return await self.submit(request)

    async def submit_background(
        self, image: bytes, *, bg_image: Optional[bytes] = None, **background: Any
    ) -> Accepted:
        """Submits a background removal; ``background`` as in the HTTP form (``mode``...)."""
        request: Dict[str, Any] = {"pipeline": "remove-background", "image": _inline(image)}
        if background:
            request["background"] = background
        if bg_image is not None:
            request["bg_image"] = _inline(bg_image)
        return await self.submit(request)

    async def events(
        self, job_id: str, *, timeout: float = 60.0
    ) -> AsyncGenerator[JobEvent, None]:
        """The job's events from the start of its history, ending after the terminal one.

        ``timeout`` bounds the wait for each event; when it passes,
        :class:`~unmark_client.errors.WaitTimeout` is raised.
        """
        js = self.nc.jetstream()
        subscription = await js.subscribe(events_subject(job_id), ordered_consumer=True)
        try:
            while True:
                try:
                    message = await subscription.next_msg(timeout=timeout)
                except (asyncio.TimeoutError, _nats.errors.TimeoutError):
                    raise WaitTimeout(f"no event of job {job_id} for {timeout} s") from None
                event = JobEvent.from_json(json.loads(message.data))
                yield event
                if event.terminal:
                    return
        finally:
            try:
                await subscription.unsubscribe()
            except (_nats.errors.ConnectionClosedError, _nats.errors.ConnectionDrainingError):
                pass  # the connection is going away, and its subscriptions with it

    async def wait(
        self,
        job_id: str,
        *,
        timeout: float = 60.0,
        on_event: Optional[Callable[[JobEvent], None]] = None,
    ) -> JobEvent:
        """Follows the job to its end and returns the ``succeeded`` event; a failed job
        raises :class:`~unmark_client.errors.JobFailed`."""
        events = self.events(job_id, timeout=timeout)
        try:
            async for event in events:
                if on_event is not None:
                    on_event(event)
                if event.type == "failed":
                    raise JobFailed(
                        job_id,
                        str(event.data.get("reason", "internal")),
                        str(event.data.get("message", "")),
                        event.stage,
                    )
                if event.type == "succeeded":
                    return event
        finally:
            # Unsubscribe now, while the connection is open, not when the generator is
            # collected.
            await events.aclose()
        raise WaitTimeout(f"the events of job {job_id} ended without a terminal event")
