"""A small report builder writing the same content as Markdown and self-contained HTML."""

from __future__ import annotations

import html
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from .io import atomic_write

__all__ = ["Report", "Table"]


def _fmt(x) -> str:
    if isinstance(x, float):
        if x != x:
            return "–"
        if x == 0 or 1e-3 <= abs(x) < 1e5:
            return f"{x:.4g}" if abs(x) < 100 else f"{x:.1f}"
        return f"{x:.2e}"
    return "–" if x is None else str(x)


@dataclass
class Table:
    """A table with a caption; cells are formatted with 4 significant digits."""

    headers: Sequence[str]
    rows: Sequence[Sequence]
    caption: str = ""

    def markdown(self) -> str:
        """The table as Markdown (caption in italics above it)."""
        out = [f"*{self.caption}*", ""] if self.caption else []
        out.append("| " + " | ".join(self.headers) + " |")
        out.append("|" + "---|" * len(self.headers))
        out += ["| " + " | ".join(_fmt(c) for c in row) + " |" for row in self.rows]
        return "\n".join(out) + "\n"

    def html(self) -> str:
        """The table as an HTML ``<table>`` element with escaped cells."""
        cap = f"<caption>{html.escape(self.caption)}</caption>" if self.caption else ""
        head = "".join(f"<th>{html.escape(h)}</th>" for h in self.headers)
        body = "".join("<tr>" + "".join(f"<td>{html.escape(_fmt(c))}</td>" for c in row) + "</tr>"
                       for row in self.rows)
        return f"<table>{cap}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>\n"


@dataclass
class Report:
    """Sections of text, tables and figures, rendered to ``report.md`` and ``report.html``."""

    title: str
    blocks: list = field(default_factory=list)

    def heading(self, text: str, level: int = 2) -> None:
        """Append a section heading of the given level (``##`` / ``<h2>`` by default)."""
        self.blocks.append(("heading", (text, level)))

    def text(self, text: str) -> None:
        """Append a paragraph of plain text (HTML-escaped, newlines become ``<br>``)."""
        self.blocks.append(("text", text))

    def table(self, table: Table) -> None:
        """Append a :class:`Table`."""
        self.blocks.append(("table", table))

    def figure(self, path, caption: str = "") -> None:
        """Append an image at ``path``, linked relative to the output directory, with a caption."""
        self.blocks.append(("figure", (Path(path), caption)))

    def write(self, out_dir) -> tuple[Path, Path]:
        """Write ``report.md`` and ``report.html`` atomically into the existing directory ``out_dir``.

        Returns
        -------
        (Path, Path)
            The paths of the Markdown and the HTML file.
        """
        out_dir = Path(out_dir)
        md, hl = [f"# {self.title}\n"], [
            "<!DOCTYPE html><html><head><meta charset='utf-8'>",
            f"<title>{html.escape(self.title)}</title>",
            "<style>body{font-family:sans-serif;max-width:1100px;margin:auto;padding:1em}"
            "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #bbb;padding:3px 8px;"
            "text-align:right}th{background:#eee}caption{font-style:italic;text-align:left}"
            "img{max-width:100%}figure{margin:1em 0}pre{background:#f6f6f6;padding:.5em}</style>",
            f"</head><body><h1>{html.escape(self.title)}</h1>",
        ]
        for kind, value in self.blocks:
            if kind == "heading":
                text, level = value
                md.append("#" * level + " " + text + "\n")
                hl.append(f"<h{level}>{html.escape(text)}</h{level}>")
            elif kind == "text":
                md.append(value + "\n")
                hl.append("<p>" + html.escape(value).replace("\n", "<br>") + "</p>")
            elif kind == "table":
                md.append(value.markdown())
                hl.append(value.html())
            else:
                path, caption = value
                rel = os.path.relpath(path, out_dir)
                md.append(f"![{caption}]({rel})\n\n*{caption}*\n")
                hl.append(f"<figure><img src='{html.escape(rel)}'>"
                          f"<figcaption>{html.escape(caption)}</figcaption></figure>")
        hl.append("</body></html>")
        md_path, html_path = out_dir / "report.md", out_dir / "report.html"
        with atomic_write(md_path, "w") as fh:
            fh.write("\n".join(md))
        with atomic_write(html_path, "w") as fh:
            fh.write("\n".join(hl))
        return md_path, html_path
