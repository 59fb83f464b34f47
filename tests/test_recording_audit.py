"""Auditors: recordings are read-only, listening needs a permission and is logged; purge."""

from __future__ import annotations

from datetime import timedelta
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.core.management import call_command
from django.test import Client
from django.utils import timezone

from calls.models import Call, EndUserSession, Recording, RecordingAccess
from calls.principals import Principal
from tests.support.recordings import finished_recording
from tests.support.rest_client import streamed_body

pytestmark = pytest.mark.django_db


@pytest.fixture
def recording(settings: Any, tmp_path: Path, operator: Principal) -> Recording:
    settings.MEDIA_ROOT = tmp_path
    session, _ = EndUserSession.create(ttl_seconds=600, display_name="Ada")
    call = Call.start(by=Principal.end_user(session), mode="bridge", media_worker="embedded")
    call.answer(operator)
    return finished_recording(call, operator, tmp_path, "ada.wav")


def client_for(username: str, *, may_listen: bool) -> Client:
    user = get_user_model().objects.create_user(username, password="x" * 12, is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="view_recording"))
    if may_listen:
        user.user_permissions.add(Permission.objects.get(codename="listen_recording"))
    client = Client()
    client.force_login(user)
    return client


def test_it_needs_the_listen_permission(recording: Recording) -> None:
    viewer = client_for("viewer", may_listen=False)
    assert viewer.get(f"/admin/calls/recording/{recording.pk}/change/").status_code == 200
    assert viewer.get(f"/admin/calls/recording/{recording.pk}/audio/").status_code == 403
    assert RecordingAccess.objects.count() == 0


def test_it_streams_through_django_and_logs_every_access(
    recording: Recording, tmp_path: Path
) -> None:
    auditor = client_for("auditor", may_listen=True)
    listened = auditor.get(f"/admin/calls/recording/{recording.pk}/audio/")
    assert listened.status_code == 200 and listened["Content-Type"] == "audio/wav"
    content = streamed_body(listened)
    assert content == (tmp_path / "recordings" / "ada.wav").read_bytes()
    downloaded = auditor.get(f"/admin/calls/recording/{recording.pk}/audio/?download=1")
    assert "attachment" in downloaded["Content-Disposition"]
    streamed_body(downloaded)
    log = list(RecordingAccess.objects.order_by("at").values_list("username", "action", "ip"))
    assert log == [("auditor", "listen", "127.0.0.1"), ("auditor", "download", "127.0.0.1")]
    page = auditor.get(f"/admin/calls/recording/{recording.pk}/change/").content.decode()
    assert "Who listened or downloaded" in page and "auditor" in page
    assert recording.sha256 in page


def test_it_keeps_recordings_read_only(recording: Recording, superuser: Any) -> None:
    admin = Client()
    admin.force_login(superuser)
    url = f"/admin/calls/recording/{recording.pk}/"
    assert admin.post(f"{url}change/", {"sha256": "0" * 64}).status_code == 403
    assert admin.get(f"{url}delete/").status_code == 403
    assert Recording.objects.get().sha256 == recording.sha256
    with pytest.raises(PermissionError):
        RecordingAccess.objects.all().delete()


def test_it_purges_expired_files_and_keeps_a_tombstone(
    recording: Recording, settings: Any, tmp_path: Path
) -> None:
    file = tmp_path / "recordings" / "ada.wav"
    out = StringIO()
    call_command("purge_recordings", stdout=out)
    assert "Retention is off" in out.getvalue() and file.exists()

    settings.CALLBRIDGE_RECORDING_RETENTION_DAYS = 30
    Recording.objects.filter(pk=recording.pk).update(ended_at=timezone.now() - timedelta(days=31))
    call_command("purge_recordings", "--dry-run", stdout=out)
    assert file.exists()
    call_command("purge_recordings", stdout=out)
    assert not file.exists()
    tombstone = Recording.objects.get(pk=recording.pk)
    assert tombstone.purged_at is not None and "30 days" in tombstone.purge_reason
    assert (tombstone.sha256, tombstone.size_bytes) == (recording.sha256, recording.size_bytes)
    auditor = client_for("auditor", may_listen=True)
    assert auditor.get(f"/admin/calls/recording/{recording.pk}/audio/").status_code == 404


def test_it_keeps_recent_recordings(recording: Recording, settings: Any, tmp_path: Path) -> None:
    settings.CALLBRIDGE_RECORDING_RETENTION_DAYS = 30
    call_command("purge_recordings", stdout=StringIO())
    assert (tmp_path / "recordings" / "ada.wav").exists()
    assert Recording.objects.get().purged_at is None
