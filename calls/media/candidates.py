"""Which remote ICE candidates a leg's peer connection may use. Pure: no aiortc, no I/O.

Every remote candidate makes the server send STUN binding requests (with retransmissions)
to the address it names, so an unfiltered offer turns the media worker into a UDP scanner
and amplifier. The rules, per peer connection (one offer; a reconnect is a new one):

- at most `max_remote` distinct UDP destinations (SDP, trickled, and the addresses a
  client's checks come from that are learnt as peer-reflexive, together);
- refused: addresses nobody can be reached at as a unicast peer — unspecified (0.0.0.0/8,
  ::), multicast (224.0.0.0/4, ff00::/8), limited broadcast and the reserved 240.0.0.0/4,
  port 0 — the same for IPv4 written as IPv6 (::ffff:a.b.c.d); DNS host names (aioice
  never resolves them; a client has no reason to send one); unknown transports; and, when
  `allowed_networks` is set, every address outside them;
- ignored (no error: browsers send them routinely and nothing is lost): mDNS `.local`
  names (resolving them would make the server query the LAN by multicast for any client;
  the peer is still found as peer-reflexive when its checks arrive — its end-of-candidates
  is withheld while nothing usable came, so the ICE agent keeps waiting for them), TCP
  candidates (the server does UDP ICE only), and a destination already accepted.

A directed subnet broadcast (e.g. 192.168.1.255 for a /24) cannot be told from a host by
its address alone: routers drop directed broadcasts (RFC 2644), and Linux refuses to send
to the broadcast address of a local network from a socket without SO_BROADCAST, which
aioice never sets; `allowed_networks` narrows the rest.
"""

from __future__ import annotations

import enum
import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass, field

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

DEFAULT_MAX_REMOTE = 20

# The same pattern aioice uses to decide that a host is an mDNS name it would resolve.
_MDNS_NAME = re.compile(r"^[a-zA-Z0-9-]{1,63}\.local$")
_REFUSED_V4 = (
    ipaddress.ip_network("0.0.0.0/8"),  # "this network": Linux sends 0.0.0.0 to itself
    ipaddress.ip_network("224.0.0.0/4"),  # multicast
    ipaddress.ip_network("240.0.0.0/4"),  # reserved, and 255.255.255.255 (broadcast)
)
_REFUSED_V6 = (
    ipaddress.ip_network("::/128"),  # unspecified
    ipaddress.ip_network("ff00::/8"),  # multicast (IPv6 has no broadcast)
)


class Verdict(enum.Enum):
    USE = "use"
    IGNORE = "ignore"  # dropped without an error
    REFUSE = "refuse"  # dropped; a trickled one is answered INVALID_ARGUMENT
    OVER_CAP = "over_cap"  # dropped; a trickled one is answered INVALID_ARGUMENT


@dataclass(frozen=True)
class Judgement:
    verdict: Verdict
    reason: str = ""


@dataclass(frozen=True)
class CandidateRules:
    max_remote: int = DEFAULT_MAX_REMOTE
    # Empty: any unicast address.
    allowed_networks: tuple[IPNetwork, ...] = ()

    def refusal(self, host: str, port: int) -> Judgement | None:
        """Why a UDP candidate at host:port may not be used (None: it may)."""
        if _MDNS_NAME.match(host):
            return Judgement(Verdict.IGNORE, "mDNS names are not resolved")
        try:
            address: IPAddress = ipaddress.ip_address(host)
        except ValueError:
            return Judgement(Verdict.REFUSE, "the candidate's address must be an IP address")
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        refused = _REFUSED_V4 if isinstance(address, ipaddress.IPv4Address) else _REFUSED_V6
        if any(address in network for network in refused):
            return Judgement(
                Verdict.REFUSE, "the candidate's address is not unicast (multicast/broadcast)"
            )
        if not 0 < port < 65536:
            return Judgement(Verdict.REFUSE, "the candidate's port is not usable")
        if self.allowed_networks and not any(address in n for n in self.allowed_networks):
            return Judgement(
                Verdict.REFUSE, "the candidate's address is outside the allowed networks"
            )
        return None


