"""Transcripts of finished recordings: one durable job row per recording (pending →
running → done, or failed / refused), its utterances, and its tombstone after a purge."""

from __future__ import annotations

from django.db import models
from django.utils import timezone

from calls.models.recording import Recording


class TranscriptState(models.TextChoices):
    PENDING = "pending"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"  # every attempt failed (the last error is kept)
    REFUSED = "refused"  # the recording's consents do not allow it (the reason is kept)


class Transcript(models.Model):
    # One per recording: the unique key makes queuing it exactly-once on every host.
    recording = models.OneToOneField(Recording, on_delete=models.PROTECT, related_name="transcript")
    state = models.CharField(
        max_length=16,
        choices=TranscriptState.choices,
        default=TranscriptState.PENDING,
        db_index=True,
    )
    created_at = models.DateTimeField(default=timezone.now)
    attempts = models.PositiveSmallIntegerField(default=0)
    # While running: which host has it, in which of its slots (at most N per host, by the
    # unique constraint below), and until when it holds it (renewed while it works; a
    # host that crashed lets the lease lapse and the job is taken again).
    host = models.CharField(max_length=200, blank=True)
    slot = models.PositiveSmallIntegerField(null=True, blank=True)
    lease_until = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    error = models.TextField(blank=True)
    # What made it, and what it cost.
    model_name = models.CharField(max_length=100, blank=True)
    model_sha256 = models.CharField(max_length=64, blank=True)
    language = models.CharField(max_length=16, blank=True)
    audio_s = models.FloatField("audio (channel-seconds)", null=True, blank=True)
    cpu_s = models.FloatField("CPU (s)", null=True, blank=True)
    # Every utterance's words, in time order: what full-text search looks in.
    text = models.TextField(blank=True)
    # Tombstone: deleted with its recording's file (retention); the facts stay.
    purged_at = models.DateTimeField(null=True, blank=True)
    purge_reason = models.CharField(max_length=200, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["host", "slot"],
                condition=models.Q(state="running"),
                name="one_transcript_job_per_host_slot",
            )
        ]

    def __str__(self) -> str:
        return f"transcript of recording {str(self.recording_id)[:8]} ({self.state})"


class Utterance(models.Model):
    """One party's stretch of speech: its channel of the stereo file, with start and end
    in seconds from the recording's first sample."""

    transcript = models.ForeignKey(Transcript, on_delete=models.CASCADE, related_name="lines")
    channel = models.PositiveSmallIntegerField()  # 0: the end user, 1: the operator
    role = models.CharField(max_length=16)  # the leg role: user / operator
    party = models.CharField(max_length=200)  # who, as people read it
    start_s = models.FloatField()
    end_s = models.FloatField()
    text = models.TextField()

    class Meta:
        ordering = ["start_s", "channel"]

    def __str__(self) -> str:
        return f"{self.start_s:.1f}-{self.end_s:.1f} {self.party}: {self.text[:40]}"
