"""Server-side call quality in the records: what a worker's reports become (a CallEvent per
warning or clearing, told to that leg's party and the feed; a summary merged per leg) and
where the summary shows (REST call detail, CDRs, admin). The media side is in
tests/test_quality_media.py."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse

from calls.events import event_message, summarised_calls
from calls.models import Call, CallEvent, Leg, WebhookDelivery, WebhookEndpoint
from calls.principals import Principal
from calls.signaling import payloads
from calls.webhooks import outbox, signing
from calls.workers import protocol
from calls.workers.reporter import record_leg_quality
from tests.support.rest_client import streamed_body

pytestmark = pytest.mark.django_db


def alert(leg: Leg, name: str = "quality.warning", mos: float = 2.61) -> protocol.QualityAlert:
    return protocol.QualityAlert(
        call=str(leg.call_id),
        leg=str(leg.pk),
        name=name,
        mos=mos,
        r=50.9,
        loss_percent=20.0,
        jitter_ms=12.5,
        rtt_ms=180.0,
    )


def summary(leg: Leg, **figures: Any) -> protocol.QualitySummary:
    return protocol.QualitySummary(call=str(leg.call_id), leg=str(leg.pk), **figures)


def seen(event: CallEvent) -> payloads.CallEventSnapshot:
    """The event as the sockets get it (through the channel layer's message)."""
    message = event_message(event, summarised_calls().get(pk=event.call_id))
    return payloads.call_event_from_message(json.loads(json.dumps(message)))


@pytest.fixture
def answered(inbound_call: Call, operator: Principal) -> Call:
    inbound_call.answer(operator)
    return inbound_call


def test_it_records_a_warning_for_the_leg_and_tells_only_its_party_and_the_feed(
    answered: Call, operator: Principal
) -> None:
    user_leg, operator_leg = answered.legs.get(role="user"), answered.legs.get(role="operator")
    hooked = WebhookEndpoint.objects.create(
        url="https://hooks.example.com/in", secret=signing.new_secret(), event_filter="quality.*"
    )
    record_leg_quality(alert(user_leg))
    event = CallEvent.objects.get(call=answered, name="quality.warning")
    assert event.leg_id == user_leg.pk and event.actor_role == "system"
    assert event.data == {
        "legID": str(user_leg.pk),
        "role": "user",
        "metric": "mos",
        "value": 2.61,
        "r": 50.9,
        "lossPercent": 20.0,
        "jitterMs": 12.5,
        "rttMs": 180.0,
    }
    snapshot = seen(event)
    told = payloads.party_event(snapshot, "user", str(user_leg.pk))
    assert told is not None and told["sessionId"] == str(user_leg.pk)
    assert told["data"]["name"] == "quality.warning"
    assert {k: told["data"][k] for k in ("legID", "role", "metric", "value")} == {
        "legID": str(user_leg.pk),
        "role": "user",
        "metric": "mos",
        "value": 2.61,
    }
    # The other party, and a socket with no leg in the call, are not told.
    assert payloads.party_event(snapshot, "operator", str(operator_leg.pk)) is None
    assert payloads.party_event(snapshot, "user", "") is None
    fed = payloads.feed_event(snapshot)
    assert fed["data"]["name"] == "quality.warning" and fed["data"]["legID"] == str(user_leg.pk)
    assert fed["data"]["value"] == 2.61 and fed["data"]["lossPercent"] == 20.0

    record_leg_quality(alert(user_leg, "quality.cleared", 4.4))
    cleared = CallEvent.objects.get(call=answered, name="quality.cleared")
    told = payloads.party_event(seen(cleared), "user", str(user_leg.pk))
    assert told is not None and told["data"]["value"] == 4.4
    # Webhooks follow call events: one delivery each, the figures in the payload.
    deliveries = WebhookDelivery.objects.filter(endpoint=hooked).order_by("id")
    assert [d.event.name for d in deliveries] == ["quality.warning", "quality.cleared"]
    sent = json.loads(outbox.payload(deliveries[0].event))
    assert sent["type"] == "quality.warning" and sent["data"]["legID"] == str(user_leg.pk)
    assert sent["data"]["details"]["value"] == 2.61

    # A report that comes after the end, or about a leg nobody knows, adds nothing.
    answered.hang_up(operator)
    record_leg_quality(alert(operator_leg))
    record_leg_quality(alert(Leg(id=uuid.uuid4(), call=answered)))
    names = list(CallEvent.objects.filter(name__startswith="quality.").values_list("name"))
    assert names == [("quality.warning",), ("quality.cleared",)]


def test_it_merges_a_legs_summaries_and_shows_them_in_rest_cdrs_and_admin(
    answered: Call, operator: Principal, operator_client: Any, superuser: Any
) -> None:
    user_leg = answered.legs.get(role="user")
    figures = {"mos_min": 2.6, "mos_avg": 3.5, "loss_percent": 10.0, "jitter_ms": 5.0}
    record_leg_quality(summary(user_leg, samples=4, rtt_ms=100.0, warnings=1, **figures))
    # The same leg's media reconnected: its next connection's summary is merged in.
    again = {"mos_min": 4.0, "mos_avg": 4.3, "loss_percent": 0.0, "jitter_ms": 3.0}
    record_leg_quality(summary(user_leg, samples=4, rtt_ms=None, warnings=0, **again))
    user_leg.refresh_from_db()
    assert (user_leg.quality_samples, user_leg.mos_min, user_leg.mos_avg) == (8, 2.6, 3.9)
    assert (user_leg.loss_percent, user_leg.jitter_ms, user_leg.rtt_ms) == (5.0, 4.0, 100.0)
    assert user_leg.quality_warnings == 1
    answered.hang_up(operator)

    detail = operator_client.get(f"/api/calls/{answered.pk}").json()
    legs = {leg["role"]: leg for leg in detail["legs"]}
    assert legs["user"]["quality"] == {
        "samples": 8,
        "mosMin": 2.6,
        "mosAvg": 3.9,
        "lossPercent": 5.0,
        "jitterMs": 4.0,
        "rttMs": 100.0,
        "warnings": 1,
    }
    assert legs["operator"]["quality"] is None  # never measured

    (line,) = streamed_body(operator_client.get("/api/calls/export?format=jsonl")).splitlines()
    record = json.loads(line)
    assert record["mos"] == 3.9  # the worse measured party's average
    by_role = {leg["role"]: leg for leg in record["legs"]}
    assert (by_role["user"]["mosAvg"], by_role["user"]["mosMin"]) == (3.9, 2.6)
    assert by_role["operator"]["mosAvg"] is None

    admin = Client()
    admin.force_login(superuser)
    page = admin.get(reverse("admin:calls_call_change", args=[answered.pk])).content.decode()
    assert "MOS 3.90 avg, 2.60 min" in page and "8 samples" in page and "1 warning" in page


def test_it_refuses_a_malformed_report_on_the_wire() -> None:
    raw = protocol.encode(
        protocol.QualitySummary(
            call="c",
            leg="l",
            samples=1,
            mos_min=4.0,
            mos_avg=4.0,
            loss_percent=0.0,
            jitter_ms=1.0,
            rtt_ms=None,
            warnings=0,
        )
    )
    assert protocol.parse_report(raw) == protocol.parse(raw)
    with pytest.raises(protocol.ProtocolError, match="is a report, not a request"):
        protocol.parse_request(raw)
    with pytest.raises(protocol.ProtocolError, match="is a report, not a reply"):
        protocol.parse_reply(raw)
    with pytest.raises(protocol.ProtocolError, match="samples must be an integer"):
        protocol.parse_report({**raw, "samples": 1.5})
