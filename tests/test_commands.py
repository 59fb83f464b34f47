"""Management commands: createapitoken and demo_operator."""

from __future__ import annotations

from io import StringIO

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command

from calls.models import ApiToken
from tests.support.rest_client import bearer_client

pytestmark = pytest.mark.django_db


def run(*args: str) -> str:
    out = StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


def test_it_creates_an_api_token_and_prints_it_once() -> None:
    output = run("createapitoken", "crm-backend")
    (secret,) = [line for line in output.split() if line.startswith("cbk_")]
    token = ApiToken.objects.get(name="crm-backend")
    assert secret.startswith(token.prefix) and token.token_hash not in output
    assert bearer_client(secret).get("/api/calls").status_code == 200


def test_it_prints_only_the_token_when_quiet() -> None:
    secret = run("createapitoken", "ci", "--quiet").strip()
    assert secret.startswith("cbk_") and " " not in secret
    assert bearer_client(secret).get("/api/webrtc/config").status_code == 200


def test_it_creates_a_token_that_may_listen_only_when_asked() -> None:
    plain = run("createapitoken", "crm", "--quiet").strip()
    archiver = run("createapitoken", "archiver", "--quiet", "--can-listen").strip()
    assert bearer_client(plain).get("/api/recordings").status_code == 403
    assert bearer_client(archiver).get("/api/recordings").status_code == 200


def test_it_refuses_bad_token_names_and_unknown_users() -> None:
    with pytest.raises(CommandError):
        run("createapitoken", " ")
    with pytest.raises(CommandError):
        run("createapitoken", "x", "--user", "nobody")
    assert ApiToken.objects.count() == 0


def test_it_makes_one_demo_operator_that_can_log_in() -> None:
    first = run("demo_operator")
    password = first.split("password")[1].split()[0]
    user = get_user_model().objects.get(username="operator")
    assert user.is_staff and user.check_password(password)
    second = run("demo_operator")
    assert "already exists" in second and password not in second
    assert get_user_model().objects.count() == 1
