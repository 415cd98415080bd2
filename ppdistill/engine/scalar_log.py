"""Training scalars as machine-readable curves: ``train_log.jsonl`` and, optionally, VisualDL.

One JSON object per line, one line per logged training step and per evaluation::

    {"kind": "train", "global_step": 20, "epoch": 1, "lr": 0.001, "loss": 1.9,
     "dml_thrink_maps_0": 0.4, "loss_distance_l2_Student_Teacher_0": 0.2, ...}
    {"kind": "eval", "global_step": 20, "epoch": 1, "Student_hmean": 0.41,
     "Teacher_hmean": 0.52, "Student2_hmean": 0.39, "fps": 12.3, ...}

Train lines carry the values the log line prints (medians over ``Global.log_smooth_window``)
under the loss terms' own log keys, and the learning rate of the logged step. Metrics (eval
lines, and train lines with ``cal_metric_during_train``) carry a sub-model prefix also for the
``Metric.key`` model, which ``DistillationMetric`` reports unprefixed. Only rank 0 writes.

Resume: the file lives beside the checkpoints (``<save_model_dir>/train_log.jsonl``). When a run
starts at global step N (N = 0 for a fresh run, the checkpoint's step on resume), the lines of
the old file with ``global_step <= N`` are kept and the later ones dropped, because the resumed
run logs those steps again; a fresh run in the same folder therefore starts a new file. Lines
that are not valid JSON (a crash mid-write) are dropped with a warning. A NaN or infinite value
is written as ``null``; values that are not numbers are left out.
"""
import json
import math
import os

LOG_NAME = "train_log.jsonl"
VDL_DIR = "vdl"


