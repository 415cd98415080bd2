"""Real-data builder: boxes on rendered ink, label formats, split disjointness, determinism.

The unit tests write a small PDF by hand (standard Helvetica, known text positions) into
tmp_path; they need poppler-utils and skip without it. The slow test fetches one real Debian
documentation package (~0.7 MB) with apt-get.
"""
import hashlib
import json
import os
import shutil
import subprocess
import sys

import cv2
import numpy as np
import pytest

from ppdistill.demo import degrade, pdf_text, real_data

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
needs_poppler = pytest.mark.skipif(
    any(shutil.which(t) is None for t in pdf_text.TOOLS), reason="poppler-utils not installed")

PAGE_W, PAGE_H = 300, 400
#: per page: (x, y_top, font size, text); one vertical line per page (rotated 90 degrees)
LINES = ["Hello world 123", "The quick brown fox", "jumps over the lazy dog",
         "Paddle OCR distill", "ABC xyz 42", "Held out page text", "tiny sample line",
         "numbers 2024 and 7"]


def _page_items(page):
    items = []
    for k in range(6):
        text = LINES[(page + k) % len(LINES)]
        items.append((30, 40 + 45 * k, 12 + 2 * (k % 3), text))
    items.append(("col", 160, 330, 11, "Second column"))
    return items


def _content(page):
    ops = []
    for item in _page_items(page):
        if item[0] == "col":
            _, x, y_top, size, text = item
        else:
            x, y_top, size, text = item
        ops.append(f"BT /F1 {size} Tf 1 0 0 1 {x} {PAGE_H - y_top - size} Tm ({text}) Tj ET")
    # vertical text at the right margin: rotated 90 degrees counter-clockwise
    ops.append(f"BT /F1 10 Tf 0 1 -1 0 {PAGE_W - 12} 60 Tm (Rotated margin text) Tj ET")
    return "\n".join(ops).encode("latin-1")


def write_pdf(path, num_pages=4):
    """A minimal PDF: ``num_pages`` pages of Helvetica text lines (see ``_page_items``)."""
    objects = [b"<< /Type /Catalog /Pages 2 0 R >>", None,
               b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>"]
    kids = []
    for page in range(num_pages):
        content = _content(page)
        objects.append(b"<< /Length %d >>\nstream\n" % len(content) + content + b"\nendstream")
        objects.append(b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 %d %d] /Contents %d 0 R "
                       b"/Resources << /Font << /F1 3 0 R >> >> >>"
                       % (PAGE_W, PAGE_H, len(objects)))
        kids.append(len(objects))
    objects[1] = (b"<< /Type /Pages /Kids [%s] /Count %d >>"
                  % (b" ".join(b"%d 0 R" % k for k in kids), num_pages))
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % o for o in offsets)
    out += (b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n"
            % (len(objects) + 1, xref))
    with open(path, "wb") as handle:
        handle.write(bytes(out))
    return path


def _read_labels(path):
    with open(path, encoding="utf-8") as handle:
        return [line.rstrip("\n").split("\t", 1) for line in handle if line.strip()]


def _tree_digest(root):
    digest = {}
    for folder, _, files in os.walk(root):
        for name in files:
            full = os.path.join(folder, name)
            with open(full, "rb") as handle:
                digest[os.path.relpath(full, root)] = hashlib.sha256(handle.read()).hexdigest()
    return digest


@pytest.fixture
def tiny_pdf(tmp_path):
    return write_pdf(str(tmp_path / "tiny.pdf"))


def _make(out_dir, pdf, **kwargs):
    options = dict(sources=[], pdfs=[pdf], pages_per_source=4, eval_fraction=0.5, seed=3, dpi=144,
                   det_width=400, max_tile_height=320, min_lines=3, skip_first=0)
    options.update(kwargs)
    return real_data.make_real_data(out_dir=str(out_dir), **options)


