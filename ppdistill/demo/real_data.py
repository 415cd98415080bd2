"""Real labelled OCR data: pages of PDFs that Debian packages ship, labelled by their text layer.

``make_real_data(out_dir)`` fetches a few documentation packages with ``apt-get download`` (about
10 MB, no root needed, nothing installed), takes the PDF out of each ``.deb``, picks pages with a
seeded RNG, renders them with ``pdftoppm`` and labels them with the words and lines that
``pdftotext -bbox-layout`` reads from the text layer. It writes::

    <out>/real_data.json                 sources (package, version, pages), options, counts
    <out>/clean/det/{train,eval}/*.png   page tiles (width <= 960, height <= 960)
    <out>/clean/det/{train,eval}_label.txt   "eval/x.png<TAB>[{"transcription": .., "points": ..}]"
    <out>/clean/rec/{train,eval}/*.png   word / short-line crops
    <out>/clean/rec/{train,eval}_label.txt   "eval/x.png<TAB>text"
    <out>/degraded_l2/...                the same samples degraded like scans/photos, as JPEG
                                         (``degrade_levels=[2]``; names end in .jpg)
    <out>/cache/                         .deb files, PDFs, rendered pages (reused by later runs)

Label paths are relative to the ``det``/``rec`` folder, which is the configs' ``data_dir``.
Detection labels are text LINES (a pdftotext line cut at wide gaps), the unit PP-OCR detectors
find; lines set vertically or rotated, or cut by a tile border, are ``"###"`` (ignored).
Recognition crops keep only texts whose characters are all in the dictionary.

Pages are split train/eval by page (default) or by whole source document; no page is in both.
The train split is meant for unlabelled use (distillation needs only its images); its labels are
written too, for supervised baselines. Same inputs and seed give byte-identical files.
Requirements: poppler-utils; ``apt-get`` and ``dpkg-deb`` for the Debian sources (or pass PDFs).
"""
import difflib
import gzip
import io
import json
import math
import os
import shutil
import subprocess
import tarfile
from collections import namedtuple
from dataclasses import dataclass

import cv2
import numpy as np

from ppdistill.demo import degrade as degrade_mod
from ppdistill.demo import pdf_text

MANIFEST = "real_data.json"
DEFAULT_DICT = os.path.join(os.path.dirname(os.path.dirname(__file__)), "utils", "dict",
                            "ppocr_keys_v1.txt")
DEFAULT_OUT_DIR = "./real_data"
SPLITS = ("train", "eval")


@dataclass(frozen=True)
class PdfSource:
    """One PDF to draw pages from: a member of a Debian package, or a file on disk.

    Args:
        name: short id used in file names (letters, digits, ``-``).
        package: Debian package that ships the PDF (fetched with ``apt-get download``).
        member: path of the PDF inside the package (a ``.pdf.gz`` is decompressed).
        path: a PDF on disk, instead of ``package``/``member``.
        note: what the document looks like (for the report).

    Built in Python, not from YAML: ``PdfSource("my-doc", path="doc.pdf")``, or pass
    ``pdfs=["doc.pdf"]`` to ``make_real_data`` (``--pdf doc.pdf`` on the command line).
    """
    name: str
    package: str = None
    member: str = None
    path: str = None
    note: str = ""


