"""A self-contained HTML report: sections of images (inlined as data URIs), tables, text and notes, one file."""
from __future__ import annotations

import base64
import html
import logging
import mimetypes
import numbers
import re
import time
from pathlib import Path
from typing import Any, Iterable

__all__ = ["Report", "Section", "format_cell"]

log = logging.getLogger("raylessons")

# Nothing outside the page may load: the policy makes a stray external reference fail (and show) in a browser.
CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"
CSS = """
body{font:15px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#222;background:#fafafa;margin:0}
main{box-sizing:border-box;max-width:1100px;margin:0 auto;padding:1em 1.5em 3em;background:#fff}
h1{font-size:1.8em;margin:.4em 0 .1em}
h2{font-size:1.35em;border-bottom:2px solid #e3e3e3;padding-bottom:.2em;margin-top:2em}
.meta{color:#777;font-size:.9em;margin-top:0}
nav{background:#f3f5f8;border:1px solid #e1e5ea;border-radius:4px;padding:.5em 1.2em}
nav ol{margin:.3em 0;padding-left:1.4em}
a{color:#1a5fb4;text-decoration:none}
a:hover{text-decoration:underline}
figure{margin:1.2em 0}
figure img{max-width:100%;height:auto;display:block;border:1px solid #eee}
figcaption,.caption{color:#555;font-size:.9em;margin:.3em 0}
.scroll{overflow-x:auto;margin:1.2em 0}
table{border-collapse:collapse;font-size:.88em}
caption{text-align:left}
th,td{border:1px solid #ddd;padding:.25em .6em;text-align:left;vertical-align:top}
th{background:#f3f5f8}
td.num{text-align:right;font-variant-numeric:tabular-nums}
tr:nth-child(even) td{background:#fafbfc}
pre{background:#f6f8fa;border:1px solid #e1e5ea;border-radius:4px;padding:.7em 1em;overflow-x:auto;font-size:.85em}
.missing{color:#a40000;background:#fff0f0;border:1px solid #f3c4c4;padding:.4em .8em;border-radius:4px}
"""
_MAGIC = {b"\x89PNG\r\n\x1a\n": "image/png", b"\xff\xd8\xff": "image/jpeg", b"GIF8": "image/gif"}


def esc(value: Any) -> str:
    """`value` as text, HTML-escaped (quotes too)."""
    return html.escape(str(value), quote=True)


def format_cell(value: Any) -> str:
    """A table cell's text: floats to 4 significant digits, ints and everything else as `str` (not escaped)."""
    if value is None:
        return ""
    if isinstance(value, numbers.Integral):  # bools, ints, numpy ints
        return str(value)
    if isinstance(value, numbers.Real):  # floats, numpy floats
        return f"{float(value):.4g}"
    return str(value)


def _data_uri(path: Path) -> str:
    data = path.read_bytes()
    mime = next((m for magic, m in _MAGIC.items() if data.startswith(magic)), None)
    mime = mime or mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def _records(rows: Any) -> tuple[list[str], list[dict]]:
    """(column names in first-seen order, rows as dicts) of a list of dicts or a DataFrame (its index dropped)."""
    if hasattr(rows, "to_dict") and hasattr(rows, "columns"):
        return [str(c) for c in rows.columns], [{str(k): v for k, v in r.items()} for r in rows.to_dict("records")]
    records = [dict(r) for r in rows]
    columns: dict[str, None] = {}
    for r in records:
        columns.update(dict.fromkeys(map(str, r)))
    return list(columns), [{str(k): v for k, v in r.items()} for r in records]


