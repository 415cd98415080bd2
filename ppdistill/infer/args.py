"""PaddleOCR-compatible command-line flags for tools/infer/predict_*.py."""
import argparse
import os

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".gif", ".webp")


def str2bool(value):
    if isinstance(value, bool):
        return value
    if value.lower() in ("true", "t", "yes", "y", "1"):
        return True
    if value.lower() in ("false", "f", "no", "n", "0"):
        return False
    raise argparse.ArgumentTypeError(f"expected a boolean, got {value!r}")


def common_parser(description):
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--image_dir", required=True, help="an image file or a directory of images")
    parser.add_argument("--use_gpu", type=str2bool, default=True,
                        help="use the GPU when paddle has one (falls back to the CPU)")
    parser.add_argument("--cpu_threads", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--enable_mkldnn", type=str2bool, default=None,
                        help="oneDNN on the CPU (default: on where paddle has it, off with "
                             "PPDISTILL_ONEDNN=0; a program it cannot run falls back, with a warning)")
    parser.add_argument("--gpu_mem", type=int, default=500)
    parser.add_argument("--warmup", type=str2bool, default=True,
                        help="run one untimed warm-up inference before measuring latency")
    return parser


def get_image_file_list(image_dir):
    """Sorted image files of a directory, or the single file given."""
    if os.path.isfile(image_dir):
        return [image_dir]
    if not os.path.isdir(image_dir):
        raise FileNotFoundError(f"--image_dir {image_dir}: no such file or directory")
    files = sorted(os.path.join(image_dir, f) for f in os.listdir(image_dir)
                   if f.lower().endswith(IMAGE_EXTENSIONS))
    if not files:
        raise FileNotFoundError(f"--image_dir {image_dir}: no image files "
                                f"({', '.join(IMAGE_EXTENSIONS)})")
    return files