#: Debian (bookworm) packages whose PDFs have a good text layer; ~10 MB of .deb in total
DEBIAN_SOURCES = {s.name: s for s in (
    PdfSource("maint-guide-zh-cn", "maint-guide-zh-cn",
              "usr/share/doc/maint-guide-zh-cn/maint-guide.zh-cn.pdf",
              note="Chinese+English, DocBook/dblatex, serif CJK + mono code"),
    PdfSource("debian-reference-zh-cn", "debian-reference-zh-cn",
              "usr/share/debian-reference/debian-reference.zh-cn.pdf",
              note="Chinese+English, tables, dense shell examples"),
    PdfSource("xecjk-manual", "texlive-lang-cjk",
              "usr/share/doc/texlive-doc/xelatex/xecjk/xeCJK.pdf",
              note="Chinese LaTeX manual, CJK serif/sans, macro listings"),
    PdfSource("reportlab-userguide", "python-reportlab-doc",
              "usr/share/doc/python-reportlab-doc/reportlab-userguide.pdf",
              note="English, Helvetica/Times/Courier, headings, code boxes"),
    PdfSource("gnuplot-manual", "gnuplot-doc", "usr/share/doc/gnuplot/gnuplot.pdf",
              note="English LaTeX manual, Computer Modern, two-column index"),
)}
DEFAULT_SOURCES = tuple(DEBIAN_SOURCES)

#: a text segment of a page in page pixels: x0 y0 x1 y1, text, words, rotated?, has ink?
Segment = namedtuple("Segment", "box text words rotated inked")


class RealDataError(RuntimeError):
    """A user-facing problem (missing tool, bad option, unusable source); one-line message."""


# ----------------------------------------------------------------------------- sources
def _run(args, cwd=None):
    try:
        result = subprocess.run(args, cwd=cwd, capture_output=True, check=False)
    except FileNotFoundError:
        raise RealDataError(f"{args[0]} not found: the Debian sources need apt-get and dpkg-deb "
                            f"(or pass PDF files instead)") from None
    if result.returncode != 0:
        lines = result.stderr.decode("utf-8", "replace").strip().splitlines()
        raise RealDataError(f"{' '.join(args)} failed: {lines[-1] if lines else result.returncode}")
    return result.stdout


def _find_deb(deb_dir, package):
    if not os.path.isdir(deb_dir):
        return None
    found = sorted(f for f in os.listdir(deb_dir)
                   if f.startswith(package + "_") and f.endswith(".deb"))
    return os.path.join(deb_dir, found[-1]) if found else None


def fetch_pdf(source, cache_dir):
    """Make ``source``'s PDF available under ``cache_dir``; return ``(pdf_path, info)`` where
    ``info`` records where it came from (package, version, .deb size) for the manifest."""
    if source.path:
        if not os.path.isfile(source.path):
            raise RealDataError(f"PDF not found: {source.path}")
        return source.path, {"path": os.path.abspath(source.path),
                             "pdf_bytes": os.path.getsize(source.path)}
    pdf_path = os.path.join(cache_dir, "pdf", source.name + ".pdf")
    deb_dir = os.path.join(cache_dir, "debs")
    deb = _find_deb(deb_dir, source.package)
    if deb is None:
        os.makedirs(deb_dir, exist_ok=True)
        _run(["apt-get", "download", source.package], cwd=deb_dir)
        deb = _find_deb(deb_dir, source.package)
        if deb is None:
            raise RealDataError(f"apt-get download {source.package} left no .deb in {deb_dir}")
    if not os.path.isfile(pdf_path):
        members = tarfile.open(fileobj=io.BytesIO(_run(["dpkg-deb", "--fsys-tarfile", deb])))
        wanted = {"./" + source.member, source.member, "./" + source.member + ".gz"}
        member = next((m for m in members.getmembers() if m.name in wanted), None)
        if member is None:
            raise RealDataError(f"{os.path.basename(deb)} has no {source.member}")
        data = members.extractfile(member).read()
        if member.name.endswith(".gz"):
            data = gzip.decompress(data)
        os.makedirs(os.path.dirname(pdf_path), exist_ok=True)
        with open(pdf_path + ".part", "wb") as handle:
            handle.write(data)
        os.replace(pdf_path + ".part", pdf_path)
    version = _run(["dpkg-deb", "-f", deb, "Version"]).decode().strip()
    return pdf_path, {"package": source.package, "version": version, "member": source.member,
                      "deb": os.path.basename(deb), "deb_bytes": os.path.getsize(deb),
                      "pdf_bytes": os.path.getsize(pdf_path)}


