"""The end-user page's branding: what the page shows of it, and which logos are accepted."""

from __future__ import annotations

import io
from dataclasses import dataclass

from django.core.exceptions import ValidationError
from django.urls import reverse
from PIL import Image, UnidentifiedImageError

from calls.contrast import accent_problem, outline_accent, readable_accent
from calls.models import Branding
from calls.models.branding import DEFAULT_ACCENT

LOGO_MAX_BYTES = 256 * 1024
LOGO_MAX_SIDE = 1024  # pixels: a logo, not a photograph (and no decompression bombs)
# Raster formats browsers show everywhere; never SVG (it can carry script).
LOGO_TYPES = {"PNG": "image/png", "JPEG": "image/jpeg", "WEBP": "image/webp"}


@dataclass(frozen=True)
class PageBranding:
    display_name: str
    accent: str
    accent_outline: str  # the accent on the dark scheme's background
    welcome_text: str
    waiting_text: str
    logo_url: str


def page_branding() -> PageBranding:
    brand = Branding.current()
    # A colour saved before the contrast rule (or by hand in the database) is adjusted.
    accent = brand.accent_color
    if accent_problem(accent):
        accent = readable_accent_or_default(accent)
    logo_url = ""
    if brand.logo_sha256:
        logo_url = f"{reverse('enduser-logo')}?v={brand.logo_sha256[:16]}"
    return PageBranding(
        display_name=brand.display_name,
        accent=accent,
        accent_outline=outline_accent(accent),
        welcome_text=brand.welcome_text,
        waiting_text=brand.waiting_text,
        logo_url=logo_url,
    )


def readable_accent_or_default(colour: str) -> str:
    try:
        return readable_accent(colour)
    except ValueError:
        return DEFAULT_ACCENT


def validate_logo(content: bytes) -> str:
    """The logo's content type; ValidationError unless a small PNG, JPEG or WebP image."""
    if len(content) > LOGO_MAX_BYTES:
        raise ValidationError(
            f"The logo is {len(content) // 1024} KB; at most {LOGO_MAX_BYTES // 1024} KB."
        )
    try:
        with Image.open(io.BytesIO(content)) as image:
            kind, (width, height) = image.format, image.size
            if kind not in LOGO_TYPES:
                raise ValidationError(f"A logo must be PNG, JPEG or WebP (this is {kind}).")
            if max(width, height) > LOGO_MAX_SIDE:
                raise ValidationError(
                    f"The logo is {width} by {height} pixels; at most {LOGO_MAX_SIDE} on each side."
                )
            image.verify()  # the whole file decodes as what it says it is
    except (UnidentifiedImageError, OSError, SyntaxError, Image.DecompressionBombError) as error:
        raise ValidationError("The logo is not a readable image.") from error
    return LOGO_TYPES[kind]
