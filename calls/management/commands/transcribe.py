"""Transcribe the recordings waiting for a transcript, now, in this process's host slots
(the background task does the same on every serving process; this is for cron-style
deployments, a backlog, or a check that the extra and its model work here)."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from calls.media.transcribe import unavailable_reason
from calls.transcriber import run_pending


class Command(BaseCommand):
    help = (
        "Transcribe finished recordings that wait for a transcript (CALLBRIDGE_TRANSCRIBE "
        "must be on; needs the callbridge[transcribe] extra)."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--limit", type=int, default=None, help="at most this many jobs")

    def handle(self, *args: Any, **options: Any) -> None:
        if not settings.CALLBRIDGE_TRANSCRIBE:
            raise CommandError("transcripts are off: set CALLBRIDGE_TRANSCRIBE=true")
        reason = unavailable_reason()
        if reason is not None:
            raise CommandError(f"this host cannot transcribe: {reason}")
        count = run_pending(limit=options["limit"])
        self.stdout.write(f"Ran {count} transcript job(s).")
