"""Post-processing: DB boxes, CTC/SAR/NRTR decoding, and their Distillation* wrappers."""
from ppdistill.registry import POSTPROCESS
from ppdistill.utils.autoimport import import_submodules

import_submodules(__name__, __path__)

__all__ = ["build_post_process"]


def build_post_process(config, global_config=None, path="PostProcess"):
    """Build ``PostProcess``; arguments it leaves out (``character_dict_path``,
    ``use_space_char``, ...) are taken from ``global_config`` when the class accepts them."""
    return POSTPROCESS.build(config, path, defaults=global_config)
