"""Settings come from the environment and fail loudly on bad values."""

from __future__ import annotations

import os
import re
import secrets
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured

from callbridge.env import env_bool, env_int, env_list, env_rate, load_dotenv
from tests.support.settings_process import run_with_env, settings_in_subprocess

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize(
    ("reader", "value"),
    [
        (lambda e: env_bool("X", False, environ=e), "maybe"),
        (lambda e: env_int("X", 1, environ=e), "ten"),
        (lambda e: env_int("X", 1, minimum=1, environ=e), "0"),
        (lambda e: env_rate("X", "1/min", environ=e), "lots"),
    ],
)
def test_it_fails_loudly_on_bad_values(
    reader: Callable[[dict[str, str]], object], value: str
) -> None:
    with pytest.raises(ImproperlyConfigured, match="X="):
        reader({"X": value})


def test_it_reads_values_and_defaults() -> None:
    assert env_bool("X", True, environ={}) is True
    assert env_bool("X", False, environ={"X": "yes"}) is True
    assert env_int("X", 7, environ={"X": " 12 "}) == 12
    assert env_list("X", environ={"X": "a, b,,c"}) == ["a", "b", "c"]
    assert env_rate("X", "5/s", environ={}) == "5/s"


def test_it_loads_a_dotenv_file_without_overriding_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CB_TEST_KEEP", "from-env")
    monkeypatch.delenv("CB_TEST_NEW", raising=False)
    dotenv = tmp_path / ".env"
    dotenv.write_text('# comment\nCB_TEST_KEEP=from-file\nexport CB_TEST_NEW="quoted value"\n')
    load_dotenv(dotenv)
    assert os.environ["CB_TEST_KEEP"] == "from-env"
    assert os.environ["CB_TEST_NEW"] == "quoted value"
    monkeypatch.delenv("CB_TEST_NEW")
    dotenv.write_text("this line is wrong\n")
    with pytest.raises(ImproperlyConfigured, match=":1:"):
        load_dotenv(dotenv)


def test_it_has_debug_off_and_embedded_backends_by_default() -> None:
    result = settings_in_subprocess(
        {}, "s.DEBUG, s.DATABASES['default']['ENGINE'], s.CHANNEL_LAYERS['default']['BACKEND']"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == (
        "False django.db.backends.sqlite3 callbridge.channel_layer.EmbeddedChannelLayer"
    )


def test_it_refuses_to_run_a_media_worker_process_without_redis() -> None:
    result = run_with_env({}, "manage.py", "mediaworker", "--name", "m1")
    assert result.returncode != 0
    assert "needs the Redis channel layer" in result.stderr


def test_it_selects_postgres_and_redis_from_urls() -> None:
    result = settings_in_subprocess(
        {
            "DATABASE_URL": "postgres://cb:pw@127.0.0.1:5432/cb",
            "REDIS_URL": "redis://127.0.0.1:6379/0",
        },
        "s.DATABASES['default']['ENGINE'], s.CHANNEL_LAYERS['default']['BACKEND']",
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [
        "django.db.backends.postgresql",
        "channels_redis.core.RedisChannelLayer",
    ]


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"CALLBRIDGE_TURN_URLS": "turn:t.example.com:3478"}, "go together"),
        ({"CALLBRIDGE_TURN_SECRET": "s"}, "go together"),
        ({"CALLBRIDGE_STUN_URLS": "stun.example.com"}, "not a stun"),
        ({"CALLBRIDGE_CLIENT_STUN_URLS": "turn:t.example.com"}, "CALLBRIDGE_CLIENT_STUN_URLS"),
        ({"CALLBRIDGE_RING_TIMEOUT_S": "soon"}, "CALLBRIDGE_RING_TIMEOUT_S"),
        ({"DEBUG": "perhaps"}, "DEBUG"),
        ({"CALLBRIDGE_SESSION_TTL_S": "999999999"}, "exceeds"),
        ({"CALLBRIDGE_EMBEDDED_MEDIA_WORKER": "false"}, "needs REDIS_URL"),
        ({"CALLBRIDGE_MEDIA_WORKER_TIMEOUT_S": "1"}, "CALLBRIDGE_MEDIA_WORKER_TIMEOUT_S"),
        ({"CALLBRIDGE_ICE_MAX_REMOTE_CANDIDATES": "0"}, "CALLBRIDGE_ICE_MAX_REMOTE_CANDIDATES"),
        ({"CALLBRIDGE_ICE_ALLOWED_NETWORKS": "10.0.0.0/8,lan"}, "not an IP address or network"),
        ({"CALLBRIDGE_TRUSTED_PROXIES": "nginx.internal"}, "CALLBRIDGE_TRUSTED_PROXIES"),
        ({"CALLBRIDGE_LOGIN_FAILURE_LIMIT": "0"}, "CALLBRIDGE_LOGIN_FAILURE_LIMIT"),
        ({"CALLBRIDGE_METRICS_TOKEN": "too-short"}, "at least 16 characters"),
        ({"CALLBRIDGE_METRICS_ALLOWED": "prometheus.lan"}, "not an IP address or network"),
        ({"PROMETHEUS_MULTIPROC_DIR": "/nonexistent/metrics"}, "is not a directory"),
        ({"CALLBRIDGE_EMBED_ORIGINS": "https://shop.example.com/page"}, "is not an origin"),
        ({"CALLBRIDGE_PREFLIGHT": "always"}, "CALLBRIDGE_PREFLIGHT"),
        ({"CALLBRIDGE_DEFAULT_LANGUAGE": "fr"}, "CALLBRIDGE_DEFAULT_LANGUAGE"),
    ],
)
def test_it_refuses_to_start_with_bad_configuration(env: dict[str, str], message: str) -> None:
    result = settings_in_subprocess(env, "'started'")
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr and message in result.stderr


