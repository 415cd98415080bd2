"""Make real labelled det/rec evaluation data from PDFs that Debian packages ship.

    python tools/make_real_data.py                 # ./real_data/{clean,cache}, ~10 MB download
    python tools/make_real_data.py --degrade 2     # also ./real_data/degraded_l2 (scans/photos)
    python tools/make_real_data.py --out_dir /data/real --sources maint-guide-zh-cn gnuplot-manual
    python tools/make_real_data.py --pdf my_report.pdf --split_by source --pages 20
    python tools/make_real_data.py --list          # the known Debian sources

Output (``--out_dir``, default ``./real_data`` under the current folder, never the repo):
``<variant>/det/{train,eval}_label.txt`` (PaddleOCR det format, line boxes) and
``<variant>/rec/{train,eval}_label.txt`` (``img<TAB>text``), with ``<variant>`` = ``clean`` or
``degraded_l<N>``; ``real_data.json`` records packages, versions, pages and counts. Downloads,
PDFs and rendered pages are cached in ``<out_dir>/cache``. Needs poppler-utils, plus apt-get and
dpkg-deb for the Debian sources. Errors print one ``error:`` line and exit with status 2.
"""
import argparse
import os
import sys
import time

sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..")))

from ppdistill.demo import real_data  # noqa: E402
from ppdistill.demo.pdf_text import PopplerError  # noqa: E402


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out_dir", default=real_data.DEFAULT_OUT_DIR,
                        help="output folder (default ./real_data)")
    parser.add_argument("--sources", nargs="*", default=None,
                        help="Debian sources to use (default all; see --list)")
    parser.add_argument("--pdf", nargs="*", default=[], help="extra PDF files with a text layer")
    parser.add_argument("--pages", type=int, default=10, help="pages per source (default 10)")
    parser.add_argument("--eval_fraction", type=float, default=0.5)
    parser.add_argument("--split_by", choices=["page", "source"], default="page")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--dpi", type=int, default=200, help="render resolution (default 200)")
    parser.add_argument("--det_width", type=int, default=960, help="det tile width (default 960)")
    parser.add_argument("--max_tile_height", type=int, default=960)
    parser.add_argument("--max_chars", type=int, default=25, help="longest rec text")
    parser.add_argument("--dict", default=real_data.DEFAULT_DICT,
                        help="rec dictionary (default ppocr_keys_v1.txt; 'none' keeps all)")
    parser.add_argument("--degrade", type=int, nargs="*", default=[], metavar="LEVEL",
                        help="also write degraded copies at these levels (1 mild .. 3 strong)")
    parser.add_argument("--force", action="store_true",
                        help="write into a non-empty folder that holds no earlier output")
    parser.add_argument("--list", action="store_true", help="list the known sources and exit")
    return parser


def _summary(manifest):
    rows = ["source                  package (version)                         split  pages "
            "lines  words  tiles  boxes  crops"]
    for name, info in sorted(manifest["sources"].items()):
        origin = (f"{info['package']} ({info['version']})" if "package" in info
                  else os.path.basename(info["path"]))
        for split, stats in info["splits"].items():
            rows.append(f"{name:23s} {origin:41s} {split:5s} {len(stats['pages']):5d} "
                        f"{stats['lines']:5d} {stats['words']:6d} {stats['det_images']:6d} "
                        f"{stats['det_boxes']:6d} {stats['rec_crops']:6d}")
    return "\n".join(rows)


def main(argv=None):
    args = build_parser().parse_args(argv)
    if args.list:
        for name, source in real_data.DEBIAN_SOURCES.items():
            print(f"{name:23s} {source.package:22s} {source.note}")
        return 0
    started = time.time()
    try:
        manifest = real_data.make_real_data(
            out_dir=args.out_dir, sources=args.sources, pdfs=args.pdf, pages_per_source=args.pages,
            eval_fraction=args.eval_fraction, split_by=args.split_by, seed=args.seed, dpi=args.dpi,
            det_width=args.det_width, max_tile_height=args.max_tile_height,
            max_chars=args.max_chars,
            dict_path=None if str(args.dict).lower() == "none" else args.dict,
            degrade_levels=args.degrade, force=args.force, log=print)
    except (real_data.RealDataError, PopplerError, OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(_summary(manifest))
    for variant in manifest["variants"]:
        print(f"{variant}: det data_dir {os.path.join(args.out_dir, variant, 'det')}, "
              f"rec data_dir {os.path.join(args.out_dir, variant, 'rec')}")
    print(f"done in {time.time() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
