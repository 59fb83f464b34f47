"""JSON ⇄ records for call notes and disposition codes (operators only)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from rest_framework import serializers

from calls import notes
from calls.models import Call, CallNotes, DispositionCode

# A hard bound on what is parsed at all; the configured limit
# (CALLBRIDGE_NOTES_MAX_CHARS, at most 100 000) is checked by calls.notes.
NOTES_PARSE_MAX = 100_000


class NotesUpdateSerializer(serializers.Serializer):
    code = serializers.CharField(
        max_length=64,
        required=False,
        allow_null=True,
        help_text="a disposition code (GET /api/dispositions); null clears it; left out: kept",
    )
    notes = serializers.CharField(
        max_length=NOTES_PARSE_MAX,
        required=False,
        allow_blank=True,
        trim_whitespace=False,
        help_text="plain text, up to CALLBRIDGE_NOTES_MAX_CHARS; left out: kept",
    )
    revision = serializers.IntegerField(
        required=False,
        min_value=0,
        max_value=2**31 - 1,
        help_text="the revision you edited: if the notes moved on since, 409 CALL_STATE and "
        "nothing changes; left out: your save replaces whatever is there",
    )


class DispositionCodeSerializer(serializers.ModelSerializer):
    queues = serializers.SerializerMethodField(
        help_text="public ids of the queues it is limited to ([]: every call)"
    )

    class Meta:
        model = DispositionCode
        fields = ["code", "label", "ordering", "queues"]

    def get_queues(self, code: DispositionCode) -> list[str]:
        return sorted(queue.public_id for queue in code.queues.all())


class DispositionSerializer(serializers.Serializer):
    code = serializers.CharField()
    # Declared fields leave the class (DRF's metaclass), so this does not shadow the
    # Field.label the stubs see.
    label = serializers.CharField()  # type: ignore[assignment]
    active = serializers.BooleanField(help_text="false: retired, cannot be picked again")


class NotesRevisionSerializer(serializers.Serializer):
    revision = serializers.IntegerField()
    disposition = serializers.CharField(source="disposition.code", allow_null=True, default=None)
    notes = serializers.CharField()
    by = serializers.CharField(source="author")
    role = serializers.CharField(source="author_role")
    at = serializers.DateTimeField(source="created_at")


class CallNotesSerializer(serializers.Serializer):
    """GET/PUT /api/calls/{id}/disposition: the current pair and every revision."""

    callID = serializers.UUIDField()
    disposition = DispositionSerializer(allow_null=True)
    notes = serializers.CharField(allow_blank=True)
    revision = serializers.IntegerField(help_text="0: never written")
    updatedAt = serializers.DateTimeField(allow_null=True)
    updatedBy = serializers.CharField(allow_blank=True)
    editableUntil = serializers.DateTimeField(
        allow_null=True,
        help_text="until when the call's own operator may change them (null: the call is open)",
    )
    history = NotesRevisionSerializer(many=True, help_text="oldest first")


def call_notes_body(call: Call, current: CallNotes | None) -> dict[str, Any]:
    disposition = current.disposition if current is not None else None
    until: datetime | None = notes.editable_until(call)
    body = {
        "callID": call.pk,
        "disposition": None
        if disposition is None
        else {"code": disposition.code, "label": disposition.label, "active": disposition.active},
        "notes": current.notes if current is not None else "",
        "revision": current.revision if current is not None else 0,
        "updatedAt": current.updated_at if current is not None and current.revision else None,
        "updatedBy": current.updated_by if current is not None else "",
        "editableUntil": until,
        "history": list(notes.history(call)),
    }
    return dict(CallNotesSerializer(body).data)
