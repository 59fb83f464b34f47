"""Hypothesis settings and strategies shared by the fuzz tests.

CI runs a bounded, derandomized number of examples (the same inputs every run, a few
seconds per target). A long campaign with fresh random inputs:

    CALLBRIDGE_FUZZ_SCALE=50 tools/run-tests tests/test_fuzz_signaling.py tests/test_fuzz_rest.py

multiplies every example count by 50 (and lifts the per-test timeout accordingly).
"""

from __future__ import annotations

import ipaddress
import json
import os
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

SCALE = max(1, int(os.environ.get("CALLBRIDGE_FUZZ_SCALE", "1")))
# Codes a client may ever see; HANDLER_ERROR (a bug by definition) is not among them.
CONTRACT_CODES = {
    "UNAUTHORIZED",
    "FORBIDDEN",
    "INVALID_MESSAGE",
    "INVALID_ARGUMENT",
    "NOT_FOUND",
    "CALL_STATE",
    "CONSENT_REQUIRED",
    "RATE_LIMITED",
    "MEDIA_BRIDGE_FAILURE",
}


def fuzz_settings(examples: int) -> settings:
    return settings(
        max_examples=examples * SCALE,
        deadline=None,
        derandomize=SCALE == 1,  # CI: the same inputs every run; a campaign: fresh ones
        database=None,
        print_blob=True,
        suppress_health_check=[
            HealthCheck.function_scoped_fixture,  # one socket/server for all examples: intended
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
            HealthCheck.filter_too_much,
        ],
    )


def timeout_s(base: float) -> float:
    return base * SCALE


# --- JSON ---------------------------------------------------------------------------------
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False),
    st.text(max_size=40),
)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=12,
)
weird_text = st.one_of(
    st.text(max_size=60),
    st.text(alphabet=st.characters(codec="utf-8"), max_size=200),
    st.sampled_from(
        ["", " ", "\x00", "null", "[]", "{}", "🙂" * 10, "a" * 300, "\u202e", "\ufeff"]
    ),
)


def raw_json_texts() -> st.SearchStrategy[str]:
    """Frames that are not well-formed envelopes at the JSON level."""
    return st.one_of(
        st.text(max_size=200),
        json_values.map(json.dumps),
        st.integers(min_value=1, max_value=20_000).map(lambda n: "[" * n + "]" * n),
        st.integers(min_value=1, max_value=20_000).map(lambda n: '{"a":' * n + "1" + "}" * n),
        st.sampled_from(
            [
                '{"type": "offer", "type": "register"}',
                '{"type": "register", "authToken": "\\ud800"}',
                '{"type": NaN}',
                '{"type": "hangup", "callSid": 1e999999}',
                "\ufeff{}",
                '{"type": "close", "sessionId": "' + "x" * 5000 + '"}',
            ]
        ),
    )


# --- loopback-only addresses (network tests never reach beyond 127.0.0.0/8) ---------------
def _not_routable_elsewhere(text: str) -> bool:
    """True unless `text` names a non-loopback address or an mDNS name (multicast)."""
    if text.lower().rstrip(".").endswith(".local"):
        return False
    try:
        return ipaddress.ip_address(text.strip()).is_loopback
    except ValueError:
        return True  # not an address: the ICE agent refuses it without sending anything


loopback_ips = st.one_of(
    st.builds(
        lambda b, c, d: f"127.{b}.{c}.{d}",
        st.integers(0, 255),
        st.integers(0, 255),
        st.integers(1, 254),
    ),
    st.just("::1"),
)
candidate_hosts = st.one_of(
    loopback_ips, loopback_ips, st.text(max_size=30).filter(_not_routable_elsewhere)
)
numbers_or_junk = st.one_of(
    st.integers(min_value=-(2**40), max_value=2**40), st.text(max_size=12)
).map(str)
ports = st.one_of(st.integers(1024, 65535), st.integers(-5, 200_000), st.text(max_size=6)).map(str)


