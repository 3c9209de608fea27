"""The HTTP client of unmark's API (``/api/v1/...``)."""

from __future__ import annotations

import base64
import json
import os
import time
from typing import (
    IO,
    Any,
    Callable,
    Dict,
    Iterator,
    List,
    Mapping,
    Optional,
    Sequence,
    Tuple,
    Union,
)

import requests

from .errors import JobFailed, UnmarkError, WaitTimeout, from_response
from .types import Job, JobEvent, Result

__all__ = ["Client", "ImageInput", "PluginStep"]

ImageInput = Union[bytes, bytearray, str, "os.PathLike[str]", IO[bytes]]
"""An image: its bytes, a path to its file, or a binary file object."""

PluginStep = Union[str, Mapping[str, Any]]
"""A plugin step: ``"name@version"``, ``"name"`` (the newest), or
``{"plugin": "name@version", "params": {...}}``."""


def _read(image: ImageInput, default_name: str) -> Tuple[str, bytes]:
    """The file name and bytes of an image input."""
    if isinstance(image, (bytes, bytearray)):
        return default_name, bytes(image)
    if isinstance(image, (str, os.PathLike)):
        path = os.fspath(image)
        with open(path, "rb") as f:
            return os.path.basename(path), f.read()
    data = image.read()
    name = getattr(image, "name", None)
    return (os.path.basename(name) if isinstance(name, str) else default_name), data


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        return json.dumps(value)
    return str(value)


def _steps(value: Union[PluginStep, Sequence[PluginStep], None]) -> Optional[str]:
    """Plugin steps as the form field takes them (a name, or JSON)."""
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, Mapping):
        return json.dumps(value)
    return json.dumps([{"plugin": s} if isinstance(s, str) else dict(s) for s in value])


