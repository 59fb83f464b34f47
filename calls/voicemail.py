"""The voicemail stage: a caller whose queue overflows to voicemail may leave a message.

- `offer_stage` (the routing deadlines' overflow, under the call's lock): the call leaves
  the line (state `voicemail`: nobody answers it, no offers), `queue.voicemail_offered`
  (the caller's `queue.voicemail`: the notice, its version, the longest message) and a
  deadline to choose (CALLBRIDGE_VOICEMAIL_CHOICE_S). The greeting is played once by
  calls.routing.waiting, which owns what the waiting caller hears.
- `start_message`: the caller pressed "Leave a message" after the notice: that is the
  consent. The consent row and the recording (kind `voicemail`, the caller's leg only: a
  bridge call with no operator leg records silence on the right) start in one
  transaction under the call's row lock; the deadline becomes the queue's longest message;
  a beep replaces the greeting.
- `stop_message` (the caller's "Send") and `expire_stage` (the deadline: no choice →
  `no_operator`; the longest message reached, or the caller gone → the message is kept):
  the recording stops and the call ends `voicemail`. A hang-up mid-message ends it the
  same way (Call.hang_up); the worker then finalizes the file as for any call's end.
  `voicemail.left {recordingId, durationS}` is recorded once, by Recording.finish.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import math
import os
import sys
import uuid
import wave
from array import array
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from asgiref.sync import async_to_sync
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from calls.calling import call_for
from calls.errors import CallbridgeError, CallStateError, ErrorCode
from calls.models import (
    Call,
    CallEvent,
    CallState,
    ConsentMethod,
    LegRole,
    MediaState,
    Queue,
    Recording,
    RecordingConsent,
    RecordingKind,
    RecordingState,
    StopReason,
)
from calls.models.recording import UNSENT
from calls.principals import SYSTEM, Principal
from calls.recordings import start_on_worker
from calls.workers import link, protocol

logger = logging.getLogger(__name__)


BEEP_HZ, BEEP_S = 1000, 0.3


def beep_path() -> Path:
    """The tone that marks the start of a message: a short WAV made once under MEDIA_ROOT
    (media workers read it as they read the audio library), so no binary lives in the repo."""
    path = Path(settings.MEDIA_ROOT) / "voicemail" / f"beep-{BEEP_HZ}.wav"
    if path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    count = int(48000 * BEEP_S)
    fade = 480  # 10 ms in and out: no click
    samples = array(
        "h",
        (
            int(
                9000
                * min(1.0, i / fade, (count - i) / fade)
                * math.sin(2 * math.pi * BEEP_HZ * i / 48000)
            )
            for i in range(count)
        ),
    )
    if sys.byteorder == "big":
        samples.byteswap()
    partial = path.with_suffix(f".{uuid.uuid4().hex[:8]}.part")
    with wave.open(str(partial), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(48000)
        out.writeframes(samples.tobytes())
    os.replace(partial, path)  # whole or not at all, whoever makes it first
    return path


def notice_sha256() -> str:
    return hashlib.sha256(settings.CALLBRIDGE_VOICEMAIL_NOTICE_TEXT.encode()).hexdigest()


def stage_details(queue: Queue, deadline: datetime) -> dict[str, Any]:
    """What `queue.voicemail_offered` records and the caller is told (`queue.voicemail`).
    `callback`: whether a callback request is accepted in this stage too (until a message
    starts; the queue's `offer_callback`)."""
    return {
        "queue": queue.public_id,
        "queueName": queue.name,
        "consentText": settings.CALLBRIDGE_VOICEMAIL_NOTICE_TEXT,
        "policyVersion": settings.CALLBRIDGE_VOICEMAIL_NOTICE_VERSION,
        "maxS": queue.voicemail_max_s,
        "choiceDeadline": deadline.isoformat(),
        "callback": queue.offer_callback,
    }


def offer_stage(call: Call, queue: Queue, now: datetime) -> None:
    """The caller's maximum wait passed in a queue whose overflow is voicemail."""
    deadline = now + timedelta(seconds=settings.CALLBRIDGE_VOICEMAIL_CHOICE_S)
    call.offer_voicemail(deadline, stage_details(queue, deadline))


def choices_of(calls: list[Call]) -> list[tuple[str, dict[str, Any]]]:
    """For a (re)registering caller: its calls still choosing in the stage, each with what
    its `queue.voicemail` said (the page lost it on a reload)."""
    choosing = [c.pk for c in calls if c.state == CallState.VOICEMAIL]
    if not choosing:
        return []
    offered = {
        call_id: data
        for call_id, data in CallEvent.objects.filter(
            call_id__in=choosing, name="queue.voicemail_offered"
        ).values_list("call_id", "data")
    }
    started = set(
        Recording.objects.filter(call_id__in=choosing, kind=RecordingKind.VOICEMAIL).values_list(
            "call_id", flat=True
        )
    )
    return [(str(pk), offered[pk]) for pk in choosing if pk in offered and pk not in started]


def _require_caller(principal: Principal, call: Call) -> None:
    if principal.session is None or principal.session.pk != call.session_id:
        raise CallbridgeError(ErrorCode.FORBIDDEN, "only the caller leaves a message")


def start_message(
    principal: Principal, call_id: str, *, ip: str | None = None, user_agent: str = ""
) -> Recording:
    """The caller's "Leave a message": consent and recording, once, or a contract error
    with nothing changed; then the media worker records the caller's leg."""
    call = call_for(principal, call_id)
    recording = begin_message(principal, call, ip=ip, user_agent=user_agent)
    _record(call, recording)
    return recording


def begin_message(
    principal: Principal, call: Call, *, ip: str | None = None, user_agent: str = ""
) -> Recording:
    """The records of a message: its consent and its recording, in one transaction under
    the call's row lock — so of two presses at once, one starts and one is CALL_STATE."""
    _require_caller(principal, call)
    recording_id = uuid.uuid4()
    name = f"voicemail-{call.pk}-{str(recording_id)[:8]}.wav"
    with transaction.atomic():
        locked = Call.objects.select_for_update().get(pk=call.pk)
        if locked.state != CallState.VOICEMAIL:
            raise CallStateError(f"no message can be left: the call is {locked.state}")
        if locked.recordings.filter(kind=RecordingKind.VOICEMAIL).exists():
            raise CallStateError("a message was already left on this call")
        if not locked.legs.filter(role=LegRole.USER, media_state=MediaState.CONNECTED).exists():
            raise CallStateError("your audio is not connected: nothing could be recorded")
        queue = locked.queue
        max_s = queue.voicemail_max_s if queue is not None else 120
        consent = RecordingConsent.objects.create(
            call=locked,
            **principal.party_fields(),
            granted=True,
            policy_version=settings.CALLBRIDGE_VOICEMAIL_NOTICE_VERSION,
            text_sha256=notice_sha256(),
            method=ConsentMethod.VOICEMAIL,
            ip=ip,
            user_agent=user_agent[:300],
        )
        locked.record_event(
            "consent.granted",
            principal,
            {
                "role": principal.role,
                "policy": consent.policy_version,
                "method": consent.method,
                "consentID": consent.pk,
            },
        )
        recording = Recording.objects.create(
            id=recording_id,
            call=locked,
            kind=RecordingKind.VOICEMAIL,
            file_name=name,
            started_by=principal.label,
        )
        recording.consents.set([consent])
        deadline = timezone.now() + timedelta(seconds=max_s)
        Call.objects.filter(pk=locked.pk).update(ring_deadline=deadline)
        locked.record_event(
            "recording.started",
            principal,
            {
                "recordingID": str(recording.pk),
                "consents": [consent.pk],
                "kind": RecordingKind.VOICEMAIL,
                "maxS": max_s,
                "deadline": deadline.isoformat(),
            },
        )
    return recording


def _record(call: Call, recording: Recording) -> None:
    # The greeting is over once the caller speaks: the beep replaces it (the same playback
    # id: calls.routing.waiting plays it) while the recorder starts on the caller's leg.
    beep = protocol.Play(call=str(call.pk), playback="waiting", path=str(beep_path()), to="user")
    async_to_sync(link.send)(call.media_worker, beep)
    start_on_worker(call, recording)


def stop_message(principal: Principal, call_id: str) -> None:
    """The caller's "Send": the message is kept and the call ends `voicemail`."""
    call = call_for(principal, call_id)
    _require_caller(principal, call)
    running = call.recordings.filter(
        kind=RecordingKind.VOICEMAIL, state=RecordingState.RECORDING
    ).first()
    if call.state != CallState.VOICEMAIL or running is None:
        raise CallStateError("no message is being recorded on this call")
    _finish(call, running, StopReason.STOPPED, principal)


def _finish(call: Call, running: Recording | None, reason: str, by: Principal) -> None:
    if running is not None:
        reply = link.request_from_thread(
            call.media_worker,
            link.record_stop_message(call.pk, running.pk, reason, by.label),
            within=link.REPLY_TIMEOUT_S + 60,
        )
        if reply.result is not None:
            # The worker also reports it; the first to write it wins (same facts).
            running.finish(reason=reason, by=by.label, result=reply.result.as_dict())
        # None: the call's end got there first and the worker reports the file itself.
    # Ended meanwhile (a hang-up, another process's sweep): once is enough.
    with contextlib.suppress(CallStateError):
        call.end_message(by)


def expire_stage(call_id: uuid.UUID, now: datetime) -> None:
    """The stage's deadline passed (re-checked under the lock): no choice → `no_operator`;
    a message → kept, the call ends `voicemail`."""
    with transaction.atomic():
        call = Call.objects.select_for_update().get(pk=call_id)
        if call.state != CallState.VOICEMAIL or call.ring_deadline is None:
            return
        if call.ring_deadline > now:
            return
        messages = call.recordings.filter(kind=RecordingKind.VOICEMAIL).exclude(
            stop_reason__in=UNSENT
        )
        if not messages.exists():
            if call.recordings.filter(kind=RecordingKind.VOICEMAIL).exists():
                call.hang_up(SYSTEM)  # the caller took the message back: `cancelled`
            else:
                call.refuse()  # chose nothing in time: `no_operator`
            return
        running = messages.filter(state=RecordingState.RECORDING).first()
        caller_here = call.legs.filter(role=LegRole.USER, media_state=MediaState.CONNECTED).exists()
    # Outside the lock: the worker renders the file before it answers.
    reason = StopReason.MAX_DURATION if caller_here else StopReason.HANGUP
    _finish(call, running, reason, SYSTEM)


def expire_stages(now: datetime | None = None) -> None:
    now = now or timezone.now()
    for call_id in Call.objects.overdue_voicemail(now).values_list("pk", flat=True):
        try:
            expire_stage(call_id, now)
        except Exception:
            logger.exception("voicemail stage of call %s could not end", call_id)
