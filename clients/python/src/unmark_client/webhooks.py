"""Checking the signature of unmark's webhooks.

A job submitted with ``callback_url`` is POSTed there when it ends, as
``{"type": "job.succeeded" | "job.failed", "job": {...}}``, with the header
``Unmark-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>``, where
``secret`` is the webhook secret of the API key that submitted the job (printed once by
``unmark keys create``). A receiver checks the header over the raw body before it trusts the
JSON, and refuses old timestamps so that a captured delivery cannot be replayed later.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from typing import Any, Dict, Optional, Union

__all__ = ["SIGNATURE_HEADER", "InvalidSignature", "sign", "verify", "parse"]

SIGNATURE_HEADER = "Unmark-Signature"
"""The header that carries the signature."""


class InvalidSignature(ValueError):
    """The signature header is missing, malformed, stale or does not match the body."""


def sign(secret: str, body: bytes, timestamp: int) -> str:
    """The header value unmark sends for ``body`` at ``timestamp`` (for tests and proxies)."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


def verify(
    secret: str,
    body: bytes,
    header: Optional[str],
    *,
    tolerance: Optional[float] = 300.0,
    now: Optional[float] = None,
) -> int:
    """Checks ``header`` (the ``Unmark-Signature`` value) against the raw ``body``.

    Returns the signed timestamp. Raises :class:`InvalidSignature` when the header is
    missing or malformed, when no ``v1`` signature matches (compared in constant time), or
    when the timestamp is more than ``tolerance`` seconds from ``now`` (``None`` turns the
    age check off; retries of one delivery are signed anew, so a live receiver never needs
    that).
    """
    if not header:
        raise InvalidSignature(f"no {SIGNATURE_HEADER} header")
    timestamp: Optional[int] = None
    signatures = []
    for part in header.split(","):
        key, sep, value = part.strip().partition("=")
        if not sep:
            raise InvalidSignature(f"malformed {SIGNATURE_HEADER} part {part!r}")
        if key == "t":
            try:
                timestamp = int(value)
            except ValueError:
                raise InvalidSignature(f"timestamp {value!r} is not a whole number") from None
        elif key == "v1":
            signatures.append(value)
    if timestamp is None:
        raise InvalidSignature(f"{SIGNATURE_HEADER} has no t= timestamp")
    if not signatures:
        raise InvalidSignature(f"{SIGNATURE_HEADER} has no v1= signature")
    expected = sign(secret, body, timestamp).split("v1=", 1)[1]
    if not any(hmac.compare_digest(expected, s) for s in signatures):
        raise InvalidSignature("signature does not match the body and secret")
    if tolerance is not None:
        age = (time.time() if now is None else now) - timestamp
        if abs(age) > tolerance:
            raise InvalidSignature(
                f"signature is {age:.0f} s old; at most {tolerance:.0f} s is accepted"
            )
    return timestamp


def parse(
    secret: str,
    body: Union[bytes, str],
    header: Optional[str],
    *,
    tolerance: Optional[float] = 300.0,
) -> Dict[str, Any]:
    """Verifies a delivery and returns its JSON: ``{"type": ..., "job": {...}}``."""
    raw = body.encode() if isinstance(body, str) else body
    verify(secret, raw, header, tolerance=tolerance)
    event = json.loads(raw)
    if not isinstance(event, dict) or "type" not in event or "job" not in event:
        raise InvalidSignature("a signed body that is not an unmark webhook event")
    return event