def resolve_sources(names=None, pdfs=()):
    """``PdfSource``s for Debian source ``names`` (default all) plus PDF files ``pdfs``."""
    sources = []
    for name in (DEFAULT_SOURCES if names is None else names):
        if name not in DEBIAN_SOURCES:
            close = difflib.get_close_matches(name, DEBIAN_SOURCES, n=1)
            hint = (f"; did you mean '{close[0]}'?" if close
                    else f"; known: {', '.join(DEBIAN_SOURCES)}")
            raise RealDataError(f"unknown source '{name}'{hint}")
        sources.append(DEBIAN_SOURCES[name])
    for path in pdfs:
        if not os.path.isfile(path):
            raise RealDataError(f"PDF not found: {path}")
        stem = os.path.splitext(os.path.basename(path))[0]
        sources.append(PdfSource("".join(c if c.isalnum() or c in "-." else "-" for c in stem),
                                 path=path))
    names_seen = [s.name for s in sources]
    if len(set(names_seen)) != len(names_seen):
        raise RealDataError(f"two sources share a name: {names_seen}")
    if not sources:
        raise RealDataError("no sources given")
    return sources


# ----------------------------------------------------------------------------- one page
def load_dictionary(dict_path):
    """The set of characters of a one-character-per-line dictionary (None: no filtering)."""
    if dict_path is None:
        return None
    if not os.path.isfile(dict_path):
        raise RealDataError(f"dictionary not found: {dict_path}")
    with open(dict_path, encoding="utf-8") as handle:
        return {line.rstrip("\r\n") for line in handle if line.rstrip("\r\n")}


def page_segments(image, width_pt, lines, gap_factor=1.2, min_contrast=48):
    """The text segments of a rendered page, boxes in its pixels (clipped to the image)."""
    height, width = image.shape[:2]
    scale = width / width_pt
    gray = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    segments = []
    for line in lines:
        for words in pdf_text.split_line(line, gap_factor):
            x0, y0, x1, y1 = (v * scale for v in pdf_text.union_box(words))
            box = (max(0.0, x0), max(0.0, y0), min(float(width), x1), min(float(height), y1))
            if box[2] - box[0] < 1 or box[3] - box[1] < 1:
                continue
            crop = gray[int(box[1]):int(math.ceil(box[3])), int(box[0]):int(math.ceil(box[2]))]
            inked = crop.size > 0 and int(crop.max()) - int(crop.min()) >= min_contrast
            clipped = (box[2] - box[0]) * (box[3] - box[1]) < 0.9 * (x1 - x0) * (y1 - y0)
            segments.append(Segment(box, " ".join(w.text for w in words), words,
                                    pdf_text.looks_rotated(words) or clipped, inked))
    return segments


def _cut_rows(segments, ink_rows, max_tile_height):
    """Row indices that cut a page into tiles no taller than ``max_tile_height``, placed where
    the fewest segments are crossed, then on the row with the least ink (``ink_rows``: dark
    pixels per row), then nearest the even split."""
    height = len(ink_rows)
    count = int(math.ceil(height / float(max_tile_height)))
    cuts = [0]
    for k in range(1, count):
        ideal = k * height / count
        lo = max(cuts[-1] + 1, int(ideal - 0.15 * max_tile_height))
        hi = min(int(ideal + 0.15 * max_tile_height), cuts[-1] + max_tile_height, height - 1)
        best = None
        for row in range(lo, hi + 1):
            crossed = sum(1 for s in segments if s.box[1] - 2 < row < s.box[3] + 2)
            key = (crossed, int(ink_rows[row]), abs(row - ideal))
            if best is None or key < best[0]:
                best = (key, row)
        cuts.append(best[1] if best else int(ideal))
    cuts.append(height)
    return cuts