class Section:
    """One titled part of a report: images, tables, text and notes, rendered in the order they were added."""

    def __init__(self, title: str, anchor: str, intro: str | None = None):
        self.title, self.anchor, self.intro = title, anchor, intro
        self.items: list[tuple[str, tuple]] = []

    def image(self, path: str | Path | None, caption: str | None = None) -> Section:
        """An image file (PNG/JPEG/...), read and inlined when the report is written."""
        self.items.append(("image", (path, caption)))
        return self

    def table(self, rows: Iterable[dict] | Any, caption: str | None = None) -> Section:
        """A table of a list of dicts (columns: every key, first-seen order) or of a pandas DataFrame."""
        self.items.append(("table", _records(rows) + (caption,)))
        return self

    def text(self, text: str, caption: str | None = None) -> Section:
        """Preformatted, console-like text (e.g. HTTP answers)."""
        self.items.append(("text", (str(text), caption)))
        return self

    def note(self, paragraph: str) -> Section:
        """A paragraph of prose."""
        self.items.append(("note", (str(paragraph),)))
        return self

    def render(self) -> str:
        """This section as an HTML `<section>`."""
        out = [f'<section id="{esc(self.anchor)}">', f"<h2>{esc(self.title)}</h2>"]
        if self.intro:
            out.append(f'<p class="intro">{esc(self.intro)}</p>')
        for kind, args in self.items:
            out.append(getattr(self, f"_render_{kind}")(*args))
        out.append("</section>")
        return "\n".join(out)

    @staticmethod
    def _render_image(path, caption) -> str:
        cap = f"<figcaption>{esc(caption)}</figcaption>" if caption else ""
        try:
            if path is None:
                raise FileNotFoundError("no path given")
            uri = _data_uri(Path(path))
        except OSError as e:
            log.warning("report: image %s not inlined: %s", path, e)
            return f'<figure><p class="missing">missing: {esc(path)}</p>{cap}</figure>'
        return f'<figure><img src="{uri}" alt="{esc(caption or Path(path).name)}">{cap}</figure>'

    @staticmethod
    def _render_table(columns, records, caption) -> str:
        def cell(v: Any) -> str:
            num = isinstance(v, numbers.Number) and not isinstance(v, bool)
            return f'<td{" class=num" if num else ""}>{esc(format_cell(v))}</td>'

        head = "".join(f"<th>{esc(c)}</th>" for c in columns)
        body = "\n".join("<tr>" + "".join(cell(r.get(c)) for c in columns) + "</tr>" for r in records)
        cap = f'<caption class="caption">{esc(caption)}</caption>' if caption else ""
        table = f"<table>{cap}<thead><tr>{head}</tr></thead>\n<tbody>\n{body}\n</tbody></table>"
        return f'<div class="scroll">{table}</div>'

    @staticmethod
    def _render_text(text, caption) -> str:
        cap = f'<p class="caption">{esc(caption)}</p>' if caption else ""
        return f"<div>{cap}<pre>{esc(text)}</pre></div>"

    @staticmethod
    def _render_note(paragraph) -> str:
        return f"<p>{esc(paragraph)}</p>"


class Report:
    """A titled list of sections, written as one self-contained HTML page (no external CSS, JS, fonts or images)."""

    def __init__(self, title: str):
        self.title = title
        self.sections: list[Section] = []

    def section(self, title: str, intro: str | None = None) -> Section:
        """A new section at the end of the report, with a unique anchor for the table of contents."""
        base = re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-") or "section"
        taken = {s.anchor for s in self.sections}
        anchor, i = base, 2
        while anchor in taken:
            anchor, i = f"{base}-{i}", i + 1
        self.sections.append(Section(title, anchor, intro))
        return self.sections[-1]

    def render(self) -> str:
        """The whole page as an HTML string (images are read now)."""
        toc = "\n".join(f'<li><a href="#{esc(s.anchor)}">{esc(s.title)}</a></li>' for s in self.sections)
        body = "\n".join(s.render() for s in self.sections)
        return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{esc(CSP)}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{esc(self.title)}</title>
<style>{CSS}</style>
</head>
<body>
<main>
<h1>{esc(self.title)}</h1>
<p class="meta">written {esc(time.strftime("%Y-%m-%d %H:%M:%S"))}</p>
<nav><strong>Contents</strong><ol>
{toc}
</ol></nav>
{body}
</main>
</body>
</html>
"""

    def write(self, path: str | Path) -> Path:
        """Render to `path` (written whole via a temporary file, so a reader never sees half a page); returns it."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(self.render(), encoding="utf-8")
        tmp.replace(path)
        return path
