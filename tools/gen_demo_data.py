"""Generate the synthetic demo data sets into a folder of their own.

    python tools/gen_demo_data.py --task det            # ./demo_data/det (ICDAR2015 layout)
    python tools/gen_demo_data.py --task all            # ./demo_data/det and ./demo_data/rec
    python tools/gen_demo_data.py --task rec --root ./my_rec_demo
    python tools/gen_demo_data.py --out_dir ./train_data --layout paddleocr   # configs' paths

The data never goes to PaddleOCR's dataset paths (``./train_data/...``) unless ``--root`` names
them, so real data there is never touched. A folder that already holds the demo data is kept;
a non-empty folder that does not hold it is refused. ``--force`` regenerates (and may replace
files in the folder). Errors print one ``error:`` line and exit with status 2.
"""
import argparse
import importlib
import inspect
import os
import sys

sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..")))

#: default base folder; task ``t`` goes to ``<out_dir>/<t>``
DEFAULT_OUT_DIR = "./demo_data"
#: ``--layout paddleocr``: the sub-folders PaddleOCR's configs read (under ``--out_dir``)
PADDLEOCR_LAYOUT = {"det": os.path.join("icdar2015", "text_localization"), "rec": "rec"}
#: task -> (module, generator, "is it already there?" function)
GENERATORS = {
    "det": ("ppdistill.demo.det_data", "make_det_dataset", "det_dataset_exists"),
    "rec": ("ppdistill.demo.rec_data", "make_rec_dataset", "rec_dataset_exists"),
}


def _load(task):
    """``(generator, exists)`` of a task, or None if its module is missing."""
    module_name, function_name, exists_name = GENERATORS[task]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name != module_name:
            raise
        return None
    return getattr(module, function_name), getattr(module, exists_name)


def task_root(task, args):
    sub = PADDLEOCR_LAYOUT[task] if args.layout == "paddleocr" else task
    return args.root or os.path.join(args.out_dir, sub)


def run_task(task, args):
    """Run one generator with the options it accepts; return a one-line summary."""
    loaded = _load(task)
    if loaded is None:
        return None
    generator, exists = loaded
    root = task_root(task, args)
    if not args.force and exists(root):
        return f"{task}: {root} holds the demo data already, kept (--force regenerates)"
    if not args.force and os.path.isdir(root) and os.listdir(root):
        raise FileExistsError(f"{root} is not empty and holds no {task} demo data: choose "
                              f"another --root/--out_dir (or --force to write into it anyway)")
    accepted = inspect.signature(generator).parameters
    options = {"root": root, "seed": args.seed, "force": args.force,
               "num_train": args.num_train, "num_test": args.num_test,
               "num_val": args.num_test}
    kwargs = {k: v for k, v in options.items() if k in accepted and v is not None}
    result = generator(**kwargs)
    return f"{task}: data under {root} ({result})"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", choices=sorted(GENERATORS) + ["all"], default="all")
    parser.add_argument("--out_dir", default=DEFAULT_OUT_DIR,
                        help="base folder: task T goes to OUT_DIR/T (default ./demo_data)")
    parser.add_argument("--layout", choices=["demo", "paddleocr"], default="demo",
                        help="sub-folders under OUT_DIR: det, rec (demo) or PaddleOCR's "
                             "icdar2015/text_localization, rec (paddleocr)")
    parser.add_argument("--root", default=None, help="exact output folder (single task only)")
    parser.add_argument("--num_train", type=int, default=None)
    parser.add_argument("--num_test", type=int, default=None,
                        help="test (det) / validation (rec) images")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--force", action="store_true",
                        help="regenerate, even into a folder holding other files")
    args = parser.parse_args(argv)
    if args.task == "all" and args.root:
        parser.error("--root needs a single --task (use --out_dir for all tasks)")
    tasks = sorted(GENERATORS) if args.task == "all" else [args.task]
    for task in tasks:
        try:
            summary = run_task(task, args)
        except (OSError, ValueError) as exc:
            parser.exit(2, f"error: {task}: {exc}\n")
        if summary is None:
            if args.task != "all":
                parser.error(f"task '{task}' is not available ({GENERATORS[task][0]} is missing)")
            continue
        print(summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
