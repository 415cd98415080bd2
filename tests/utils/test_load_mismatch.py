"""Shape mismatches: a rec head that does not fit the dictionary, and resuming another model."""
import paddle
import pytest

from ppdistill.registry import ConfigError
from ppdistill.utils.save_load import load_model, save_model


class TinyRec(paddle.nn.Layer):
    def __init__(self, classes):
        super().__init__()
        self.backbone = paddle.nn.Linear(4, 8)
        self.head = paddle.nn.Linear(8, classes)


def test_rec_pretrained_with_other_dictionary_fails_with_both_sizes(tmp_path):
    save_model(TinyRec(6625), None, str(tmp_path), prefix="m")
    cfg = {"Global": {"pretrained_model": str(tmp_path / "m")}}
    with pytest.raises(ConfigError, match=r"head.weight: file \[8, 6625\], model \[8, 40\].*"
                                          r"does not fit the dictionary"):
        load_model(cfg, TinyRec(40), None, "rec")
    # detection (or same-size) warm starts only report the skipped tensors
    load_model(cfg, TinyRec(6625), None, "rec")
    load_model(cfg, TinyRec(40), None, "det")


def test_resume_of_another_model_fails(tmp_path):
    save_model(TinyRec(10), None, str(tmp_path), prefix="latest", epoch=1, global_step=3)
    cfg = {"Global": {"checkpoints": str(tmp_path / "latest")}}
    assert load_model(cfg, TinyRec(10), None, "det")["global_step"] == 3
    with pytest.raises(ConfigError, match="resumes only the model it was saved from"):
        load_model(cfg, TinyRec(12), None, "det")
