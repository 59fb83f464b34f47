"""Serve callbridge with daphne and start its background services when the server starts."""

from __future__ import annotations

import asyncio
import sqlite3
from typing import Any

from daphne.access import AccessLogGenerator
from daphne.cli import CommandLineInterface
from daphne.server import Server
from django.conf import settings
from django.core.management.base import BaseCommand
from django.db import connections
from twisted.internet import reactor
from twisted.internet.defer import Deferred

from callbridge.private_files import secure_data_directories
from callbridge.redaction import path_only, redact
from calls import loop_lag
from calls.background import background_tasks
from calls.workers.reconcile import reconcile_at_startup

# What `--proxy-headers` means when CALLBRIDGE_TRUSTED_PROXIES is empty: the proxy runs on
# this host (the documented nginx set-up).
LOOPBACK_PROXIES = ["127.0.0.1", "::1"]

LISTEN_BACKLOG = 1024  # connections the kernel queues before daphne accepts them

# After the services stop, how long the sockets' consumers get to send what the stop
# published (calls ended with `server_restart`) before daphne cancels them.
EVENTS_FLUSH_S = 0.5


def start_services() -> None:
    """Start the services on daphne's loop (they are stopped by ServerWithServices)."""
    loop = asyncio.get_event_loop()  # daphne sets its asyncio reactor's loop before this
    background_tasks.ensure_started(loop)
    loop_lag.start_from_env(loop)  # benchmarks only (bench/): off unless its env var is set


async def stop_services() -> None:
    """Close every peer connection, finalize recordings, end the calls; let the sockets
    tell their clients."""
    await background_tasks.stop()
    await asyncio.sleep(EVENTS_FLUSH_S)


def finish_leftover_tasks(loop: asyncio.AbstractEventLoop) -> None:
    """Cancel what daphne left pending (WebSocket application instances and their channel
    receives) and let it finish, as asyncio.run does. A coroutine still suspended when
    Python finalizes is closed by the garbage collector with half its modules gone, which
    crashes CPython 3.11 (segfault in asyncio.Queue.get's cleanup)."""
    if loop.is_closed():
        return
    leftovers = asyncio.all_tasks(loop)
    for task in leftovers:
        task.cancel()
    loop.run_until_complete(asyncio.gather(*leftovers, return_exceptions=True))
    loop.run_until_complete(loop.shutdown_asyncgens())


def reconcile_embedded_calls() -> None:
    """Before listening: end the calls a killed previous run left open (calls.workers.reconcile).

    Only in the embedded set-up (in-memory channel layer): this process is then the only
    one that ever served those calls. With shared workers, worker liveness decides."""
    if settings.REDIS_URL:
        return
    reconcile_at_startup(settings.CALLBRIDGE_MEDIA_WORKER_NAME)
    connections.close_all()  # daphne's threads open their own


def hold_sqlite_open() -> sqlite3.Connection | None:
    """Keep one SQLite connection in the WAL while serving.

    Django opens and closes a connection around every request and every consumer database
    call (CONN_MAX_AGE=0, and ASGI runs each request in a fresh thread). Whenever the last
    connection closes, SQLite checkpoints the WAL into the database, fsyncs and deletes it:
    ~15 ms each time here, in the one thread every consumer's database work goes through
    (measured: 16 ms per open/write/close alone, 1 ms with a connection held). Held open,
    WAL checkpoints every 1000 pages instead, as designed."""
    database = settings.DATABASES["default"]
    if database["ENGINE"] != "django.db.backends.sqlite3":
        return None
    held = sqlite3.connect(database["NAME"], check_same_thread=False)
    held.execute("SELECT count(*) FROM sqlite_master").fetchone()  # joins the WAL
    return held


class PathOnlyAccessLog(AccessLogGenerator):
    """daphne's access log without query strings: the end-user page's URL carries its
    session token (`/talk/?token=`), and the log goes to stdout, files and journald."""

    def __call__(self, protocol: str, action: str, details: dict[str, Any]) -> None:
        if "path" in details:
            details = {**details, "path": redact(path_only(str(details["path"])))}
        super().__call__(protocol, action, details)


