"""Bugs the REST fuzzing (tests/test_fuzz_rest.py) found, pinned as plain tests."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from django.core.management import call_command
from rest_framework.test import APIClient

from calls.models import Call
from tests.support.rest_client import assert_error

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    "call_id", ["000000000000000000000000000000000000", "-" * 36, "a" * 35 + "-"]
)
@pytest.mark.parametrize("verb", ["", "/answer", "/hangup", "/webrtc/close", "/record/stop"])
def test_it_answers_not_found_for_ids_that_match_the_route_but_are_not_uuids(
    operator_client: APIClient, inbound_call: Call, call_id: str, verb: str
) -> None:
    """Found: GET /api/calls/000000000000000000000000000000000000 was a 500 HANDLER_ERROR
    (the route admits any 36 hex digits and dashes; the UUID lookup raised)."""
    method = operator_client.get if verb == "" else operator_client.post
    assert_error(method(f"/api/calls/{call_id}{verb}"), 404, "NOT_FOUND")
    assert Call.objects.get(pk=inbound_call.pk).state == "ringing"


def test_it_documents_the_nullable_leg_times(tmp_path: Path) -> None:
    """Found: a leg without media has mediaConnectedAt/mediaEndedAt null, which the schema
    said could not happen (clients generated from it reject the call object)."""
    target = tmp_path / "schema.yaml"
    call_command("spectacular", "--file", str(target))
    leg = yaml.safe_load(target.read_text())["components"]["schemas"]["Leg"]["properties"]
    assert leg["mediaConnectedAt"].get("nullable") is True
    assert leg["mediaEndedAt"].get("nullable") is True
