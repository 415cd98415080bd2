"""Automatic mixed precision from ``Global.use_amp`` / ``amp_level`` / ``amp_dtype``."""
import contextlib

import paddle


class AmpContext:
    """Wraps forward passes in ``paddle.amp.auto_cast`` and scales the loss on a GPU.

    On the CPU mixed precision is a no-op (with one warning), so a GPU config runs unchanged:
    paddle's CPU build ignores ``auto_cast`` (paddle 3.3 warns "amp_guard can only be enabled on
    CUDAPlace, XPUPlace, and CustomPlace"), bfloat16 included. :func:`decorate` must see the
    plain model, before any ``paddle.DataParallel``; ``ppdistill.engine.setup`` keeps that order.

    YAML (``Global``)::

        use_amp: true
        amp_level: O2            # O1: auto_cast only; O2: also paddle.amp.decorate
        amp_dtype: float16       # or bfloat16
        scale_loss: 1024.0
        use_dynamic_loss_scaling: true
    """

    def __init__(self, global_cfg, logger):
        requested = bool(global_cfg.get("use_amp", False))
        on_gpu = paddle.get_device().startswith("gpu")
        if requested and not on_gpu:
            logger.warning("Global.use_amp is set but training runs on the CPU: AMP is disabled")
        self.enabled = requested and on_gpu
        self.level = global_cfg.get("amp_level", "O2")
        self.dtype = global_cfg.get("amp_dtype", "float16")
        self.black_list = global_cfg.get("amp_custom_black_list", [])
        self.white_list = global_cfg.get("amp_custom_white_list", [])
        self.scaler = None
        if self.enabled:
            self.scaler = paddle.amp.GradScaler(
                init_loss_scaling=global_cfg.get("scale_loss", 1.0),
                use_dynamic_loss_scaling=global_cfg.get("use_dynamic_loss_scaling", False))

    def decorate(self, model, optimizer):
        """``paddle.amp.decorate`` at O2 (casts the model; master weights in the optimizer)."""
        if self.enabled and self.level == "O2":
            if isinstance(model, paddle.DataParallel):
                raise RuntimeError("AMP O2 decoration must run before paddle.DataParallel "
                                   "wraps the model (see ppdistill.engine.setup)")
            model, optimizer = paddle.amp.decorate(models=model, optimizers=optimizer,
                                                   level=self.level, dtype=self.dtype)
        return model, optimizer

    def autocast(self):
        if not self.enabled:
            return contextlib.nullcontext()
        return paddle.amp.auto_cast(level=self.level, dtype=self.dtype,
                                    custom_black_list=self.black_list,
                                    custom_white_list=self.white_list)

    def backward(self, loss):
        """Backward of ``loss`` (scaled when AMP is on); gradients stay until :meth:`apply`."""
        self._scaled = loss if self.scaler is None else self.scaler.scale(loss)
        self._scaled.backward()

    def apply(self, optimizer):
        """Optimizer step on the gradients of the last :meth:`backward`, then clear them."""
        if self.scaler is None:
            optimizer.step()
        else:
            self.scaler.minimize(optimizer, self._scaled)
        self._scaled = None
        optimizer.clear_grad()

    def step(self, loss, optimizer, after_backward=None):
        """Backward and optimizer step (scaled when AMP is on); ``after_backward()`` runs in
        between, while the gradients exist (the trainer's first-step gradient audit)."""
        self.backward(loss)
        if after_backward is not None:
            after_backward()
        self.apply(optimizer)
