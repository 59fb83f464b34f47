"""Read-only call records with their legs and event timeline; hang up stuck calls."""

from __future__ import annotations

import uuid
from typing import Any

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import Q, QuerySet
from django.http import (
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseBase,
    StreamingHttpResponse,
)
from django.shortcuts import get_object_or_404
from django.urls import path, reverse
from django.utils.html import format_html

from callbridge.client_address import client_ip
from calls import cdr, recording_files
from calls.admin.transcript_panel import transcript_panel
from calls.errors import CallStateError
from calls.hold import hold_periods
from calls.models import (
    Call,
    CallEvent,
    CallNotes,
    CallNotesRevision,
    DispositionCode,
    Leg,
    Recording,
    RecordingAccess,
    RecordingConsent,
    Transfer,
)
from calls.models.call import CallQuerySet
from calls.principals import Principal, staff_user

# Audit rows show where they sit in their hash chain (empty for a moment after the write).
CHAIN_COLUMNS = ("chain_seq", "chain_hash")


class ReadOnlyInline(admin.TabularInline):
    extra = 0
    can_delete = False
    show_change_link = False

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # Audit rows belong on the page they describe: whoever may open it sees them.
        return bool(request.user.is_active and request.user.is_staff)


class LegInline(ReadOnlyInline):
    model = Leg
    fields = readonly_fields = (
        "id",
        "role",
        "party",
        "media_state",
        "created_at",
        "media_connected_at",
        "media_ended_at",
        "supervisor_mode",  # supervisor legs: the mode now
        "left_at",  # a transfer or a supervisor leaving: who was on the call when
        "quality",
    )

    @admin.display(description="call quality (server-side)")
    def quality(self, leg: Leg) -> str:
        """The leg's summary, stored when its media ended (calls/media/quality.py)."""
        if not leg.quality_samples:
            return "not measured"
        rtt = "not measured" if leg.rtt_ms is None else f"{leg.rtt_ms:.0f} ms"
        warnings = f" · {leg.quality_warnings} warning(s)" if leg.quality_warnings else ""
        return (
            f"MOS {leg.mos_avg:.2f} avg, {leg.mos_min:.2f} min · loss {leg.loss_percent:.1f}% · "
            f"jitter {leg.jitter_ms:.0f} ms · RTT {rtt} · {leg.quality_samples} samples{warnings}"
        )


class TransferInline(ReadOnlyInline):
    model = Transfer
    fk_name = "call"
    fields = readonly_fields = (
        "kind",
        "by",
        "to_user",
        "to_queue",
        "started_at",
        "answered_at",  # attended: when the consulted operator answered
        "outcome",
        "ended_at",
        "to_leg",
    )


class CallEventInline(ReadOnlyInline):
    model = CallEvent
    verbose_name_plural = "event timeline"
    fields = readonly_fields = (
        "created_at",
        "name",
        "actor",
        "actor_role",
        "data",
        *CHAIN_COLUMNS,
    )
    ordering = ["created_at", "id"]


class NotesRevisionInline(ReadOnlyInline):
    model = CallNotesRevision
    verbose_name_plural = "notes and disposition history"
    fields = readonly_fields = ("revision", "created_at", "author", "disposition", "notes")
    ordering = ["revision"]


class DispositionFilter(admin.SimpleListFilter):
    """Every code, retired ones too (old calls keep them), and "none"."""

    title = "disposition"
    parameter_name = "disposition"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        codes = [(code.code, str(code)) for code in DispositionCode.objects.all()]
        return [("-", "none"), *codes]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        value = self.value()
        if value is None:
            return queryset
        if value == "-":
            return queryset.filter(call_notes__disposition__isnull=True)
        return queryset.filter(call_notes__disposition__code=value)


class ConsentInline(ReadOnlyInline):
    model = RecordingConsent
    verbose_name_plural = "recording consents"
    fields = readonly_fields = (
        "created_at",
        "party",
        "role",
        "granted",
        "policy_version",
        "text_sha256",
        "method",
        "ip",
        "user_agent",
        *CHAIN_COLUMNS,
    )


