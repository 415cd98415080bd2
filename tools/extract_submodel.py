"""Extract one sub-model's weights from a (distillation) checkpoint.

    python tools/extract_submodel.py --checkpoint output/best_accuracy.pdparams \
        --name Student --out student.pdparams

writes the ``Student.*`` tensors with the ``Student.`` prefix removed, ready for
``Global.pretrained_model`` of a single-model config (the same result as the ``paddle.load``
snippet of the distillation guide). Without ``--name`` it lists the sub-models found. The
checkpoint is read with the safe loader, so it cannot run code. Errors (a missing, corrupt or
unsafe file, an unknown sub-model) print one ``error:`` line and exit with status 2; a missing
file's message lists the checkpoints that do exist in its folder.
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..")))

from ppdistill.utils.cpu import setup_tool_process  # noqa: E402

setup_tool_process()  # before paddle is imported: MKL code path, no ccache warning

from ppdistill.engine.launch import checkpoint_hint  # noqa: E402
from ppdistill.utils.safe_load import safe_load  # noqa: E402
from ppdistill.utils.save_load import extract_submodel, save_state_dict  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", required=True,
                        help="a .pdparams file (the suffix may be left out)")
    parser.add_argument("--name", default=None,
                        help="sub-model to extract, e.g. Student (omit to list them)")
    parser.add_argument("--out", default=None,
                        help="output .pdparams (default: <checkpoint dir>/<name>.pdparams, "
                             "lower-case)")
    args = parser.parse_args(argv)
    path = args.checkpoint if args.checkpoint.endswith(".pdparams") else \
        args.checkpoint + ".pdparams"
    try:
        state = safe_load(path)
    except FileNotFoundError as exc:
        parser.exit(2, f"error: {exc}{checkpoint_hint(path)}\n")
    except (OSError, ValueError) as exc:
        parser.exit(2, f"error: {exc}\n")
    if args.name is None:
        counts = {}
        for key in state:
            counts[key.split(".", 1)[0]] = counts.get(key.split(".", 1)[0], 0) + 1
        for prefix, count in counts.items():
            print(f"{prefix}: {count} tensors")
        return 0
    try:
        sub = extract_submodel(state, args.name)
    except ValueError as exc:
        parser.exit(2, f"error: {path}: {exc}\n")
    out = args.out or os.path.join(os.path.dirname(path), f"{args.name.lower()}.pdparams")
    if os.path.dirname(os.path.abspath(out)):
        os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    save_state_dict(sub, out)
    print(f"wrote {len(sub)} tensors of '{args.name}' to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
