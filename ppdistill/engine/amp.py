"""Automatic mixed precision from ``Global.use_amp`` / ``amp_level`` / ``amp_dtype``."""
import contextlib

import paddle


class AmpContext:
    """Wraps forward passes in ``paddle.amp.auto_cast`` and scales the loss on a GPU.

    On the CPU mixed precision is a no-op (with one warning), so a GPU config runs unchanged.
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
        if self.enabled and self.level == "O2":
            model, optimizer = paddle.amp.decorate(models=model, optimizers=optimizer,
                                                   level=self.level, dtype=self.dtype)
        return model, optimizer

    def autocast(self):
        if not self.enabled:
            return contextlib.nullcontext()
        return paddle.amp.auto_cast(level=self.level, dtype=self.dtype,
                                    custom_black_list=self.black_list,
                                    custom_white_list=self.white_list)

    def step(self, loss, optimizer):
        """Backward and optimizer step (scaled when AMP is on)."""
        if self.scaler is None:
            loss.backward()
            optimizer.step()
        else:
            scaled = self.scaler.scale(loss)
            scaled.backward()
            self.scaler.minimize(optimizer, scaled)
        optimizer.clear_grad()
