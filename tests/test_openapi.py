"""The OpenAPI schema: generated without warnings, describing the contract's paths."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from django.core.management import call_command
from rest_framework.test import APIClient

pytestmark = pytest.mark.django_db


def test_it_generates_a_valid_schema_without_warnings(tmp_path: Path) -> None:
    target = tmp_path / "schema.yaml"
    # --fail-on-warn raises on any warning; --validate checks it against the OpenAPI spec.
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(target))
    schema = yaml.safe_load(target.read_text())
    assert set(schema["paths"]) == {
        "/api/webrtc/config",
        "/api/sessions",
        "/api/sessions/me/preflight",
        "/api/v1/webrtc/sessions",
        "/api/calls",
        "/api/calls/{callID}",
        "/api/calls/{callID}/answer",
        "/api/calls/{callID}/reject",
        "/api/calls/{callID}/decline",
        "/api/calls/{callID}/hangup",
        "/api/calls/{callID}/consent",
        "/api/calls/{callID}/callback",
        "/api/calls/{callID}/hold",
        "/api/calls/{callID}/resume",
        "/api/calls/{callID}/transfer",
        "/api/calls/{callID}/supervise",
        "/api/calls/{callID}/supervise/stop",
        "/api/calls/{callID}/consult",
        "/api/calls/{callID}/consult/complete",
        "/api/calls/{callID}/consult/cancel",
        "/api/calls/{callID}/play",
        "/api/calls/{callID}/play/stop",
        "/api/calls/{callID}/record",
        "/api/calls/{callID}/record/stop",
        "/api/calls/{callID}/webrtc/offer",
        "/api/calls/{callID}/webrtc/close",
        "/api/calls/{callID}/disposition",
        "/api/calls/{callID}/events",
        "/api/calls/{callID}/preflight",
        "/api/calls/export",
        "/api/recordings",
        "/api/recordings/{recordingID}/audio",
        "/api/recordings/{recordingID}/transcript",
        "/api/transcripts",
        "/api/dispositions",
        "/api/operators",
        "/api/operators/me/status",
        "/api/operators/stats",
        "/api/queues",
        "/api/queues/{publicId}",
        "/api/queues/{publicId}/stats",
        "/api/callbacks",
        "/api/callbacks/{callbackID}/call",
        "/api/callbacks/{callbackID}/close",
        "/api/voicemails",
        "/call/webrtc/config",
        "/call/webrtc/offer",
        "/call/webrtc/close",
        "/call/make",
        "/call/hangup",
        "/call/record",
        "/call/play",
    }
    assert set(schema["components"]["securitySchemes"]) == {
        "bearerAuth",
        "tokenHeader",
        "staffSession",
    }
    error_codes = schema["components"]["schemas"]["Error"]["properties"]["code"]
    assert "CALL_STATE" in str(error_codes) or "$ref" in str(error_codes)


def test_it_serves_the_schema_and_docs_page() -> None:
    client = APIClient()
    schema = client.get("/api/schema/")
    assert schema.status_code == 200 and b"/api/calls/{callID}/answer" in schema.content
    docs = client.get("/api/docs/")
    assert docs.status_code == 200
    assert b"cdn.jsdelivr" not in docs.content  # self-hosted assets, no CDN
