"""Building blocks of the self-contained HTML report: escaping, embedded images, tables, sections, the page.

Everything is inline: images are ``data:image/png;base64,...`` URIs, the style sheet is a ``<style>`` element,
there is no script and no link to anything outside the file, so the page reads the same offline. Every piece of
text that comes from a file (class names, paths, config values) goes through :func:`escape`.
"""

from __future__ import annotations

import base64
import html
import io
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from numbers import Integral, Real
from pathlib import Path
from typing import TYPE_CHECKING

from cryomine.errors import InputError

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = [
    "PNG_SIGNATURE",
    "Section",
    "escape",
    "figure_data_uri",
    "flatten",
    "format_value",
    "image",
    "not_available",
    "page",
    "param_text",
    "paragraph",
    "png_data_uri",
    "png_file_data_uri",
    "table",
]

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

_STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 0 auto;
       max-width: 1200px; padding: 0 1.5em 3em; color: #1d1d1f; line-height: 1.45; }
header { border-bottom: 2px solid #4a6fa5; margin-bottom: 1em; }
h1 { margin-bottom: .2em; } h2 { border-bottom: 1px solid #ccd; padding-bottom: .2em; margin-top: 2em; }
.meta { color: #555; font-size: .9em; margin-top: 0; }
nav ol { columns: 2; font-size: .95em; }
table { border-collapse: collapse; margin: .6em 0 1em; font-size: .9em; }
caption { text-align: left; font-weight: 600; padding-bottom: .3em; white-space: nowrap; }
th, td { border: 1px solid #c8cdd6; padding: .25em .6em; text-align: left; vertical-align: top; }
th { background: #eef2f8; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
td.params { font-family: ui-monospace, Menlo, Consolas, monospace; font-size: .85em; color: #333; }
figure { margin: .8em 0 1.2em; } figure img { max-width: 100%; height: auto; border: 1px solid #dde; }
figcaption { font-size: .88em; color: #444; margin-top: .3em; }
.na { color: #8a5a00; background: #fff6e0; border-left: 4px solid #e0a800; padding: .4em .8em; }
.note { color: #555; font-size: .9em; }
details { margin: .4em 0; } summary { cursor: pointer; font-weight: 600; }
"""


def escape(text: object) -> str:
    """HTML-escape ``str(text)`` (``& < > " '``), safe in element content and quoted attributes."""
    return html.escape(str(text), quote=True)


def format_value(value: object, digits: int = 4) -> str:
    """A short display string: integers as they are, floats with ``digits`` significant digits, None as ``n/a``."""
    if value is None:
        return "n/a"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, Integral):
        return str(int(value))
    if isinstance(value, Real):
        v = float(value)
        if math.isnan(v):
            return "n/a"
        if math.isinf(v):
            return "∞" if v > 0 else "-∞"
        return f"{v:.{digits}g}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(format_value(v, digits) for v in value) + "]"
    return str(value)


def flatten(config: Mapping[str, object], prefix: str = "", max_list: int = 8) -> dict[str, str]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": "1"}``: nested mappings joined with dots, values as display strings.

    Lists longer than ``max_list`` are shown as ``[n items]``; lists of mappings as ``[n entries]``.
    """
    out: dict[str, str] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flatten(value, f"{name}.", max_list))
        elif isinstance(value, (list, tuple)) and any(isinstance(v, Mapping) for v in value):
            out[name] = f"[{len(value)} entries]"
        elif isinstance(value, (list, tuple)) and len(value) > max_list:
            out[name] = f"[{len(value)} items]"
        else:
            out[name] = format_value(value)
    return out


def param_text(config: Mapping[str, object] | None, keys: Sequence[str] | Mapping[str, str] | None = None,
               limit: int = 10, width: int = 40) -> str:
    """``"a.b=1, c=x"`` from a (nested) config: the dotted ``keys`` that are present (a mapping: display label ->
    dotted key), or its first ``limit`` entries; unset (None) values are left out, values longer than ``width``
    characters are cut."""
    if not config:
        return ""
    flat = {k: v for k, v in flatten(config).items() if v != "n/a"}  # unset (None) parameters say nothing
    if keys is None:
        items = list(flat.items())[:limit]
    else:
        pairs = keys.items() if isinstance(keys, Mapping) else ((k, k) for k in keys)
        items = [(label, flat[k]) for label, k in pairs if k in flat]
    return ", ".join(f"{k}={v if len(v) <= width else v[: width - 3] + '...'}" for k, v in items)


def png_data_uri(data: bytes) -> str:
    """``data:image/png;base64,...`` of PNG bytes (InputError if they are not a PNG)."""
    if not data.startswith(PNG_SIGNATURE):
        raise InputError("not a PNG image (bad signature)")
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


def png_file_data_uri(path: str | os.PathLike[str]) -> str:
    """Data URI of a PNG file (InputError naming the file if it is missing or not a PNG)."""
    p = Path(path)
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise InputError(f"cannot read image ({exc.strerror or exc})", p) from None
    if not data.startswith(PNG_SIGNATURE):
        raise InputError("not a PNG image", p)
    return png_data_uri(data)


def figure_data_uri(fig: Figure, dpi: int = 100) -> str:
    """Render a matplotlib figure to PNG (in memory) and return its data URI."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return png_data_uri(buf.getvalue())


def image(uri: str, alt: str, caption: str | None = None) -> str:
    """A ``<figure>`` with an embedded image; ``uri`` must be a ``data:image/`` URI (no outside files)."""
    if not uri.startswith("data:image/"):
        raise InputError("report images must be embedded data: URIs")
    cap = f"<figcaption>{escape(caption)}</figcaption>" if caption else ""
    return f'<figure><img src="{uri}" alt="{escape(alt)}">{cap}</figure>'


def _cell(value: object, tag: str = "td", css: str | None = None) -> str:
    numeric = isinstance(value, Real) and not isinstance(value, bool)
    cls = css or ("num" if numeric else None)
    attr = f' class="{cls}"' if cls else ""
    return f"<{tag}{attr}>{escape(format_value(value))}</{tag}>"


def table(header: Sequence[str], rows: Iterable[Sequence[object]], caption: str | None = None,
          css: Mapping[int, str] | None = None) -> str:
    """An HTML table; every cell is escaped, numbers right-aligned. ``css`` maps a column index to a class."""
    css = css or {}
    head = "".join(_cell(h, "th") for h in header)
    body = "".join("<tr>" + "".join(_cell(v, "td", css.get(i)) for i, v in enumerate(r)) + "</tr>" for r in rows)
    cap = f"<caption>{escape(caption)}</caption>" if caption else ""
    return f"<table>{cap}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def not_available(reason: str) -> str:
    """The box a section shows when its inputs are missing: "not available: <reason>"."""
    return f'<p class="na">Not available: {escape(reason)}</p>'


def paragraph(text: str, css: str | None = None) -> str:
    """An escaped ``<p>``."""
    attr = f' class="{css}"' if css else ""
    return f"<p{attr}>{escape(text)}</p>"


@dataclass(frozen=True)
class Section:
    """One report section: ``anchor`` (id), ``title`` (plain text), ``body`` (HTML built with this module)."""

    anchor: str
    title: str
    body: str

    def __post_init__(self) -> None:
        if not self.anchor or not all(c.isalnum() or c in "-_" for c in self.anchor):
            raise InputError(f"section anchor must be letters, digits, '-' or '_', got {self.anchor!r}")

    def render(self) -> str:
        """``<section>`` with its heading."""
        return f'<section id="{self.anchor}"><h2>{escape(self.title)}</h2>{self.body}</section>'


def page(title: str, sections: Sequence[Section], meta: Sequence[str] = ()) -> str:
    """A complete HTML document: title, ``meta`` lines under it, a table of contents, the sections."""
    toc = "".join(f'<li><a href="#{s.anchor}">{escape(s.title)}</a></li>' for s in sections)
    meta_html = "".join(f'<p class="meta">{escape(m)}</p>' for m in meta)
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<link rel="icon" href="data:,">'
        f"<title>{escape(title)}</title><style>{_STYLE}</style></head>\n<body>"
        f"<header><h1>{escape(title)}</h1>{meta_html}</header>"
        f"<nav><ol>{toc}</ol></nav>\n"
        + "\n".join(s.render() for s in sections)
        + "\n</body></html>\n"
    )
