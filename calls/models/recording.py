"""Recordings: one stereo WAV per recording, tied to the consents it relied on."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from django.conf import settings
from django.db import models, transaction
from django.utils import timezone

from calls.errors import CallStateError
from calls.models.audit_chain import ChainedModel
from calls.models.call import Call, CallState
from calls.models.consent import RecordingConsent
from calls.principals import Principal


class RecordingState(models.TextChoices):
    RECORDING = "recording"
    FINISHED = "finished"
    FAILED = "failed"


class StopReason(models.TextChoices):
    STOPPED = "stopped"
    HANGUP = "hangup"
    CONSENT_WITHDRAWN = "consent_withdrawn"
    SHUTDOWN = "shutdown"  # the server stopped; the worker finalized the file
    SERVER_RESTART = "server_restart"  # the server died; the file was repaired at its restart
    FAILED = "failed"
    MAX_DURATION = "max_duration"  # a voicemail reached its queue's longest message
    TRANSFERRED = "transferred"  # a new operator took the call (calls.transfer)


class RecordingKind(models.TextChoices):
    CALL = "call", "call (both parties)"
    VOICEMAIL = "voicemail", "voicemail (the caller's message)"


# A voicemail that stopped so is no message: it failed, or the caller took back the
# consent (the file keeps what came before, as any recording's; nobody is told of it).
UNSENT = frozenset({StopReason.FAILED, StopReason.CONSENT_WITHDRAWN})


class Recording(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    call = models.ForeignKey(Call, on_delete=models.PROTECT, related_name="recordings")
    kind = models.CharField(
        max_length=16, choices=RecordingKind.choices, default=RecordingKind.CALL, db_index=True
    )
    # A plain name inside MEDIA_ROOT/recordings/, chosen by the server (or a WaGo `Path`).
    file_name = models.CharField(max_length=200, unique=True)
    state = models.CharField(
        max_length=16, choices=RecordingState.choices, default=RecordingState.RECORDING
    )
    started_at = models.DateTimeField(default=timezone.now)
    # The wall-clock instant of the WAV's first sample, as the recorder measured it (the
    # file is on wall-clock time from there: a sample's instant is this + its offset).
    audio_started_at = models.DateTimeField(null=True, blank=True)
    ended_at = models.DateTimeField(null=True, blank=True)
    duration_s = models.FloatField("duration (s)", null=True, blank=True)
    size_bytes = models.BigIntegerField(null=True, blank=True)
    sha256 = models.CharField("SHA-256", max_length=64, blank=True)
    started_by = models.CharField(max_length=200)
    stopped_by = models.CharField(max_length=200, blank=True)
    stop_reason = models.CharField(max_length=32, choices=StopReason.choices, blank=True)
    consents = models.ManyToManyField(RecordingConsent, related_name="recordings", blank=True)
    # Tombstone: the file is gone (retention), the facts about it stay.
    purged_at = models.DateTimeField(null=True, blank=True)
    purge_reason = models.CharField(max_length=200, blank=True)

    class Meta:
        ordering = ["-started_at"]
        permissions = [("listen_recording", "Can listen to and download recordings")]
        constraints = [
            models.UniqueConstraint(
                fields=["call"],
                condition=models.Q(state="recording"),
                name="one_running_recording_per_call",
            )
        ]

    def __str__(self) -> str:
        return f"recording {str(self.pk)[:8]} of call {str(self.call_id)[:8]} ({self.state})"

    @classmethod
    def begin(
        cls,
        call: Call,
        by: Principal,
        file_name: str,
        recording_id: uuid.UUID | None = None,
        *,
        consents: Callable[[Call], list[RecordingConsent]],
    ) -> Recording:
        """Start a recording of an active call. `consents(call)` runs under the call's row
        lock (the lock every consent answer takes) on fresh rows: it returns the consents
        the policy relies on, or raises to refuse — so no withdrawal slips in between."""
        with transaction.atomic():
            locked = Call.objects.select_for_update().get(pk=call.pk)
            if locked.state != CallState.ACTIVE:
                raise CallStateError(f"only an active call can be recorded (it is {locked.state})")
            if locked.recordings.filter(state=RecordingState.RECORDING).exists():
                raise CallStateError("the call is already being recorded")
            relied_on = consents(locked)
            recording = cls.objects.create(
                id=recording_id or uuid.uuid4(),
                call=locked,
                file_name=file_name,
                started_by=by.label,
            )
            recording.consents.set(relied_on)
            locked.record_event(
                "recording.started",
                by,
                {"recordingID": str(recording.pk), "consents": [c.pk for c in relied_on]},
            )
        return recording

    def finish(self, *, reason: str, by: str, result: dict[str, Any]) -> None:
        """Record how it ended, with the file's facts measured by the recorder."""
        with transaction.atomic():
            call = Call.objects.select_for_update().get(pk=self.call_id)
            updated = Recording.objects.filter(pk=self.pk, state=RecordingState.RECORDING).update(
                state=RecordingState.FAILED
                if reason == StopReason.FAILED
                else RecordingState.FINISHED,
                ended_at=timezone.now(),
                duration_s=result.get("duration_s"),
                size_bytes=result.get("size_bytes"),
                sha256=result.get("sha256", ""),
                audio_started_at=_instant(result.get("audio_started_at")),
                stopped_by=by,
                stop_reason=reason,
            )
            if updated:
                call.record_event(
                    "recording.stopped",
                    Principal("system"),
                    {"recordingID": str(self.pk), "reason": reason, "stoppedBy": by},
                )
                if self.kind == RecordingKind.VOICEMAIL and reason == StopReason.CONSENT_WITHDRAWN:
                    # The stage is over: the deadlines sweep ends the call (`cancelled`).
                    Call.objects.filter(pk=call.pk, state=CallState.VOICEMAIL).update(
                        ring_deadline=timezone.now()
                    )
                elif self.kind == RecordingKind.VOICEMAIL and reason not in UNSENT:
                    # Once, with the file's facts: the operators' feed lists it from here.
                    call.record_event(
                        "voicemail.left",
                        Principal("system"),
                        {"recordingId": str(self.pk), "durationS": result.get("duration_s")},
                    )
        self.refresh_from_db()


def _instant(unix_time: float | None) -> datetime | None:
    return None if unix_time is None else datetime.fromtimestamp(unix_time, tz=UTC)


class AccessAction(models.TextChoices):
    LISTEN = "listen"
    DOWNLOAD = "download"
    TRANSCRIPT = "transcript"  # read its transcript (the admin's page or the API)


class RecordingAccess(ChainedModel):
    """Who listened to or downloaded a recording, when, from where."""

    CHAIN_FIELDS = ("recording_id", "username", "action", "at", "ip")
    CHAIN_UNHASHED = {"user_id": "set to NULL when the user is deleted; `username` keeps who"}
    CHAIN_WRITTEN_AT = "at"

    recording = models.ForeignKey(Recording, on_delete=models.PROTECT, related_name="accesses")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+"
    )
    username = models.CharField(max_length=150)
    action = models.CharField(max_length=16, choices=AccessAction.choices)
    at = models.DateTimeField(default=timezone.now)
    ip = models.GenericIPAddressField("IP address", null=True, blank=True)

    class Meta:
        verbose_name = "recording access"
        verbose_name_plural = "recording accesses"
        ordering = ["-at"]

    def __str__(self) -> str:
        return f"{self.username} {self.action} {self.at:%Y-%m-%d %H:%M}"
