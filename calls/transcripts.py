"""Transcripts of recordings: which recordings may be transcribed (their consents), the
job rows (queued once per recording, claimed under a lease into one of a host's N slots,
retried after a crash, finished or failed), the result stored with who said what, the
tombstone a purge leaves, reading with the access log, and full-text search.

The speech recognition itself runs in a niced child process (calls.media.transcribe),
started by calls.transcriber in the background or by `manage.py transcribe`.
"""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db.models import F, Q, QuerySet
from django.utils import timezone

from calls.models import (
    AccessAction,
    Leg,
    LegRole,
    Recording,
    RecordingAccess,
    RecordingKind,
    RecordingState,
    StopReason,
    Transcript,
    TranscriptState,
    Utterance,
)
from calls.principals import Principal
from calls.recordings import recordings_dir

logger = logging.getLogger(__name__)

NICENESS = 10  # as the recordings' renders: speech recognition never starves the calls
QUEUE_BATCH = 100  # recordings queued per pass (newest first)


def enabled() -> bool:
    return bool(settings.CALLBRIDGE_TRANSCRIBE)


# --- Consent ---------------------------------------------------------------------------


def consent_refusal(recording: Recording) -> str | None:
    """Why `recording` may not be transcribed (None: it may). Checked, not assumed: the
    consents the recording relied on must cover the parties on its channels, each granted;
    a party who withdrew consent during or after it (the recording stopped for that, or a
    withdrawal is on file since it started) is not transcribed."""
    if recording.stop_reason == StopReason.CONSENT_WITHDRAWN:
        return "a party withdrew their recording consent during the recording"
    withdrawn = recording.call.consents.filter(
        granted=False, created_at__gte=recording.started_at
    ).exists()
    if withdrawn:
        return "a party withdrew their recording consent after the recording started"
    relied_on = list(recording.consents.all())
    if any(not consent.granted for consent in relied_on):
        return "a consent the recording relied on is a refusal"
    needed = roles_needing_consent(recording)
    missing = needed - {consent.role for consent in relied_on}
    if missing:
        return f"the recording relied on no consent of: {', '.join(sorted(missing))}"
    return None


def roles_needing_consent(recording: Recording) -> set[str]:
    """The parties on the recording's channels whose consent the policy asks for."""
    mode = settings.CALLBRIDGE_RECORDING_CONSENT
    if mode == "none":
        return set()
    voicemail = recording.kind == RecordingKind.VOICEMAIL  # only the caller is on it
    on_file: set[str] = {str(LegRole.USER)} if voicemail else _roles(recording)
    return on_file & {str(LegRole.USER)} if mode == "user" else on_file


def _roles(recording: Recording) -> set[str]:
    return {leg.role for leg in _legs_during(recording) if leg.role in CHANNEL_OF_ROLE}


# --- Who is on which channel ----------------------------------------------------------

CHANNEL_OF_ROLE: dict[str, int] = {LegRole.USER: 0, LegRole.OPERATOR: 1}


def _legs_during(recording: Recording) -> list[Leg]:
    ended = recording.ended_at or timezone.now()
    return [
        leg
        for leg in recording.call.legs.select_related("session", "user", "api_token")
        if leg.created_at <= ended and (leg.left_at is None or leg.left_at > recording.started_at)
    ]


def party_names(recording: Recording) -> dict[int, tuple[str, str]]:
    """{channel: (role, name)}: the end user by their display name (else "caller"), the
    operator by their full name, username or API token's name."""
    names = {0: (str(LegRole.USER), "caller"), 1: (str(LegRole.OPERATOR), "operator")}
    for leg in _legs_during(recording):
        channel = CHANNEL_OF_ROLE.get(leg.role)
        if channel is None:
            continue
        if leg.session is not None and leg.session.display_name:
            names[channel] = (leg.role, leg.session.display_name)
        elif leg.user is not None:
            names[channel] = (leg.role, leg.user.get_full_name() or leg.user.get_username())
        elif leg.api_token is not None:
            names[channel] = (leg.role, leg.api_token.name)
    return names


# --- Jobs -----------------------------------------------------------------------------


def queue_finished_recordings(limit: int = QUEUE_BATCH) -> int:
    """A pending job for each finished recording that has none (newest first). The
    one-per-recording key makes this exactly-once however many hosts run it."""
    if not enabled():
        return 0
    waiting = Recording.objects.filter(
        state=RecordingState.FINISHED, purged_at=None, transcript__isnull=True
    ).order_by("-ended_at")[:limit]
    jobs = [Transcript(recording=recording) for recording in waiting]
    Transcript.objects.bulk_create(jobs, ignore_conflicts=True)
    return len(jobs)