def test_it_documents_every_variable_it_reads() -> None:
    source = (ROOT / "callbridge" / "settings.py").read_text()
    read = set(re.findall(r'env_\w+\(\s*"([A-Z0-9_]+)"', source))
    documented = set(re.findall(r"^([A-Z0-9_]+)=", (ROOT / ".env.example").read_text(), re.M))
    assert read, "no variables found: the pattern is stale"
    assert read - documented == set()
    assert documented - read == set()


def test_it_passes_the_deployment_checklist_with_production_settings() -> None:
    production = {
        "SECRET_KEY": secrets.token_urlsafe(50),
        "ALLOWED_HOSTS": "calls.example.com",
        "CALLBRIDGE_BEHIND_TLS_PROXY": "true",
        "SECURE_SSL_REDIRECT": "true",
        "SECURE_HSTS_SECONDS": "31536000",
        "SECURE_HSTS_INCLUDE_SUBDOMAINS": "true",
        "SECURE_HSTS_PRELOAD": "true",
    }
    result = run_with_env(production, "manage.py", "check", "--deploy", "--fail-level", "WARNING")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


async def test_it_delivers_bursts_to_every_socket_at_a_cost_independent_of_their_number() -> None:
    """The embedded channel layer (as configured) drops nothing from a burst larger than
    Channels' default capacity, and delivering a message does not cost more with more open
    sockets (Channels' in-memory layer sweeps every channel and group on every receive)."""
    from django.conf import settings

    from callbridge.channel_layer import EmbeddedChannelLayer

    config = settings.CHANNEL_LAYERS["default"]
    assert config["BACKEND"] == "callbridge.channel_layer.EmbeddedChannelLayer"

    async def seconds_per_message(idle_sockets: int) -> float:
        layer = EmbeddedChannelLayer(**config["CONFIG"])
        for _ in range(idle_sockets):
            await layer.group_add(f"session-{_}", await layer.new_channel())
        operators = [await layer.new_channel() for _ in range(10)]
        for channel in operators:
            await layer.group_add("operators", channel)
        started = time.perf_counter()
        for n in range(500):  # five times Channels' default capacity
            await layer.group_send("operators", {"type": "call.event", "n": n})
        for channel in operators:
            assert [(await layer.receive(channel))["n"] for _ in range(500)] == list(range(500))
        return (time.perf_counter() - started) / 5000

    few, many = await seconds_per_message(10), await seconds_per_message(2000)
    assert many < 3 * few, (few, many)  # Channels' own layer: about 50 times slower