def det_tiles(image, segments, det_width=960, max_tile_height=960):
    """Cut a page into detection tiles: ``[(tile_image, [(text_or_###, [4, 2] points)])]``.

    The page is resized to ``det_width`` pixels wide (never enlarged), then cut across at rows
    that cross few text lines. A segment inside a tile keeps its text; one cut by the border, set
    rotated or without ink is ``###``. Tiles without a single readable line are dropped."""
    scale = min(1.0, det_width / float(image.shape[1]))
    if scale < 1.0:
        size = (int(round(image.shape[1] * scale)), int(round(image.shape[0] * scale)))
        image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    scaled = [s._replace(box=tuple(v * scale for v in s.box)) for s in segments]
    tiles = []
    gray = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    ink_rows = (gray < 160).sum(axis=1)
    cuts = _cut_rows(scaled, ink_rows, max_tile_height)
    for top, bottom in zip(cuts[:-1], cuts[1:]):
        labels = []
        for seg in scaled:
            x0, y0, x1, y1 = seg.box
            cy0, cy1 = max(y0, top), min(y1, bottom)
            if cy1 - cy0 <= 0:
                continue
            inside = y0 >= top - 0.5 and y1 <= bottom + 0.5
            text = seg.text if inside and seg.inked and not seg.rotated else "###"
            if not seg.inked and inside:
                continue  # nothing visible to detect
            xa, xb = int(math.floor(x0)), int(math.ceil(x1))
            ya, yb = int(math.floor(cy0)) - top, int(math.ceil(cy1)) - top
            yb = min(yb, bottom - top)
            labels.append((text, [[xa, ya], [xb, ya], [xb, yb], [xa, yb]]))
        if any(text != "###" for text, _ in labels):
            tiles.append((np.ascontiguousarray(image[top:bottom]), labels))
    return tiles


def _chunks(words, max_chars):
    """Consecutive word groups whose joined text has at most ``max_chars`` characters."""
    groups, current = [], []
    for word in words:
        if current and len(" ".join(w.text for w in current + [word])) > max_chars:
            groups.append(current)
            current = []
        current.append(word)
    if current:
        groups.append(current)
    return [g for g in groups if len(" ".join(w.text for w in g)) <= max_chars]


def rec_crops(image, width_pt, segments, charset=None, max_chars=25, min_height=10):
    """Word / short-line crops ``[(crop, text)]`` of a rendered page: segments longer than
    ``max_chars`` are cut into word groups; texts with characters outside ``charset`` (a set;
    space always allowed), rotated, ink-less or lower than ``min_height`` pixels are dropped."""
    height, width = image.shape[:2]
    scale = width / width_pt
    crops = []
    for seg in segments:
        if seg.rotated or not seg.inked:
            continue
        for group in _chunks(seg.words, max_chars):
            text = " ".join(w.text for w in group)
            if charset is not None and any(c not in charset and c != " " for c in text):
                continue
            x0, y0, x1, y1 = (v * scale for v in pdf_text.union_box(group))
            box_h = y1 - y0
            if box_h < min_height or x1 - x0 < 2:
                continue
            pad_y, pad_x = 0.12 * box_h + 1, 0.25 * box_h + 1
            xa, ya = max(0, int(math.floor(x0 - pad_x))), max(0, int(math.floor(y0 - pad_y)))
            xb, yb = min(width, int(math.ceil(x1 + pad_x))), min(height, int(math.ceil(y1 + pad_y)))
            crop = image[ya:yb, xa:xb]
            gray = cv2.cvtColor(crop, cv2.COLOR_BGR2GRAY)
            if gray.size == 0 or int(gray.max()) - int(gray.min()) < 48:
                continue
            crops.append((np.ascontiguousarray(crop), text))
    return crops