class ReadOnlyAdmin(admin.ModelAdmin):
    """Audit records: viewable, never added, changed or deleted through the admin."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class RecordingInline(ReadOnlyInline):
    model = Recording
    fields = readonly_fields = (
        "started_at",
        "kind",
        "state",
        "duration_s",
        "size_bytes",
        "sha256",
        "started_by",
        "stopped_by",
        "stop_reason",
    )
    show_change_link = True


class AccessInline(ReadOnlyInline):
    model = RecordingAccess
    verbose_name_plural = "who listened or downloaded"
    fields = readonly_fields = ("at", "username", "action", "ip", *CHAIN_COLUMNS)


@admin.register(Recording)
class RecordingAdmin(ReadOnlyAdmin):
    """Read-only: nobody edits a hash or the consents a recording relied on. Listening and
    downloading need `calls.listen_recording`, go through Django, and are logged."""

    list_display = [
        "started_at",
        "call",
        "kind",
        "state",
        "duration_s",
        "stop_reason",
        "started_by",
        "purged_at",
    ]
    list_filter = [
        "kind",
        "state",
        "stop_reason",
        "started_at",
        ("purged_at", admin.EmptyFieldListFilter),
    ]
    search_fields = ["=sha256", "file_name", "started_by"]
    list_select_related = ["call"]
    inlines = [AccessInline]

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        fields = [field.name for field in Recording._meta.fields] + ["consents_relied_on"]
        return ["audio", "transcript_lines", "on_hold", *fields]

    @admin.display(description="on hold (seconds into the recording)")
    def on_hold(self, recording: Recording) -> str:
        """The call's holds the file spans: the caller's channel has the hold audio there,
        the operator's nothing (the call's event timeline has the details)."""
        marks = [
            f"{p.from_s:.1f} to {'the end' if p.to_s is None else f'{p.to_s:.1f}'} ({p.by})"
            for p in hold_periods(recording)
        ]
        return "; ".join(marks) or "—"

    @admin.display(description="consents relied on")
    def consents_relied_on(self, recording: Recording) -> str:
        return "; ".join(str(consent) for consent in recording.consents.all()) or "—"

    @admin.display(description="listen")
    def audio(self, recording: Recording) -> str:
        if recording.purged_at:
            return f"Deleted {recording.purged_at:%Y-%m-%d}: {recording.purge_reason}"
        if recording.state != "finished":
            return "Not available until the recording has finished."
        url = reverse("admin:calls_recording_audio", args=[recording.pk])
        return format_html(
            '<audio controls preload="none" src="{}"></audio> <a href="{}?download=1">Download</a>',
            url,
            url,
        )

    @admin.display(description="transcript")
    def transcript_lines(self, recording: Recording) -> str:
        return transcript_panel(recording)

    def get_urls(self) -> list[Any]:
        audio = path(
            "<uuid:recording_id>/audio/",
            self.admin_site.admin_view(self.audio_view),
            name="calls_recording_audio",
        )
        return [audio, *super().get_urls()]

    def audio_view(self, request: HttpRequest, recording_id: Any) -> HttpResponseBase:
        if not request.user.has_perm("calls.listen_recording"):
            raise PermissionDenied
        recording = get_object_or_404(Recording, pk=recording_id)
        file = recording_files.playable_file(recording)
        if file is None:
            raise Http404("This recording's file is not available.")
        download = request.GET.get("download") == "1"
        try:  # the player seeks with Range requests; each one is a fetch, logged
            response = recording_files.file_response(
                file, request.headers.get("Range"), download=download, filename=recording.file_name
            )
        except recording_files.RangeNotSatisfiable as refused:
            unsatisfiable = HttpResponse(refused.message, status=416, content_type="text/plain")
            unsatisfiable["Content-Range"] = f"bytes */{refused.size}"
            return unsatisfiable
        recording_files.log_access(
            recording,
            user=staff_user(request),
            username=request.user.get_username(),
            download=download,
            ip=client_ip(request),
        )
        return response


@admin.register(RecordingConsent)
class RecordingConsentAdmin(ReadOnlyAdmin):
    """Read-only: nobody edits a consent."""

    list_display = ["created_at", "call", "party", "role", "granted", "policy_version", "method"]
    list_filter = ["granted", "role", "method", "policy_version"]
    search_fields = ["party", "=ip"]
    list_select_related = ["call"]

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        return [field.name for field in RecordingConsent._meta.fields]


@admin.register(Call)
class CallAdmin(ReadOnlyAdmin):
    """No add, change or delete: calls are placed through the API and the dashboard, change
    state only through the state machine (the hang-up action uses it), and their audit
    trail outlives them."""

    list_display = [
        "short_id",
        "external_id",
        "state",
        "mode",
        "direction",
        "session",
        "operator",
        "created_at",
        "duration_display",
        "end_reason",
        "disposition",
    ]
    list_filter = ["state", "mode", "direction", "end_reason", DispositionFilter, "created_at"]
    date_hierarchy = "created_at"
    search_fields = [
        "=external_id",
        "caller",
        "callee",
        "session__display_name",
        "created_by",
        "ended_by",
        "call_notes__notes",
    ]
    search_help_text = (
        "A full call id or callSid, a calling or called number, an end user's name, who"
        " placed / ended the call, or words of its notes"
    )
    list_select_related = [
        "session",
        "operator_user",
        "operator_token",
        "call_notes__disposition",
    ]
    inlines = [
        LegInline,
        TransferInline,
        ConsentInline,
        RecordingInline,
        NotesRevisionInline,
        CallEventInline,
    ]
    actions = ["hang_up", "export_csv", "export_jsonl"]

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        fields = [field.name for field in Call._meta.fields]
        return [*fields, "duration_display", "disposition", "notes"]

    @admin.display(description="disposition")
    def disposition(self, call: Call) -> str:
        current = CallNotes.of(call)
        return str(current.disposition) if current and current.disposition else "—"

    @admin.display(description="notes")
    def notes(self, call: Call) -> str:
        current = CallNotes.of(call)
        if current is None or not current.revision:
            return "—"
        return format_html(
            '<div style="white-space: pre-wrap">{}</div><div class="help">{} · {}</div>',
            current.notes or "(empty)",
            current.updated_by,
            current.updated_at.strftime("%Y-%m-%d %H:%M:%S %Z"),
        )

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet, search_term: str
    ) -> tuple[QuerySet, bool]:
        try:
            call_id = uuid.UUID(search_term.strip())
        except ValueError:
            return super().get_search_results(request, queryset, search_term)
        # A client's callSid may be a UUID too (PolyAI's examples use them).
        found = Q(pk=call_id) | Q(session_id=call_id) | Q(external_id=search_term.strip())
        return queryset.filter(found), False

    @admin.display(description="call", ordering="created_at")
    def short_id(self, call: Call) -> str:
        return str(call.pk)[:8]

    @admin.display(description="operator")
    def operator(self, call: Call) -> str:
        return str(call.operator_user or call.operator_token or "")

    @admin.display(description="talk time")
    def duration_display(self, call: Call) -> str:
        duration = call.duration
        if duration is None:
            return "—"
        seconds = int(duration.total_seconds())
        return f"{seconds // 60}:{seconds % 60:02d}"

    def has_hang_up_permission(self, request: HttpRequest) -> bool:
        return request.user.is_staff and request.user.has_perm("calls.change_call")

    @admin.action(description="Hang up selected calls", permissions=["hang_up"])
    def hang_up(self, request: HttpRequest, queryset: CallQuerySet) -> None:
        operator = Principal.staff(staff_user(request))
        ended = 0
        for call in queryset.open():
            try:
                call.hang_up(operator)
                ended += 1
            except CallStateError:
                continue  # ended meanwhile
        self.message_user(request, f"Hung up {ended} call(s).", messages.SUCCESS)

    @admin.action(description="Export selected calls' records (CSV)", permissions=["view"])
    def export_csv(self, request: HttpRequest, queryset: CallQuerySet) -> StreamingHttpResponse:
        return cdr.response(queryset, "csv")

    @admin.action(description="Export selected calls' records (JSON Lines)", permissions=["view"])
    def export_jsonl(self, request: HttpRequest, queryset: CallQuerySet) -> StreamingHttpResponse:
        return cdr.response(queryset, "jsonl")
