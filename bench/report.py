"""Writes one "## ..." section of docs/benchmarks.md, keeping the other sections."""

from __future__ import annotations

from pathlib import Path

DOC = Path(__file__).resolve().parent.parent / "docs" / "benchmarks.md"
TITLE = "# Benchmarks\n\nEach section is written by the script it names; rerun it to refresh the figures.\n"


def write_section(text: str, doc: Path = DOC) -> None:
    """Replace the section whose first line equals ``text``'s first line (a ``## `` heading), or append it."""
    heading = text.splitlines()[0]
    if not heading.startswith("## "):
        raise ValueError(f"section text must start with a '## ' heading, got {heading!r}")
    old = doc.read_text() if doc.exists() else TITLE
    parts = old.split("\n## ")
    head, sections = parts[0], ["## " + p for p in parts[1:]]
    sections = [s for s in sections if s.splitlines()[0] != heading]
    sections.append(text.strip() + "\n")
    doc.parent.mkdir(parents=True, exist_ok=True)
    doc.write_text(head.rstrip() + "\n\n" + "\n".join(s.rstrip() + "\n" for s in sections))