def release_lapsed_leases() -> None:
    """Jobs whose host stopped renewing (it crashed or was killed): taken again, unless
    they used up their attempts."""
    now = timezone.now()
    lapsed = Transcript.objects.filter(state=TranscriptState.RUNNING, lease_until__lt=now)
    lapsed.filter(attempts__gte=settings.CALLBRIDGE_TRANSCRIBE_MAX_ATTEMPTS).update(
        state=TranscriptState.FAILED,
        host="",
        slot=None,
        lease_until=None,
        finished_at=now,
        error="the transcribing process stopped on every attempt",
    )
    lapsed.update(state=TranscriptState.PENDING, host="", slot=None, lease_until=None)


@dataclass(frozen=True)
class Claimed:
    transcript_id: int
    recording_id: str
    wav: str
    host: str


def claim(host: str) -> Claimed | None:
    """The newest recording's pending job, taken into a free slot of `host` (at most
    CALLBRIDGE_TRANSCRIBE_CONCURRENCY at once per host, held by a unique constraint on
    (host, slot) among running jobs), or None. Jobs whose recordings' consents do not
    allow a transcript are settled as refused on the way."""
    release_lapsed_leases()
    slots = settings.CALLBRIDGE_TRANSCRIBE_CONCURRENCY
    while True:
        busy = set(
            Transcript.objects.filter(state=TranscriptState.RUNNING, host=host).values_list(
                "slot", flat=True
            )
        )
        free = [slot for slot in range(slots) if slot not in busy]
        job = (
            Transcript.objects.filter(state=TranscriptState.PENDING)
            .select_related("recording__call")
            # Newest recordings first: a backlog (transcripts just switched on) never
            # keeps today's calls waiting.
            .order_by("-recording__ended_at", "pk")
            .first()
        )
        if job is None or not free:
            return None
        refusal = _unfit(job.recording)
        if refusal is not None:
            Transcript.objects.filter(pk=job.pk, state=TranscriptState.PENDING).update(
                state=TranscriptState.REFUSED, error=refusal, finished_at=timezone.now()
            )
            continue
        if not (recordings_dir() / job.recording.file_name).is_file():
            # Storage trouble, not a decision: failed, and an admin may queue it again.
            Transcript.objects.filter(pk=job.pk, state=TranscriptState.PENDING).update(
                state=TranscriptState.FAILED,
                error=f"the recording's file is missing on {host}",
                finished_at=timezone.now(),
            )
            continue
        now = timezone.now()
        try:
            with transaction.atomic():
                # Compare-and-set: of two hosts (or processes) taking the same job, one
                # changes the row; of two taking the same slot, the constraint refuses one.
                taken = Transcript.objects.filter(pk=job.pk, state=TranscriptState.PENDING).update(
                    state=TranscriptState.RUNNING,
                    host=host,
                    slot=free[0],
                    lease_until=now + timedelta(seconds=settings.CALLBRIDGE_TRANSCRIBE_LEASE_S),
                    started_at=now,
                    attempts=F("attempts") + 1,
                )
        except IntegrityError:
            return None  # another process of this host took the slot: next time
        if taken:
            wav = recordings_dir() / job.recording.file_name
            return Claimed(job.pk, str(job.recording_id), str(wav), host)


def _unfit(recording: Recording) -> str | None:
    if recording.purged_at is not None or recording.state != RecordingState.FINISHED:
        return "the recording's file was deleted (retention) or never finished"
    return consent_refusal(recording)


def queue_again(jobs: QuerySet[Transcript]) -> int:
    """Failed jobs back in the queue with fresh attempts (the admin's action, once the
    cause is fixed); refused, done and purged ones stay as they are."""
    return jobs.filter(state=TranscriptState.FAILED, purged_at=None).update(
        state=TranscriptState.PENDING, attempts=0, error="", finished_at=None
    )


def renew(job: Claimed) -> bool:
    """Hold the job a lease longer; False if it is no longer this host's (taken again)."""
    until = timezone.now() + timedelta(seconds=settings.CALLBRIDGE_TRANSCRIBE_LEASE_S)
    return bool(
        Transcript.objects.filter(
            pk=job.transcript_id, state=TranscriptState.RUNNING, host=job.host
        ).update(lease_until=until)
    )


def child_command(wav: str) -> list[str]:
    """The niced child process that transcribes one file (calls/media/transcribe.py)."""
    return ["nice", "-n", str(NICENESS), sys.executable, "-m", "calls.media.transcribe", wav]


