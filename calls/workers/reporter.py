"""Records what media workers report about legs (in the database, off the event loop)."""

from __future__ import annotations

import logging

from channels.db import database_sync_to_async
from django.db import transaction

from calls import setup_trace
from calls.media.quality import Summary, merged
from calls.models import Leg, MediaState, Recording
from calls.workers.protocol import QualityAlert, QualitySummary, RecordedFile, Report

logger = logging.getLogger(__name__)


def record_leg_state(leg_id: str, state: str) -> None:
    leg = Leg.objects.filter(pk=leg_id).first()
    if leg is None:
        # An offer the records never accepted (refused, or its call ended meanwhile).
        logger.info("media state %s for unknown leg %s ignored", state, leg_id)
        return
    leg.set_media_state(state)
    if state == MediaState.CONNECTED:
        setup_trace.mark(leg_id, "records.connected")


def record_recording_finished(
    recording_id: str, reason: str, by: str, result: RecordedFile
) -> None:
    recording = Recording.objects.filter(pk=recording_id).first()
    if recording is None:
        logger.warning("finished recording %s has no record", recording_id)
        return
    recording.finish(reason=reason, by=by, result=result.as_dict())


def record_quality_alert(alert: QualityAlert) -> None:
    leg = Leg.objects.filter(pk=alert.leg).first()
    if leg is None:
        logger.info("%s for unknown leg %s ignored", alert.name, alert.leg)
        return
    # The contract's `metric` and `value` (the MOS), with the figures behind it.
    data = {
        "metric": "mos",
        "value": alert.mos,
        "r": alert.r,
        "lossPercent": alert.loss_percent,
        "jitterMs": alert.jitter_ms,
        "rttMs": alert.rtt_ms,
    }
    leg.record_quality_change(alert.name, data)


def _stored_summary(leg: Leg) -> Summary | None:
    if not leg.quality_samples or leg.mos_min is None or leg.mos_avg is None:
        return None
    return Summary(
        samples=leg.quality_samples,
        mos_min=leg.mos_min,
        mos_avg=leg.mos_avg,
        loss_percent=leg.loss_percent or 0.0,
        jitter_ms=leg.jitter_ms or 0.0,
        rtt_ms=leg.rtt_ms,
        warnings=leg.quality_warnings,
    )


def record_quality_summary(report: QualitySummary) -> None:
    """One connection's summary, merged into the leg's (a reconnect is a new connection);
    one write per connection, under the leg's lock (two connections may end together)."""
    summary = report.summary()
    with transaction.atomic():
        leg = Leg.objects.select_for_update().filter(pk=report.leg).first()
        if leg is None:
            logger.info("quality summary for unknown leg %s ignored", report.leg)
            return
        stored = _stored_summary(leg)
        total = summary if stored is None else merged(stored, summary)
        Leg.objects.filter(pk=leg.pk).update(
            quality_samples=total.samples,
            mos_min=total.mos_min,
            mos_avg=total.mos_avg,
            loss_percent=total.loss_percent,
            jitter_ms=total.jitter_ms,
            rtt_ms=total.rtt_ms,
            quality_warnings=total.warnings,
        )


def record_leg_quality(report: Report) -> None:
    if isinstance(report, QualityAlert):
        record_quality_alert(report)
    elif isinstance(report, QualitySummary):
        record_quality_summary(report)


class DatabaseLegReporter:
    async def leg_state(self, call_id: str, leg_id: str, state: str) -> None:
        if state == MediaState.CONNECTING:
            return  # recorded when the offer was accepted (commit_offer)
        await database_sync_to_async(record_leg_state)(leg_id, state)

    async def recording_finished(
        self, recording_id: str, reason: str, by: str, result: RecordedFile
    ) -> None:
        await database_sync_to_async(record_recording_finished)(recording_id, reason, by, result)

    async def leg_quality(self, report: Report) -> None:
        await database_sync_to_async(record_leg_quality)(report)
