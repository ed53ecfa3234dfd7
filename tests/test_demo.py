"""`dfk demo --quick`: the whole pipeline end to end, with a report that links only real files."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest


@pytest.mark.slow
def test_quick_demo_runs_every_stage_and_reports_only_existing_files(run_dfk, tmp_path: Path) -> None:
    out = tmp_path / "demo"
    result = run_dfk("-q", "demo", "-o", out, "--quick")
    assert result.code == 0, result
    page = (out / "report.html").read_text()
    markdown = (out / "report.md").read_text()
    links = re.findall(r"src='([^']+)'", page) + re.findall(r"\]\(([^)]+)\)", markdown)
    assert len(links) >= 8
    assert all((out / link).is_file() for link in links)
    figures = json.loads((out / "figures.json").read_text())
    assert figures["convert"]["swapped"] == figures["convert"]["frames"] > 0
    assert 0.0 <= figures["evaluate"]["identity_transfer"] <= 1.0
    assert figures["make-dataset"]["fakes"] == 4
    for stage in ("extract", "train-swap", "convert", "evaluate", "make-dataset", "train-detect", "detect"):
        assert f"dfk {stage}" in markdown
    scores = json.loads((out / "detect.json").read_text())
    assert [s["status"] for s in scores] == ["ok", "ok"]
