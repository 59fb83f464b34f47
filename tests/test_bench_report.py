"""Re-rendering the committed benchmark report keeps its hand-written analysis."""

from __future__ import annotations

import shutil
from pathlib import Path

from bench import media, report

DOCS = Path(__file__).resolve().parent.parent / "docs"


def test_a_rerendered_report_keeps_the_analysis(tmp_path: Path) -> None:
    out = tmp_path / "PERFORMANCE.md"
    shutil.copy(DOCS / "PERFORMANCE.md", out)
    written = report.kept_analysis(out.read_text())
    assert written.startswith(report.ANALYSIS_START) and written.endswith(report.ANALYSIS_END)
    media.main(["--from-json", str(DOCS / "PERFORMANCE.json"), "--out", str(out)])
    again = out.read_text()
    assert report.kept_analysis(again) == written
    assert again.index("## Summary") < again.index(report.ANALYSIS_START) < again.index("## stock")
