"""report.html: report.md rendered with Python-Markdown, images inlined as base64 so the
one file can be shared (no external reference: no src= to a file or URL)."""

from __future__ import annotations

import base64
import html
import re
from pathlib import Path

STYLE = """
body { font-family: -apple-system, "Segoe UI", "Noto Sans KR", "Malgun Gothic", sans-serif; max-width: 1100px;
       margin: 2em auto; padding: 0 1em; line-height: 1.45; color: #222; }
table { border-collapse: collapse; margin: 0.6em 0; font-size: 0.85em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.5em; text-align: right; }
th:first-child, td:first-child { text-align: left; }
pre { background: #f5f5f5; padding: 0.6em; overflow-x: auto; }
img { max-width: 100%; }
"""
_IMG_SRC = re.compile(r'src="([^"]+)"')


def _inline_images(body: str, root: Path) -> str:
    def replace(match: re.Match) -> str:
        source = html.unescape(match.group(1))
        file = root / source
        if source.startswith("data:") or not file.is_file():
            return match.group(0)
        data = base64.b64encode(file.read_bytes()).decode("ascii")
        return f'src="data:image/png;base64,{data}"'

    return _IMG_SRC.sub(replace, body)


def render_html(markdown_text: str, root: Path, title: str) -> str:
    import markdown

    body = markdown.markdown(markdown_text, extensions=["tables", "fenced_code", "toc"], output_format="html")
    body = _inline_images(body, root)
    return (f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{html.escape(title)}</title>"
            f"<style>{STYLE}</style></head>\n<body>\n{body}\n</body></html>\n")
