"""Queues callers wait in, and the offers of their calls to operators.

A queue's members are its staff users, every staff user of its groups, or (the default
queue) every operator; in each case only users holding the operator permission. An offer
rings one operator for one call; the database keeps each operator to one pending offer.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import IntegrityError, models, transaction
from django.db.models import Q
from django.utils import timezone

from calls.errors import CallbridgeError, ErrorCode
from calls.models.operator_status import operator_users

if TYPE_CHECKING:
    from django.contrib.auth.models import User

DEFAULT_QUEUE_PUBLIC_ID = "default"


class QueueStrategy(models.TextChoices):
    RING_ALL = "ring_all", "ring all free members at once"
    LONGEST_IDLE = "longest_idle", "longest idle member first"
    ROUND_ROBIN = "round_robin", "round robin (least recently offered first)"


class Overflow(models.TextChoices):
    REFUSE = "refuse", "refuse (the call ends, no operator)"
    QUEUE = "queue", "move to the overflow queue"
    VOICEMAIL = "voicemail", "offer voicemail (the caller may leave a message)"


class QueueQuerySet(models.QuerySet["Queue"]):
    def named(self, public_id: str) -> Queue:
        """The queue with this public id; NOT_FOUND (the contract's error) if none."""
        queue = self.filter(public_id=public_id).first()
        if queue is None:
            raise CallbridgeError(ErrorCode.NOT_FOUND, "No such queue")
        return queue

    def default(self) -> Queue:
        """The queue calls that name none join: made by migration 0011, and made again
        the same way if it is missing (a flushed test database, a deleted row)."""
        found = self.filter(is_default=True).first()
        if found is not None:
            return found
        timeout = settings.CALLBRIDGE_RING_TIMEOUT_S
        try:
            with transaction.atomic():
                return self.create(
                    name="Everyone",
                    public_id=DEFAULT_QUEUE_PUBLIC_ID,
                    is_default=True,
                    all_operators=True,
                    open_answer=True,
                    strategy=QueueStrategy.RING_ALL,
                    ring_timeout_s=timeout,
                    max_wait_s=timeout,
                    overflow=Overflow.REFUSE,
                )
        except IntegrityError:  # made meanwhile by another request
            return self.get(is_default=True)

    def for_operator(self, user: User) -> QueueQuerySet:
        """The queues `user` answers for (none unless they hold the operator permission)."""
        if not operator_users().filter(pk=user.pk).exists():
            return self.none()
        return self.filter(
            Q(all_operators=True)
            | Q(pk__in=Queue.members.through.objects.filter(user=user).values("queue_id"))
            | Q(
                pk__in=Queue.member_groups.through.objects.filter(
                    group__in=user.groups.all()
                ).values("queue_id")
            )
        )


class Queue(models.Model):
    name = models.CharField(max_length=100, help_text="shown to operators and supervisors")
    public_id = models.SlugField(
        "public id",
        max_length=64,
        unique=True,
        help_text="what integrators name: POST /api/calls {queue}",
    )
    members = models.ManyToManyField(
        settings.AUTH_USER_MODEL, blank=True, related_name="queues", help_text="staff users"
    )
    member_groups = models.ManyToManyField(
        "auth.Group",
        blank=True,
        related_name="queues",
        help_text="every staff user of these groups",
    )
    all_operators = models.BooleanField(
        default=False, help_text="every operator is a member (members and groups are ignored)"
    )
    strategy = models.CharField(
        max_length=16, choices=QueueStrategy.choices, default=QueueStrategy.RING_ALL
    )
    ring_timeout_s = models.PositiveIntegerField(
        "ring timeout (s)",
        default=20,
        validators=[MinValueValidator(1), MaxValueValidator(3600)],
        help_text="how long one offer rings an operator before they are skipped",
    )
    max_wait_s = models.PositiveIntegerField(
        "maximum wait (s)",
        default=300,
        validators=[MinValueValidator(1), MaxValueValidator(86400)],
        help_text="how long a caller waits in total before the overflow rule applies",
    )
    wrap_up_s = models.PositiveIntegerField(
        "wrap-up (s)",
        default=0,
        validators=[MaxValueValidator(3600)],
        help_text="after a call, the operator gets no offer for this long",
    )
    # Played by calls.routing.waiting (help_text left as it was: changing it needs a migration).
    waiting_audio = models.ForeignKey(
        "calls.AudioFile",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        help_text="played to waiting callers, looped, until an operator answers",
    )
    # Played by calls.hold to a held caller (falls back to waiting_audio, then the
    # CALLBRIDGE_HOLD_AUDIO library file).
    hold_audio = models.ForeignKey(
        "calls.AudioFile",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        help_text="played to a caller an operator put on hold, looped, until resumed "
        "(empty: the waiting audio, else the CALLBRIDGE_HOLD_AUDIO file)",
    )
    overflow = models.CharField(max_length=16, choices=Overflow.choices, default=Overflow.REFUSE)
    overflow_queue = models.ForeignKey(
        "self",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="overflow_from",
        help_text="where callers go when the overflow is 'move to the overflow queue'",
    )
    # The voicemail stage (overflow `voicemail`, calls/voicemail.py).
    voicemail_greeting = models.ForeignKey(
        "calls.AudioFile",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        help_text="played once to a caller offered voicemail (overflow 'voicemail')",
    )
    voicemail_max_s = models.PositiveIntegerField(
        "longest message (s)",
        default=120,
        validators=[MinValueValidator(5), MaxValueValidator(3600)],
        help_text="a message is cut off (and kept) after this long",
    )
    is_default = models.BooleanField(
        "default queue", default=False, help_text="calls that name no queue join it"
    )
    open_answer = models.BooleanField(
        default=False,
        help_text="any operator (and API token) may answer its calls without an offer",
    )
    offer_callback = models.BooleanField(
        "offer callbacks",
        default=True,
        help_text="waiting callers may ask to be called back instead of waiting"
        " (never in a queue with open answer)",
    )
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(auto_now=True)

    objects = QueueQuerySet.as_manager()

    class Meta:
        ordering = ["-is_default", "name"]
        constraints = [
            models.UniqueConstraint(
                fields=["is_default"], condition=Q(is_default=True), name="one_default_queue"
            ),
            models.CheckConstraint(
                name="queue_overflow_has_target",
                condition=~Q(overflow="queue") | Q(overflow_queue__isnull=False),
            ),
        ]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        if self.overflow == Overflow.QUEUE and self.overflow_queue_id is None:
            raise ValidationError({"overflow_queue": "choose the queue callers move to"})
        if self.overflow_queue_id is not None and self.overflow_queue_id == self.pk:
            raise ValidationError({"overflow_queue": "a queue cannot overflow into itself"})
        loop = self.overflow_loop()
        if loop:
            raise ValidationError(
                {"overflow_queue": "callers would go round in a loop: " + " → ".join(loop)}
            )

    def overflow_loop(self) -> list[str]:
        """The names along the overflow chain from this queue if it comes back to this
        queue (a loop would move a caller on forever), else []. Saved rows are read for
        the rest of the chain; this (possibly unsaved) queue's own choice is used."""
        if self.overflow != Overflow.QUEUE or self.overflow_queue_id is None:
            return []
        names = [self.name]
        seen = {self.pk}
        current: Queue | None = Queue.objects.filter(pk=self.overflow_queue_id).first()
        while current is not None:
            names.append(current.name)
            if current.pk in seen:
                return names if current.pk == self.pk else []
            seen.add(current.pk)
            if current.overflow != Overflow.QUEUE or current.overflow_queue_id is None:
                return []
            current = Queue.objects.filter(pk=current.overflow_queue_id).first()
        return []

    @property
    def offers_callbacks(self) -> bool:
        """Whether its waiting callers may ask for a callback: never where operators pick
        any ringing call themselves (open answer, the default queue: no line to leave)."""
        return self.offer_callback and not self.open_answer

    def member_users(self) -> models.QuerySet[Any]:
        """The operators who answer this queue (users, their groups', or every operator)."""
        users = operator_users()
        if self.all_operators:
            return users
        return users.filter(
            Q(pk__in=self.members.through.objects.filter(queue=self).values("user_id"))
            | Q(
                pk__in=users.model.groups.through.objects.filter(
                    group__in=self.member_groups.all()
                ).values("user_id")
            )
        )


class OfferOutcome(models.TextChoices):
    PENDING = "pending"
    ANSWERED = "answered"
    MISSED = "missed"  # rang out
    CANCELLED = "cancelled"  # someone else answered, the caller left, or the call moved on
    DECLINED = "declined"  # the operator passed it on (never offered this call again)


class QueueOffer(models.Model):
    """One call offered to one operator. The outcome is set once, from pending."""

    call = models.ForeignKey("calls.Call", on_delete=models.CASCADE, related_name="offers")
    queue = models.ForeignKey(Queue, on_delete=models.PROTECT, related_name="offers")
    operator = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="queue_offers"
    )
    offered_at = models.DateTimeField(default=timezone.now)
    deadline = models.DateTimeField()
    outcome = models.CharField(
        max_length=16, choices=OfferOutcome.choices, default=OfferOutcome.PENDING
    )
    ended_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["offered_at", "id"]
        constraints = [
            # An operator is never rung for two calls, however many processes route.
            models.UniqueConstraint(
                fields=["operator"],
                condition=Q(outcome="pending"),
                name="one_pending_offer_per_operator",
            ),
            models.CheckConstraint(
                name="offer_ended_unless_pending",
                condition=Q(outcome="pending", ended_at=None)
                | (~Q(outcome="pending") & ~Q(ended_at=None)),
            ),
        ]
        indexes = [
            models.Index(
                fields=["call"], condition=Q(outcome="pending"), name="offer_pending_by_call"
            ),
            models.Index(
                fields=["deadline"], condition=Q(outcome="pending"), name="offer_pending_deadline"
            ),
        ]

    def __str__(self) -> str:
        return f"offer of {str(self.call_id)[:8]} to {self.operator} ({self.outcome})"
