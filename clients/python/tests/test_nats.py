"""The NATS helper against a real nats-server and an `unmark serve --nats` on it."""

from __future__ import annotations

import asyncio
import io

import pytest
from PIL import Image

from unmark_client import Client, JobEvent, errors
from unmark_client.nats import NatsClient, Rejected, events_subject


def run(coroutine):
    return asyncio.run(coroutine)


def test_submit_follow_and_fetch_over_nats(nats_unmark, case):
    async def scenario():
        async with await NatsClient.connect(nats_unmark.nats_url) as nc:
            with pytest.raises(Rejected) as e:
                await nc.submit_watermark(case.image.read_bytes(), case.mask.read_bytes(), radius=99)
            assert e.value.reason == "invalid_parameter" and "radius" in e.value.detail

            job = await nc.submit_watermark(
                case.image.read_bytes(), case.mask.read_bytes(), format="png"
            )
            assert job.events_subject == events_subject(job.id)
            seen: list[JobEvent] = []
            done = await nc.wait(job.id, on_event=seen.append)
            return job, done, seen

    job, done, seen = run(scenario())
    assert done.type == "succeeded" and done.data["content_type"] == "image/png"
    assert [e.type for e in seen].count("stage_done") == 5
    assert seen[0].type == "accepted"
    key = done.data["result"]["key"]
    # The result is in the gateway's blob store, and over HTTP (the server has no keys: open).
    blob = (nats_unmark.unmark.data / "blobs" / key).read_bytes()
    over_http = Client(nats_unmark.unmark.url).result(job.id).content
    assert blob == over_http
    assert Image.open(io.BytesIO(blob)).size == Image.open(case.image).size


def test_a_failed_job_over_nats_raises_its_reason(nats_unmark, case):
    small = io.BytesIO()
    Image.new("L", (8, 8), 255).save(small, "PNG")

    async def scenario():
        async with await NatsClient.connect(nats_unmark.nats_url) as nc:
            job = await nc.submit_watermark(case.image.read_bytes(), small.getvalue())
            await nc.wait(job.id)

    with pytest.raises(errors.JobFailed) as e:
        run(scenario())
    assert e.value.reason == "mask_size_mismatch"
    assert "8x8" in e.value.detail


def test_a_late_subscriber_sees_the_whole_history(nats_unmark, case):
    async def scenario():
        async with await NatsClient.connect(nats_unmark.nats_url) as nc:
            job = await nc.submit_watermark(case.image.read_bytes(), case.mask.read_bytes())
            await nc.wait(job.id)
            # Subscribing again after the end replays every event from the start.
            return [e.type async for e in nc.events(job.id)]

    kinds = run(scenario())
    assert kinds[0] == "accepted" and kinds[-1] == "succeeded" and len(kinds) == 7, kinds
