"""A real `manage.py serve` (daphne) process on a free loopback port, for tests.

Starting and stopping processes is `callbridge.local_server`'s (bench/ uses it too); this
adds what tests need: HTTP helpers and a database migrated once per run."""

from __future__ import annotations

import atexit
import functools
import json
import os
import shutil
import tempfile
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from callbridge.local_server import LocalServer, manage, outside_environment, serving


class Server(LocalServer):
    """A test's server: its URL, environment, log and process, with HTTP helpers."""

    def request(
        self,
        method: str,
        path: str,
        token: str | None = None,
        body: Any = None,
        token_header: str = "Authorization",
    ) -> tuple[int, Any, dict[str, str]]:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.url + path, data=data, method=method)
        if token:
            bearer = token_header.lower() == "authorization"
            request.add_header(token_header, f"Bearer {token}" if bearer else token)
        if data is not None:
            request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                raw, status, headers = response.read(), response.status, dict(response.headers)
        except urllib.error.HTTPError as error:
            raw, status, headers = error.read(), error.code, dict(error.headers)
        kind = headers.get("Content-Type", "")
        whole_json = "json" in kind and "ndjson" not in kind  # JSON Lines stay text
        return status, json.loads(raw) if whole_json else raw.decode(), headers

    def wago(self, token: str, method: str, path: str, body: Any = None) -> Any:
        """A WaGo-style call (`token:` header); the JSON body of a successful answer."""
        status, answer, _ = self.request(method, path, token, body, token_header="token")
        assert 200 <= status < 300, answer
        return answer


@functools.cache
def prepared_data_dir() -> Path:
    """A data folder migrated and with collected static files, made once per test run:
    every server's starts as a copy (migrate + collectstatic cost ~5 s a server)."""
    template = Path(tempfile.mkdtemp(prefix="callbridge-template-"))
    atexit.register(shutil.rmtree, template, ignore_errors=True)
    env = outside_environment()
    env["CALLBRIDGE_DATA_DIR"] = str(template)
    # Side by side: one writes the database, the other the static folder (~2.5 s saved).
    with ThreadPoolExecutor(2) as both:
        done = [both.submit(manage, env, c, "--noinput") for c in ("migrate", "collectstatic")]
        for command in done:
            command.result()
    (template / "secret_key").unlink(missing_ok=True)  # each server makes its own
    return template


def link_or_copy(source: str, target: str) -> None:
    """Hard-link a static file (servers only read them), copying across file systems."""
    try:
        os.link(source, target)
    except FileExistsError:  # a restarted server's: already linked (or its own file)
        if not os.path.samefile(source, target):
            shutil.copy2(source, target)
    except OSError:
        shutil.copy2(source, target)


@contextmanager
def running_server(
    data_dir: Path, migrate: bool = True, serve_args: tuple[str, ...] = (), **extra_env: str
) -> Iterator[Server]:
    """Migrate a fresh database in `data_dir` and serve it until the block ends
    (`serve_args`: more options for `manage.py serve`)."""
    env = outside_environment()
    env.update(
        CALLBRIDGE_DATA_DIR=str(data_dir),
        CALLBRIDGE_RING_TIMEOUT_S="2",
        CALLBRIDGE_ICE_HOST_ADDRESSES="127.0.0.1",
        # Pages check their connection only when asked: a test measuring a call does not
        # want an echo call first (tests of the preflight turn it on).
        CALLBRIDGE_PREFLIGHT="on_demand",
    )
    env.update(extra_env)  # may override the defaults above
    running = Server.on_free_port(env, data_dir / "serve.log")
    template = prepared_data_dir()
    static = data_dir / "static"
    shutil.copytree(template / "static", static, copy_function=link_or_copy, dirs_exist_ok=True)
    fresh_sqlite = "DATABASE_URL" not in env and not (data_dir / "db.sqlite3").exists()
    if migrate and fresh_sqlite:
        shutil.copy2(template / "db.sqlite3", data_dir / "db.sqlite3")
    elif migrate:
        running.manage("migrate", "--noinput")
    with serving(running, serve_args) as served:
        yield served
