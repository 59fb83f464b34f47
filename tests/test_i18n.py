"""The pages' languages: `?lang=`, Accept-Language, the integrator's default; the JavaScript
catalogue; the shipped catalogues complete, compiled and covering the sources."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from django.test import Client
from django.utils import translation

from calls.models import PreflightReport
from calls.preflight import findings
from tests.support.catalogs import (
    DOMAINS,
    PLACEHOLDER,
    TRANSLATIONS,
    compiled,
    english_texts,
    po_entries,
)
from tests.support.rest_client import bearer_client

ROOT = Path(__file__).resolve().parents[1]


def html_lang(response: Any) -> str:
    match = re.search(r'<html lang="([^"]+)" dir="(ltr|rtl)">', response.content.decode())
    assert match, "no <html lang dir>"
    return match.group(1)


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("query", "accept", "shown", "greeting"),
    [
        ("", "", "en", "Hello, Ada."),
        ("", "de-DE,de;q=0.9,en;q=0.5", "de", "Hallo, Ada."),
        ("", "es-MX,es;q=0.8", "es", "Hola, Ada."),
        ("de", "es", "de", "Hallo, Ada."),  # the link's `lang` before the browser's
        ("ES", "", "es", "Hola, Ada."),
        ("de-AT", "", "de", "Hallo, Ada."),
        ("xx", "es", "es", "Hola, Ada."),  # unknown: the next source decides
        ("<script>", "", "en", "Hello, Ada."),
        ("", "fr-FR,fr;q=0.9", "en", "Hello, Ada."),  # none of ours: the default
    ],
)
def test_it_picks_the_language_from_the_link_then_the_browser(
    make_session: Any, query: str, accept: str, shown: str, greeting: str
) -> None:
    _, token = make_session("Ada")
    params = {"token": token, **({"lang": query} if query else {})}
    response = Client().get("/talk/", params, HTTP_ACCEPT_LANGUAGE=accept)
    assert response.status_code == 200
    assert html_lang(response) == shown
    assert response["Content-Language"] == shown
    assert greeting in response.content.decode()
    assert f'src="/i18n/{shown}.js?v=' in response.content.decode()


@pytest.mark.django_db
def test_it_falls_back_to_the_integrators_default_language(
    settings: Any, make_session: Any
) -> None:
    settings.LANGUAGE_CODE = "es"
    _, token = make_session("Ada")
    for accept in ("", "fr", "xx-YY"):
        response = Client().get("/talk/", {"token": token}, HTTP_ACCEPT_LANGUAGE=accept)
        assert html_lang(response) == "es" and "Hola, Ada." in response.content.decode()
    # A problem page too; the admin's branding texts stay as entered (not translated).
    response = Client().get("/talk/", {"token": "cbs_nope", "lang": "de"})
    assert response.status_code == 401
    assert "Dieser Anruf-Link ist ungültig." in response.content.decode()


@pytest.mark.django_db
def test_it_keeps_the_links_language_for_lobby_visitors_and_the_embed(settings: Any) -> None:
    settings.CALLBRIDGE_PUBLIC_LOBBY = True
    response = Client().get("/talk/", {"lang": "de"})
    assert response.status_code == 302 and response["Location"].endswith("&lang=de")
    page = Client().get(response["Location"])
    assert html_lang(page) == "de" and "Hallo, Besucher." in page.content.decode()
    unknown = Client().get("/talk/", {"lang": "zz"})
    assert "lang=" not in unknown["Location"]

    embed = Client().get("/talk/embed/", {"lang": "es"})
    assert embed.status_code == 200 and html_lang(embed) == "es"
    assert "Comprobando su micrófono…" in embed.content.decode()


def test_it_serves_each_languages_javascript_catalogue_cacheably() -> None:
    client = Client()
    german = client.get("/i18n/de.js?v=1")
    assert german.status_code == 200
    assert german["Content-Type"].startswith("text/javascript")
    assert "public" in german["Cache-Control"] and "max-age=" in german["Cache-Control"]
    body = german.content.decode()
    assert json.dumps("Verbindung wird hergestellt…") in body and "django.gettext =" in body
    # The URL names the language: the browser's preference does not change the answer.
    assert client.get("/i18n/de.js", HTTP_ACCEPT_LANGUAGE="es").content == german.content
    assert json.dumps("Conectando…") in client.get("/i18n/es.js").content.decode()
    english = client.get("/i18n/en.js").content.decode()
    assert "Conectando" not in english and "django.gettext =" in english
    assert client.get("/i18n/fr.js").status_code == 404
    assert client.get("/i18n/..%2Fde.js").status_code == 404


@pytest.mark.django_db
def test_it_stores_preflight_findings_in_english_and_shows_them_translated(
    make_session: Any,
) -> None:
    _, token = make_session("Ada")
    report = {
        "microphone": {"ok": True, "level": 0.5},
        "echo": {
            "ok": False,
            "packetsReceived": 0,
            "packetsLost": 0,
            "problem": "no sound came back from the service",
        },
        "turn": {"configured": True, "reachable": False},
    }
    response = bearer_client(token).post(
        "/api/sessions/me/preflight", report, format="json", HTTP_ACCEPT_LANGUAGE="de"
    )
    assert response.status_code == 201, response.json()
    assert response.json()["findings"] == [
        "Der Ton konnte nicht zum Dienst und zurück übertragen werden: ein Anruf käme nicht "
        "zustande (vom Dienst kam kein Ton zurück).",
        "Der Relay-Server war nicht erreichbar: Anrufe aus manchen Netzwerken können scheitern.",
    ]
    stored = PreflightReport.objects.get()
    assert stored.findings[0].startswith("Sound could not travel to the service and back")
    with translation.override("es"):
        assert findings(stored)[1].startswith("No se pudo contactar con el servidor")


@pytest.mark.parametrize("language", TRANSLATIONS)
@pytest.mark.parametrize("domain", DOMAINS)
def test_it_ships_complete_compiled_catalogues(language: str, domain: str) -> None:
    entries = po_entries(language, domain)
    assert entries
    for msgid, (msgstr, fuzzy) in entries.items():
        assert msgstr and not fuzzy, f"{language}/{domain}: {msgid!r} is not translated"
        # The same named placeholders (a translation may repeat one), as many `%s`.
        assert set(PLACEHOLDER.findall(msgid)) == set(PLACEHOLDER.findall(msgstr)), msgid
        assert msgid.count("%s") == msgstr.count("%s"), msgid
    # The committed .mo is the .po compiled (`make messages` after editing a .po).
    assert compiled(language, domain) == {key: value for key, (value, _) in entries.items()}


# The literal strings the sources mark (gettext("…") in JS, {% translate "…" %} in templates).
JS_MARKED = re.compile(r'gettext\(\s*"((?:[^"\\]|\\.)*)"(?:\s*\+\s*"((?:[^"\\]|\\.)*)")?')
TEMPLATE_MARKED = re.compile(r"""{% translate ["']([^"']+)["'] %}""")


def test_it_has_a_translation_for_every_text_the_sources_mark() -> None:
    javascript = "".join(path.read_text() for path in (ROOT / "frontend" / "js").glob("*.js"))
    marked = {"".join(parts).replace('\\"', '"') for parts in JS_MARKED.findall(javascript)}
    assert marked and marked <= english_texts(("djangojs",)), marked - english_texts(("djangojs",))
    templates = "".join(path.read_text() for path in (ROOT / "templates").rglob("*.html"))
    marked = set(TEMPLATE_MARKED.findall(templates))
    assert marked and marked <= english_texts(("django",)), marked - english_texts(("django",))
