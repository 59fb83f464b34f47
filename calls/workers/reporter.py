"""Records what media workers report about legs (in the database, off the event loop)."""

from __future__ import annotations

import logging

from channels.db import database_sync_to_async

from calls.models import Leg, MediaState, Recording
from calls.workers.protocol import RecordedFile

logger = logging.getLogger(__name__)


def record_leg_state(leg_id: str, state: str) -> None:
    leg = Leg.objects.filter(pk=leg_id).first()
    if leg is None:
        # An offer the records never accepted (refused, or its call ended meanwhile).
        logger.info("media state %s for unknown leg %s ignored", state, leg_id)
        return
    leg.set_media_state(state)


def record_recording_finished(
    recording_id: str, reason: str, by: str, result: RecordedFile
) -> None:
    recording = Recording.objects.filter(pk=recording_id).first()
    if recording is None:
        logger.warning("finished recording %s has no record", recording_id)
        return
    recording.finish(reason=reason, by=by, result=result.as_dict())


class DatabaseLegReporter:
    async def leg_state(self, call_id: str, leg_id: str, state: str) -> None:
        if state == MediaState.CONNECTING:
            return  # recorded when the offer was accepted (commit_offer)
        await database_sync_to_async(record_leg_state)(leg_id, state)

    async def recording_finished(
        self, recording_id: str, reason: str, by: str, result: RecordedFile
    ) -> None:
        await database_sync_to_async(record_recording_finished)(recording_id, reason, by, result)