@dataclass
class CandidateBudget:
    """One peer connection's remote candidates: judges each and counts those used."""

    rules: CandidateRules
    used: set[tuple[str, int]] = field(default_factory=set)

    def judge(self, transport: str, host: str, port: int) -> Judgement:
        transport = transport.lower()
        if transport == "tcp":
            return Judgement(Verdict.IGNORE, "the server does not do ICE over TCP")
        if transport != "udp":
            return Judgement(Verdict.REFUSE, "unsupported candidate transport")
        refusal = self.rules.refusal(host, port)
        if refusal is not None:
            return refusal
        destination = (_canonical(host), port)
        if destination in self.used:
            return Judgement(Verdict.IGNORE, "a destination already signalled")
        if len(self.used) >= self.rules.max_remote:
            return Judgement(
                Verdict.OVER_CAP,
                f"too many ICE candidates (at most {self.rules.max_remote} per connection)",
            )
        self.used.add(destination)
        return Judgement(Verdict.USE)


def withhold_end_of_candidates(budget: CandidateBudget) -> bool:
    """Whether a client's end-of-candidates must not reach the ICE agent: with no remote
    candidate at all, aioice gives up at once, before the client's own checks arrive to be
    learnt as peer-reflexive — how a client whose candidates are all mDNS names (or all
    dropped) still connects. Withheld, the leg's ICE deadline bounds the wait."""
    return not budget.used


def _integer(text: str) -> int | None:
    """As aiortc's SDP parser reads a port (int()); None where it would fail."""
    try:
        return int(text)
    except ValueError:
        return None


def _canonical(host: str) -> str:
    return str(ipaddress.ip_address(host))


_CANDIDATE = "a=candidate:"
_END_OF_CANDIDATES = "a=end-of-candidates"


@dataclass(frozen=True)
class FilteredOffer:
    sdp: str
    dropped: dict[Verdict, int]


def filter_offer(sdp: str, budget: CandidateBudget) -> FilteredOffer:
    """The offer without the candidates `budget` does not accept (first come, first kept).

    An offer is never refused for its candidates: the usable ones stay, the rest are
    dropped silently (counted for the log). With none usable, its end-of-candidates is
    withheld too (see `withhold_end_of_candidates`). A candidate line aiortc cannot parse (too
    short, no integer port) is left in place: aiortc refuses the whole offer, as before.
    """
    kept: list[str] = []
    dropped: dict[Verdict, int] = {}
    # A bundled offer with several m-lines (a supervisor's two audio tracks) repeats its
    # candidates in each; aiortc takes the shared transport's from the last m-line, so a
    # copy of one kept in an earlier m-line is kept too (the budget counted it there).
    earlier: set[str] = set()
    this_section: set[str] = set()
    # Lines and fields exactly as aiortc's parser splits them (str.splitlines, str.split).
    for line in sdp.splitlines(keepends=True):
        if line.startswith("m="):
            earlier |= this_section
            this_section = set()
        same = line.rstrip("\r\n")
        if line.startswith(_CANDIDATE) and same in earlier and same not in this_section:
            this_section.add(same)
            kept.append(line)
            continue
        bits = line.removeprefix(_CANDIDATE).split() if line.startswith(_CANDIDATE) else []
        port = _integer(bits[5]) if len(bits) >= 8 else None
        if port is not None:
            verdict = budget.judge(bits[2], bits[4], port).verdict
            if verdict is not Verdict.USE:
                dropped[verdict] = dropped.get(verdict, 0) + 1
                continue
            this_section.add(same)
        kept.append(line)
    if withhold_end_of_candidates(budget):
        kept = [line for line in kept if line.rstrip("\r\n") != _END_OF_CANDIDATES]
    return FilteredOffer("".join(kept), dropped)


def parse_networks(texts: Iterable[str]) -> tuple[IPNetwork, ...]:
    """CIDRs ("10.0.0.0/8", "2001:db8::/32"); ValueError names the first bad one."""
    networks = []
    for text in texts:
        try:
            networks.append(ipaddress.ip_network(text, strict=False))
        except ValueError:
            raise ValueError(f"{text!r} is not a network (CIDR)") from None
    return tuple(networks)
