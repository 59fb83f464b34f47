"""Making transcripts off the call path: the background task of every serving process
(calls.background, when CALLBRIDGE_TRANSCRIBE is on) and the one-shot runner behind
`manage.py transcribe`. Both take jobs from calls.transcripts (the database holds the
queue, the leases and the per-host slots) and run each in a niced child process
(calls.media.transcribe), renewing the job's lease while the child works.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
import subprocess
from pathlib import Path

from channels.db import database_sync_to_async
from django.conf import settings
from django.db.models import F

from calls import transcripts
from calls.media.transcribe import EXIT_UNAVAILABLE, unavailable_reason
from calls.models import Transcript, TranscriptState

logger = logging.getLogger(__name__)

PROJECT_ROOT = Path(__file__).resolve().parents[1]


def this_host() -> str:
    return socket.gethostname()


def _outcome(job: transcripts.Claimed, returncode: int, out: bytes, err: bytes) -> None:
    """Store the child's result, or count the failed attempt."""
    if returncode == 0:
        try:
            result = json.loads(out)
        except ValueError:
            transcripts.fail(job, f"unreadable result: {out[-500:]!r}")
            return
        if transcripts.complete(job, result):
            logger.info("transcript %s of recording %s ready", job.transcript_id, job.recording_id)
        return
    why = "transcription unavailable" if returncode == EXIT_UNAVAILABLE else "transcriber failed"
    transcripts.fail(job, f"{why} (exit {returncode}): {err.decode(errors='replace')[-2000:]}")


def release(job: transcripts.Claimed) -> None:
    """This process stops (shutdown): the job goes back to the queue, the attempt uncounted."""
    Transcript.objects.filter(
        pk=job.transcript_id, state=TranscriptState.RUNNING, host=job.host
    ).update(
        state=TranscriptState.PENDING,
        host="",
        slot=None,
        lease_until=None,
        attempts=F("attempts") - 1,
    )


def run_pending(host: str | None = None, limit: int | None = None) -> int:
    """Queue and transcribe pending jobs one after another, here and now (the command;
    the tests). Returns how many were run."""
    host = host or this_host()
    done = 0
    transcripts.queue_finished_recordings()
    while limit is None or done < limit:
        job = transcripts.claim(host)
        if job is None:
            break
        child = subprocess.Popen(  # noqa: S603 (our own module, no shell)
            transcripts.child_command(job.wav),
            cwd=PROJECT_ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        renew_every = settings.CALLBRIDGE_TRANSCRIBE_LEASE_S / 3
        while True:
            try:
                out, err = child.communicate(timeout=renew_every)
                break
            except subprocess.TimeoutExpired:
                if not transcripts.renew(job):  # taken from us: stop working on it
                    child.kill()
                    child.communicate()
                    out, err = b"", b"lease lost"
                    break
        _outcome(job, child.returncode, out, err)
        done += 1
    return done


class TranscriptWorker:
    """The background task: every CALLBRIDGE_TRANSCRIBE_POLL_S, queue finished recordings
    and take jobs into this host's free slots; each job's child runs while the loop serves
    calls (the loop only waits on it)."""

    def __init__(self, host: str | None = None) -> None:
        self.host = host or this_host()
        self._jobs: set[asyncio.Task[None]] = set()

    async def run(self) -> None:
        reason = unavailable_reason()
        if reason is not None:
            # A clear message and no crash: the jobs wait, queued, for a host that can.
            logger.error("CALLBRIDGE_TRANSCRIBE is on but this host cannot transcribe: %s", reason)
            return
        try:
            while True:
                await database_sync_to_async(transcripts.queue_finished_recordings)()
                while len(self._jobs) < settings.CALLBRIDGE_TRANSCRIBE_CONCURRENCY:
                    job = await self._claim()
                    if job is None:
                        break
                    task = asyncio.create_task(self._work(job), name="callbridge:transcript")
                    self._jobs.add(task)
                    task.add_done_callback(self._jobs.discard)
                await asyncio.sleep(settings.CALLBRIDGE_TRANSCRIBE_POLL_S)
        finally:
            for task in list(self._jobs):
                task.cancel()
            await asyncio.gather(*self._jobs, return_exceptions=True)

    async def _claim(self) -> transcripts.Claimed | None:
        # A claim runs to its end in its thread even if this task is cancelled meanwhile
        # (shutdown): a job it took then goes straight back to the queue, uncounted.
        claiming = asyncio.ensure_future(database_sync_to_async(transcripts.claim)(self.host))
        try:
            return await asyncio.shield(claiming)
        except asyncio.CancelledError:
            job = await claiming
            if job is not None:
                await database_sync_to_async(release)(job)
            raise

    async def _work(self, job: transcripts.Claimed) -> None:
        starting = asyncio.ensure_future(
            asyncio.create_subprocess_exec(
                *transcripts.child_command(job.wav),
                cwd=PROJECT_ROOT,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
        )
        child: asyncio.subprocess.Process | None = None
        try:
            # Shielded: stopped while the child starts, it is still found and killed.
            child = await asyncio.shield(starting)
            finished = asyncio.ensure_future(child.communicate())
            while True:
                done, _ = await asyncio.wait(
                    {finished}, timeout=settings.CALLBRIDGE_TRANSCRIBE_LEASE_S / 3
                )
                if done:
                    break
                if not await database_sync_to_async(transcripts.renew)(job):
                    child.kill()  # taken again elsewhere: this attempt is not ours now
                    await finished
                    return
            out, err = finished.result()
            await database_sync_to_async(_outcome)(job, child.returncode or 0, out, err)
        except asyncio.CancelledError:
            # This process stops: the child goes with it, the job back to the queue.
            with contextlib.suppress(Exception):
                child = child or await starting
            if child is not None:
                with contextlib.suppress(ProcessLookupError):
                    child.kill()
                with contextlib.suppress(Exception):
                    await child.wait()
            await asyncio.shield(database_sync_to_async(release)(job))
            raise
        except Exception:
            logger.exception("transcript %s: the job's bookkeeping failed", job.transcript_id)
