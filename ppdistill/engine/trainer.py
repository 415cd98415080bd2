"""The training loop: one step, periodic logging, evaluation and checkpoints."""
import datetime
import math
import os
import time

import numpy as np
import paddle

from ppdistill.engine.amp import AmpContext
from ppdistill.engine.evaluator import evaluate, format_metrics, to_numpy
from ppdistill.engine.grad_audit import FirstStepAudit
from ppdistill.engine.host_memory import release_free_host_memory
from ppdistill.engine.scalar_log import ScalarLog
from ppdistill.utils.stats import TrainingStats


class NonFiniteLossError(FloatingPointError):
    """Raised when the total loss is NaN or infinite (with every term's value)."""


class TrainingInterrupted(Exception):
    """Ctrl-C during training, after ``latest`` was saved; the message says how to resume."""


def nonfinite_ranks(total):
    """The ranks whose ``total`` loss is not finite; one all-reduce when several processes run,
    so every rank takes the same decision (and none waits in a gradient all-reduce alone)."""
    bad = not bool(paddle.isfinite(total).all())
    world = paddle.distributed.get_world_size()
    if world == 1:
        return [0] if bad else []
    flags = np.zeros([world], dtype="int32")
    flags[paddle.distributed.get_rank()] = int(bad)
    flags = paddle.to_tensor(flags)
    paddle.distributed.all_reduce(flags)
    return [rank for rank, flag in enumerate(flags.numpy().tolist()) if flag]


