"""A recorded, finished two-party call for the transcript tests (the policy's own consent
check), and what the transcribing child prints for the bookkeeping tests that need a
transcript but not the model."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from django.conf import settings as django_settings

from calls import transcripts
from calls.consent import consents_relied_on, record_answer
from calls.media.transcribe import MODEL_FILES_SHA256
from calls.media.wav import WavWriter
from calls.models import Call, EndUserSession, Recording, StopReason, Transcript
from calls.principals import Principal
from calls.recordings import recordings_dir
from tests.support.queues import make_operator

# What the child prints (calls.media.transcribe's Result), for the bookkeeping tests that
# need a transcript but not the model: the model's own run is the end-to-end test's.
HEARD = {
    "model": "whisper-tiny.en (CTranslate2 int8)",
    "model_sha256": MODEL_FILES_SHA256["model.bin"],
    "language": "en",
    "audio_s": 2.0,
    "cpu_s": 0.1,
    "lines": [
        {"channel": 1, "start_s": 0.2, "end_s": 0.6, "text": "Good morning, Maria speaking."},
        {"channel": 0, "start_s": 0.7, "end_s": 0.9, "text": "My parcel has not arrived."},
    ],
}


def silence(path: Path) -> dict[str, Any]:
    writer = WavWriter(path)
    writer.append(bytes(48000 * 4))  # a second of stereo silence
    return writer.close().as_dict()


def recorded(
    name: str,
    make_wav: Callable[[Path], dict[str, Any]] = silence,
    *,
    consent: bool = True,
    withdraw: bool = False,
) -> Recording:
    """A bridged call between Ada (end user) and Maria Rossi (staff operator), recorded
    with both parties' consent (the policy's own check) and finished with `make_wav`'s file."""
    session, _ = EndUserSession.create(ttl_seconds=600, display_name="Ada")
    maria = make_operator(f"maria-{name[:8]}")
    maria.first_name, maria.last_name = "Maria", "Rossi"
    maria.save()
    ada, operator = Principal.end_user(session), Principal.staff(maria)
    call = Call.start(by=ada, mode="bridge", media_worker="embedded")
    call.answer(operator)
    version = django_settings.CALLBRIDGE_CONSENT_POLICY_VERSION
    if consent:
        for principal, method in ((ada, "page"), (operator, "dashboard")):
            record_answer(
                principal, call, granted=True, policy_version=version, method=method,
                ip=None, user_agent="test",
            )  # fmt: skip
    recording = Recording.begin(call, operator, name, consents=consents_relied_on)
    facts = make_wav(recordings_dir() / name)
    reason = StopReason.STOPPED
    if withdraw:
        record_answer(
            ada, call, granted=False, policy_version=version, method="page", ip=None,
            user_agent="test",
        )  # fmt: skip
        reason = StopReason.CONSENT_WITHDRAWN
    recording.finish(reason=reason, by=operator.label, result=facts)
    return recording


def transcribed(recording: Recording, host: str = "here") -> Transcript:
    """Queue, claim and complete `recording`'s job with HEARD (no model run)."""
    transcripts.queue_finished_recordings()
    job = transcripts.claim(host)
    assert job is not None and job.recording_id == str(recording.pk)
    assert transcripts.complete(job, HEARD)
    return Transcript.objects.get(recording=recording)


def race_on_this_database(claimers: int = 8) -> dict[str, Any]:
    """Run in a process whose database is a real server (PostgreSQL): `claimers` threads
    take jobs at the same instant, first all as one host with one slot, then each as its
    own host, for one job; then full-text search. Returns what happened (printed as JSON
    by the caller's `manage.py shell`)."""
    import threading

    from django.db import connections

    recordings_dir().mkdir(parents=True, exist_ok=True)
    for name in ("pg-one.wav", "pg-two.wav"):
        recorded(name)
    transcripts.queue_finished_recordings()

    def race(hosts: list[str]) -> list[transcripts.Claimed]:
        start = threading.Barrier(len(hosts))
        taken: list[transcripts.Claimed] = []

        def claim(host: str) -> None:
            try:
                start.wait(timeout=30)
                job = transcripts.claim(host)
                if job is not None:
                    taken.append(job)
            finally:
                connections.close_all()

        threads = [threading.Thread(target=claim, args=(host,)) for host in hosts]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        return taken

    one_host = race(["h"] * claimers)
    many_hosts = race([f"h{i}" for i in range(claimers)])
    for job in one_host + many_hosts:
        transcripts.complete(job, HEARD)
    done = Transcript.objects.filter(state="done")
    return {
        "one_host": len(one_host),
        "many_hosts": len(many_hosts),
        "distinct_jobs": len({job.transcript_id for job in one_host + many_hosts}),
        "stemmed": transcripts.search(done, "parcels arriving").count(),
        "phrase": transcripts.search(done, '"maria speaking"').count(),
        "excluded": transcripts.search(done, "parcel -maria").count(),
        "none": transcripts.search(done, "invoice").count(),
    }