def silence_twisted_access_log(server: Server) -> None:
    """Twisted's HTTP factory keeps an access log of its own (full URIs, query strings
    included) in the Twisted log, which daphne hands to Python logging at verbosity >= 2.
    PathOnlyAccessLog is the one access log."""
    server.http_factory.log = lambda request: None


class ServerWithServices(Server):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # Daphne calls ready_callable just before its reactor runs.
        kwargs["ready_callable"] = self._ready
        logger = kwargs.get("action_logger")
        if isinstance(logger, AccessLogGenerator):
            kwargs["action_logger"] = PathOnlyAccessLog(logger.stream)
        super().__init__(*args, **kwargs)

    def _ready(self) -> None:
        silence_twisted_access_log(self)
        start_services()

    def kill_all_applications(self) -> Deferred:
        """Daphne's first step at shutdown (SIGTERM/SIGINT) cancels every socket's consumer;
        stop the services before it, while the sockets can still say how calls ended."""
        stopped = Deferred.fromFuture(
            asyncio.ensure_future(stop_services(), loop=asyncio.get_event_loop())
        )
        stopped.addBoth(lambda _: super(ServerWithServices, self).kill_all_applications())
        return stopped


class Command(BaseCommand):
    help = "Serve HTTP and WebSockets with daphne (ring timer and other services included)."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--bind", "-b", default="127.0.0.1", help="address to listen on")
        parser.add_argument("--port", "-p", type=int, default=8000)
        parser.add_argument(
            "--endpoint",
            "-e",
            action="append",
            default=[],
            help="extra Twisted endpoint, e.g. ssl:8443:privateKey=key.pem:certKey=cert.pem",
        )
        parser.add_argument(
            "--proxy-headers",
            action="store_true",
            help="the reverse proxy in front runs on this host: shorthand for "
            "CALLBRIDGE_TRUSTED_PROXIES=127.0.0.1,::1 when that setting is empty",
        )
        parser.add_argument(
            "--access-log",
            default=None,
            help="file for the access log ('-' = stdout, the default at verbosity >= 1); "
            "paths are logged without query strings",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        # The TCP endpoint daphne's --bind/--port would make, with a listen backlog for a
        # burst of clients (Twisted's default, 50, reset connections when 200 callers
        # reconnected at once; the kernel caps it at net.core.somaxconn).
        interface = options["bind"].strip("[]").replace(":", r"\:")
        argv = [
            "--endpoint",
            f"tcp:port={int(options['port'])}:interface={interface}:backlog={LISTEN_BACKLOG}",
        ]
        for endpoint in options["endpoint"]:
            argv += ["--endpoint", endpoint]
        # Never daphne's --proxy-headers: it believes the left-most, client-written
        # X-Forwarded-For. callbridge.client_address applies the trust model instead.
        if options["proxy_headers"] and not settings.CALLBRIDGE_TRUSTED_PROXIES:
            settings.CALLBRIDGE_TRUSTED_PROXIES = LOOPBACK_PROXIES
        if settings.CALLBRIDGE_TRUSTED_PROXIES:
            self.stdout.write(
                "client addresses from X-Forwarded-For sent by trusted proxies: "
                + ", ".join(settings.CALLBRIDGE_TRUSTED_PROXIES)
            )
        if options["access_log"]:
            argv += ["--access-log", options["access_log"]]
        argv += ["-v", str(options["verbosity"]), "callbridge.asgi:application"]
        secure_data_directories()
        reconcile_embedded_calls()
        held = hold_sqlite_open()
        loop = type(reactor._asyncioEventloop).__module__.split(".")[0]
        self.stdout.write(
            f"callbridge serving on http://{options['bind']}:{options['port']}/ ({loop} loop)"
        )
        cli = CommandLineInterface()
        cli.server_class = ServerWithServices
        cli.run(argv)
        finish_leftover_tasks(asyncio.get_event_loop())
        if held is not None:
            held.close()
