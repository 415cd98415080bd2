"""Model-level structural re-parameterisation for deployment.

Layers that can fold their training-time branches into one operator (PPLCNetV3's
``LearnableRepLayer``) expose a ``rep()`` method and an ``is_repped`` flag. :func:`reparameterize`
calls it on every such sub-layer of any model (single or DistillationModel), as PaddleOCR's export
does for PPLCNetV3; ``tools/export_model.py`` exports the re-parameterised form with the affine
blocks folded in as well (:func:`deployment_copy`).
"""
import copy

__all__ = ["rep_layers", "reparameterize", "reparameterized_copy", "fold_affine_blocks",
           "deployment_copy"]


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


def fold_affine_blocks(model):
    """Call ``fold_affine()`` on every re-parameterised sub-layer of ``model`` that has one (e.g.
    PPLCNetV3's ``LearnableRepLayer``: its affine block goes into the fused conv, the one after
    the activation becomes a single scale op), then ``fold_affine_across_layers()`` on every
    sub-layer that has it (PPLCNetV3's block without SE: the depthwise layer's scale op goes
    into the pointwise conv); returns how many layers were folded. For deployment only: the
    folded layers no longer train their affine blocks."""
    layers = [layer for layer in [model] + list(model.sublayers())
              if callable(getattr(layer, "fold_affine", None)) and getattr(layer, "is_repped", False)
              and not getattr(layer, "affine_folded", False)]
    for layer in layers:
        layer.fold_affine()
    # then affine ops a following linear layer can absorb exactly (PPLCNetV3 blocks: dw -> pw)
    for layer in [model] + list(model.sublayers()):
        if callable(getattr(layer, "fold_affine_across_layers", None)):
            layer.fold_affine_across_layers()
    return len(layers)


def deployment_copy(model):
    """What ``tools/export_model.py`` exports: a deep copy of ``model`` (left unchanged) with the
    branches fused (:func:`reparameterize`) and the affine blocks folded
    (:func:`fold_affine_blocks`), or ``model`` itself if nothing fuses. The eval output equals
    ``model``'s up to float32 rounding."""
    fused = reparameterized_copy(model)
    if fused is not model:
        fold_affine_blocks(fused)
    return fused
