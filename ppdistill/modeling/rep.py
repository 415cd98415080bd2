"""Model-level structural re-parameterisation for deployment.

Layers that can fold their training-time branches into one operator (PPLCNetV3's
``LearnableRepLayer``) expose a ``rep()`` method and an ``is_repped`` flag. :func:`reparameterize`
calls it on every such sub-layer of any model (single or DistillationModel), as PaddleOCR's export
does for PPLCNetV3; ``tools/export_model.py`` exports the re-parameterised form.
"""
import copy

__all__ = ["rep_layers", "reparameterize", "reparameterized_copy"]


def rep_layers(model):
    """Sub-layers of ``model`` (itself included) that define ``rep()`` and are not yet repped.

    A container whose ``rep()`` only walks its children (e.g. ``PPLCNetV3.rep``) is skipped: its
    leaves are listed themselves. A leaf is a layer with an ``is_repped`` attribute.
    """
    return [layer for layer in [model] + list(model.sublayers())
            if callable(getattr(layer, "rep", None)) and hasattr(layer, "is_repped")
            and not layer.is_repped]


def reparameterize(model):
    """Fuse every re-parameterisable sub-layer of ``model`` in place; returns how many were fused.

    Idempotent: already-fused layers are skipped, so a second call returns 0. After this the
    model's eval output equals the unfused eval output up to float32 rounding (about 1e-7); train
    mode also uses the fused conv, so call it on a model you deploy or export, not on one you
    keep training.
    """
    layers = rep_layers(model)
    for layer in layers:
        layer.rep()
    return len(layers)


def reparameterized_copy(model):
    """A fused deep copy of ``model`` (left unchanged), or ``model`` itself if nothing fuses."""
    if not rep_layers(model):
        return model
    fused = copy.deepcopy(model)
    reparameterize(fused)
    return fused
