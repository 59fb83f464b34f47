"""Calls a stopped server leaves open end with `server_restart`: their media died with it.

Two moments, one rule. Both touch only the calls pinned to this process's media worker
(CALLBRIDGE_MEDIA_WORKER_NAME), which in the embedded set-up is every call:

- start-up (`reconcile_at_startup`, run by `manage.py serve` before it listens): a process
  that was killed (SIGKILL, OOM, power loss) left calls `ringing`/`active`, legs
  `connected` and recordings `recording`: a packet capture beside an empty WAV (the
  forwarding media path) or a WAV whose header is behind the data it covers (decoding).
  Each call ends (`call.ended`, reason `server_restart`, `data.at = "startup"`), each
  recording is rendered from its capture (up to the last packet) or repaired from the
  file's length, and finished (`server_restart`, with its
  SHA-256, size and duration; `failed` if the file is gone or not ours), each leg closed.
- graceful stop (`ShutdownReconciler`, a background service stopped right after the
  media worker): the worker has closed the legs and finalized the recordings (`shutdown`);
  the calls it served end too (`data.at = "shutdown"`) instead of staying `active`.

With several media-worker processes, a worker that dies is noticed by worker liveness
instead (a separate step): these functions only ever end this process's own calls.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from pathlib import Path

from channels.db import database_sync_to_async

from calls.errors import CallStateError
from calls.media.capture import capture_path, iter_capture
from calls.media.render import render
from calls.media.wav import TICK_S, RecordingResult, repair_wav
from calls.models import Call, EndReason, Leg, MediaState, Recording, RecordingState, StopReason
from calls.recordings import recordings_dir

logger = logging.getLogger(__name__)

LIVE_MEDIA_STATES = (
    MediaState.NEW,
    MediaState.CONNECTING,
    MediaState.CONNECTED,
    MediaState.DISCONNECTED,
)


@dataclass(frozen=True)
class Reconciled:
    calls: int
    recordings: int
    legs: int


def reconcile_at_startup(worker: str) -> Reconciled:
    """End what a previous run of `worker` left open (call before serving anything)."""
    return _end_open_calls(worker, at="startup", recording_reason=StopReason.SERVER_RESTART)


def end_calls_at_shutdown(worker: str) -> Reconciled:
    """End `worker`'s calls once its media is gone (recordings left running: repaired)."""
    return _end_open_calls(worker, at="shutdown", recording_reason=StopReason.SHUTDOWN)


def _end_open_calls(worker: str, *, at: str, recording_reason: str) -> Reconciled:
    calls = recordings = legs = 0
    for call in Call.objects.open().filter(media_worker=worker):
        try:
            call.terminate(EndReason.SERVER_RESTART, detail={"at": at})
            calls += 1
        except CallStateError:
            pass  # it ended meanwhile: its recordings and legs are still checked below
    # Also recordings/legs of calls that ended but whose media was never wound down.
    for recording in Recording.objects.filter(
        state=RecordingState.RECORDING, call__media_worker=worker
    ):
        _finalize_left_recording(recording, recording_reason)
        recordings += 1
    for leg in Leg.objects.filter(
        call__media_worker=worker,
        media_state__in=LIVE_MEDIA_STATES,
        call__ended_at__isnull=False,
    ):
        leg.set_media_state(MediaState.CLOSED)
        legs += 1
    if calls or recordings or legs:
        logger.warning(
            "media worker %s %s: ended %d call(s) with server_restart, finalized %d"
            " recording(s), closed %d leg(s)",
            worker,
            at,
            calls,
            recordings,
            legs,
        )
    return Reconciled(calls, recordings, legs)


def _finalize_left_recording(recording: Recording, reason: str) -> None:
    path = recordings_dir() / recording.file_name
    try:
        result = _finalize_file(path).as_dict()
    except (OSError, ValueError) as error:
        logger.error("recording %s cannot be repaired: %s", recording.pk, error)
        recording.finish(reason=StopReason.FAILED, by="system", result={})
        return
    recording.finish(reason=reason, by="system", result=result)


class ShutdownReconciler:
    """Idle while serving; when stopped (after the media worker), ends the worker's calls."""

    def __init__(self, worker: str) -> None:
        self.worker = worker

    async def run(self) -> None:
        try:
            await asyncio.Event().wait()
        finally:
            try:
                await database_sync_to_async(end_calls_at_shutdown)(self.worker)
            except Exception:
                logger.exception("could not end the calls of media worker %s", self.worker)


def _finalize_file(path: Path) -> RecordingResult:
    """The forwarding path left a packet capture beside an empty WAV: render what it
    captured, up to its last packet. The decoding path wrote the WAV live: repair it."""
    capture = capture_path(path)
    if not capture.exists():
        return repair_wav(path)
    last_at = max((at for _, at, _ in iter_capture(capture)), default=None)  # streamed
    result = render(capture, path, last_at + TICK_S if last_at is not None else 0.0)
    capture.unlink()
    return result