@st.composite
def candidate_lines(draw: Any) -> str:
    """An ICE candidate line: mostly grammatical, every field sometimes nonsense."""
    fields = [
        draw(st.one_of(st.text(min_size=1, max_size=32).filter(str.strip), st.just("1"))),
        draw(st.one_of(st.sampled_from(["1", "2"]), numbers_or_junk)),
        draw(st.sampled_from(["udp", "UDP", "tcp", "TCP", "Udp"])),
        draw(st.one_of(st.just("2130706431"), numbers_or_junk)),
        draw(candidate_hosts),
        draw(ports),
        "typ",
        draw(st.one_of(st.sampled_from(["host", "srflx", "prflx", "relay"]), st.text(max_size=8))),
    ]
    extras = draw(
        st.lists(
            st.one_of(
                st.tuples(st.just("raddr"), candidate_hosts),
                st.tuples(st.just("rport"), ports),
                st.tuples(st.just("tcptype"), st.sampled_from(["active", "passive", "so", "x"])),
                st.tuples(st.just("generation"), numbers_or_junk),
                st.tuples(st.text(max_size=8), st.text(max_size=8)),
            ),
            max_size=4,
        )
    )
    for key, value in extras:
        fields += [key, value]
    if draw(st.booleans()):  # drop or duplicate a field: wrong arity
        index = draw(st.integers(0, len(fields) - 1))
        fields = (
            fields[:index] + fields[index + 1 :]
            if draw(st.booleans())
            else [*fields, fields[index]]
        )
    separator = draw(st.sampled_from([" ", " ", "  ", "\t"]))
    prefix = draw(st.sampled_from(["candidate:", "candidate:", "a=candidate:", ""]))
    return prefix + separator.join(fields)


# --- SDP ------------------------------------------------------------------------------------
@st.composite
def mutated_sdp(draw: Any, base: str) -> str:
    """A real offer with a few lines deleted, duplicated, swapped, garbled or added."""
    lines = base.split("\r\n")
    for _ in range(draw(st.integers(1, 4))):
        index = draw(st.integers(0, len(lines) - 1))
        operation = draw(
            st.sampled_from(["delete", "duplicate", "swap", "garble", "insert", "numbers"])
        )
        if operation == "delete" and len(lines) > 1:
            del lines[index]
        elif operation == "duplicate":
            lines.insert(index, lines[index])
        elif operation == "swap":
            other = draw(st.integers(0, len(lines) - 1))
            lines[index], lines[other] = lines[other], lines[index]
        elif operation == "garble":
            key, _, _ = lines[index].partition("=")
            lines[index] = f"{key}={draw(weird_text)}"
        elif operation == "insert":
            kind = draw(st.sampled_from(["a", "m", "c", "b", "t", "x", "v"]))
            lines.insert(index, f"{kind}={draw(weird_text)}")
        else:  # every number on the line replaced
            words = lines[index].split(" ")
            replaced = [draw(numbers_or_junk) if w.isdigit() else w for w in words]
            lines[index] = " ".join(replaced)
    text = "\r\n".join(lines)
    if draw(st.integers(0, 9)) == 0:
        text = text.replace("\r\n", "\n")
    if not text.startswith("v=0"):
        text = "v=0\r\n" + text  # reach the SDP parser, not only the first-line check
    return text


@st.composite
def repeated_media_sections(draw: Any, base: str) -> str:
    """Many m-lines (up to the size limit): the worker must refuse or answer, not stall."""
    head, _, media = base.partition("m=")
    count = draw(st.integers(2, 60))
    kinds = draw(st.lists(st.sampled_from(["audio", "video", "application"]), min_size=1))
    assert media.startswith("audio ")
    sections = [
        f"m={kinds[i % len(kinds)]}" + media[len("audio") :].replace("a=mid:0", f"a=mid:{i}")
        for i in range(count)
    ]
    return (head + "".join(sections))[: 32 * 1024]
