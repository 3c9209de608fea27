"""Webhook signatures: a real delivery from `unmark serve` verified by the client, and
the ways a forged or replayed one is refused."""

from __future__ import annotations

import http.server
import queue
import threading
import time

import pytest

from unmark_client import Client, webhooks


class Receiver:
    """An HTTP server on a free loopback port that keeps each POST's headers and body."""

    def __init__(self) -> None:
        self.deliveries: "queue.Queue[tuple[dict, bytes]]" = queue.Queue()
        deliveries = self.deliveries

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - the stdlib's name
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                deliveries.put(({k.lower(): v for k, v in self.headers.items()}, body))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.close()


def test_a_real_delivery_verifies_and_forgeries_do_not(unmark, case, receiver):
    key = unmark.create_key("py-hooks")
    client = Client(unmark.url, api_key=key.key)
    job = client.submit_watermark_job(case.image, case.mask, callback_url=receiver.url)
    client.wait(job.id, timeout=120)
    headers, body = receiver.deliveries.get(timeout=60)

    signature = headers[webhooks.SIGNATURE_HEADER.lower()]
    event = webhooks.parse(key.webhook_secret, body, signature)
    assert event["type"] == "job.succeeded"
    assert event["job"]["id"] == job.id and event["job"]["status"] == "succeeded"
    assert abs(webhooks.verify(key.webhook_secret, body, signature) - time.time()) < 120

    with pytest.raises(webhooks.InvalidSignature, match="does not match"):
        webhooks.verify(key.webhook_secret, body.replace(b"succeeded", b"failed"), signature)
    with pytest.raises(webhooks.InvalidSignature, match="does not match"):
        webhooks.verify("another-secret", body, signature)
    with pytest.raises(webhooks.InvalidSignature, match="old"):
        webhooks.verify(key.webhook_secret, body, signature, now=time.time() + 3600)
    with pytest.raises(webhooks.InvalidSignature, match="no Unmark-Signature"):
        webhooks.verify(key.webhook_secret, body, None)
    with pytest.raises(webhooks.InvalidSignature, match="no v1"):
        webhooks.verify(key.webhook_secret, body, signature.split(",")[0])

    # The job's record shows the delivery.
    record = client.job(job.id).raw
    assert record["webhook"]["state"] == "delivered", record


def test_sign_and_verify_agree():
    body = b'{"type":"job.failed","job":{"id":"x"}}'
    header = webhooks.sign("s3cret", body, 1_700_000_000)
    assert webhooks.verify("s3cret", body, header, tolerance=None) == 1_700_000_000
    assert webhooks.verify("s3cret", body, "v1=deadbeef," + header, tolerance=None)
    with pytest.raises(webhooks.InvalidSignature, match="whole number"):
        webhooks.verify("s3cret", body, "t=soon,v1=00")
