"""Generate the synthetic demo data sets the shipped configs read.

    python tools/gen_demo_data.py --task det            # ./train_data/icdar2015/text_localization
    python tools/gen_demo_data.py --task all --force    # every available task, regenerated

Existing data is kept unless ``--force`` is given.
"""
import argparse
import importlib
import inspect
import os
import sys

sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..")))

# task -> (module, function, default root). A task whose module is missing is skipped by "all".
GENERATORS = {
    "det": ("ppdistill.demo.det_data", "make_det_dataset",
            "./train_data/icdar2015/text_localization"),
    "rec": ("ppdistill.demo.rec_data", "make_rec_dataset", "./train_data/rec"),
}


def _load_generator(task):
    module_name, function_name, _ = GENERATORS[task]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name != module_name:
            raise
        return None
    return getattr(module, function_name)


def run_task(task, args):
    """Run one generator with the options it accepts; return a one-line summary."""
    generator = _load_generator(task)
    if generator is None:
        return None
    root = args.root or GENERATORS[task][2]
    accepted = inspect.signature(generator).parameters
    if "force" not in accepted and not args.force and os.path.isdir(root) and os.listdir(root):
        return f"{task}: {root} exists, kept (use --force to regenerate)"
    options = {"root": root, "seed": args.seed, "force": args.force,
               "num_train": args.num_train, "num_test": args.num_test,
               "num_val": args.num_test}
    kwargs = {k: v for k, v in options.items() if k in accepted and v is not None}
    result = generator(**kwargs)
    return f"{task}: data under {root} ({result})"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", choices=sorted(GENERATORS) + ["all"], default="all")
    parser.add_argument("--root", default=None, help="output folder (single task only)")
    parser.add_argument("--num_train", type=int, default=None)
    parser.add_argument("--num_test", type=int, default=None,
                        help="test (det) / validation (rec) images")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--force", action="store_true", help="regenerate existing data")
    args = parser.parse_args(argv)
    if args.task == "all" and args.root:
        parser.error("--root needs a single --task")
    tasks = sorted(GENERATORS) if args.task == "all" else [args.task]
    for task in tasks:
        summary = run_task(task, args)
        if summary is None:
            if args.task != "all":
                parser.error(f"task '{task}' is not available ({GENERATORS[task][0]} is missing)")
            continue
        print(summary)


if __name__ == "__main__":
    main()
