"""Import a released export (ONNX file or Paddle inference model) into training-form weights.

    python tools/import_weights.py -c configs/det/ch_PP-OCRv3_det_student.yml \
        --source ch_PP-OCRv3_det_infer.onnx --out ppocrv3_det.pdparams
    python tools/import_weights.py -c configs/det/ch_PP-OCRv3_det_cml.yml --model Student \
        --source ch_PP-OCRv3_det_infer.onnx --out student.pdparams   # keys Student.*

The export is matched to the config's model by layer order and shape, fused BatchNorms and
re-parameterised branches are put back into the training form, and the export and the imported
model are run on the same input: the max difference is printed, and above the tolerance
(default 1e-4) nothing is written. The output loads with ``Global.pretrained_model``, a
sub-model's ``pretrained:`` and ``paddle.load``. Layers the export does not contain (e.g. an
NRTR/SAR training head) keep their initialisation and are listed.
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..")))

from ppdistill.utils.cpu import setup_tool_process  # noqa: E402

setup_tool_process()  # before paddle is imported: MKL code path, no ccache warning

import ppdistill  # noqa: E402,F401  (imports pyclipper before paddle)
from ppdistill.importer import DEFAULT_TOLERANCE, ImportFailed, import_weights  # noqa: E402
from ppdistill.registry import ConfigError  # noqa: E402
from ppdistill.utils.config import load_with_overrides  # noqa: E402
from ppdistill.utils.save_load import save_state_dict  # noqa: E402


def _parser():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-c", "--config", required=True, help="config naming the architecture")
    parser.add_argument("--source", required=True,
                        help=".onnx file or Paddle inference model directory")
    parser.add_argument("--out", required=True, help="output .pdparams")
    parser.add_argument("--model", default=None,
                        help="sub-model of a DistillationModel config (keys get 'NAME.')")
    parser.add_argument("--tolerance", type=float, default=DEFAULT_TOLERANCE,
                        help="max abs output difference allowed (default %(default)g)")
    parser.add_argument("-o", "--opt", nargs="*", default=[],
                        help="config overrides, e.g. Global.character_dict_path=...")
    return parser


def main(argv=None):
    args = _parser().parse_args(argv)
    out = args.out if args.out.endswith(".pdparams") else args.out + ".pdparams"
    try:
        config = load_with_overrides(args.config, args.opt)
        result = import_weights(config, args.source, model_name=args.model,
                                tolerance=args.tolerance)
    except (ConfigError, ImportFailed, ImportError, OSError, ValueError, KeyError) as exc:
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        print(f"error: {message}", file=sys.stderr)
        return 2
    print(f"matched {result.matched_layers} weighted layers of {args.source} "
          f"({result.export_kind}); max abs difference {result.max_diff:.3g} on input "
          f"{list(result.input_shape)} (tolerance {args.tolerance:g})")
    if result.dictionary_size is not None:
        print(f"the export's dictionary ({result.dictionary_size} entries) equals the config's")
    for prefix, count in result.untouched:
        print(f"not in the export (not run by the eval forward), keeps its initialisation: "
              f"{prefix} ({count} tensors)")
    directory = os.path.dirname(os.path.abspath(out))
    os.makedirs(directory, exist_ok=True)
    save_state_dict(result.state_dict, out)
    print(f"wrote {len(result.state_dict)} tensors to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
