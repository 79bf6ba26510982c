"""What users install works, not only this checkout: the wheel is built, installed into a new
virtual environment, and its ``ctxlog`` answers ``--version`` and serves ``/healthz``.

Offline on purpose: the wheel is built without build isolation (setuptools comes from the test
extras), and the new environment finds ctxlog's dependencies through a ``.pth`` line naming
this environment's site-packages. A ``.pth`` line only adds a directory to ``sys.path``; the
``.pth`` files inside it (this checkout's editable install) are not run, so ``api``,
``projections`` and ``eventstore`` can only come from the wheel.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import sysconfig
import zipfile
from importlib import metadata
from pathlib import Path

import aiohttp
import pytest

from tests.support.server_process import ROOT, ServerProcess

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    build = tmp_path_factory.mktemp("build")
    # From a copy of the sources: setuptools builds in the source tree, and a build/ left
    # there by an earlier build could carry modules that no longer exist into the wheel.
    source = build / "source"
    shutil.copytree(
        ROOT,
        source,
        ignore=shutil.ignore_patterns(
            ".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", ".*_cache", "*.db*"
        ),
    )
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
         "--quiet", "--disable-pip-version-check", "-w", str(out), str(source)],
        check=True,
        cwd=build,
        env={"PATH": "/usr/bin:/bin", "HOME": str(build), "TMPDIR": str(build)},
    )  # fmt: skip
    (found,) = out.glob("ctxlog-*.whl")
    return found


@pytest.fixture(scope="module")
def installed(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    venv = tmp_path_factory.mktemp("venv")
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps",
         "--no-index", "--quiet", "--disable-pip-version-check", str(wheel)],
        check=True,
    )  # fmt: skip
    purelib = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    deps = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    (Path(purelib) / "ctxlog_test_deps.pth").write_text("\n".join(sorted(deps)) + "\n")
    return venv


def test_the_wheel_holds_every_package_and_marker(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    packages = sorted(
        str(init.parent.relative_to(ROOT))
        for top in ("api", "projections", "eventstore")
        for init in (ROOT / top).rglob("__init__.py")
    )
    assert {"api", "api/mcp", "api/rest", "api/rest/schemas", "api/cli"} <= set(packages)
    for package in packages:
        assert f"{package}/__init__.py" in names, package
        modules = {str(p.relative_to(ROOT)) for p in (ROOT / package).glob("*.py")}
        assert modules <= names, modules - names
    for top in ("api", "projections", "eventstore"):
        assert f"{top}/py.typed" in names
    # The web view's page and assets are package data.
    static = {str(p.relative_to(ROOT)) for p in (ROOT / "api/web/static").iterdir()}
    assert "api/web/static/index.html" in static
    assert static <= names, static - names


def test_the_installed_command_reports_its_version(installed: Path, tmp_path: Path) -> None:
    ctxlog = installed / "bin" / "ctxlog"
    done = subprocess.run(
        [str(ctxlog), "--version"], check=True, capture_output=True, text=True, cwd=tmp_path
    )
    assert done.stdout.strip() == f"ctxlog {metadata.version('ctxlog')}"
    where = subprocess.run(
        [str(installed / "bin" / "python"), "-c", "import api.mcp, api.cli; print(api.__file__)"],
        check=True,
        capture_output=True,
        text=True,
        cwd=tmp_path,
    ).stdout.strip()
    assert where.startswith(str(installed)), where


async def test_the_installed_server_serves(installed: Path, tmp_path: Path) -> None:
    server = ServerProcess(
        tmp_path / "installed.db", command=[str(installed / "bin" / "ctxlog")], cwd=tmp_path
    )
    server.start()
    try:
        await server.ready()
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{server.url}/healthz") as r:
                assert r.status == 200
                assert (await r.json())["status"] == "ok"
            headers = {"X-API-Key": "key-alice"}
            async with http.post(f"{server.url}/api/v1/contexts", json={}, headers=headers) as r:
                assert r.status == 201
            init = {
                "jsonrpc": "2.0",
                "id": 1,
                "method": "initialize",
                "params": {
                    "protocolVersion": "2025-11-25",
                    "capabilities": {},
                    "clientInfo": {"name": "packaging-test", "version": "1"},
                },
            }
            accept = {"Accept": "application/json, text/event-stream"}
            async with http.post(
                f"{server.url}/mcp", json=init, headers={**headers, **accept}
            ) as r:
                assert r.status == 200
                assert (await r.json())["result"]["serverInfo"]["name"] == "ctxlog"
            # The web view, from the installed package's data.
            async with http.get(f"{server.url}/ui") as r:
                assert r.status == 200
                assert "/ui/assets/app.js" in await r.text()
                assert "script-src 'self'" in r.headers["Content-Security-Policy"]
            static = ROOT / "api" / "web" / "static"
            for name in ("app.js", "app.css", "timeline.js"):
                async with http.get(f"{server.url}/ui/assets/{name}") as r:
                    assert r.status == 200, name
                    assert await r.read() == (static / name).read_bytes()
    finally:
        assert server.stop() == 0
