from __future__ import annotations

import asyncio
import gc
import sys
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.core.cache import cache
from rest_framework.test import APIClient

from calls.models import ApiToken, Call, EndUserSession
from calls.principals import Principal
from tests.support.live_call import live_call  # noqa: F401  (a shared fixture)
from tests.support.live_server import Server, running_server
from tests.support.pages import playwright  # noqa: F401  (a shared fixture)
from tests.support.rest_client import bearer_client


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """`media`: tests on a bridged call of two real aiortc peers (`live_call`, seconds each);
    `make test-fast` leaves them to `make test`."""
    for item in items:
        if "live_call" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.media)


def pytest_configure() -> None:
    from django.conf import settings

    settings.STATIC_ROOT.mkdir(parents=True, exist_ok=True)  # WhiteNoise warns without it


def pytest_collection_finish() -> None:
    """What collection imported (Django, aiortc, numpy, hypothesis …) lives for the whole
    run: freeze it, so the collector no longer scans it on every full collection. Counting
    peer connections (tests/support/resources.py) collects garbage: 0.2 to 0.3 s a time before,
    about a millisecond after, and Python's own full collections get as cheap."""
    gc.collect()
    gc.freeze()


@pytest.fixture(autouse=True)
def _dump_stuck_tasks(request: pytest.FixtureRequest) -> Iterator[None]:
    """Shortly before pytest-timeout fails a stuck test, print every pending asyncio task's
    stack: its thread dump alone only shows an event loop waiting in select()."""
    timeout = float(request.config.getini("timeout") or 120)
    timer = threading.Timer(max(timeout - 10, 1), _dump_pending_tasks)
    timer.daemon = True
    timer.start()
    yield
    timer.cancel()


def _dump_pending_tasks() -> None:
    def running_loops() -> list[asyncio.AbstractEventLoop]:
        loops = []
        for obj in gc.get_objects():
            try:
                if isinstance(obj, asyncio.AbstractEventLoop) and obj.is_running():
                    loops.append(obj)
            except ReferenceError:  # a dead weak proxy
                continue
        return loops

    def print_tasks() -> None:
        for task in asyncio.all_tasks():
            print(f"--- pending task {task.get_name()}", file=sys.stderr)
            task.print_stack(file=sys.stderr)

    for loop in running_loops():
        loop.call_soon_threadsafe(print_tasks)


@pytest.fixture(autouse=True)
def _plain_static_storage(settings: Any) -> None:
    # The manifest storage needs `collectstatic`; tests render templates without it.
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }


@pytest.fixture(autouse=True)
def _fresh_rate_limits() -> None:
    from calls.consumers import throttle

    cache.clear()
    throttle.reset()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A real `manage.py serve` process with its own database (shared by a module)."""
    with running_server(tmp_path_factory.mktemp("callbridge-data")) as running:
        yield running


@pytest.fixture
async def asgi_app(settings: Any) -> Any:
    """The ASGI app with its background services (media worker, deadlines) in this loop."""
    from channels.layers import channel_layers

    from callbridge.asgi import application
    from calls.background import background_tasks

    settings.CALLBRIDGE_ICE_HOST_ADDRESSES = ["127.0.0.1"]
    settings.CALLBRIDGE_STUN_URLS = []
    background_tasks.ensure_started()
    yield application
    await background_tasks.stop()
    channel_layers.backends.clear()  # in-memory queues belong to this test's loop


@pytest.fixture
def staff_user(db: Any) -> Any:
    """A staff operator: in the Operators group (calls.operate_calls)."""
    from calls.operators import operators_group

    user = get_user_model().objects.create_user(
        username="alice", password="correct horse battery", is_staff=True
    )
    user.groups.add(operators_group())
    return user


@pytest.fixture
def supervisor_user(db: Any) -> Any:
    """A staff supervisor: in the Operators and the Supervisors groups."""
    from calls.operators import operators_group
    from calls.supervision import supervisors_group

    user = get_user_model().objects.create_user(
        username="sam", password="correct horse battery", is_staff=True
    )
    user.groups.add(operators_group(), supervisors_group())
    return user


@pytest.fixture
def superuser(db: Any) -> Any:
    return get_user_model().objects.create_superuser(
        username="root", password="correct horse battery"
    )


@pytest.fixture
def api_token(db: Any) -> tuple[ApiToken, str]:
    return ApiToken.create("crm-backend")


@pytest.fixture
def make_session(db: Any) -> Callable[..., tuple[EndUserSession, str]]:
    def make(display_name: str = "Ada", ttl_seconds: int = 3600) -> tuple[EndUserSession, str]:
        return EndUserSession.create(ttl_seconds=ttl_seconds, display_name=display_name)

    return make


@pytest.fixture
def operator_client(api_token: tuple[ApiToken, str]) -> APIClient:
    return bearer_client(api_token[1])


@pytest.fixture
def operator(api_token: tuple[ApiToken, str]) -> Principal:
    return Principal.for_api_token(api_token[0])


@pytest.fixture
def inbound_call(make_session: Callable[..., tuple[EndUserSession, str]]) -> Call:
    session, _ = make_session()
    return Call.start(by=Principal.end_user(session), mode="bridge", media_worker="embedded")
