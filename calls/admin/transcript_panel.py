"""The transcript beside a recording's player in the admin (its own module: the recording
page and the transcripts' pages both show it)."""

from __future__ import annotations

from django.templatetags.static import static
from django.urls import reverse
from django.utils.html import format_html

from calls.models import Recording, Transcript, TranscriptState


def transcript_panel(recording: Recording) -> str:
    """The recording page's transcript: its state, or a button that loads its lines."""
    transcript = Transcript.objects.filter(recording=recording).first()
    if transcript is None:
        return "—"
    if transcript.purged_at is not None:
        return f"Deleted {transcript.purged_at:%Y-%m-%d}: {transcript.purge_reason}"
    if transcript.state != TranscriptState.DONE:
        detail = f": {transcript.error}" if transcript.error else ""
        return f"{transcript.get_state_display()}{detail}"
    url = reverse("admin:calls_transcript_lines", args=[recording.pk])
    return format_html(
        '<div class="cb-transcript" data-url="{}">'
        '<button type="button" class="button">Show transcript</button> '
        "<small>(each view is logged; click a line to play from there)</small>"
        '<ol class="cb-transcript-lines" style="list-style:none;padding:0"></ol></div>'
        '<script type="module" src="{}"></script>',
        url,
        static("js/transcript.js"),
    )