@needs_poppler
def test_text_layer_parsed_with_lines_words_and_rotation(tiny_pdf):
    width, height, lines = pdf_text.page_lines(tiny_pdf, 1)
    assert (width, height) == (PAGE_W, PAGE_H)
    texts = [" ".join(w.text for w in line) for line in lines]
    for _, _, _, text in [i for i in _page_items(0) if i[0] != "col"]:
        assert text in texts
    rotated = [line for line in lines if "Rotated" in " ".join(w.text for w in line)]
    assert rotated and pdf_text.looks_rotated(rotated[0])
    first = next(line for line in lines if " ".join(w.text for w in line) == LINES[0])
    assert not pdf_text.looks_rotated(first)
    assert first[0].x0 == pytest.approx(30, abs=1.5)  # x of the Tm operator


def test_parse_split_and_clean_without_poppler():
    xhtml = ('<doc><page width="100.0" height="50.0"><flow><block><line>'
             '<word xMin="1" yMin="2" xMax="9" yMax="10">e\ufb03cient&amp;</word>'
             '<word xMin="10" yMin="2" xMax="20" yMax="10">a\u200bb</word>'
             '<word xMin="60" yMin="2" xMax="70" yMax="10">far</word></line></block></flow>'
             '</page></doc>')
    width, height, lines = pdf_text.parse_bbox_layout(xhtml)
    assert (width, height) == (100.0, 50.0)
    assert [w.text for w in lines[0]] == ["efficient&", "ab", "far"]
    segments = pdf_text.split_line(lines[0], gap_factor=1.2)  # gap 40 > 1.2 * 8
    assert [[w.text for w in s] for s in segments] == [["efficient&", "ab"], ["far"]]
    word = pdf_text.Word
    toc = [word("Intro", 0, 0, 20, 8), word("..", 21, 0, 24, 8), word(".", 25, 0, 27, 8),
           word("...", 28, 0, 32, 8), word("7", 33, 0, 36, 8)]
    assert [[w.text for w in s] for s in pdf_text.split_line(toc)] == [["Intro"], ["7"]]
    short = [word("e.g.", 0, 0, 14, 8), word(".", 15, 0, 16, 8), word("x", 17, 0, 20, 8)]
    assert [[w.text for w in s] for s in pdf_text.split_line(short)] == [["e.g.", ".", "x"]]


@needs_poppler
def test_det_boxes_cover_the_rendered_ink(tiny_pdf, tmp_path):
    _make(tmp_path / "out", tiny_pdf)
    det = tmp_path / "out" / "clean" / "det"
    rows = _read_labels(det / "eval_label.txt") + _read_labels(det / "train_label.txt")
    assert rows
    for rel, label in rows:
        image = cv2.imread(str(det / rel), cv2.IMREAD_GRAYSCALE)
        assert image.shape[1] <= 400 and image.shape[0] <= 320
        ink = image < 128
        covered = np.zeros_like(ink)
        boxes = json.loads(label)
        readable = [b for b in boxes if b["transcription"] != "###"]
        assert readable
        for box in boxes:
            points = np.int32(box["points"])
            assert points.shape == (4, 2)
            x0, y0 = points.min(0)
            x1, y1 = points.max(0)
            assert 0 <= x0 < x1 <= image.shape[1] and 0 <= y0 < y1 <= image.shape[0]
            covered[max(0, y0 - 2):y1 + 2, max(0, x0 - 2):x1 + 2] = True
            if box["transcription"] != "###":
                inside = ink[y0:y1, x0:x1]
                assert inside.mean() > 0.03, f"{rel}: no ink in box of {box['transcription']!r}"
        # every dark pixel of the tile lies inside a (slightly grown) box
        assert ink[~covered].sum() <= 0.01 * ink.sum(), rel
    texts = {b["transcription"] for _, label in rows for b in json.loads(label)}
    assert "Hello world 123" in texts and "Second column" in texts
    assert "Rotated margin text" not in texts and "###" in texts  # vertical text is ignored


@needs_poppler
def test_rec_crops_show_their_text_and_respect_dictionary(tiny_pdf, tmp_path):
    charset = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")  # no digits
    dict_path = tmp_path / "dict.txt"
    dict_path.write_text("\n".join(sorted(charset)) + "\n", encoding="utf-8")
    _make(tmp_path / "out", tiny_pdf, dict_path=str(dict_path), max_chars=12)
    rec = tmp_path / "out" / "clean" / "rec"
    rows = _read_labels(rec / "eval_label.txt") + _read_labels(rec / "train_label.txt")
    assert rows
    for rel, text in rows:
        assert text and len(text) <= 12
        assert all(c in charset or c == " " for c in text), text
        crop = cv2.imread(str(rec / rel), cv2.IMREAD_GRAYSCALE)
        assert crop.shape[0] >= 10 and crop.shape[1] > crop.shape[0]
        assert (crop < 128).mean() > 0.02
    texts = {text for _, text in rows}
    assert "The quick" in texts or "quick brown" in texts
    assert not any("Rotated" in t for t in texts) and not any("123" in t for t in texts)