class Trainer:
    """Trains ``model`` with ``loss_fn`` as configured by the ``Global`` section.

    It is task-agnostic: the model gets ``(images, data=batch[1:])``, the loss
    ``(predictions, batch)``, and evaluation goes through the post-process and metric objects.
    ``Global`` keys used: epoch_num, print_batch_step, log_smooth_window, eval_batch_step,
    save_epoch_step, save_model_dir, cal_metric_during_train, use_amp/amp_level/amp_dtype,
    skip_nonfinite_loss (skip a step with a non-finite loss instead of stopping), max_iters
    (stop after that many steps; handy for smoke runs). With several processes a non-finite
    loss on any rank makes every rank skip the step or stop. ``model`` and ``optimizer`` come
    from ``ppdistill.engine.setup.prepare_for_training`` with its ``amp``; without ``amp`` the
    model must be unwrapped and is decorated here. After the first backward,
    :class:`~ppdistill.engine.grad_audit.FirstStepAudit` reports parameters without gradient.
    Ctrl-C saves ``latest`` and raises :class:`TrainingInterrupted`.
    """

    def __init__(self, config, model, loss_fn, optimizer, lr_scheduler, train_loader, logger,
                 eval_loader=None, post_process=None, metric=None, resume_state=None, amp=None):
        self.config = config
        self.cfg = config["Global"]
        self.model, self.loss_fn = model, loss_fn
        self.optimizer, self.lr_scheduler = optimizer, lr_scheduler
        self.train_loader, self.eval_loader = train_loader, eval_loader
        self.post_process, self.metric = post_process, metric
        self.logger = logger
        if amp is None:
            amp = AmpContext(self.cfg, logger)
            self.model, self.optimizer = amp.decorate(self.model, self.optimizer)
        self.amp = amp
        self.audit = FirstStepAudit(self.model, logger)
        state = resume_state or {}
        self.start_epoch = int(state.get("start_epoch", 1))
        self.global_step = int(state.get("global_step", 0))
        self.main_indicator = getattr(metric, "main_indicator", None) or "acc"
        self.best = dict(state.get("best_model_dict", {}) or {})
        if self.main_indicator not in self.best:
            self.best = {self.main_indicator: state.get(self.main_indicator, 0.0), **self.best}
        self.epoch_num = int(self.cfg.get("epoch_num", 1))
        self.max_iters = self.cfg.get("max_iters")
        self.save_dir = self.cfg.get("save_model_dir") or "./output"
        self.is_main = paddle.distributed.get_rank() == 0
        self.stats = TrainingStats(int(self.cfg.get("log_smooth_window", 20)))
        start, interval = self._eval_schedule(self.cfg.get("eval_batch_step", [0, 1000]))
        self.eval_start, self.eval_interval = start, interval
        self.scalars = ScalarLog.from_config(self.cfg, self.save_dir, self.global_step,
                                             enabled=self.is_main, metric=metric, logger=logger)

    @staticmethod
    def _eval_schedule(value):
        if isinstance(value, (list, tuple)):
            return int(value[0]), max(int(value[1]), 1)
        return 0, max(int(value), 1)

    # ----------------------------------------------------------------------------- the loop
    def train(self):
        """Run the configured epochs; return the best metrics seen."""
        self.logger.info(f"train from epoch {self.start_epoch} to {self.epoch_num}, "
                         f"global_step {self.global_step}, {len(self.train_loader)} steps/epoch")
        self.model.train()
        for epoch in range(self.start_epoch, self.epoch_num + 1):
            try:
                stopped = self.run_epoch(epoch)
            except KeyboardInterrupt:
                self.save_interrupted(epoch)
            from ppdistill.data import report_skipped  # bad samples of this epoch (data side)
            report_skipped(self.train_loader, self.logger, f"epoch {epoch}")
            self.save_epoch_checkpoints(epoch)
            if stopped:
                break
        self.scalars.close()
        self.logger.info(f"best metric: {format_metrics(self.best)}")
        return self.best

    def run_epoch(self, epoch):
        """Train one epoch; return True when ``max_iters`` was reached."""
        reader_start, window = time.time(), {"reader": 0.0, "batch": 0.0, "samples": 0, "steps": 0}
        for batch in self.train_loader:
            window["reader"] += time.time() - reader_start
            step_start = time.time()
            terms = self.train_step(batch)
            window["batch"] += time.time() - step_start
            window["samples"] += int(batch[0].shape[0])
            window["steps"] += 1
            self.global_step += 1
            self.stats.update(terms)
            if self.global_step % int(self.cfg.get("print_batch_step", 10)) == 0:
                self.log_progress(epoch, window)
                window = {"reader": 0.0, "batch": 0.0, "samples": 0, "steps": 0}
            if self.eval_due():
                self.evaluate_and_track(epoch)
            if self.max_iters and self.global_step >= int(self.max_iters):
                return True
            reader_start = time.time()
        return False

    def train_step(self, batch):
        """Forward, loss, backward, optimizer and LR step; return the logged values."""
        images = batch[0]
        if not self.audit.done:
            self.audit.snapshot()
        with self.amp.autocast():
            preds = self.model(images, data=batch[1:])
            losses = self.loss_fn(preds, batch)
        total = losses["loss"]
        bad_ranks = nonfinite_ranks(total)
        if bad_ranks:
            detail = ", ".join(f"{k}: {float(v.mean())}" for k, v in losses.items())
            where = (f" on rank {', '.join(map(str, bad_ranks))}"
                     if paddle.distributed.get_world_size() > 1 else "")
            message = f"non-finite loss at global_step {self.global_step + 1}{where}: {detail}"
            if not self.cfg.get("skip_nonfinite_loss", False):
                raise NonFiniteLossError(message)
            self.logger.warning(message + " (step skipped)")
            self.optimizer.clear_grad()
            return {}
        self.amp.step(total, self.optimizer,
                      after_backward=None if self.audit.done else self.audit.check)
        logged = {k: float(v.mean()) for k, v in losses.items()}
        logged["lr"] = self.optimizer.get_lr()
        if self.lr_scheduler is not None and not isinstance(self.lr_scheduler, float):
            self.lr_scheduler.step()
        if self.cfg.get("cal_metric_during_train", False) and self.metric is not None:
            batch_numpy = [to_numpy(item) for item in batch]
            self.metric(self.post_process(preds, batch_numpy[1]), batch_numpy)
            logged.update({k: v for k, v in self.metric.get_metric().items()
                           if isinstance(v, (int, float))})
        del preds, losses, total
        release_free_host_memory()  # the step's freed activations leave the C heap's holes
        return logged

    # ------------------------------------------------------------------------ hooks
    def log_progress(self, epoch, window):
        steps = max(window["steps"], 1)
        batch_cost = (window["reader"] + window["batch"]) / steps
        total_steps = self.epoch_num * len(self.train_loader)
        if self.max_iters:
            total_steps = min(total_steps, int(self.max_iters))
        eta = datetime.timedelta(seconds=int(max(total_steps - self.global_step, 0) * batch_cost))
        ips = window["samples"] / max(window["reader"] + window["batch"], 1e-9)
        self.logger.info(
            f"epoch: [{epoch}/{self.epoch_num}], global_step: {self.global_step}, "
            f"{self.stats.log()}, avg_reader_cost: {window['reader'] / steps:.5f} s, "
            f"avg_batch_cost: {batch_cost:.5f} s, avg_samples: {window['samples'] / steps}, "
            f"ips: {ips:.5f} samples/s, eta: {eta}")
        self.scalars.log_train(self.global_step, epoch, self.stats)

    def eval_due(self):
        return (self.eval_loader is not None and self.is_main
                and self.global_step > self.eval_start
                and (self.global_step - self.eval_start) % self.eval_interval == 0)

    def evaluate_and_track(self, epoch):
        current = evaluate(self.model, self.eval_loader, self.post_process, self.metric)
        self.scalars.log_eval(self.global_step, epoch, current)
        self.logger.info(f"cur metric, {format_metrics(current)}")
        if self.main_indicator not in current:
            from ppdistill.registry import ConfigError
            raise ConfigError(f"Metric.main_indicator: the metric returned no "
                              f"{self.main_indicator!r} (it returned: {', '.join(current)}); "
                              f"the best model cannot be tracked")
        value = current.get(self.main_indicator)
        if value is not None and not math.isnan(value) and value >= self.best.get(
                self.main_indicator, 0.0):
            self.best = dict(current, best_epoch=epoch)
            self.save("best_accuracy", epoch, is_best=True)
        self.logger.info(f"best metric, {format_metrics(self.best)}")
        return current

    def save_epoch_checkpoints(self, epoch):
        self.save("latest", epoch)
        save_every = int(self.cfg.get("save_epoch_step", 1) or 1)
        if epoch > 0 and epoch % save_every == 0:
            self.save(f"iter_epoch_{epoch}", epoch)

    def save_interrupted(self, epoch):
        """Save ``latest`` after Ctrl-C and raise :class:`TrainingInterrupted`.

        The interrupted epoch counts as not done (``latest.states`` gets ``epoch - 1``): a resume
        repeats it with the weights, optimizer moments and LR position reached.
        """
        self.save("latest", epoch - 1)
        latest = os.path.join(self.save_dir, "latest")
        raise TrainingInterrupted(f"interrupted at global_step {self.global_step}; resume with "
                                  f"-o Global.checkpoints={latest}") from None

    def save(self, prefix, epoch, is_best=False):
        if not self.is_main:
            return
        from ppdistill.utils.save_load import save_model
        os.makedirs(self.save_dir, exist_ok=True)
        save_model(self.model, self.optimizer, self.save_dir, config=self.config, is_best=is_best,
                   prefix=prefix, best_model_dict=self.best, epoch=epoch,
                   global_step=self.global_step)