class Client:
    """A client of one unmark server.

    >>> client = Client("http://127.0.0.1:8080", api_key="um_...")   # doctest: +SKIP
    >>> client.remove_watermark("photo.jpg").save("clean.png")      # doctest: +SKIP

    Every method raises a subclass of :class:`~unmark_client.errors.UnmarkError` for an error
    answer, carrying the server's status, problem type, message and request id.
    """

    def __init__(
        self,
        base_url: str = "http://127.0.0.1:8080",
        api_key: Optional[str] = None,
        *,
        timeout: float = 300.0,
        session: Optional[requests.Session] = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.api_key = api_key if api_key is not None else os.environ.get("UNMARK_API_KEY")
        self.timeout = timeout
        self.session = session or requests.Session()

    # --- plumbing -------------------------------------------------------------------------

    def _headers(self, extra: Optional[Mapping[str, str]] = None) -> Dict[str, str]:
        headers = {"User-Agent": "unmark-client-python/0.1"}
        if self.api_key:
            headers["X-API-Key"] = self.api_key
        headers.update(extra or {})
        return headers

    def _request(
        self,
        method: str,
        path: str,
        *,
        headers: Optional[Mapping[str, str]] = None,
        idempotency_key: Optional[str] = None,
        stream: bool = False,
        timeout: Optional[float] = None,
        **kwargs: Any,
    ) -> requests.Response:
        extra = dict(headers or {})
        if idempotency_key:
            extra["Idempotency-Key"] = idempotency_key
        try:
            response = self.session.request(
                method,
                self.base_url + path,
                headers=self._headers(extra),
                timeout=self.timeout if timeout is None else timeout,
                stream=stream,
                **kwargs,
            )
        except requests.RequestException as e:
            raise UnmarkError(f"cannot reach {self.base_url}: {e}") from e
        if response.status_code >= 400:
            raise from_response(response.status_code, response.headers, response.content)
        return response

    def _json(self, method: str, path: str, **kwargs: Any) -> Dict[str, Any]:
        response = self._request(method, path, **kwargs)
        try:
            body = response.json()
        except ValueError as e:
            raise UnmarkError(
                f"{method} {path} answered {response.status_code} without JSON",
                status=response.status_code,
            ) from e
        if not isinstance(body, dict):
            raise UnmarkError(f"{method} {path} answered JSON that is not an object")
        return body

    def _post_image(
        self,
        path: str,
        files: List[Tuple[str, Tuple[Optional[str], Union[bytes, str]]]],
        idempotency_key: Optional[str],
        on_event: Optional[Callable[[JobEvent], None]],
    ) -> Result:
        """POSTs a form to a synchronous endpoint and returns its image; a 202 (the job
        outlived the server's wait) is followed to its end."""
        response = self._request("POST", path, files=files, idempotency_key=idempotency_key)
        if response.status_code == 202:
            job = Job.from_json(response.json())
            return self.wait_result(job.id, on_event=on_event)
        return Result.from_http(response.content, response.headers)

    # --- service --------------------------------------------------------------------------

    def health(self) -> Dict[str, Any]:
        """``GET /api/v1/health``: version, engines and the default engine."""
        return self._json("GET", "/api/v1/health")

    def ready(self) -> Dict[str, Any]:
        """``GET /api/v1/ready``: whether the broker, database and blob store answer."""
        try:
            response = self.session.get(self.base_url + "/api/v1/ready", timeout=self.timeout)
            body = response.json()
        except (requests.RequestException, ValueError) as e:
            raise UnmarkError(f"cannot read {self.base_url}/api/v1/ready: {e}") from e
        return dict(body)

    # --- removal --------------------------------------------------------------------------

    def remove_watermark(
        self,
        image: ImageInput,
        mask: Optional[ImageInput] = None,
        *,
        engine: Optional[str] = None,
        radius: Optional[int] = None,
        mask_dilate: Optional[int] = None,
        threshold: Optional[float] = None,
        return_mask: bool = False,
        format: Optional[str] = None,
        quality: Optional[int] = None,
        work_max_side: Optional[int] = None,
        keep_metadata: Optional[bool] = None,
        profile: Optional[str] = None,
        pre: Union[PluginStep, Sequence[PluginStep], None] = None,
        detector: Optional[PluginStep] = None,
        post: Union[PluginStep, Sequence[PluginStep], None] = None,
        idempotency_key: Optional[str] = None,
        on_event: Optional[Callable[[JobEvent], None]] = None,
    ) -> Result:
        """``POST /api/v1/remove-watermark``: the image with its watermark removed.

        Without ``mask`` (and without ``profile`` or ``detector``) the server's detector
        finds the mark; ``return_mask=True`` answers with the mask it removed instead.
        A job that outlives the server's synchronous wait is followed to its end
        (``on_event`` sees its events).
        """
        fields: Dict[str, Any] = {
            "engine": engine,
            "radius": radius,
            "mask_dilate": mask_dilate,
            "threshold": threshold,
            "return": "mask" if return_mask else None,
            "format": format,
            "quality": quality,
            "work_max_side": work_max_side,
            "keep_metadata": keep_metadata,
            "profile": profile,
            "pre": _steps(pre),
            "detector": _steps(detector),
            "post": _steps(post),
        }
        return self._post_image(
            "/api/v1/remove-watermark",
            self._form(fields, image=image, mask=mask),
            idempotency_key,
            on_event,
        )

    def remove_background(
        self,
        image: ImageInput,
        *,
        mode: Optional[str] = None,
        bg_color: Optional[str] = None,
        bg_blur: Optional[int] = None,
        bg_image: Optional[ImageInput] = None,
        crop: Optional[bool] = None,
        crop_margin: Optional[int] = None,
        post_process_mask: Optional[bool] = None,
        alpha_matting: Optional[bool] = None,
        foreground_threshold: Optional[int] = None,
        background_threshold: Optional[int] = None,
        erode_size: Optional[int] = None,
        decontaminate: Optional[bool] = None,
        keep_alpha: Optional[bool] = None,
        format: Optional[str] = None,
        work_max_side: Optional[int] = None,
        idempotency_key: Optional[str] = None,
        on_event: Optional[Callable[[JobEvent], None]] = None,
    ) -> Result:
        """``POST /api/v1/remove-background``: the cut-out (``mode="rgba"``), the alpha
        (``"mask"``) or the subject over a new background (``"composite"``)."""
        fields = {
            "mode": mode,
            "bg_color": bg_color,
            "bg_blur": bg_blur,
            "crop": crop,
            "crop_margin": crop_margin,
            "post_process_mask": post_process_mask,
            "alpha_matting": alpha_matting,
            "foreground_threshold": foreground_threshold,
            "background_threshold": background_threshold,
            "erode_size": erode_size,
            "decontaminate": decontaminate,
            "keep_alpha": keep_alpha,
            "format": format,
            "work_max_side": work_max_side,
        }
        return self._post_image(
            "/api/v1/remove-background",
            self._form(fields, image=image, bg_image=bg_image),
            idempotency_key,
            on_event,
        )

    @staticmethod
    def _form(
        fields: Mapping[str, Any], **images: Optional[ImageInput]
    ) -> List[Tuple[str, Tuple[Optional[str], Union[bytes, str]]]]:
        """Multipart parts: the images as files, every set field as text."""
        parts: List[Tuple[str, Tuple[Optional[str], Union[bytes, str]]]] = []
        for name, value in images.items():
            if value is not None:
                filename, data = _read(value, name)
                parts.append((name, (filename, data)))
        for name, value in fields.items():
            if value is not None:
                parts.append((name, (None, _text(value))))
        return parts

    # --- asynchronous jobs ----------------------------------------------------------------

    def submit_watermark_job(
        self,
        image: ImageInput,
        mask: Optional[ImageInput] = None,
        *,
        callback_url: Optional[str] = None,
        idempotency_key: Optional[str] = None,
        **params: Any,
    ) -> Job:
        """``POST /api/v1/jobs`` (multipart): starts a watermark removal and returns at once.

        ``params`` are the fields of :meth:`remove_watermark` (``engine``, ``radius``...).
        """
        if params.pop("return_mask", False):
            params["return"] = "mask"
        for name in ("pre", "detector", "post"):
            if name in params:
                params[name] = _steps(params[name])
        params["callback_url"] = callback_url
        files = self._form(params, image=image, mask=mask)
        return Job.from_json(
            self._json("POST", "/api/v1/jobs", files=files, idempotency_key=idempotency_key)
        )

    def submit_background_job(
        self,
        image: ImageInput,
        *,
        bg_image: Optional[ImageInput] = None,
        callback_url: Optional[str] = None,
        idempotency_key: Optional[str] = None,
        **background: Any,
    ) -> Job:
        """``POST /api/v1/jobs`` (JSON): starts a background removal; ``background`` holds
        the settings of :meth:`remove_background` (``mode``, ``bg_color``...)."""
        request: Dict[str, Any] = {
            "pipeline": "remove-background",
            "image": {"base64": base64.b64encode(_read(image, "image")[1]).decode()},
        }
        if background:
            request["background"] = background
        if bg_image is not None:
            request["bg_image"] = {"base64": base64.b64encode(_read(bg_image, "bg")[1]).decode()}
        if callback_url:
            request["callback_url"] = callback_url
        return self.submit_json(request, idempotency_key=idempotency_key)

    def submit_json(
        self, request: Mapping[str, Any], *, idempotency_key: Optional[str] = None
    ) -> Job:
        """``POST /api/v1/jobs`` with a ``SubmitRequest`` (``schemas/json/submit-request.json``),
        the same JSON a NATS client publishes on ``unmark.jobs.submit``."""
        return Job.from_json(
            self._json("POST", "/api/v1/jobs", json=request, idempotency_key=idempotency_key)
        )

    def job(self, job_id: str) -> Job:
        """``GET /api/v1/jobs/{id}``: the job's record."""
        return Job.from_json(self._json("GET", f"/api/v1/jobs/{job_id}"))

    def events(self, job_id: str, *, timeout: Optional[float] = None) -> Iterator[JobEvent]:
        """``GET /api/v1/jobs/{id}/events``: the job's events as they happen, history first;
        the iterator ends after the terminal event. ``timeout`` bounds the wait for each
        chunk of the stream."""
        response = self._request(
            "GET",
            f"/api/v1/jobs/{job_id}/events",
            headers={"Accept": "text/event-stream"},
            stream=True,
            timeout=timeout,
        )
        with response:
            yield from _server_sent_events(response.iter_lines(decode_unicode=True))

    def wait(
        self,
        job_id: str,
        *,
        timeout: Optional[float] = None,
        on_event: Optional[Callable[[JobEvent], None]] = None,
    ) -> Job:
        """Follows the job's events until it ends and returns its final record.

        ``on_event`` is called with each event (progress: one ``stage_done`` per stage).
        Raises :class:`~unmark_client.errors.WaitTimeout` if it has not ended after
        ``timeout`` seconds; the job goes on on the server.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                raise WaitTimeout(f"job {job_id} has not ended after {timeout} s")
            try:
                for event in self.events(job_id, timeout=left):
                    if on_event is not None:
                        on_event(event)
                    if event.terminal:
                        return self._final(job_id)
            except UnmarkError as e:
                # The stream broke (a restarted gateway, a proxy's idle cut): the record
                # says whether the job ended meanwhile; else follow it again.
                if e.status:
                    raise
            except requests.RequestException:
                pass
            job = self.job(job_id)
            if job.done:
                return job
            time.sleep(0.2)

    def _final(self, job_id: str) -> Job:
        """The record once the terminal event is out: the record follows the events
        stream, so it may lag the event by a moment."""
        for _ in range(100):
            job = self.job(job_id)
            if job.done:
                return job
            time.sleep(0.05)
        return job

    def result(self, job_id: str) -> Result:
        """``GET /api/v1/jobs/{id}/result``: the finished image. A failed job raises the
        error it failed with; a running one :class:`~unmark_client.errors.Conflict`."""
        response = self._request("GET", f"/api/v1/jobs/{job_id}/result")
        return Result.from_http(response.content, response.headers)

    def wait_result(
        self,
        job_id: str,
        *,
        timeout: Optional[float] = None,
        on_event: Optional[Callable[[JobEvent], None]] = None,
    ) -> Result:
        """:meth:`wait`, then :meth:`result`; a failed job raises
        :class:`~unmark_client.errors.JobFailed`."""
        job = self.wait(job_id, timeout=timeout, on_event=on_event)
        if job.status == "failed":
            error = job.error or {}
            raise JobFailed(
                job_id,
                str(error.get("reason", "internal")),
                str(error.get("message", "the job failed")),
                error.get("stage"),
            )
        return self.result(job_id)

    # --- accounts -------------------------------------------------------------------------

    def usage(self) -> Dict[str, Any]:
        """``GET /api/v1/usage``: this key's plan, quota and usage history."""
        return self._json("GET", "/api/v1/usage")

    def admin_usage(self) -> Dict[str, Any]:
        """``GET /api/v1/admin/usage``: every key's usage (an admin key)."""
        return self._json("GET", "/api/v1/admin/usage")


def _server_sent_events(lines: Iterator[str]) -> Iterator[JobEvent]:
    """Job events from the lines of a ``text/event-stream`` (comments and keep-alives are
    skipped; an event ends at a blank line)."""
    data: List[str] = []
    for line in lines:
        if line is None:
            continue
        if line == "":
            if data:
                event = JobEvent.from_json(json.loads("\n".join(data)))
                data = []
                yield event
                if event.terminal:
                    return
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        if name == "data":
            data.append(value[1:] if value.startswith(" ") else value)
