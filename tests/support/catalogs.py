"""The shipped translation catalogues (calls/locale), read without gettext's tools: the
English texts (msgids) a page may show, and each language's .po and compiled .mo."""

from __future__ import annotations

import ast
import gettext
import re
from pathlib import Path

LOCALE_DIR = Path(__file__).resolve().parents[2] / "calls" / "locale"
DOMAINS = ("django", "djangojs")
# The shipped translations besides English (settings.LANGUAGES).
TRANSLATIONS = ("de", "es")
PLACEHOLDER = re.compile(r"%\(\w+\)s|%s|%%")


def po_entries(language: str, domain: str) -> dict[str, tuple[str, bool]]:
    """msgid → (msgstr, fuzzy) of one .po file (no plurals or contexts: we use none)."""
    entries: dict[str, tuple[str, bool]] = {}
    msgid: str | None = None
    msgstr: str | None = None
    fuzzy = next_fuzzy = False
    target = ""

    def flush() -> None:
        if msgid is not None and msgstr is not None and msgid:
            entries[msgid] = (msgstr, fuzzy)

    path = LOCALE_DIR / language / "LC_MESSAGES" / f"{domain}.po"
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("#,"):
            next_fuzzy = "fuzzy" in line
        elif line.startswith("msgid "):
            flush()
            msgid, msgstr, fuzzy, next_fuzzy = ast.literal_eval(line[6:]), None, next_fuzzy, False
            target = "msgid"
        elif line.startswith("msgstr "):
            msgstr, target = ast.literal_eval(line[7:]), "msgstr"
        elif line.startswith('"'):
            if target == "msgid" and msgid is not None:
                msgid += ast.literal_eval(line)
            elif msgstr is not None:
                msgstr += ast.literal_eval(line)
    flush()
    return entries


def compiled(language: str, domain: str) -> dict[str, str]:
    """The .mo file's messages (the header left out)."""
    path = LOCALE_DIR / language / "LC_MESSAGES" / f"{domain}.mo"
    with path.open("rb") as mo:
        catalog: dict[str, str] = gettext.GNUTranslations(mo)._catalog  # type: ignore[attr-defined]
    return {key: value for key, value in catalog.items() if key}


def english_texts(domains: tuple[str, ...] = DOMAINS) -> set[str]:
    """Every English text the pages may show (the catalogues' msgids)."""
    return {msgid for domain in domains for msgid in po_entries(TRANSLATIONS[0], domain)}
