"""Serve callbridge with daphne and start its background services when the server starts."""

from __future__ import annotations

import asyncio
from typing import Any

from daphne.cli import CommandLineInterface
from daphne.server import Server
from django.core.management.base import BaseCommand

from calls.services import services


class ServerWithServices(Server):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # Daphne calls ready_callable with its asyncio loop set, just before it runs.
        kwargs["ready_callable"] = lambda: services.ensure_started(asyncio.get_event_loop())
        super().__init__(*args, **kwargs)


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
            help="trust X-Forwarded-For/-Proto from a reverse proxy in front",
        )
        parser.add_argument(
            "--access-log", default=None, help="file for the access log ('-' = stdout)"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        argv = ["--bind", options["bind"], "--port", str(options["port"])]
        for endpoint in options["endpoint"]:
            argv += ["--endpoint", endpoint]
        if options["proxy_headers"]:
            argv.append("--proxy-headers")
        if options["access_log"]:
            argv += ["--access-log", options["access_log"]]
        argv += ["-v", str(options["verbosity"]), "callbridge.asgi:application"]
        self.stdout.write(f"callbridge serving on http://{options['bind']}:{options['port']}/")
        cli = CommandLineInterface()
        cli.server_class = ServerWithServices
        cli.run(argv)
