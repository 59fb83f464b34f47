"""Colour contrast by WCAG 2.x (relative luminance, contrast ratio): an accent colour an
admin picks must keep the end-user page readable (pure: no Django).

The page puts white text on the accent (buttons) and the accent on its light background
(borders, focus rings): both are the accent against white, which AA wants at 4.5:1 for
text. In the dark colour scheme the accent only draws borders and focus rings on a dark
background (non-text, 3:1): there the page uses `outline_accent`, the accent lightened just
enough when it is too dark.
"""

from __future__ import annotations

import re

HEX_COLOUR = re.compile(r"#[0-9a-fA-F]{6}")
WHITE = "#ffffff"
# Chromium's canvas colour in the dark scheme (what the page's background is there).
DARK_BACKGROUND = "#121212"
TEXT_MINIMUM = 4.5  # WCAG 2.x AA, normal text (1.4.3)
NON_TEXT_MINIMUM = 3.0  # WCAG 2.x AA, user interface components (1.4.11)

RGB = tuple[int, int, int]


def parse(colour: str) -> RGB:
    """`#rrggbb` (either case) as three bytes; ValueError for anything else."""
    if not HEX_COLOUR.fullmatch(colour):
        raise ValueError(f"{colour!r} is not a #rrggbb colour")
    return int(colour[1:3], 16), int(colour[3:5], 16), int(colour[5:7], 16)


def to_hex(rgb: RGB) -> str:
    return "#{:02x}{:02x}{:02x}".format(*rgb)


def _channel(value: int) -> float:
    c = value / 255
    return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4


def luminance(colour: str) -> float:
    r, g, b = (_channel(v) for v in parse(colour))
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def contrast(one: str, other: str) -> float:
    """The WCAG contrast ratio, 1 to 21 (order does not matter)."""
    lighter, darker = sorted((luminance(one), luminance(other)), reverse=True)
    return (lighter + 0.05) / (darker + 0.05)


def _mix(rgb: RGB, toward: RGB, amount: float) -> RGB:
    r, g, b = (round(c + (t - c) * amount) for c, t in zip(rgb, toward, strict=True))
    return r, g, b


def _nearest(colour: str, toward: str, against: str, minimum: float) -> str:
    """The least mix of `colour` toward `toward` that reaches `minimum` against `against`
    (`toward` itself must reach it)."""
    if contrast(colour, against) >= minimum:
        return colour.lower()
    rgb, target = parse(colour), parse(toward)
    low, high = 0.0, 1.0  # contrast grows monotonically with the mix
    for _ in range(20):
        middle = (low + high) / 2
        if contrast(to_hex(_mix(rgb, target, middle)), against) >= minimum:
            high = middle
        else:
            low = middle
    return to_hex(_mix(rgb, target, high))


def accent_problem(colour: str) -> str:
    """Why `colour` cannot be the page's accent ("" when it can)."""
    try:
        ratio = contrast(colour, WHITE)
    except ValueError as error:
        return str(error)
    if ratio >= TEXT_MINIMUM:
        return ""
    return (
        f"White text on {colour.lower()} has a contrast of {ratio:.2f}:1; WCAG AA needs "
        f"{TEXT_MINIMUM}:1. The nearest colour that passes is {readable_accent(colour)}."
    )


def readable_accent(colour: str) -> str:
    """`colour` darkened just enough for white text on it (and it on white) to pass AA."""
    return _nearest(colour, "#000000", WHITE, TEXT_MINIMUM)


def outline_accent(colour: str) -> str:
    """`colour` lightened just enough to show as a border on the dark scheme's background."""
    return _nearest(colour, WHITE, DARK_BACKGROUND, NON_TEXT_MINIMUM)
