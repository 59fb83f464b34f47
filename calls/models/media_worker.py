"""Media worker processes as the rest of the deployment sees them: their heartbeats.

A `manage.py mediaworker` process writes its row every heartbeat (load, capacity, whether
it is draining). Daphne processes read these rows to place new calls and to notice a
worker that stopped beating; the worker's own process is the only writer of its row.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from django.conf import settings
from django.db import models
from django.utils import timezone


class WorkerState(models.TextChoices):
    RUNNING = "running"  # takes new calls
    DRAINING = "draining"  # keeps its calls, takes no new ones
    STOPPED = "stopped"  # left cleanly; its calls were ended first


class MediaWorkerStatusQuerySet(models.QuerySet["MediaWorkerStatus"]):
    def _fresh_since(self) -> datetime:
        return timezone.now() - timedelta(seconds=settings.CALLBRIDGE_MEDIA_WORKER_TIMEOUT_S)

    def live(self) -> MediaWorkerStatusQuerySet:
        """Workers heard from within the timeout (running or draining)."""
        return self.exclude(state=WorkerState.STOPPED).filter(last_seen__gte=self._fresh_since())

    def accepting(self) -> MediaWorkerStatusQuerySet:
        return self.live().filter(state=WorkerState.RUNNING)

    def silent(self) -> MediaWorkerStatusQuerySet:
        """Workers that stopped beating without saying goodbye (crashed, killed, cut off)."""
        return self.exclude(state=WorkerState.STOPPED).filter(last_seen__lt=self._fresh_since())


class MediaWorkerStatus(models.Model):
    name = models.CharField(max_length=100, primary_key=True)
    state = models.CharField(
        max_length=16, choices=WorkerState.choices, default=WorkerState.RUNNING
    )
    # The addresses it offers as ICE host candidates (for operators reading the admin).
    addresses = models.JSONField(default=list, blank=True)
    capacity = models.PositiveIntegerField(help_text="most calls it takes")
    calls = models.PositiveIntegerField(default=0, help_text="calls with media on it")
    legs = models.PositiveIntegerField(default=0, help_text="peer connections it holds")
    started_at = models.DateTimeField(default=timezone.now)
    last_seen = models.DateTimeField(default=timezone.now, db_index=True)

    objects = MediaWorkerStatusQuerySet.as_manager()

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return f"media worker {self.name} ({self.state}, {self.calls}/{self.capacity} calls)"
