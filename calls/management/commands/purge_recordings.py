"""Delete recording files older than the retention period; keep a tombstone of each."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand
from django.utils import timezone

from calls import transcripts
from calls.models import Recording, RecordingState
from calls.recordings import recordings_dir


class Command(BaseCommand):
    help = (
        "Delete the files of recordings that ended more than CALLBRIDGE_RECORDING_RETENTION_DAYS "
        "ago. The record stays (hash, size, consents) with when and why the file was deleted; "
        "its transcript's words are deleted with it (a tombstone stays)."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--dry-run", action="store_true", help="only list what would go")

    def handle(self, *args: Any, **options: Any) -> None:
        days = settings.CALLBRIDGE_RECORDING_RETENTION_DAYS
        if days == 0:
            self.stdout.write(
                "Retention is off (CALLBRIDGE_RECORDING_RETENTION_DAYS=0): nothing to do."
            )
            return
        expired = Recording.objects.filter(
            state__in=[RecordingState.FINISHED, RecordingState.FAILED],
            ended_at__lt=timezone.now() - timedelta(days=days),
            purged_at=None,
        )
        reason = f"retention: older than {days} days"
        count = 0
        for recording in expired:
            count += 1
            if options["dry_run"]:
                self.stdout.write(f"would delete {recording.file_name}")
                continue
            # Its transcript's words go first: none outlives the audio they came from.
            transcripts.purge_with_recording(recording, reason)
            (recordings_dir() / recording.file_name).unlink(missing_ok=True)
            Recording.objects.filter(pk=recording.pk).update(
                purged_at=timezone.now(), purge_reason=reason
            )
        verb = "Would delete" if options["dry_run"] else "Deleted"
        self.stdout.write(f"{verb} {count} recording file(s) ({reason}).")
