"""report.md and report.html from their parts: a title, the header lines, the table as text
(cells may link to a section), the plots and the sections after the table. The html is one
self-contained file: every image embedded."""

from __future__ import annotations

import base64
import html
from dataclasses import dataclass


class Link(str):
    """A table cell that links to a section of the same report (#anchor)."""

    href: str

    def __new__(cls, text: str, href: str) -> Link:
        cell = super().__new__(cls, text)
        cell.href = href
        return cell


@dataclass
class Section:
    """A part of the report after the table: an anchored heading, bullet lines, images (by file name)."""

    title: str
    anchor: str = ""
    lines: tuple[str, ...] = ()
    images: tuple[str, ...] = ()
    level: int = 2


def markdown_page(
    title: str, header: list[str], table: list[list[str]], images: list[str], sections: tuple[Section, ...]
) -> str:
    """report.md: `images` (the plots) and the sections' images are files beside it."""

    def md_cell(cell: str) -> str:
        text = cell.replace("|", "\\|")
        return f"[{text}]({cell.href})" if isinstance(cell, Link) else text

    def line(cells: list[str]) -> str:
        return "| " + " | ".join(md_cell(cell) for cell in cells) + " |"

    lines = [f"# {title}", ""] + [f"- {item}" for item in header] + [""]
    lines += [line(table[0]), "|" + "---|" * len(table[0])] + [line(cells) for cells in table[1:]]
    lines += [""] + [f"![{name}]({name})" for name in images]
    for section in sections:
        anchor = f'<a id="{section.anchor}"></a>' if section.anchor else ""
        lines += ["", f"{'#' * section.level} {anchor}{section.title}", ""]
        lines += [f"- {item}" for item in section.lines] + [f"![{name}]({name})" for name in section.images]
    return "\n".join(lines) + "\n"


def html_page(
    title: str,
    header: list[str],
    table: list[list[str]],
    images: dict[str, bytes],
    sections: tuple[Section, ...],
    section_images: dict[str, bytes],
) -> str:
    """report.html with every image embedded: `images` (the plots) and the sections' (by file name)."""

    def html_cell(value: str) -> str:
        text = html.escape(value)
        return f'<a href="{html.escape(value.href)}">{text}</a>' if isinstance(value, Link) else text

    def cells(tag: str, values: list[str]) -> str:
        return "<tr>" + "".join(f"<{tag}>{html_cell(value)}</{tag}>" for value in values) + "</tr>"

    body = [f"<h1>{html.escape(title)}</h1>", "<ul>"] + [f"<li>{html.escape(item)}</li>" for item in header]
    body += ["</ul>", "<table>", cells("th", table[0])] + [cells("td", row) for row in table[1:]] + ["</table>"]
    body += [
        f'<p><img alt="{name}" src="data:image/png;base64,{base64.b64encode(png).decode()}"></p>'
        for name, png in images.items()
    ]
    for section in sections:
        anchor = f' id="{html.escape(section.anchor)}"' if section.anchor else ""
        tag = f"h{section.level}"
        body.append(f"<{tag}{anchor}>{html.escape(section.title)}</{tag}>")
        if section.lines:
            body += ["<ul>"] + [f"<li>{html.escape(item)}</li>" for item in section.lines] + ["</ul>"]
        body += [
            f'<p><img alt="{html.escape(name)}" src="data:image/png;base64,'
            f'{base64.b64encode(section_images[name]).decode()}"></p>'
            for name in section.images
        ]
    style = (
        "body{font-family:sans-serif;margin:1.5em} table{border-collapse:collapse;font-size:0.85em}"
        " th,td{border:1px solid #bbb;padding:0.25em 0.5em;vertical-align:top} th{background:#eee}"
        " td:nth-child(2){max-width:28em} img{max-width:100%}"
    )
    return (
        '<!DOCTYPE html>\n<html><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title><style>{style}</style></head>\n<body>\n"
        + "\n".join(body)
        + "\n</body></html>\n"
    )
