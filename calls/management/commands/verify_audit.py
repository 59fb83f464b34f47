"""Walk the audit hash chains (call events, consents, recording accesses) and say whether
each is intact; the first altered, missing or inserted row of each that is not."""

from __future__ import annotations

import re
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from calls.audit_verify import chained_models, verify
from calls.models.audit_chain import seal

ANCHOR = re.compile(r"^(?P<chain>[a-z_]+\.[a-z_]+):(?P<seq>\d+):(?P<hash>[0-9a-f]{64})$")


class Command(BaseCommand):
    help = (
        "Verify the audit hash chains. Exit code 0 when every chain is intact (each chain's "
        "anchor is printed: keep it outside the database and pass it back with --anchor); "
        "1 with the first bad row of each broken chain."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument(
            "--anchor",
            action="append",
            default=[],
            metavar="CHAIN:POSITION:HASH",
            help="an anchor an earlier run printed: the chain must still pass through it",
        )
        parser.add_argument(
            "--seal",
            action="store_true",
            help="first chain rows left unsealed (a process stopped between commit and seal)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        anchors = self._anchors(options["anchor"])
        broken = 0
        for model in chained_models():
            if options["seal"] and (count := seal(model)):
                self.stdout.write(f"{model._meta.label_lower}: sealed {count} row(s)")
            report = verify(model, anchors.pop(model._meta.label_lower, {}))
            if report.problem is not None:
                broken += 1
                self.stderr.write(report.problem.describe(report.chain))
                continue
            pending = f", {report.pending} being sealed" if report.pending else ""
            self.stdout.write(
                f"{report.chain}: intact, {report.rows} rows{pending}; anchor {report.anchor}"
            )
        if anchors:
            raise CommandError(f"anchors for unknown chains: {', '.join(sorted(anchors))}")
        if broken:
            raise CommandError(f"{broken} audit chain(s) broken", returncode=1)
        self.stdout.write("Every audit chain is intact.")

    @staticmethod
    def _anchors(given: list[str]) -> dict[str, dict[int, str]]:
        anchors: dict[str, dict[int, str]] = {}
        for text in given:
            match = ANCHOR.match(text.strip())
            if match is None:
                raise CommandError(f"not an anchor (CHAIN:POSITION:HASH): {text!r}")
            anchors.setdefault(match["chain"], {})[int(match["seq"])] = match["hash"]
        return anchors
