"""The HTTP client against a real `unmark serve`."""

from __future__ import annotations

import io
import os
import uuid

import pytest
from PIL import Image

from unmark_client import Client, JobEvent, errors


def pixels(data: bytes) -> Image.Image:
    return Image.open(io.BytesIO(data)).convert("RGB")


@pytest.fixture(scope="module")
def key(unmark):
    return unmark.create_key("py-http")


@pytest.fixture(scope="module")
def client(unmark, key):
    return Client(unmark.url, api_key=key.key, timeout=120)


def test_health_names_the_engines(client):
    health = client.health()
    assert health["status"] == "ok"
    assert "restore" in health["engines"]
    assert client.ready()["status"] == "ready"


def test_remove_watermark_keeps_every_pixel_outside_the_mask(client, case):
    result = client.remove_watermark(case.image, case.mask, format="png")
    assert result.content_type == "image/png"
    assert result.job_id and result.request_id
    assert result.credits_charged == 1
    assert result.quota_remaining is not None and result.quota_remaining < 1000
    out = pixels(result.content)
    before = Image.open(case.image).convert("RGB")
    mask = Image.open(case.mask).convert("L")
    assert out.size == before.size
    changed_inside = 0
    o, b = out.tobytes(), before.tobytes()
    for i, m in enumerate(mask.tobytes()):
        same = o[3 * i : 3 * i + 3] == b[3 * i : 3 * i + 3]
        if m > 127:
            changed_inside += not same
        else:
            assert same, f"pixel {i} outside the mask changed"
    assert changed_inside > 0, "nothing inside the mask was removed"


def test_inputs_may_be_bytes_paths_or_files(client, case):
    from_path = client.remove_watermark(str(case.image), str(case.mask), engine="telea")
    with open(case.image, "rb") as image, open(case.mask, "rb") as mask:
        from_files = client.remove_watermark(image, mask, engine="telea")
    from_bytes = client.remove_watermark(
        case.image.read_bytes(), case.mask.read_bytes(), engine="telea"
    )
    assert from_path.content == from_files.content == from_bytes.content


def test_without_a_mask_the_detector_answers_its_mask(client, case):
    result = client.remove_watermark(case.image, return_mask=True)
    assert result.content_type == "image/png"
    mask = Image.open(io.BytesIO(result.content))
    assert mask.mode == "L"
    assert mask.size == Image.open(case.image).size
    assert mask.getextrema()[1] == 255, "the detector found nothing on a marked photo"


def test_errors_are_mapped_from_problem_details(unmark, client, case):
    with pytest.raises(errors.UnsupportedMediaType) as e:
        client.remove_watermark(b"this is not an image", case.mask.read_bytes())
    assert e.value.status == 415
    assert e.value.slug == "unsupported-format"
    assert "recognised image format" in e.value.detail
    assert e.value.request_id

    small = io.BytesIO()
    Image.new("L", (16, 16), 255).save(small, "PNG")
    with pytest.raises(errors.BadRequest) as e:
        client.remove_watermark(case.image, small.getvalue())
    assert "16x16" in e.value.detail and e.value.slug == "mask-size-mismatch"

    with pytest.raises(errors.BadRequest) as e:
        client.remove_watermark(case.image, case.mask, radius=99)
    assert "radius" in e.value.detail

    with pytest.raises(errors.Unprocessable):
        client.remove_watermark(case.image.read_bytes()[:2000], case.mask)

    with pytest.raises(errors.Unauthorized) as e:
        Client(unmark.url, api_key="um_00000000_wrong").usage()
    assert e.value.status == 401

    with pytest.raises(errors.NotFound):
        client.job(str(uuid.uuid4()))

    with pytest.raises(errors.UnmarkError) as e:
        Client("http://127.0.0.1:9", api_key="x", timeout=5).health()
    assert e.value.status == 0


def test_a_job_reports_progress_and_its_result(client, case):
    job = client.submit_watermark_job(case.image, case.mask, format="png")
    assert job.status == "queued" and job.raw["events_url"].endswith("/events")
    seen: list[JobEvent] = []
    done = client.wait(job.id, timeout=120, on_event=seen.append)
    assert done.status == "succeeded", done.raw
    kinds = [e.type for e in seen]
    assert kinds[0] == "accepted" and kinds[-1] == "succeeded", kinds
    assert [e.stage for e in seen if e.type == "stage_done"] == [
        "decode",
        "prescale",
        "detect",
        "inpaint",
        "encode",
    ]
    assert [s["stage"] for s in done.stages] == ["decode", "prescale", "detect", "inpaint", "encode"]
    result = client.result(job.id)
    sync = client.remove_watermark(case.image, case.mask, format="png")
    assert result.content == sync.content


