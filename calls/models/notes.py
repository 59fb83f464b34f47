"""What the operator wrote about a call: disposition codes, the call's current notes and
disposition, and every revision of them.

The current pair lives in its own row (`CallNotes`, one per call) rather than on `Call`:
the state machine's table stays what it is, and the calls list filters and searches
through one join. Every save also appends a `CallNotesRevision` (append-only, with who and
when): an auditor sees what was written and changed, not only the last word. Saves lock
the call's row, so revisions of one call are numbered without gaps, and the database's
unique (call, revision) refuses any second writer of the same number.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.db import models, transaction
from django.utils import timezone

from calls.errors import CallbridgeError, ErrorCode
from calls.models.append_only import AppendOnlyModel
from calls.models.call import Call, LegRole
from calls.models.queue import Queue

if TYPE_CHECKING:
    from calls.principals import Principal


class DispositionCodeQuerySet(models.QuerySet["DispositionCode"]):
    def pickable_for(self, call: Call) -> DispositionCodeQuerySet:
        """The active codes an operator may pick for `call`: those limited to no queue,
        and those limited to the call's queue."""
        active = self.filter(active=True)
        unlimited = models.Q(queues__isnull=True)
        if call.queue_id is None:
            return active.filter(unlimited).distinct()
        return active.filter(unlimited | models.Q(queues=call.queue_id)).distinct()


class DispositionCode(models.Model):
    """How a call ended up, in the team's words ("resolved", "callback", "wrong number")."""

    code = models.SlugField(
        max_length=64, unique=True, help_text="what the API and integrators name; never reused"
    )
    label = models.CharField(max_length=100, help_text="what operators see")
    active = models.BooleanField(
        default=True,
        help_text="inactive codes stay on the calls that have them but cannot be picked",
    )
    ordering = models.PositiveIntegerField(default=0, help_text="lower first in the picker")
    queues = models.ManyToManyField(
        Queue,
        blank=True,
        related_name="disposition_codes",
        help_text="only for these queues' calls (none: every call)",
    )
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    objects = DispositionCodeQuerySet.as_manager()

    class Meta:
        ordering = ["ordering", "label"]

    def __str__(self) -> str:
        return f"{self.label} ({self.code})" + ("" if self.active else " — inactive")


class CallNotes(models.Model):
    """A call's current notes and disposition: its latest revision."""

    call = models.OneToOneField(
        Call, on_delete=models.CASCADE, primary_key=True, related_name="call_notes"
    )
    disposition = models.ForeignKey(
        DispositionCode, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    notes = models.TextField(blank=True)
    revision = models.PositiveIntegerField(default=0)
    updated_at = models.DateTimeField(default=timezone.now)
    updated_by = models.CharField(max_length=200, blank=True)

    class Meta:
        verbose_name = "call notes"
        verbose_name_plural = "call notes"
        # Supervisors: the change permission lets them edit any call's notes, any time
        # (calls.notes); operators edit their own calls' within the window without it.

    def __str__(self) -> str:
        return f"notes of {str(self.call_id)[:8]} (revision {self.revision})"

    @classmethod
    def of(cls, call: Call) -> CallNotes | None:
        """The call's notes (from select_related's cache when loaded), or None."""
        try:
            return call.call_notes
        except cls.DoesNotExist:
            return None

    @classmethod
    def save_revision(
        cls,
        call: Call,
        by: Principal,
        *,
        changes: dict[str, Any],
        check: Callable[[Call], None],
        expected_revision: int | None = None,
    ) -> CallNotes:
        """Apply `changes` ({"disposition": DispositionCode | None, "notes": str}, either
        or both) as the call's next revision, with its events.

        `check(locked_call)` runs under the call's row lock (who may, until when) and
        raises to refuse. `expected_revision`: the revision the writer edited; if the
        notes moved on since, CALL_STATE and nothing is written (no lost update). Saving
        what is already there writes nothing.
        """
        with transaction.atomic():
            locked = Call.objects.select_for_update().get(pk=call.pk)
            check(locked)
            current, _ = cls.objects.select_for_update().get_or_create(call=locked)
            if expected_revision is not None and expected_revision != current.revision:
                raise CallbridgeError(
                    ErrorCode.CALL_STATE,
                    f"The notes changed meanwhile (revision {current.revision}, by "
                    f"{current.updated_by}); load them again, or save without a revision "
                    "to replace them",
                    details={"revision": current.revision},
                )
            new_disposition = changes.get("disposition", current.disposition)
            new_notes = changes.get("notes", current.notes)
            disposition_changed = (
                "disposition" in changes and new_disposition != current.disposition
            )
            notes_changed = "notes" in changes and new_notes != current.notes
            if not (disposition_changed or notes_changed):
                return current
            previous = current.disposition.code if current.disposition else None
            now = timezone.now()
            current.disposition = new_disposition
            current.notes = new_notes
            current.revision += 1
            current.updated_at = now
            current.updated_by = by.label
            current.save()
            CallNotesRevision.objects.create(
                call=locked,
                revision=current.revision,
                disposition=new_disposition,
                notes=new_notes,
                author=by.label,
                author_role=by.role,
                author_user=by.user,
                created_at=now,
            )
            code = new_disposition.code if new_disposition else None
            # The notes' text stays out of the events: they go to every operator's feed
            # and the timeline, and notes may hold what the caller confided.
            if disposition_changed:
                locked.record_event(
                    "call.disposition_set",
                    by,
                    {"disposition": code, "previous": previous, "revision": current.revision},
                )
            if notes_changed:
                locked.record_event(
                    "call.notes_updated",
                    by,
                    {"revision": current.revision, "length": len(new_notes)},
                )
            return current


class CallNotesRevision(AppendOnlyModel):
    """One save of a call's notes and disposition. Written once, never changed."""

    call = models.ForeignKey(Call, on_delete=models.PROTECT, related_name="notes_revisions")
    revision = models.PositiveIntegerField()
    disposition = models.ForeignKey(
        DispositionCode, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    notes = models.TextField(blank=True)
    author = models.CharField(max_length=200)
    author_role = models.CharField(max_length=16, choices=LegRole.choices)
    author_user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["call", "revision"]
        constraints = [
            models.UniqueConstraint(fields=["call", "revision"], name="one_notes_revision_number"),
        ]

    def __str__(self) -> str:
        return f"revision {self.revision} of {str(self.call_id)[:8]} by {self.author}"
