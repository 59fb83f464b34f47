"""The audio-file library: what may be played into calls (never an arbitrary path)."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import models
from django.utils import timezone

ALLOWED_EXTENSIONS = (".mp3", ".wav", ".opus", ".ogg")


def library_path(instance: AudioFile, filename: str) -> str:
    # Server-chosen names: the uploaded name is kept only as a label.
    return f"audio/{uuid.uuid4().hex}{Path(filename).suffix.lower()}"


class AudioFile(models.Model):
    name = models.SlugField(
        max_length=100, unique=True, help_text="what the API's `file` refers to, e.g. hold-music"
    )
    file = models.FileField(upload_to=library_path)
    original_name = models.CharField(max_length=200, editable=False)
    duration_s = models.FloatField("duration (s)", editable=False)
    uploaded_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        editable=False,
        related_name="+",
    )
    uploaded_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        verbose_name = "audio file"
        ordering = ["name"]

    def __str__(self) -> str:
        return f"{self.name} ({self.duration_s:.1f} s)"

    def delete(self, *args: Any, **kwargs: Any) -> tuple[int, dict[str, int]]:
        storage, name = self.file.storage, self.file.name
        result = super().delete(*args, **kwargs)
        if name:  # always, for a saved row: the field is required
            storage.delete(name)
        return result