@needs_poppler
def test_splits_are_disjoint_by_page_and_by_source(tiny_pdf, tmp_path):
    manifest = _make(tmp_path / "out", tiny_pdf)
    info = manifest["sources"]["tiny"]
    train, evals = set(info["splits"]["train"]["pages"]), set(info["splits"]["eval"]["pages"])
    assert train and evals and not train & evals and train | evals == {1, 2, 3, 4}
    for task in ("det", "rec"):
        folder = tmp_path / "out" / "clean" / task
        for split, pages in (("train", train), ("eval", evals)):
            rows = _read_labels(folder / f"{split}_label.txt")
            used = {int(rel.split("_p")[1][:4]) for rel, _ in rows}
            assert used and used <= pages, (task, split)

    other = write_pdf(str(tmp_path / "other.pdf"), num_pages=2)
    manifest = _make(tmp_path / "by_source", tiny_pdf, pdfs=[tiny_pdf, other], split_by="source")
    splits = {name: [s for s, v in info["splits"].items() if v["pages"]]
              for name, info in manifest["sources"].items()}
    assert sorted(map(tuple, splits.values())) == [("eval",), ("train",)]


@needs_poppler
def test_same_seed_same_bytes_other_seed_other_split(tiny_pdf, tmp_path):
    first = _make(tmp_path / "a", tiny_pdf, degrade_levels=[2])
    _make(tmp_path / "b", tiny_pdf, degrade_levels=[2])
    a, b = _tree_digest(tmp_path / "a"), _tree_digest(tmp_path / "b")
    outputs = {k for k in a if not k.startswith("cache")}
    assert outputs == {k for k in b if not k.startswith("cache")}
    assert any(k.startswith("degraded_l2") for k in outputs)
    assert all(a[k] == b[k] for k in outputs if k != real_data.MANIFEST)
    # a rerun into the same folder reuses the cache and rewrites the same files
    _make(tmp_path / "a", tiny_pdf, degrade_levels=[2])
    again = _tree_digest(tmp_path / "a")
    assert all(again[k] == a[k] for k in outputs)
    held_out = []
    for seed in range(8):
        assign = real_data.split_pages({"tiny": [1, 2, 3, 4]}, 0.5, "page", seed)
        held_out.append(tuple(sorted(page for (_, page), split in assign.items()
                                     if split == "eval")))
    assert all(len(pages) == 2 for pages in held_out)
    assert len(set(held_out)) > 1  # the seed changes which pages are held out
    assert first["options"]["degrade_levels"] == [2]


@needs_poppler
def test_degraded_variant_is_harder_and_labels_follow(tiny_pdf, tmp_path):
    _make(tmp_path / "out", tiny_pdf, degrade_levels=[3])
    clean = _read_labels(tmp_path / "out" / "clean" / "det" / "eval_label.txt")
    shifted = _read_labels(tmp_path / "out" / "degraded_l3" / "det" / "eval_label.txt")
    assert [r[:-4] for r, _ in clean] == [r[:-4] for r, _ in shifted]
    for (rel, label), (rel3, label3) in zip(clean, shifted):
        image = cv2.imread(str(tmp_path / "out" / "clean" / "det" / rel), cv2.IMREAD_GRAYSCALE)
        image3 = cv2.imread(str(tmp_path / "out" / "degraded_l3" / "det" / rel3),
                            cv2.IMREAD_GRAYSCALE)
        assert image.shape == image3.shape
        assert float(np.abs(image.astype(int) - image3.astype(int)).mean()) > 3.0
        assert np.percentile(image3, 99) - np.percentile(image3, 1) < \
            np.percentile(image, 99) - np.percentile(image, 1)  # lower contrast
        boxes, boxes3 = json.loads(label), json.loads(label3)
        readable3 = [b for b in boxes3 if b["transcription"] != "###"]
        assert readable3
        for box in readable3:  # moved boxes still sit on ink
            points = np.int32(box["points"])
            mask = np.zeros_like(image3)
            cv2.fillPoly(mask, [points], 1)
            assert image3[mask > 0].min() < np.median(image3) - 40
        assert len(boxes3) <= len(boxes)


