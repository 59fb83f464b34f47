"""Webhooks in-process: signing (the spec's test vector), what gets queued (filters,
disabled endpoints, rolled-back events), per-call order, backoff and giving up, the admin
(bad URLs refused, secret shown once, redeliver). The real HTTP path, a down/slow/up
receiver and a killed server are in tests/test_webhooks_delivery.py."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from django.db import transaction
from django.test import Client
from django.utils import timezone
from standardwebhooks.webhooks import Webhook

from callbridge.redaction import redact
from calls.models import (
    Call,
    CallEvent,
    DeliveryState,
    EndUserSession,
    WebhookAttempt,
    WebhookDelivery,
    WebhookEndpoint,
)
from calls.principals import Principal
from calls.webhooks import outbox, signing
from tests.support.queues import in_threads

pytestmark = pytest.mark.django_db

SPEC_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
SPEC_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
SPEC_TIMESTAMP = 1614265330
SPEC_BODY = '{"test": 2432232314}'
SPEC_SIGNATURE = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


@pytest.fixture
def admin_client(superuser: Any) -> Client:
    client = Client()
    client.force_login(superuser)
    return client


def endpoint(event_filter: str = "", enabled: bool = True) -> WebhookEndpoint:
    return WebhookEndpoint.objects.create(
        url="https://hooks.example.com/in",
        secret=signing.new_secret(),
        event_filter=event_filter,
        enabled=enabled,
    )


def ended_call(make_session: Callable[..., tuple[EndUserSession, str]]) -> Call:
    session, _ = make_session()
    user = Principal.end_user(session)
    call = Call.start(by=user, mode="bridge", media_worker="embedded")
    call.hang_up(user)
    return call


def test_it_signs_the_spec_test_vector() -> None:
    assert signing.sign(SPEC_SECRET, SPEC_ID, SPEC_TIMESTAMP, SPEC_BODY) == SPEC_SIGNATURE
    headers = signing.headers(SPEC_SECRET, SPEC_ID, SPEC_TIMESTAMP, SPEC_BODY)
    assert headers["webhook-signature"] == SPEC_SIGNATURE
    assert (headers["webhook-id"], headers["webhook-timestamp"]) == (SPEC_ID, "1614265330")
    # A fresh secret: the spec's shape, and what we sign now the library verifies.
    secret = signing.new_secret()
    assert re.fullmatch(r"whsec_[A-Za-z0-9+/]{32}", secret)
    now = int(timezone.now().timestamp())
    assert Webhook(secret).verify(SPEC_BODY, signing.headers(secret, SPEC_ID, now, SPEC_BODY))


def test_it_matches_event_filters() -> None:
    assert signing.parse_filter("call.ended, queue.*\n recording.started") == [
        "call.ended",
        "queue.*",
        "recording.started",
    ]
    with pytest.raises(ValueError, match=r"call\.e\*"):
        signing.parse_filter("call.e*")
    assert signing.matches([], "anything.at_all")
    assert signing.matches(["queue.*"], "queue.offer_ended")
    assert not signing.matches(["queue.*"], "queuex.joined")
    assert not signing.matches(["call.ended"], "call.ended_twice")
    assert signing.matches(["*"], "call.answered")


def test_it_queues_each_event_for_the_enabled_endpoints_whose_filter_matches(
    make_session: Callable[..., tuple[EndUserSession, str]],
) -> None:
    everything, ended_only, disabled = endpoint(), endpoint("call.ended"), endpoint("", False)
    call = ended_call(make_session)
    events = list(CallEvent.objects.filter(call=call).order_by("pk"))
    assert len(events) >= 2 and events[-1].name == "call.ended"
    queued = WebhookDelivery.objects.filter(call=call)
    assert sorted(queued.filter(endpoint=everything).values_list("event_id", flat=True)) == [
        e.pk for e in events
    ]
    assert list(queued.filter(endpoint=ended_only).values_list("event_id", flat=True)) == [
        events[-1].pk
    ]
    assert not queued.filter(endpoint=disabled).exists()
    assert len(set(queued.values_list("message_id", flat=True))) == queued.count()
    body = json.loads(outbox.payload(events[-1]))
    assert body["type"] == "call.ended"
    assert body["data"]["callID"] == str(call.pk)
    assert body["data"]["eventID"] == events[-1].pk


def test_it_queues_nothing_for_an_event_rolled_back(
    make_session: Callable[..., tuple[EndUserSession, str]],
) -> None:
    endpoint()
    session, _ = make_session()
    user = Principal.end_user(session)
    with pytest.raises(RuntimeError), transaction.atomic():
        Call.start(by=user, mode="bridge", media_worker="embedded")
        assert WebhookDelivery.objects.exists()  # queued with the event …
        raise RuntimeError("the writer fails after recording")
    assert not WebhookDelivery.objects.exists()  # … and gone with it


def test_it_sends_a_calls_events_to_an_endpoint_one_at_a_time_in_order(
    make_session: Callable[..., tuple[EndUserSession, str]],
) -> None:
    hook = endpoint()
    first_call, second_call = ended_call(make_session), ended_call(make_session)
    now = timezone.now() + timedelta(seconds=1)
    claimed = outbox.claim(now, 100)
    # The earliest of each call; nothing else (not even by another sender) until it settles.
    firsts = {
        c: WebhookDelivery.objects.filter(endpoint=hook, call=c).order_by("pk").first()
        for c in (first_call, second_call)
    }
    assert {c.delivery_id for c in claimed} == {d.pk for d in firsts.values() if d}
    assert outbox.claim(now, 100) == []
    # Nothing due before a lease ends (the events waiting behind are not "due": no spin).
    next_due = outbox.next_due(now)
    assert next_due is not None and next_due > now
    one = claimed[0]
    assert (
        json.loads(one.body)["data"]["eventID"]
        == WebhookDelivery.objects.get(pk=one.delivery_id).event_id
    )
    # A failure: retried later (backoff), and the call's next event still waits for it.
    assert outbox.record(one.delivery_id, now, 12, 503, "HTTP 503: busy", now=now) == "pending"
    failed = WebhookDelivery.objects.get(pk=one.delivery_id)
    assert failed.next_attempt_at > now and failed.leased_until is None
    assert outbox.claim(now, 100) == []
    later = failed.next_attempt_at
    assert [c.delivery_id for c in outbox.claim(later, 100)] == [one.delivery_id]
    assert outbox.record(one.delivery_id, later, 8, 204, "", now=later) == "delivered"
    following = outbox.claim(later, 100)
    assert len(following) == 1
    assert following[0].delivery_id > one.delivery_id
    attempts = WebhookAttempt.objects.filter(delivery_id=one.delivery_id)
    assert list(attempts.values_list("status_code", "error")) == [
        (503, "HTTP 503: busy"),
        (204, ""),
    ]


def test_it_backs_off_exponentially_and_gives_up_after_the_retry_window(
    settings: Any, make_session: Callable[..., tuple[EndUserSession, str]]
) -> None:
    settings.CALLBRIDGE_WEBHOOK_RETRY_BASE_MS = 1000
    settings.CALLBRIDGE_WEBHOOK_RETRY_MAX_S = 3600
    for attempts, full in ((1, 1), (2, 2), (5, 16), (30, 3600)):
        delay = outbox.backoff(attempts).total_seconds()
        assert full / 2 <= delay <= full
    hook = endpoint()
    call = ended_call(make_session)
    first = WebhookDelivery.objects.filter(endpoint=hook, call=call).order_by("pk").first()
    assert first is not None
    assert first.retry_until - first.created_at == timedelta(hours=24)
    end = first.retry_until
    assert first.pk in {c.delivery_id for c in outbox.claim(end, 100)}
    assert outbox.record(first.pk, end, 5, None, "ConnectError", now=end) == "failed"
    # Given up: the call's next event goes.
    assert any(c.delivery_id > first.pk for c in outbox.claim(end, 100))


def test_it_refuses_bad_urls_and_filters_in_the_admin_and_shows_the_secret_once(
    admin_client: Client, settings: Any
) -> None:
    settings.CALLBRIDGE_WEBHOOK_ALLOW_PRIVATE = False
    add = "/admin/calls/webhookendpoint/add/"
    for url, problem in (
        ("ftp://hooks.example.com/in", "Only http and https"),
        ("http://127.0.0.1:9000/in", "Private, loopback"),
        ("http://localhost/in", "Private, loopback"),
        ("https://[::1]/in", "Private, loopback"),
        ("http://10.1.2.3/in", "Private, loopback"),
        ("https://user:pw@hooks.example.com/in", "Credentials in the URL"),
    ):
        response = admin_client.post(add, {"url": url, "event_filter": "", "enabled": "on"})
        assert response.status_code == 200, url
        assert problem in response.content.decode(), url
    response = admin_client.post(
        add, {"url": "https://hooks.example.com/in", "event_filter": "call.e*", "enabled": "on"}
    )
    assert "is not an event name" in response.content.decode()
    assert not WebhookEndpoint.objects.exists()

    response = admin_client.post(
        add,
        {"url": "https://hooks.example.com/in", "event_filter": "call.*, queue.*", "enabled": "on"},
    )
    assert response.status_code == 200
    assert "no-store" in response["Cache-Control"]
    stored = WebhookEndpoint.objects.get()
    assert stored.enabled
    assert f'value="{stored.secret}"' in response.content.decode()
    assert stored.event_filter == "call.*\nqueue.*"
    change = admin_client.get(f"/admin/calls/webhookendpoint/{stored.pk}/change/")
    assert stored.secret not in change.content.decode()

    settings.CALLBRIDGE_WEBHOOK_ALLOW_PRIVATE = True
    admin_client.post(add, {"url": "http://127.0.0.1:9000/in", "event_filter": ""})
    assert WebhookEndpoint.objects.filter(url="http://127.0.0.1:9000/in").exists()


def test_it_redelivers_from_the_admin_with_the_same_webhook_id(
    admin_client: Client, make_session: Callable[..., tuple[EndUserSession, str]]
) -> None:
    hook = endpoint("call.ended")
    call = ended_call(make_session)
    delivery = WebhookDelivery.objects.get(endpoint=hook, call=call)
    now = timezone.now() + timedelta(seconds=1)
    [claimed] = outbox.claim(now, 10)
    outbox.record(delivery.pk, now, 3, 200, "", now=now)
    log = admin_client.get("/admin/calls/webhookdelivery/")
    assert delivery.message_id in log.content.decode()
    page = admin_client.get(f"/admin/calls/webhookdelivery/{delivery.pk}/change/")
    assert "200" in page.content.decode()
    response = admin_client.post(
        "/admin/calls/webhookdelivery/",
        {"action": "redeliver", "_selected_action": [str(delivery.pk)]},
    )
    assert response.status_code == 302
    again = WebhookDelivery.objects.get(pk=delivery.pk)
    assert again.state == DeliveryState.PENDING
    assert again.retry_until > now
    [resent] = outbox.claim(timezone.now() + timedelta(seconds=1), 10)
    assert (resent.message_id, resent.body) == (claimed.message_id, claimed.body)
    delete = admin_client.get(f"/admin/calls/webhookdelivery/{delivery.pk}/delete/")
    assert delete.status_code == 403


@pytest.mark.django_db(transaction=True)
def test_it_leases_each_delivery_to_one_of_several_senders_claiming_at_once(
    make_session: Callable[..., tuple[EndUserSession, str]],
) -> None:
    hook = endpoint()
    calls = [ended_call(make_session) for _ in range(10)]
    now = timezone.now() + timedelta(seconds=1)
    results = in_threads(lambda _: outbox.claim(now, 100), list(range(4)))
    assert not [r for r in results if isinstance(r, Exception)], results
    claimed = [c.delivery_id for batch in results for c in batch]
    assert len(claimed) == len(set(claimed))  # nobody sent what another sender holds
    firsts = {
        WebhookDelivery.objects.filter(endpoint=hook, call=call).order_by("pk")[0].pk
        for call in calls
    }
    assert set(claimed) == firsts  # each call's first event, and only that


def test_it_masks_webhook_secrets_in_anything_logged() -> None:
    secret = signing.new_secret()
    printed = redact(f"could not sign with {secret}: boom")
    assert secret not in printed
    assert printed == "could not sign with whsec_[redacted]: boom"


def test_it_rotates_an_endpoints_secret_from_the_admin_showing_the_new_one_once(
    admin_client: Client,
) -> None:
    hook = endpoint()
    old = hook.secret
    response = admin_client.post(
        "/admin/calls/webhookendpoint/",
        {"action": "rotate_secret", "_selected_action": [str(hook.pk)]},
    )
    hook.refresh_from_db()
    assert hook.secret != old and hook.secret.startswith("whsec_")
    assert f'value="{hook.secret}"' in response.content.decode()
    assert "no-store" in response["Cache-Control"]
