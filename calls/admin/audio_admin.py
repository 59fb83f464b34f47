"""The audio-file library in admin: uploads are validated by decoding them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django import forms
from django.contrib import admin
from django.http import HttpRequest

from calls.audio_decoding import SAMPLE_RATE, UnusableAudio, decode_mono
from calls.models import AudioFile
from calls.models.audio_file import ALLOWED_EXTENSIONS
from calls.principals import staff_user


class AudioFileForm(forms.ModelForm):
    class Meta:
        model = AudioFile
        fields = ["name", "file"]

    def clean_file(self) -> Any:
        upload = self.cleaned_data["file"]
        if Path(upload.name).suffix.lower() not in ALLOWED_EXTENSIONS:
            raise forms.ValidationError(f"Upload one of: {', '.join(ALLOWED_EXTENSIONS)}")
        try:
            upload.seek(0)
            samples = decode_mono(upload)
        except UnusableAudio as error:
            raise forms.ValidationError(f"This is not usable audio: {error}") from None
        finally:
            upload.seek(0)
        self.duration_s = len(samples) / SAMPLE_RATE
        return upload


@admin.register(AudioFile)
class AudioFileAdmin(admin.ModelAdmin):
    form = AudioFileForm
    list_display = ["name", "duration_s", "original_name", "uploaded_by", "uploaded_at"]
    search_fields = ["name", "original_name"]
    readonly_fields = ["duration_s", "original_name", "uploaded_by", "uploaded_at"]

    def save_model(self, request: HttpRequest, obj: AudioFile, form: Any, change: bool) -> None:
        if "file" in form.changed_data:
            obj.duration_s = form.duration_s
            obj.original_name = Path(form.cleaned_data["file"].name).name[:200]
        if not change:
            obj.uploaded_by = staff_user(request)
        super().save_model(request, obj, form, change)