# ----------------------------------------------------------------------------- pages and splits
def _page_cache(cache_dir, pdf_path, name, page, dpi):
    """Render (once) and parse one page: ``(image, width_pt, lines)``."""
    png = os.path.join(cache_dir, "pages", name, f"p{page:04d}_r{int(dpi)}.png")
    if not os.path.isfile(png):
        os.makedirs(os.path.dirname(png), exist_ok=True)
        part = png[:-4] + ".part.png"
        pdf_text.render_page(pdf_path, page, dpi, part)
        os.replace(part, png)
    width_pt, _, lines = pdf_text.page_lines(pdf_path, page)
    return pdf_text.read_page_image(png), width_pt, lines


def select_pages(pdf_path, name, count, seed, min_lines=8, skip_first=1):
    """Up to ``count`` pages (1-based, in a seeded random order) whose text layer has at least
    ``min_lines`` lines; the first ``skip_first`` pages (covers) are never taken."""
    total = pdf_text.num_pages(pdf_path)
    candidates = np.arange(skip_first + 1, total + 1)
    if candidates.size == 0:
        candidates = np.arange(1, total + 1)
    order = np.random.RandomState(degrade_mod.item_seed(seed, name)).permutation(candidates)
    chosen = []
    for page in order[:max(4 * count, count + 8)]:
        _, _, lines = pdf_text.page_lines(pdf_path, int(page))
        if len(lines) >= min_lines:
            chosen.append(int(page))
            if len(chosen) == count:
                break
    return chosen, total


def _eval_count(n, fraction):
    if n < 2:
        return n if fraction >= 0.5 else 0
    return min(n - 1, max(1, int(round(fraction * n))))


def split_pages(pages_by_source, eval_fraction, split_by, seed):
    """``{(source, page): "train"|"eval"}``: ``split_by="page"`` holds out a share of each
    source's pages, ``"source"`` a share of whole documents. Deterministic in ``seed``."""
    assign = {}
    if split_by == "page":
        for name, pages in pages_by_source.items():
            n_eval = _eval_count(len(pages), eval_fraction)
            order = np.random.RandomState(degrade_mod.item_seed(seed, "split:" + name)).permutation(
                len(pages))
            for rank, index in enumerate(order):
                assign[(name, pages[index])] = "eval" if rank < n_eval else "train"
    elif split_by == "source":
        names = sorted(pages_by_source)
        if len(names) < 2:
            raise RealDataError("split_by='source' needs at least two sources")
        order = np.random.RandomState(degrade_mod.item_seed(seed, "split")).permutation(len(names))
        n_eval = _eval_count(len(names), eval_fraction)
        for rank, index in enumerate(order):
            for page in pages_by_source[names[index]]:
                assign[(names[index], page)] = "eval" if rank < n_eval else "train"
    else:
        raise RealDataError(f"split_by must be 'page' or 'source', got '{split_by}'")
    return assign


# ----------------------------------------------------------------------------- writing
def _write_png(path, image):
    ok, encoded = cv2.imencode(".png", image, [cv2.IMWRITE_PNG_COMPRESSION, 6])
    if not ok:
        raise RealDataError(f"cannot encode {path}")
    with open(path, "wb") as handle:
        handle.write(encoded.tobytes())


def _det_label(labels):
    return json.dumps([{"transcription": text, "points": points} for text, points in labels],
                      ensure_ascii=False)


def _degraded_labels(labels, polygons, shape):
    """Labels after the geometric degradation: points clipped to the image; a box that lost
    more than a fifth of its area to the border becomes ``###``."""
    height, width = shape[:2]
    out = []
    for (text, _), poly in zip(labels, polygons):
        clipped = np.stack([np.clip(poly[:, 0], 0, width - 1),
                            np.clip(poly[:, 1], 0, height - 1)], 1)
        area, kept = abs(cv2.contourArea(poly)), abs(cv2.contourArea(clipped))
        if kept < 4:
            continue
        if kept < 0.8 * area:
            text = "###"
        out.append((text, [[int(round(x)), int(round(y))] for x, y in clipped]))
    return out


