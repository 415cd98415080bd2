"""Draw a run's ``train_log.jsonl`` as one PNG of curves (``python tools/plot_log.py OUTPUT_DIR``).

Panels, all against ``global_step``:

- ``loss (total)``: the ``loss`` of the train lines;
- ``loss terms: <SubModel>``: every loss term whose log key names a sub-model, grouped by the
  first sub-model it names (``loss_distance_l2_Student_Teacher_0`` and ``db_Student_loss_*`` go
  to ``Student``; the student comes first in ``model_name_pairs``);
- ``loss terms: other``: terms whose key names no sub-model (``dml_thrink_maps_0``);
- ``learning rate``;
- ``metric: <name>``: one line per sub-model (``Teacher``/``Student``/``Student2``) from the
  eval lines; metrics computed during training (``cal_metric_during_train``) are drawn dotted.

A sub-model name is a prefix of the eval metrics (``<SubModel>_<metric>``) or a key token that
starts with a capital letter and does not end in ``Loss`` (``DBLoss_Student2_loss_cbn`` names
``Student2``; loss class names prefix the keys of clashing terms).
A train-line key that also occurs in the eval lines is a metric; every other key is a loss term.
matplotlib is an optional dependency (``pip install -e .[plot]``); the Agg canvas is used
directly, so no display and no pyplot state are involved.
"""
import argparse
import json
import math
import os
import sys

from ppdistill.engine.scalar_log import LOG_NAME

META_KEYS = ("kind", "global_step", "epoch")
SKIPPED_METRICS = ("fps",)
COLUMNS = 3


class PlotLogError(Exception):
    """A user-facing problem: missing or empty log, matplotlib not installed."""


def resolve_log_path(path):
    """``OUTPUT_DIR`` -> ``OUTPUT_DIR/train_log.jsonl``; a file path is returned as is."""
    return os.path.join(path, LOG_NAME) if os.path.isdir(path) else path


def read_log(path):
    """The records of ``path`` (a log file or its folder); PlotLogError if none is readable."""
    path = resolve_log_path(path)
    if not os.path.isfile(path):
        raise PlotLogError(f"{path}: no training log (train with ppdistill to write one)")
    records = []
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict) and "global_step" in record:
                records.append(record)
    if not records:
        raise PlotLogError(f"{path}: the training log has no records")
    return records


def _is_model_token(token):
    return bool(token) and token[0].isupper()


def _split_metric(key):
    """``Student_hmean`` -> ("Student", "hmean"); ``hmean`` -> ("model", "hmean")."""
    head, _, rest = key.partition("_")
    if rest and _is_model_token(head):
        return head, rest
    return "model", key


def collect_curves(records):
    """Group the log into panels: ``{panel title: {line label: ([steps], [values], style)}}``.

    Panel order: total loss, per-sub-model loss terms, other terms, learning rate, metrics.
    """
    evals = [r for r in records if r.get("kind") == "eval"]
    trains = [r for r in records if r.get("kind", "train") == "train"]
    eval_keys = {k for r in evals for k in r if k not in META_KEYS and k not in SKIPPED_METRICS}
    models = ({_split_metric(k)[0] for k in eval_keys} - {"model"}) | {
        token for r in trains for k in r if k not in eval_keys for token in k.split("_")
        if _is_model_token(token) and not token.endswith("Loss")}
    loss_panels, metric_panels = {}, {}
    total, lr = {}, {}

    def add(panels, title, label, step, value, style="-"):
        line = panels.setdefault(title, {}).setdefault(label, ([], [], style))
        line[0].append(step)
        line[1].append(value)

    for record in trains:
        step = record["global_step"]
        for key, value in record.items():
            if key in META_KEYS or not isinstance(value, (int, float, type(None))):
                continue
            value = math.nan if value is None else value  # null (NaN/inf): a gap in the curve
            if key == "loss":
                add(total, "loss (total)", "loss", step, value)
            elif key == "lr":
                add(lr, "learning rate", "lr", step, value)
            elif key in eval_keys:
                model, name = _split_metric(key)
                add(metric_panels, f"metric: {name}", f"{model} (train)", step, value, ":")
            else:
                add(loss_panels, f"loss terms: {_loss_group(key, models)}", key, step, value)
    for record in evals:
        for key in sorted(k for k in record if k in eval_keys):
            model, name = _split_metric(key)
            value = math.nan if record[key] is None else record[key]
            add(metric_panels, f"metric: {name}", model, record["global_step"], value, "-o")
    ordered = dict(total)
    ordered.update(sorted(((t, v) for t, v in loss_panels.items() if t != "loss terms: other")))
    if "loss terms: other" in loss_panels:
        ordered["loss terms: other"] = loss_panels["loss terms: other"]
    ordered.update(lr)
    ordered.update(sorted(metric_panels.items()))
    return ordered


