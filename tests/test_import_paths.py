"""PaddleOCR import paths: ``from ppocr.X import Name`` works as ``from ppdistill.X import Name``.

The name lists are the public classes/functions PaddleOCR's modules define (reference commit
bf1c33fc, June 2024), recorded here as facts. Each name ppdistill implements must import from
the same module path, and must be the one registered object (re-exports, not copies).
"""
import importlib

import pytest

from ppdistill.registry import LOSSES

#: every class ppocr/losses/distillation_loss.py defines (DistillationKLDivLoss and
#: DistillationDKDLoss are defined there twice; once here).
PADDLEOCR_DISTILLATION_LOSSES = [
    "DistillationDMLLoss", "DistillationKLDivLoss", "DistillationDKDLoss",
    "DistillationNRTRDMLLoss", "DistillationCTCLoss", "DistillationSARLoss",
    "DistillationNRTRLoss", "DistillationDBLoss", "DistillationDilaDBLoss",
    "DistillationDistanceLoss", "DistillationVQASerTokenLayoutLMLoss",
    "DistillationLossFromOutput", "DistillationSERDMLLoss", "DistillationVQADistanceLoss",
    "CTCDKDLoss", "KLCTCLogits", "DistillCTCLogits",
]

PADDLEOCR_MODULES = {
    "losses.distillation_loss": PADDLEOCR_DISTILLATION_LOSSES,
    "losses.basic_loss": ["CELoss", "KLJSLoss", "DMLLoss", "DistanceLoss", "LossFromOutput",
                          "KLDivLoss", "DKDLoss"],
    # combined_loss defines CombinedLoss and exposes the losses it can combine (CenterLoss and
    # ACELoss, which no distillation config uses, are not part of ppdistill).
    "losses.combined_loss": ["CombinedLoss", "CTCLoss", "SARLoss", "DistillationCTCLoss",
                             "DistillCTCLogits", "DistillationSARLoss", "DistillationNRTRLoss",
                             "DistillationDMLLoss", "DistillationKLDivLoss",
                             "DistillationDKDLoss", "DistillationDistanceLoss",
                             "DistillationDBLoss", "DistillationDilaDBLoss",
                             "DistillationLossFromOutput", "DistillationVQASerTokenLayoutLMLoss",
                             "DistillationSERDMLLoss", "DistillationVQADistanceLoss"],
    "modeling.architectures.distillation_model": ["DistillationModel"],
    "utils.save_load": ["load_model", "load_pretrained_params", "save_model"],
}

CASES = [(module, name) for module, names in PADDLEOCR_MODULES.items() for name in names]


@pytest.mark.parametrize("module,name", CASES, ids=[f"{m}.{n}" for m, n in CASES])
def test_paddleocr_name_imports_from_same_path(module, name):
    obj = getattr(importlib.import_module(f"ppdistill.{module}"), name)
    assert callable(obj)
    if name in LOSSES:  # a re-export is the registered class itself, never a second copy
        assert LOSSES.get(name) is obj


def test_paddleocr_distillation_loss_names_fully_covered():
    module = importlib.import_module("ppdistill.losses.distillation_loss")
    missing = [n for n in PADDLEOCR_DISTILLATION_LOSSES if not hasattr(module, n)]
    assert missing == []
    assert all(n in LOSSES for n in PADDLEOCR_DISTILLATION_LOSSES)  # buildable by name
    assert set(module.__all__) == set(PADDLEOCR_DISTILLATION_LOSSES)


def test_star_import_of_distillation_loss():
    namespace = {}
    exec("from ppdistill.losses.distillation_loss import *", namespace)  # noqa: S102
    assert {"DistillationDBLoss", "DistillCTCLogits", "DistillationNRTRDMLLoss"} <= set(namespace)