class _Writer:
    """Writes the det/rec files of one variant (clean or one degradation level)."""

    def __init__(self, root, level, seed):
        self.root, self.level, self.seed = root, level, seed
        self.lines = {(task, split): [] for task in ("det", "rec") for split in SPLITS}
        for task in ("det", "rec"):
            for split in SPLITS:
                os.makedirs(os.path.join(root, task, split), exist_ok=True)

    def _write(self, task, split, name, image, polygons=None):
        """Write one image (PNG when clean, the degradation's JPEG otherwise); return
        ``(relative path, moved polygons)``."""
        if not self.level:
            rel = f"{split}/{name}.png"
            _write_png(os.path.join(self.root, task, rel), image)
            return rel, polygons
        data, polygons = degrade_mod.degrade_to_jpeg(
            image, self.level, degrade_mod.item_seed(self.seed, name), polygons)
        rel = f"{split}/{name}.jpg"
        with open(os.path.join(self.root, task, rel), "wb") as handle:
            handle.write(data)
        return rel, polygons

    def det(self, split, name, image, labels):
        polygons = [np.float32(points) for _, points in labels]
        rel, moved = self._write("det", split, name, image, polygons)
        if self.level:
            labels = _degraded_labels(labels, moved, image.shape)
        self.lines[("det", split)].append(f"{rel}\t{_det_label(labels)}")

    def rec(self, split, name, crop, text):
        rel, _ = self._write("rec", split, name, crop)
        self.lines[("rec", split)].append(f"{rel}\t{text}")

    def close(self):
        for (task, split), lines in self.lines.items():
            with open(os.path.join(self.root, task, f"{split}_label.txt"), "w",
                      encoding="utf-8", newline="\n") as handle:
                handle.write("".join(line + "\n" for line in lines))


def variant_name(level):
    """Folder of a variant: ``clean`` or ``degraded_l<level>``."""
    return "clean" if int(level) == 0 else f"degraded_l{int(level)}"


def dataset_paths(out_dir=DEFAULT_OUT_DIR, level=0):
    """``{"det"|"rec": {"data_dir", "train_label", "eval_label"}}`` of a made variant."""
    root = os.path.join(out_dir, variant_name(level))
    return {task: {"data_dir": os.path.join(root, task),
                   "train_label": os.path.join(root, task, "train_label.txt"),
                   "eval_label": os.path.join(root, task, "eval_label.txt")}
            for task in ("det", "rec")}


def _prepare_out_dir(out_dir, force):
    if os.path.isdir(out_dir) and os.listdir(out_dir) and not force \
            and not os.path.isfile(os.path.join(out_dir, MANIFEST)):
        raise RealDataError(f"{out_dir} is not empty and holds no {MANIFEST}: choose another "
                            f"output folder (or --force / force=True to write into it anyway)")
    os.makedirs(out_dir, exist_ok=True)
    for entry in os.listdir(out_dir):  # outputs of an earlier run; the cache is kept
        if entry == "clean" or entry.startswith("degraded_l"):
            shutil.rmtree(os.path.join(out_dir, entry))