def _loss_group(key, models):
    """The first sub-model a loss key names, else ``other``."""
    return next((token for token in key.split("_") if token in models), "other")


def plot_log(log_path, out=None, title=None):
    """Draw ``log_path`` (file or folder) to ``out`` (default ``<folder>/curves.png``).

    Returns ``(figure, out)``; the figure's axes titles are the panel titles.
    """
    records = read_log(log_path)
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise PlotLogError("matplotlib is not installed (pip install matplotlib, or "
                           "pip install -e .[plot])") from None
    path = resolve_log_path(log_path)
    out = out or os.path.join(os.path.dirname(os.path.abspath(path)), "curves.png")
    panels = collect_curves(records)
    rows = max(1, math.ceil(len(panels) / COLUMNS))
    figure = Figure(figsize=(5.2 * COLUMNS, 3.6 * rows), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.subplots(rows, COLUMNS, squeeze=False).ravel()
    from matplotlib.ticker import MaxNLocator
    models = sorted({label.split(" ")[0] for title, lines in panels.items()
                     if title.startswith("metric") for label in lines})
    palette = [f"C{i % 10}" for i in range(len(models))]
    for ax, (panel, lines) in zip(axes, panels.items()):
        for label, (steps, values, style) in sorted(lines.items()):
            color = None
            if panel.startswith("metric"):  # one colour per sub-model in every metric panel
                color = palette[models.index(label.split(" ")[0])]
            ax.plot(steps, values, style, label=label, markersize=3, linewidth=1.2, color=color)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_title(panel, fontsize=10)
        ax.set_xlabel("global_step", fontsize=8)
        ax.tick_params(labelsize=8)
        _readable_y_axis(ax, [v for steps, values, _ in lines.values() for v in values])
        ax.grid(True, alpha=0.3)
        if len(lines) > 1 or panel.startswith(("metric", "loss terms")):
            low, high = ax.get_ylim()  # head room above the curves for the legend
            ax.set_ylim(low, high + (high - low) * 0.09 * len(lines))
            ax.legend(fontsize=7, loc="upper right")
    for ax in axes[len(panels):]:
        ax.set_visible(False)
    figure.suptitle(title or path, fontsize=11)
    figure.tight_layout(rect=(0, 0, 1, 0.97))
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    figure.savefig(out)
    return figure, out


def _readable_y_axis(ax, values):
    """Plain tick labels: a nearly flat series (e.g. a cosine learning rate early in a long
    schedule) gets a range of +-10 % around its value instead of "1e-15 + 9.99e-5" offsets."""
    finite = [v for v in values if v is not None and math.isfinite(v)]
    if finite:
        low, high = min(finite), max(finite)
        scale = max(abs(low), abs(high))
        if scale > 0 and high - low < 1e-3 * scale:
            ax.set_ylim(low - 0.1 * scale, high + 0.1 * scale)
    ax.ticklabel_format(axis="y", style="sci", scilimits=(-3, 4), useOffset=False)


def main(argv=None):
    """``tools/plot_log.py OUTPUT_DIR [--out PNG]``; returns the exit status."""
    parser = argparse.ArgumentParser(
        description="Draw the loss, learning-rate and metric curves of a training run")
    parser.add_argument("output_dir", help="Global.save_model_dir of the run (or its "
                                           "train_log.jsonl)")
    parser.add_argument("--out", default=None, help="PNG to write (default OUTPUT_DIR/curves.png)")
    args = parser.parse_args(argv)
    try:
        figure, out = plot_log(args.output_dir, args.out)
    except PlotLogError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    panels = sum(ax.get_visible() for ax in figure.axes)
    print(f"wrote {panels} panels to {out}")
    return 0
