"""Render PDF pages and read their text layer with poppler-utils (``pdftoppm``, ``pdftotext``).

A page's text comes from ``pdftotext -bbox-layout``: lines of words, each word with its box in
PDF points (origin top-left, the same frame ``pdftoppm`` renders). ``page_lines()`` returns the
lines; ``split_line()`` cuts a line where the gap between two words is wide (table columns,
tab stops) or at dot leaders, because a text detector sees those as separate text lines.

Install: ``apt-get install poppler-utils`` (Debian/Ubuntu) or ``conda install poppler``.
"""
import html
import re
import shutil
import subprocess
from collections import namedtuple

import cv2

TOOLS = ("pdftoppm", "pdftotext", "pdfinfo")
INSTALL_HINT = "install poppler-utils (apt-get install poppler-utils)"

#: one word of the text layer: text and its box in PDF points (x0 < x1, y0 < y1, y down)
Word = namedtuple("Word", "text x0 y0 x1 y1")

# ligatures and invisible characters that PDFs carry in their text layer
_LIGATURES = {"\ufb00": "ff", "\ufb01": "fi", "\ufb02": "fl", "\ufb03": "ffi", "\ufb04": "ffl",
              "\ufb05": "st", "\ufb06": "st"}
_INVISIBLE = dict.fromkeys(map(ord, "\u00ad\u200b\u200c\u200d\u200e\u200f\u2060\ufeff"), None)
_PAGE_RE = re.compile(r'<page width="([\d.]+)" height="([\d.]+)">')
_LINE_RE = re.compile(r"<line\b[^>]*>(.*?)</line>", re.S)
_WORD_RE = re.compile(r'<word xMin="([-\d.]+)" yMin="([-\d.]+)" xMax="([-\d.]+)" '
                      r'yMax="([-\d.]+)">(.*?)</word>', re.S)


class PopplerError(RuntimeError):
    """A poppler tool is missing or failed on a file."""


def require_poppler():
    """Raise ``PopplerError`` with the install line when a poppler tool is not on PATH."""
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    if missing:
        raise PopplerError(f"{', '.join(missing)} not found: {INSTALL_HINT}")


def _run(args):
    try:
        result = subprocess.run(args, capture_output=True, check=False)
    except FileNotFoundError:
        raise PopplerError(f"{args[0]} not found: {INSTALL_HINT}") from None
    if result.returncode != 0:
        message = result.stderr.decode("utf-8", "replace").strip().splitlines()
        raise PopplerError(f"{' '.join(map(str, args))} failed: "
                           f"{message[-1] if message else 'exit ' + str(result.returncode)}")
    return result.stdout


def num_pages(pdf_path):
    """The page count that ``pdfinfo`` reports."""
    match = re.search(rb"^Pages:\s+(\d+)", _run(["pdfinfo", str(pdf_path)]), re.M)
    if match is None:
        raise PopplerError(f"pdfinfo reports no page count for {pdf_path}")
    return int(match.group(1))


def render_page(pdf_path, page, dpi, png_path):
    """Render 1-based ``page`` at ``dpi`` to ``png_path`` (anti-aliased, RGB); return the path."""
    prefix = str(png_path)[:-4] if str(png_path).endswith(".png") else str(png_path)
    _run(["pdftoppm", "-r", str(int(dpi)), "-f", str(page), "-l", str(page), "-png",
          "-singlefile", str(pdf_path), prefix])
    return prefix + ".png"


def read_page_image(png_path):
    """A rendered page as uint8 BGR."""
    image = cv2.imread(str(png_path), cv2.IMREAD_COLOR)
    if image is None:
        raise PopplerError(f"cannot read rendered page {png_path}")
    return image


def clean_text(text):
    """Expand ligatures, drop soft hyphens and zero-width characters, trim whitespace."""
    for ligature, letters in _LIGATURES.items():
        text = text.replace(ligature, letters)
    return " ".join(text.translate(_INVISIBLE).split())


def parse_bbox_layout(xhtml):
    """``(width_pt, height_pt, lines)`` of the first page in ``pdftotext -bbox-layout`` output;
    ``lines`` is a list of lists of ``Word`` (empty words dropped)."""
    page = _PAGE_RE.search(xhtml)
    if page is None:
        return 0.0, 0.0, []
    lines = []
    for line_match in _LINE_RE.finditer(xhtml, page.end()):
        words = []
        for x0, y0, x1, y1, raw in _WORD_RE.findall(line_match.group(1)):
            text = clean_text(html.unescape(raw))
            if text:
                words.append(Word(text, float(x0), float(y0), float(x1), float(y1)))
        if words:
            lines.append(words)
    return float(page.group(1)), float(page.group(2)), lines


def page_lines(pdf_path, page):
    """``(width_pt, height_pt, lines)`` of 1-based ``page`` (see ``parse_bbox_layout``)."""
    out = _run(["pdftotext", "-bbox-layout", "-enc", "UTF-8", "-f", str(page), "-l", str(page),
                str(pdf_path), "-"])
    return parse_bbox_layout(out.decode("utf-8", "replace"))


def _is_leader(word):
    return set(word.text) <= set(".\u00b7\u2026\u22c5")


def split_line(words, gap_factor=1.2, min_leader_run=3):
    """Cut a line into segments where the horizontal gap between two words exceeds
    ``gap_factor`` times the line height, and at dot leaders (runs of at least
    ``min_leader_run`` words made of dots, as in tables of contents), which are dropped;
    returns a list of non-empty word lists."""
    pieces, run = [[]], []
    for word in words + [None]:
        if word is not None and _is_leader(word):
            run.append(word)
            continue
        if len(run) >= min_leader_run:
            pieces.append([])
        else:
            pieces[-1].extend(run)
        run = []
        if word is not None:
            pieces[-1].append(word)
    segments = []
    for piece in pieces:
        if not piece:
            continue
        current = [piece[0]]
        for word in piece[1:]:
            previous = current[-1]
            height = max(previous.y1 - previous.y0, word.y1 - word.y0)
            if word.x0 - previous.x1 > gap_factor * height or word.x1 <= previous.x0:
                segments.append(current)
                current = [word]
            else:
                current.append(word)
        segments.append(current)
    return segments


def union_box(words):
    """``(x0, y0, x1, y1)`` around ``words``."""
    return (min(w.x0 for w in words), min(w.y0 for w in words),
            max(w.x1 for w in words), max(w.y1 for w in words))


def looks_rotated(words):
    """True when a segment is set vertically or rotated. pdftotext gives upright boxes, so such
    text shows up as a segment (or a word of 4+ characters) clearly taller than wide."""
    x0, y0, x1, y1 = union_box(words)
    if sum(len(w.text) for w in words) >= 3 and (y1 - y0) > 1.5 * (x1 - x0):
        return True
    return any(len(w.text) >= 4 and (w.y1 - w.y0) > 1.2 * (w.x1 - w.x0) for w in words)
