"""Admin: transcripts beside their recording's player (each line seeks the player; the
words load only when asked, and each load is logged in the recordings' access log), and
the transcripts' list with full-text search. All of it needs `calls.listen_recording`:
words are as private as the audio."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import Http404, HttpRequest, JsonResponse
from django.shortcuts import get_object_or_404
from django.urls import path, reverse
from django.utils.html import format_html

from callbridge.client_address import client_ip
from calls import transcripts
from calls.admin.call_admin import ReadOnlyAdmin
from calls.admin.transcript_panel import transcript_panel
from calls.models import Recording, Transcript, TranscriptState
from calls.principals import staff_user

LISTEN = "calls.listen_recording"


@admin.register(Transcript)
class TranscriptAdmin(ReadOnlyAdmin):
    list_display = [
        "created_at",
        "recording_link",
        "state",
        "audio_s",
        "cpu_s",
        "finished_at",
        "purged_at",
    ]
    list_filter = ["state", "created_at", ("purged_at", admin.EmptyFieldListFilter)]
    # The words themselves are never shown here (reading them is logged, on the
    # recording's page); search looks in them.
    search_fields = ["text"]
    search_help_text = "Words said in the call (full-text search on PostgreSQL)"
    list_select_related = ["recording"]
    exclude = ["text"]
    actions = ["queue_again"]

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return request.user.has_perm(LISTEN)

    def has_module_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm(LISTEN)

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        fields = [f.name for f in Transcript._meta.fields if f.name != "text"]
        return ["recording_link", "lines", *fields]

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[Transcript], search_term: str
    ) -> tuple[QuerySet[Transcript], bool]:
        return transcripts.search(queryset, search_term), False

    @admin.action(description="Queue the selected failed transcripts again")
    def queue_again(self, request: HttpRequest, queryset: QuerySet[Transcript]) -> None:
        count = transcripts.queue_again(queryset)
        self.message_user(request, f"{count} failed transcript(s) queued again.")

    @admin.display(description="recording")
    def recording_link(self, transcript: Transcript) -> str:
        url = reverse("admin:calls_recording_change", args=[transcript.recording_id])
        return format_html('<a href="{}">{}</a>', url, transcript.recording)

    @admin.display(description="transcript")
    def lines(self, transcript: Transcript) -> str:
        return transcript_panel(transcript.recording)

    def get_urls(self) -> list[Any]:
        lines = path(
            "recording/<uuid:recording_id>/lines/",
            self.admin_site.admin_view(self.lines_view),
            name="calls_transcript_lines",
        )
        return [lines, *super().get_urls()]

    def lines_view(self, request: HttpRequest, recording_id: Any) -> JsonResponse:
        if not request.user.has_perm(LISTEN):
            raise PermissionDenied
        recording = get_object_or_404(Recording, pk=recording_id)
        transcript = transcripts.readable(recording)
        if transcript is None or transcript.state != TranscriptState.DONE:
            raise Http404("This recording has no transcript.")
        lines = transcripts.read_lines(
            transcript,
            user=staff_user(request),
            username=request.user.get_username(),
            ip=client_ip(request),
        )
        body = [
            {
                "startS": line.start_s,
                "endS": line.end_s,
                "role": line.role,
                "party": line.party,
                "text": line.text,
            }
            for line in lines
        ]
        response = JsonResponse({"utterances": body})
        response["Cache-Control"] = "no-store"
        return response