def test_degrade_is_deterministic_and_moves_points():
    image = np.full((120, 200, 3), 235, np.uint8)
    cv2.putText(image, "Text", (20, 80), cv2.FONT_HERSHEY_SIMPLEX, 1.5, (20, 20, 20), 3)
    points = [np.float32([[18, 40], [110, 40], [110, 90], [18, 90]])]
    one, moved = degrade.degrade(image, 2, 7, points)
    two, moved2 = degrade.degrade(image, 2, 7, points)
    other, _ = degrade.degrade(image, 2, 8, points)
    assert np.array_equal(one, two) and np.array_equal(moved[0], moved2[0])
    assert not np.array_equal(one, other)
    assert 0.1 < float(np.abs(moved[0] - points[0]).max()) < 15
    same, kept = degrade.degrade(image, 0, 7, points)
    assert np.array_equal(same, image) and np.array_equal(kept[0], points[0])
    with pytest.raises(ValueError):
        degrade.degrade(image, 4, 0)
    assert degrade.item_seed(0, "a") == degrade.item_seed(0, "a") != degrade.item_seed(1, "a")


def test_user_errors(tmp_path):
    with pytest.raises(real_data.RealDataError, match="did you mean 'gnuplot-manual'"):
        real_data.resolve_sources(["gnuplot-manul"])
    with pytest.raises(real_data.RealDataError, match="split_by"):
        real_data.split_pages({"a": [1, 2]}, 0.5, "chapter", 0)
    (tmp_path / "foreign").mkdir()
    (tmp_path / "foreign" / "keep.txt").write_text("x")
    with pytest.raises(real_data.RealDataError, match="not empty"):
        real_data._prepare_out_dir(str(tmp_path / "foreign"), force=False)
    assert (tmp_path / "foreign" / "keep.txt").exists()


@needs_poppler
def test_cli_prints_one_error_line_and_a_summary(tiny_pdf, tmp_path):
    tool = os.path.join(ROOT, "tools", "make_real_data.py")
    bad = subprocess.run([sys.executable, tool, "--out_dir", str(tmp_path / "o"), "--sources",
                          "nope"], capture_output=True, text=True)
    assert bad.returncode == 2 and bad.stderr.startswith("error: unknown source 'nope'")
    assert "Traceback" not in bad.stderr
    good = subprocess.run([sys.executable, tool, "--out_dir", str(tmp_path / "o"), "--sources",
                           "--pdf", tiny_pdf, "--pages", "2", "--dpi", "100"],
                          capture_output=True, text=True)
    assert good.returncode == 0, good.stderr
    assert "tiny" in good.stdout and (tmp_path / "o" / "clean" / "det" / "eval_label.txt").exists()


@pytest.mark.slow
@needs_poppler
def test_one_real_debian_source(tmp_path):
    if shutil.which("apt-get") is None or shutil.which("dpkg-deb") is None:
        pytest.skip("no apt-get/dpkg-deb")
    try:
        manifest = real_data.make_real_data(out_dir=str(tmp_path), sources=["maint-guide-zh-cn"],
                                            pages_per_source=2, seed=0, degrade_levels=[1])
    except real_data.RealDataError as exc:
        if "apt-get download" in str(exc):
            pytest.skip(f"package registry not reachable: {exc}")
        raise
    info = manifest["sources"]["maint-guide-zh-cn"]
    assert info["package"] == "maint-guide-zh-cn" and info["pages_total"] > 50
    rec = _read_labels(tmp_path / "clean" / "rec" / "eval_label.txt")
    assert any(any("\u4e00" <= c <= "\u9fff" for c in text) for _, text in rec)  # Chinese text
    det = _read_labels(tmp_path / "degraded_l1" / "det" / "eval_label.txt")
    assert det and all(json.loads(label) for _, label in det)
