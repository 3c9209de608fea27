"""The Python client of unmark, the self-hosted watermark and background removal service.

- :class:`Client`: the HTTP API (``remove_watermark``, ``remove_background``, asynchronous
  jobs with ``submit_*``, ``events``, ``wait`` and ``result``, ``usage``).
- :mod:`unmark_client.webhooks`: checks the ``Unmark-Signature`` of webhook deliveries.
- :mod:`unmark_client.errors`: one exception class per kind of error answer, read from the
  server's problem details.
- :mod:`unmark_client.nats`: submitting jobs over NATS (``pip install unmark-client[nats]``).

>>> from unmark_client import Client                              # doctest: +SKIP
>>> client = Client("http://127.0.0.1:8080", api_key="um_...")    # doctest: +SKIP
>>> client.remove_watermark("photo.jpg", mask="mask.png").save("clean.png")  # doctest: +SKIP
"""

from . import errors, webhooks
from .client import Client, ImageInput, PluginStep
from .errors import JobFailed, UnmarkError
from .types import Job, JobEvent, Result

__all__ = [
    "Client",
    "ImageInput",
    "PluginStep",
    "Job",
    "JobEvent",
    "Result",
    "UnmarkError",
    "JobFailed",
    "errors",
    "webhooks",
]

__version__ = "0.1.0"
