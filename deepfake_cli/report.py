"""A small run report (Markdown and self-contained-ish HTML) linking images beside it.

A report is a list of sections, each with a title, a reproducing command, figures (a flat mapping)
and images (paths relative to the report's folder). Links to files that do not exist are refused,
so a report never points at nothing.
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from deepfake_cli.checkpoint import write_text_atomic
from deepfake_cli.errors import InputError


@dataclass
class Section:
    """One stage of a run as shown in the report."""

    title: str
    command: str = ""
    figures: dict[str, Any] = field(default_factory=dict)
    images: list[tuple[str, str]] = field(default_factory=list)  # (caption, path relative to report)
    text: str = ""


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _check_links(folder: Path, sections: list[Section]) -> None:
    for section in sections:
        for _, rel in section.images:
            if not (folder / rel).is_file():
                raise InputError(f"report links to a missing file {rel!r}", section.title)


def render_markdown(title: str, sections: list[Section]) -> str:
    """The report as Markdown."""
    lines = [f"# {title}", ""]
    for section in sections:
        lines += [f"## {section.title}", ""]
        if section.text:
            lines += [section.text, ""]
        if section.command:
            lines += ["```bash", section.command, "```", ""]
        if section.figures:
            lines += ["| figure | value |", "|---|---|"]
            lines += [f"| {k} | {_fmt(v)} |" for k, v in section.figures.items()]
            lines.append("")
        for caption, rel in section.images:
            lines += [f"![{caption}]({rel})", ""]
    return "\n".join(lines)


def render_html(title: str, sections: list[Section]) -> str:
    """The report as a standalone HTML page (images linked, not embedded)."""
    esc = html.escape
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>{esc(title)}</title>",
        "<style>body{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em}"
        "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:2px 8px;text-align:left}"
        "pre{background:#f4f4f4;padding:.5em;overflow-x:auto}img{max-width:100%;margin:.3em 0}"
        "figure{margin:0 0 1em 0}</style></head><body>",
        f"<h1>{esc(title)}</h1>",
    ]
    for section in sections:
        parts.append(f"<h2>{esc(section.title)}</h2>")
        if section.text:
            parts.append(f"<p>{esc(section.text)}</p>")
        if section.command:
            parts.append(f"<pre>{esc(section.command)}</pre>")
        if section.figures:
            rows = "".join(f"<tr><th>{esc(str(k))}</th><td>{esc(_fmt(v))}</td></tr>" for k, v in section.figures.items())
            parts.append(f"<table>{rows}</table>")
        for caption, rel in section.images:
            parts.append(f"<figure><img src='{esc(rel)}' alt='{esc(caption)}'><figcaption>{esc(caption)}</figcaption></figure>")
    parts.append("</body></html>")
    return "\n".join(parts)


def write_report(folder: str | Path, title: str, sections: list[Section]) -> tuple[Path, Path]:
    """Write ``report.md`` and ``report.html`` into ``folder``; returns their paths."""
    target = Path(folder)
    _check_links(target, sections)
    markdown, page = target / "report.md", target / "report.html"
    write_text_atomic(markdown, render_markdown(title, sections))
    write_text_atomic(page, render_html(title, sections))
    return markdown, page