class ScalarLog:
    """Appends training and evaluation scalars to ``<save_dir>/train_log.jsonl``.

    Args:
        save_dir: the checkpoint folder (``Global.save_model_dir``).
        start_step: global step the run starts from; later lines of an existing log are dropped.
        use_visualdl: also write VisualDL scalars to ``<save_dir>/vdl`` (``TRAIN/<key>`` and
            ``EVAL/<key>`` tags); without the ``visualdl`` package one warning and JSONL only.
        enabled: False on every rank but 0 (nothing is written).
        metric: the run's metric object; used to name metrics with sub-model prefixes.
        plot_curves: draw ``<save_dir>/curves.png`` from the log in :meth:`close`.
        logger: where the warnings go (a ``logging.Logger``); None prints nothing.

    YAML (the ``Global`` keys read by :meth:`from_config`)::

        Global:
          save_model_dir: ./output/ch_PP-OCR_v3_det/
          use_visualdl: false   # true: also log to VisualDL (pip install visualdl)
          plot_curves: false    # true: draw curves.png at the end of training (matplotlib)
    """

    def __init__(self, save_dir, start_step=0, use_visualdl=False, enabled=True, metric=None,
                 plot_curves=False, logger=None):
        self.save_dir = save_dir
        self.path = os.path.join(save_dir, LOG_NAME)
        self.enabled = bool(enabled)
        self.metric = metric
        self.plot_curves = bool(plot_curves)
        self.logger = logger
        self.vdl = None
        self._train_metric_names = None
        if not self.enabled:
            return
        os.makedirs(save_dir, exist_ok=True)
        self._truncate_after(int(start_step))
        if use_visualdl:
            self.vdl = _open_visualdl(os.path.join(save_dir, VDL_DIR), logger)

    @classmethod
    def from_config(cls, global_cfg, save_dir, start_step, enabled, metric=None, logger=None):
        """A log configured by the ``Global`` section (``use_visualdl``, ``plot_curves``)."""
        return cls(save_dir, start_step=start_step,
                   use_visualdl=bool(global_cfg.get("use_visualdl") or False),
                   plot_curves=bool(global_cfg.get("plot_curves") or False),
                   enabled=enabled, metric=metric, logger=logger)

    # ------------------------------------------------------------------------ writing
    def log_train(self, global_step, epoch, values):
        """One ``kind: train`` line: ``lr``, every loss term, training metrics (prefixed).

        ``values`` is a dict, or the trainer's ``TrainingStats``: then the loss terms and
        metrics are its window medians (what the log line prints) and ``lr`` the learning rate
        of the last step (a median would lag behind the schedule).
        """
        if not isinstance(values, dict):
            latest_lr = (getattr(values, "values", None) or {}).get("lr")
            values = values.get()
            if latest_lr:
                values["lr"] = latest_lr[-1]
        self._write("train", global_step, epoch, self._prefix_metrics(values, train=True))

    def log_eval(self, global_step, epoch, metrics):
        """One ``kind: eval`` line with every metric under a sub-model prefix."""
        self._write("eval", global_step, epoch, self._prefix_metrics(metrics, train=False))

    def close(self):
        """Flush VisualDL; with ``plot_curves`` draw ``curves.png`` (a warning if that fails)."""
        if not self.enabled:
            return None
        if self.vdl is not None:
            self.vdl.close()
            self.vdl = None
        if not self.plot_curves:
            return None
        from ppdistill.utils.plot_log import PlotLogError, plot_log
        out = os.path.join(self.save_dir, "curves.png")
        try:
            plot_log(self.path, out)
        except (PlotLogError, OSError, ValueError) as exc:  # training itself went fine
            self._warn(f"Global.plot_curves: {exc}")
            return None
        if self.logger is not None:
            self.logger.info(f"training curves drawn to {out}")
        return out

    def _write(self, kind, global_step, epoch, values):
        if not self.enabled:
            return
        record = {"kind": kind, "global_step": int(global_step), "epoch": int(epoch)}
        for key, value in values.items():
            number = _number(value)
            if number is not None and key not in record:  # NaN / inf -> null (strict JSON)
                record[key] = number if math.isfinite(number) else None
        with open(self.path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(record) + "\n")
        if self.vdl is not None:
            tag = "TRAIN" if kind == "train" else "EVAL"
            for key, value in record.items():
                if key not in ("kind", "global_step", "epoch") and value is not None:
                    self.vdl.add_scalar(tag=f"{tag}/{key}".replace("%", "pct"), value=value,
                                        step=int(global_step))  # VisualDL refuses '%' in tags

    # ------------------------------------------------------------------------ helpers
    def _prefix_metrics(self, values, train):
        """Give the ``Metric.key`` model's unprefixed metrics its name as prefix.

        Eval lines hold only metrics (and ``fps``); in train lines the metric names are those a
        fresh base metric reports, everything else is a loss term or ``lr``.
        """
        key_model = getattr(self.metric, "key", None)
        if not key_model:
            return dict(values)
        if train and self._train_metric_names is None:
            self._train_metric_names = _metric_names(self.metric)
        out = {}
        for key, value in values.items():
            unprefixed = key != "fps" and not _has_prefix(key, self.metric)
            if unprefixed and (not train or key in self._train_metric_names):
                key = f"{key_model}_{key}"
            out[key] = value
        return out

    def _truncate_after(self, start_step):
        if not os.path.isfile(self.path):
            return
        kept, broken = [], 0
        with open(self.path, encoding="utf-8") as handle:
            for line in handle:
                if not line.strip():
                    continue
                try:
                    step = int(json.loads(line)["global_step"])
                except (ValueError, KeyError, TypeError):
                    broken += 1
                    continue
                if step <= start_step:
                    kept.append(line if line.endswith("\n") else line + "\n")
        temporary = self.path + ".tmp"
        with open(temporary, "w", encoding="utf-8") as handle:
            handle.writelines(kept)
        os.replace(temporary, self.path)
        if broken:
            self._warn(f"{self.path}: dropped {broken} unreadable line(s)")

    def _warn(self, message):
        if self.logger is not None:
            self.logger.warning(message)


def _number(value):
    """``value`` as a float when it is a real number (numpy scalars included), else None."""
    if isinstance(value, bool):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _has_prefix(key, metric):
    models = list(getattr(metric, "metrics", None) or [])
    return any(key.startswith(f"{name}_") for name in models)


def _metric_names(metric):
    """The unprefixed names the ``Metric.key`` model's metrics are reported under.

    Asked from a fresh base metric (``get_metric()`` before any batch), so the run's metric
    state is not touched; empty when that is not possible.
    """
    base = getattr(metric, "base_class", None)
    if base is None:
        return set()
    params = dict(getattr(metric, "kwargs", {}) or {})
    if getattr(metric, "main_indicator", None) is not None:
        params["main_indicator"] = metric.main_indicator
    try:
        return {key for key in base(**params).get_metric() if key != "fps"}
    except Exception:  # a base metric that cannot report before data: fall back to its indicator
        return {metric.main_indicator} if getattr(metric, "main_indicator", None) else set()


def _open_visualdl(log_dir, logger):
    try:
        from visualdl import LogWriter
    except ImportError:
        reason = "the visualdl package is not installed (pip install visualdl)"
    except Exception as exc:  # a broken install (e.g. a protobuf clash) must not stop training
        reason = f"visualdl could not be imported ({type(exc).__name__}: {exc})"
    else:
        return LogWriter(logdir=log_dir)
    if logger is not None:
        logger.warning(f"Global.use_visualdl: {reason}; scalars go to train_log.jsonl only")
    return None