def complete(job: Claimed, result: dict[str, Any]) -> bool:
    """Store what the child heard, labelled by party, and tell the call's event log
    (`transcript.ready`; webhooks follow call events). False if the job is no longer
    this host's, or its recording was purged meanwhile: nothing is stored then."""
    with transaction.atomic():
        transcript = (
            Transcript.objects.select_for_update()
            .select_related("recording__call")
            .filter(pk=job.transcript_id, state=TranscriptState.RUNNING, host=job.host)
            .first()
        )
        purged = transcript is None or transcript.purged_at or transcript.recording.purged_at
        if transcript is None or purged:
            return False
        recording = transcript.recording
        names = party_names(recording)
        lines = [
            Utterance(
                transcript=transcript,
                channel=int(line["channel"]),
                role=names[int(line["channel"])][0],
                party=names[int(line["channel"])][1],
                start_s=float(line["start_s"]),
                end_s=float(line["end_s"]),
                text=str(line["text"]),
            )
            for line in result["lines"]
            if int(line["channel"]) in names
        ]
        Utterance.objects.bulk_create(lines)
        transcript.state = TranscriptState.DONE
        transcript.host, transcript.slot, transcript.lease_until = "", None, None
        transcript.finished_at = timezone.now()
        transcript.error = ""
        transcript.model_name = str(result["model"])
        transcript.model_sha256 = str(result["model_sha256"])
        transcript.language = str(result["language"])
        transcript.audio_s = float(result["audio_s"])
        transcript.cpu_s = float(result["cpu_s"])
        transcript.text = "\n".join(f"{line.party}: {line.text}" for line in lines)
        transcript.save()
        recording.call.record_event(
            "transcript.ready",
            Principal("system"),
            {
                "recordingID": str(recording.pk),
                "transcriptURL": f"/api/recordings/{recording.pk}/transcript",
                "utterances": len(lines),
            },
        )
    return True


def fail(job: Claimed, error: str) -> None:
    """An attempt failed: pending again for another, or failed for good after the last."""
    now = timezone.now()
    mine = Transcript.objects.filter(
        pk=job.transcript_id, state=TranscriptState.RUNNING, host=job.host
    )
    last = Q(attempts__gte=settings.CALLBRIDGE_TRANSCRIBE_MAX_ATTEMPTS)
    mine.filter(last).update(
        state=TranscriptState.FAILED,
        host="",
        slot=None,
        lease_until=None,
        finished_at=now,
        error=error[-2000:],
    )
    mine.update(
        state=TranscriptState.PENDING, host="", slot=None, lease_until=None, error=error[-2000:]
    )
    logger.warning(
        "transcript %s of recording %s failed: %s", job.transcript_id, job.recording_id, error
    )


# --- Retention ------------------------------------------------------------------------


def purge_with_recording(recording: Recording, reason: str) -> None:
    """Delete the transcript's words with its recording's file; the row stays as a
    tombstone (when, why, what made it). A job still running stores nothing after this."""
    with transaction.atomic():
        transcript = Transcript.objects.select_for_update().filter(recording=recording).first()
        if transcript is None or transcript.purged_at is not None:
            return
        transcript.lines.all().delete()
        Transcript.objects.filter(pk=transcript.pk).update(
            text="", purged_at=timezone.now(), purge_reason=reason
        )


# --- Reading --------------------------------------------------------------------------


def readable(recording: Recording) -> Transcript | None:
    """The recording's transcript row, if it has one that was not purged."""
    transcript = Transcript.objects.filter(recording=recording).first()
    return transcript if transcript is not None and transcript.purged_at is None else None


def read_lines(
    transcript: Transcript, *, user: Any, username: str, ip: str | None
) -> list[Utterance]:
    """A finished transcript's lines; the read is logged first, in the recordings'
    access log (whoever may read a transcript may listen: the same permission)."""
    if transcript.state != TranscriptState.DONE:
        return []
    RecordingAccess.objects.create(
        recording_id=transcript.recording_id,
        user=user,
        username=username[:150],
        action=AccessAction.TRANSCRIPT,
        ip=ip,
    )
    return list(transcript.lines.all())


def search(transcripts: QuerySet[Transcript], terms: str) -> QuerySet[Transcript]:
    """Transcripts whose words match `terms`: PostgreSQL's full-text search (English
    stemming, web-search syntax: quotes, `or`, `-word`) there, else every word as a
    case-insensitive substring."""
    terms = terms.strip()
    if not terms:
        return transcripts
    if connection.vendor == "postgresql":
        from django.contrib.postgres.search import SearchQuery, SearchVector

        return transcripts.annotate(_search=SearchVector("text", config="english")).filter(
            _search=SearchQuery(terms, config="english", search_type="websearch")
        )
    for word in terms.split():
        transcripts = transcripts.filter(text__icontains=word)
    return transcripts