def make_real_data(out_dir=DEFAULT_OUT_DIR, sources=None, pdfs=(), pages_per_source=10,
                   eval_fraction=0.5, split_by="page", seed=0, dpi=200, det_width=960,
                   max_tile_height=960, max_chars=25, dict_path=DEFAULT_DICT, degrade_levels=(),
                   min_lines=8, skip_first=1, force=False, log=None):
    """Build the data sets (see the module docstring); return the manifest dict.

    Args:
        sources: Debian source names (``DEBIAN_SOURCES``; default all); ``pdfs``: extra PDF files.
        pages_per_source: pages taken from each source (with at least ``min_lines`` text lines;
            the first ``skip_first`` pages, covers, are skipped).
        eval_fraction / split_by / seed: held-out share, ``"page"`` or ``"source"``, RNG seed.
        dpi: render resolution (rec crops come from this; det tiles are resized to ``det_width``).
        max_chars / dict_path: longest rec text and its dictionary (None: keep every character).
        degrade_levels: degradation levels (1..3) to write besides the clean variant.
    """
    pdf_text.require_poppler()
    if not 0.0 < eval_fraction < 1.0:
        raise RealDataError(f"eval_fraction must be in (0, 1), got {eval_fraction}")
    levels = sorted({int(v) for v in degrade_levels})
    if any(not 1 <= v <= degrade_mod.MAX_LEVEL for v in levels):
        raise RealDataError(f"degradation levels must be 1..{degrade_mod.MAX_LEVEL}, got {levels}")
    log = log or (lambda message: None)
    charset = load_dictionary(dict_path)
    chosen = resolve_sources(sources, pdfs)
    _prepare_out_dir(out_dir, force)
    cache = os.path.join(out_dir, "cache")

    infos, pdf_paths, pages_by_source = {}, {}, {}
    for source in chosen:
        pdf_path, info = fetch_pdf(source, cache)
        pages, total = select_pages(pdf_path, source.name, pages_per_source, seed, min_lines,
                                    skip_first)
        if not pages:
            raise RealDataError(f"{source.name}: no page with {min_lines}+ text lines "
                                f"(a scanned PDF without a text layer?)")
        info.update(note=source.note, pages_total=total)
        infos[source.name], pdf_paths[source.name] = info, pdf_path
        pages_by_source[source.name] = pages
        log(f"{source.name}: {total} pages, using {pages}")
    assign = split_pages(pages_by_source, eval_fraction, split_by, seed)

    writers = [_Writer(os.path.join(out_dir, variant_name(v)), v, seed) for v in [0] + levels]
    for name, pages in pages_by_source.items():
        stats = {split: {"pages": [], "lines": 0, "words": 0, "det_images": 0, "det_boxes": 0,
                         "det_ignored": 0, "rec_crops": 0} for split in SPLITS}
        for page in sorted(pages):
            split = assign[(name, page)]
            image, width_pt, lines = _page_cache(cache, pdf_paths[name], name, page, dpi)
            segments = page_segments(image, width_pt, lines)
            entry = stats[split]
            entry["pages"].append(page)
            entry["lines"] += len(segments)
            entry["words"] += sum(len(s.words) for s in segments)
            stem = f"{name}_p{page:04d}"
            for k, (tile, labels) in enumerate(det_tiles(image, segments, det_width,
                                                          max_tile_height)):
                entry["det_images"] += 1
                entry["det_boxes"] += sum(text != "###" for text, _ in labels)
                entry["det_ignored"] += sum(text == "###" for text, _ in labels)
                for writer in writers:
                    writer.det(split, f"{stem}_t{k}", tile, labels)
            for k, (crop, text) in enumerate(rec_crops(image, width_pt, segments, charset,
                                                       max_chars)):
                entry["rec_crops"] += 1
                for writer in writers:
                    writer.rec(split, f"{stem}_w{k:04d}", crop, text)
        infos[name]["splits"] = stats
        log(f"{name}: " + ", ".join(f"{s} {len(v['pages'])} pages/{v['det_images']} tiles/"
                                    f"{v['rec_crops']} crops" for s, v in stats.items()))
    for writer in writers:
        writer.close()
    manifest = {"format": 1,
                "options": {"pages_per_source": pages_per_source, "eval_fraction": eval_fraction,
                            "split_by": split_by, "seed": seed, "dpi": dpi, "det_width": det_width,
                            "max_tile_height": max_tile_height, "max_chars": max_chars,
                            "dict": os.path.basename(dict_path) if dict_path else None,
                            "degrade_levels": levels, "min_lines": min_lines,
                            "skip_first": skip_first},
                "variants": [variant_name(v) for v in [0] + levels],
                "sources": infos}
    with open(os.path.join(out_dir, MANIFEST), "w", encoding="utf-8") as handle:
        json.dump(manifest, handle, ensure_ascii=False, indent=1, sort_keys=True)
        handle.write("\n")
    return manifest
