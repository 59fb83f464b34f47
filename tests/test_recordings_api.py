"""Recordings for integrators: the list and the audio (Range requests), the listen
permission (an API token's `can_listen`, staff's `calls.listen_recording`), the log."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.test import Client

from calls.models import ApiToken, Call, EndUserSession, Recording, RecordingAccess
from calls.principals import Principal
from tests.support.queues import client_of, make_operator
from tests.support.recordings import finished_recording
from tests.support.rest_client import assert_error, bearer_client, streamed_body

pytestmark = pytest.mark.django_db


@pytest.fixture
def recording(
    settings: Any,
    tmp_path: Path,
    operator: Principal,
    make_session: Callable[..., tuple[EndUserSession, str]],
) -> Recording:
    settings.MEDIA_ROOT = tmp_path
    session, _ = make_session()
    call = Call.start(by=Principal.end_user(session), mode="bridge", media_worker="embedded")
    call.answer(operator)
    return finished_recording(call, operator, tmp_path, "ada.wav")


def listening_token(name: str = "archiver") -> tuple[ApiToken, str]:
    token, secret = ApiToken.create(name)
    ApiToken.objects.filter(pk=token.pk).update(can_listen=True)
    token.refresh_from_db()
    return token, secret


def test_it_lists_recordings_with_filters_for_tokens_that_may_listen(
    recording: Recording, operator: Principal, tmp_path: Path
) -> None:
    other_call = Call.start(by=operator, mode="echo", media_worker="embedded")
    other = finished_recording(other_call, operator, tmp_path, "echo.wav")
    _, secret = listening_token()
    client = bearer_client(secret)

    listed = client.get("/api/recordings")
    assert listed.status_code == 200, listed.json()
    assert [r["recordingID"] for r in listed.json()] == [str(other.pk), str(recording.pk)]
    first = listed.json()[1]
    assert first["callID"] == str(recording.call_id) and first["kind"] == "call"
    assert first["sha256"] == recording.sha256 and first["state"] == "finished"
    assert first["sizeBytes"] == recording.size_bytes and first["listened"] is False
    assert first["audioUrl"] == f"/api/recordings/{recording.pk}/audio"

    one_call = client.get(f"/api/recordings?call={recording.call_id}").json()
    assert [r["recordingID"] for r in one_call] == [str(recording.pk)]
    assert client.get("/api/recordings?kind=voicemail").json() == []
    paged = client.get("/api/recordings?limit=1")
    assert len(paged.json()) == 1 and 'rel="next"' in paged["Link"]
    assert_error(client.get("/api/recordings?kind=tape"), 400, "INVALID_ARGUMENT")
    assert_error(client.get("/api/recordings?call=nope"), 400, "INVALID_ARGUMENT")
    assert_error(client.get("/api/recordings?since=yesterday"), 400, "INVALID_ARGUMENT")


def test_it_refuses_who_may_not_listen(
    recording: Recording,
    operator_client: Any,
    make_session: Callable[..., tuple[EndUserSession, str]],
) -> None:
    audio = f"/api/recordings/{recording.pk}/audio"
    for path in ("/api/recordings", audio):
        assert_error(operator_client.get(path), 403, "FORBIDDEN")  # a token without the flag
    _, user_token = make_session()
    assert_error(bearer_client(user_token).get(audio), 403, "FORBIDDEN")
    operator_only = client_of(make_operator("bob"))  # operates, may not listen
    assert_error(operator_only.get(audio), 403, "FORBIDDEN")
    assert RecordingAccess.objects.count() == 0
    _, secret = listening_token()
    assert_error(bearer_client(secret).get(f"/api/recordings/{'0' * 8}/audio"), 404, "NOT_FOUND")


def test_it_serves_ranges_and_logs_every_fetch(recording: Recording, tmp_path: Path) -> None:
    wav = (tmp_path / "recordings" / "ada.wav").read_bytes()
    size = len(wav)
    token, secret = listening_token()
    client = bearer_client(secret)
    audio = f"/api/recordings/{recording.pk}/audio"

    whole = client.get(audio)
    assert whole.status_code == 200 and whole["Content-Type"] == "audio/wav"
    assert whole["Accept-Ranges"] == "bytes" and whole["Content-Length"] == str(size)
    assert streamed_body(whole) == wav

    cases = {
        "bytes=0-99": (0, 99),  # the first bytes (a player's probe)
        "bytes=1000-1999": (1000, 1999),  # the middle (a seek)
        "bytes=-500": (size - 500, size - 1),  # a suffix: the last 500
        f"bytes=9000-{size * 2}": (9000, size - 1),  # past the end: up to the end
    }
    for header, (first, last) in cases.items():
        part = client.get(audio, HTTP_RANGE=header)
        assert part.status_code == 206, header
        assert part["Content-Range"] == f"bytes {first}-{last}/{size}"
        assert int(part["Content-Length"]) == last - first + 1
        assert streamed_body(part) == wav[first : last + 1], header

    for header in (f"bytes={size}-", "bytes=500-100", "bytes=abc", "bytes=0-1,5-9", "bytes=-0"):
        refused = client.get(audio, HTTP_RANGE=header)
        body = assert_error(refused, 416, "INVALID_ARGUMENT")
        assert refused["Content-Range"] == f"bytes */{size}", header
        assert body["details"] == {"size": size}

    downloaded = client.get(f"{audio}?download=1", HTTP_RANGE="bytes=0-9")
    assert downloaded.status_code == 206 and "attachment" in downloaded["Content-Disposition"]
    streamed_body(downloaded)

    log = list(
        RecordingAccess.objects.order_by("at", "pk").values_list("user", "username", "action")
    )
    label = f"api token archiver ({token.prefix})"
    assert log == [(None, label, "listen")] * 5 + [(None, label, "download")]
    assert bearer_client(secret).get("/api/recordings").json()[0]["listened"] is True


def test_it_serves_staff_who_may_listen_and_ranges_in_the_admin_player(
    recording: Recording, tmp_path: Path
) -> None:
    wav = (tmp_path / "recordings" / "ada.wav").read_bytes()
    carol = make_operator("carol")
    carol.user_permissions.add(Permission.objects.get(codename="listen_recording"))
    fetched = client_of(carol).get(f"/api/recordings/{recording.pk}/audio", HTTP_RANGE="bytes=4-7")
    assert fetched.status_code == 206 and streamed_body(fetched) == wav[4:8]

    admin = Client()
    admin.force_login(carol)
    seek = admin.get(f"/admin/calls/recording/{recording.pk}/audio/", HTTP_RANGE="bytes=-4")
    assert seek.status_code == 206 and streamed_body(seek) == wav[-4:]
    past = admin.get(f"/admin/calls/recording/{recording.pk}/audio/", HTTP_RANGE="bytes=99999-")
    assert past.status_code == 416 and past["Content-Range"] == f"bytes */{len(wav)}"
    log = RecordingAccess.objects.order_by("at", "pk").values_list("user", "username")
    assert list(log) == [(carol.pk, "operator carol"), (carol.pk, "carol")]


def test_it_lets_only_who_may_listen_grant_a_token_the_flag(superuser: Any, db: Any) -> None:
    token, _ = ApiToken.create("crm")
    clerk = get_user_model().objects.create_user("clerk", password="x" * 12, is_staff=True)
    for codename in ("view_apitoken", "change_apitoken"):
        clerk.user_permissions.add(Permission.objects.get(codename=codename))
    page = f"/admin/calls/apitoken/{token.pk}/change/"
    clerk_client = Client()
    clerk_client.force_login(clerk)
    clerk_client.post(page, {"name": "crm", "can_listen": "on"})
    token.refresh_from_db()
    assert token.can_listen is False
    root = Client()
    root.force_login(superuser)
    assert root.post(page, {"name": "crm", "can_listen": "on"}).status_code == 302
    token.refresh_from_db()
    assert token.can_listen is True