def test_a_failed_job_raises_its_reason(client, case):
    small = io.BytesIO()
    Image.new("L", (8, 8), 255).save(small, "PNG")
    job = client.submit_watermark_job(case.image, small.getvalue())
    with pytest.raises(errors.JobFailed) as e:
        client.wait_result(job.id, timeout=120)
    assert e.value.reason == "mask_size_mismatch" and e.value.stage == "detect"
    with pytest.raises(errors.BadRequest):
        client.result(job.id)


def test_a_json_job_runs_the_submit_request(client, case):
    import base64

    job = client.submit_json(
        {
            "pipeline": "remove-watermark",
            "params": {"engine": "telea"},
            "image": {"base64": base64.b64encode(case.image.read_bytes()).decode()},
            "mask": {"base64": base64.b64encode(case.mask.read_bytes()).decode()},
        }
    )
    assert client.wait_result(job.id, timeout=120).content_type == "image/png"
    with pytest.raises(errors.BadRequest) as e:
        client.submit_json({"pipeline": "no-such-pipeline", "image": {"base64": ""}})
    assert "pipeline" in e.value.detail


def test_background_removal(client, case):
    if not os.environ.get("UNMARK_TEST_ISNET"):
        with pytest.raises(errors.ServiceUnavailable) as e:
            client.remove_background(case.image)
        assert e.value.slug == "model-unavailable"
        return
    cut = client.remove_background(case.image)
    assert Image.open(io.BytesIO(cut.content)).mode == "RGBA"
    mask = client.remove_background(case.image, mode="mask")
    assert Image.open(io.BytesIO(mask.content)).mode == "L"
    white = client.remove_background(case.image, mode="composite", bg_color="#ffffff")
    assert Image.open(io.BytesIO(white.content)).mode == "RGB"
    job = client.submit_background_job(case.image, mode="mask")
    assert client.wait_result(job.id, timeout=120).content == mask.content
    with pytest.raises(errors.BadRequest) as e:
        client.remove_background(case.image, bg_color="not-a-colour")
    assert "bg_color" in e.value.detail


def test_usage_counts_what_was_charged(unmark, case):
    key = unmark.create_key("py-usage")
    client = Client(unmark.url, api_key=key.key)
    assert client.usage()["quota"]["used"] == 0
    client.remove_watermark(case.image, case.mask, engine="telea")
    with pytest.raises(errors.BadRequest):
        client.remove_watermark(case.image, case.mask, radius=0)  # failures are free
    usage = client.usage()
    assert usage["key_id"] == key.id and usage["plan"] == "pytest"
    assert usage["quota"]["used"] == 1 and usage["quota"]["limit"] == 1000
    with pytest.raises(errors.Forbidden):
        client.admin_usage()
    admin = Client(unmark.url, api_key=unmark.create_key("py-admin", admin=True).key)
    ids = [k["key_id"] for k in admin.admin_usage()["keys"]]
    assert key.id in ids


def test_an_exhausted_quota_is_its_own_error(unmark, case):
    client = Client(unmark.url, api_key=unmark.create_key("py-two", plan="two").key)
    for _ in range(2):
        client.remove_watermark(case.image, case.mask, engine="telea")
    with pytest.raises(errors.QuotaExceeded) as e:
        client.remove_watermark(case.image, case.mask, engine="telea")
    assert e.value.status == 429 and e.value.slug == "quota-exhausted"
    assert e.value.retry_after is not None and e.value.retry_after > 0
    assert isinstance(e.value, errors.RateLimited)


def test_an_idempotency_key_replays_without_a_second_charge(unmark, case):
    client = Client(unmark.url, api_key=unmark.create_key("py-idem").key)
    token = str(uuid.uuid4())
    first = client.remove_watermark(case.image, case.mask, idempotency_key=token)
    again = client.remove_watermark(case.image, case.mask, idempotency_key=token)
    assert not first.replayed and again.replayed
    assert again.content == first.content
    assert client.usage()["quota"]["used"] == 1
