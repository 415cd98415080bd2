"""Shared by the PPLCNetV3 tests: give a model random, well-scaled BN statistics and LABs.

With PaddleOCR's default init a PPLCNetV3 (4 summed branches per layer) grows its activations to
~1e11, where float32 rounding hides any comparison; these values keep them O(1).
"""
import numpy as np


def randomize(model, seed=0):
    """Random BN mean/var/gamma/beta, LAB scale/bias (in place); returns ``model``."""
    rng = np.random.RandomState(seed)
    for name, value in model.state_dict().items():
        leaf = name.rsplit(".", 1)[-1]
        is_bn = ".bn." in name or "identity." in name
        if leaf == "_mean":
            new = rng.uniform(-0.2, 0.2, value.shape)
        elif leaf == "_variance":
            new = rng.uniform(0.5, 1.5, value.shape)
        elif is_bn and leaf == "weight":
            new = rng.uniform(0.1, 0.3, value.shape)
        elif is_bn and leaf == "bias":
            new = rng.uniform(-0.1, 0.1, value.shape)
        elif "lab." in name and leaf == "scale":
            new = rng.uniform(0.8, 1.2, value.shape)
        elif "lab." in name and leaf == "bias":
            new = rng.uniform(-0.1, 0.1, value.shape)
        else:
            continue
        value.set_value(new.astype("float32"))
    return model
