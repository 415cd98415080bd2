"""Recognition label encoders (§11 label checks) and recognition image transforms."""
import cv2
import numpy as np
import pytest

from ppdistill.data.imaug import create_operators, transform
from ppdistill.data.imaug.label_ops_rec import (CTCLabelEncode, MultiLabelEncode,
                                                NRTRLabelEncode, SARLabelEncode)
from ppdistill.data.imaug.rec_img_aug import (RecAug, RecConAug, RecResizeImg,
                                              resize_norm_img)
from ppdistill.registry import ConfigError
from ppdistill.utils.char_dict import load_characters, reverse_right_to_left


@pytest.fixture
def abcd(tmp_path):
    path = tmp_path / "abcd.txt"
    path.write_text("a\nb\nc\nd\n", encoding="utf-8")
    return str(path)


def test_load_characters_rules(tmp_path):
    assert "".join(load_characters(None, True)) == "0123456789abcdefghijklmnopqrstuvwxyz"
    path = tmp_path / "d.txt"
    path.write_bytes("x\r\n \n\ny\nx\nz".encode("utf-8"))
    assert load_characters(str(path), True) == ["x", " ", "", "y", "x", "z", " "]
    with pytest.raises(ConfigError, match="does not exist"):
        load_characters(str(tmp_path / "missing.txt"))


def test_reverse_right_to_left_keeps_latin_runs():
    assert reverse_right_to_left("ab\u062c12") == "12\u062cab"


def test_ctc_label_encode_check_values(abcd):
    op = CTCLabelEncode(max_text_length=4, character_dict_path=abcd, use_space_char=True)
    assert op.character == ["blank", "a", "b", "c", "d", " "]
    out = op({"label": "ab x"})
    assert out["label"].tolist() == [1, 2, 5, 0] and out["label"].dtype == np.int64
    assert out["length"].shape == () and int(out["length"]) == 3
    assert out["label_ace"].tolist() == [1, 1, 1, 0, 0, 1]
    assert op({"label": "abcde"}) is None   # too long
    assert op({"label": "xyz"}) is None     # nothing known
    assert op({"label": ""}) is None


def test_ctc_label_encode_default_alphabet_lowercases():
    out = CTCLabelEncode(max_text_length=5)({"label": "AB1"})
    assert out["label"].tolist() == [11, 12, 2, 0, 0]


def test_sar_label_encode_check_values(abcd):
    op = SARLabelEncode(max_text_length=5, character_dict_path=abcd)
    assert op.character[4:] == ["<UKN>", "<BOS/EOS>", "<PAD>"]
    out = op({"label": "abc"})
    assert out["label"].tolist() == [5, 0, 1, 2, 5] and int(out["length"]) == 3
    assert op({"label": "abcd"}) is None    # 4 >= 5 - 1
    assert SARLabelEncode(max_text_length=6, character_dict_path=abcd)(
        {"label": "ab"})["label"].tolist() == [5, 0, 1, 5, 6, 6]


def test_nrtr_label_encode_check_values(abcd):
    out = NRTRLabelEncode(max_text_length=6, character_dict_path=abcd)({"label": "abc"})
    assert out["label"].tolist() == [2, 4, 5, 6, 3, 0] and int(out["length"]) == 3


def test_multi_label_encode_sar_and_gtc(abcd):
    data = {"img_path": "x.png", "image": np.zeros((2, 2, 3), np.uint8), "label": "abc",
            "extra": 1}
    out = MultiLabelEncode(max_text_length=6, character_dict_path=abcd)(dict(data))
    assert set(out) == {"img_path", "image", "label_ctc", "label_sar", "length"}
    assert out["label_ctc"].tolist() == [1, 2, 3, 0, 0, 0]
    assert out["label_sar"].tolist() == [5, 0, 1, 2, 5, 6]
    assert int(out["length"]) == 3
    gtc = MultiLabelEncode(max_text_length=6, character_dict_path=abcd,
                           gtc_encode="NRTRLabelEncode")(dict(data))
    assert gtc["label_gtc"].tolist() == [2, 4, 5, 6, 3, 0] and "label_sar" not in gtc
    # the SAR branch limits the text to max_text_length - 2 characters
    assert MultiLabelEncode(max_text_length=4, character_dict_path=abcd)(
        {"label": "abc", "image": None}) is None
    with pytest.raises(ConfigError, match="gtc_encode"):
        MultiLabelEncode(max_text_length=6, gtc_encode="NRTRLabelEncod")
    with pytest.raises(ConfigError, match="not a recognition label encoder"):
        MultiLabelEncode(max_text_length=6, gtc_encode="KeepKeys")


def test_encoders_get_arguments_from_global(abcd):
    ops = create_operators([{"MultiLabelEncode": {"gtc_encode": "NRTRLabelEncode"}},
                            {"KeepKeys": {"keep_keys": ["label_ctc", "label_gtc", "length"]}}],
                           {"character_dict_path": abcd, "use_space_char": True,
                            "max_text_length": 6, "epoch_num": 3})
    label_ctc, label_gtc, length = transform({"label": "ab a", "image": None}, ops)
    assert label_ctc.tolist() == [1, 2, 5, 1, 0, 0] and int(length) == 4
    assert label_gtc.tolist() == [2, 4, 5, 8, 4, 3]
    with pytest.raises(ConfigError, match="max_text_length"):
        create_operators([{"CTCLabelEncode": None}], {})


def test_resize_norm_img_valid_ratio_and_padding():
    img = np.full((10, 20, 3), 255, np.uint8)
    out, ratio = resize_norm_img(img, [3, 8, 32])
    assert out.shape == (3, 8, 32) and out.dtype == np.float32
    assert ratio == pytest.approx(16 / 32)
    assert np.allclose(out[:, :, :16], 1.0) and np.allclose(out[:, :, 16:], 0.0)
    wide, ratio = resize_norm_img(np.zeros((10, 100, 3), np.uint8), [3, 8, 32])
    assert ratio == 1.0 and np.allclose(wide, -1.0)
    stretched, ratio = resize_norm_img(img, [3, 8, 32], padding=False)
    assert ratio == 1.0 and np.allclose(stretched, 1.0)


def test_rec_resize_img_op_and_modes():
    img = np.full((10, 20, 3), 255, np.uint8)
    out = RecResizeImg(image_shape=[3, 8, 32])({"image": img.copy()})
    assert out["image"].shape == (3, 8, 32) and out["valid_ratio"] == pytest.approx(0.5)
    long_crop = np.zeros((10, 100, 3), np.uint8)
    out = RecResizeImg(image_shape=[3, 8, 32], infer_mode=True)({"image": long_crop})
    assert out["image"].shape == (3, 8, 80) and out["valid_ratio"] == pytest.approx(1.0)
    grey = RecResizeImg(image_shape=[1, 8, 32])({"image": img.copy()})
    assert grey["image"].shape == (1, 8, 32)
    with pytest.raises(ConfigError):
        RecResizeImg(image_shape=[8, 32])


def test_rec_con_aug_concatenates_when_text_fits():
    np.random.seed(1)
    op = RecConAug(prob=1.0, image_shape=[8, 64, 3], max_text_length=5, ext_data_num=2)
    ext = [{"image": np.full((16, 32, 3), 200, np.uint8), "label": "cd"},
           {"image": np.full((8, 8, 3), 100, np.uint8), "label": "efgh"}]
    data = {"image": np.zeros((4, 8, 3), np.uint8), "label": "ab", "ext_data": ext}
    out = op(data)
    assert out["label"] == "abcd"                # the second would exceed 5 characters
    assert out["image"].shape == (8, 16 + 16, 3)
    assert "ext_data" not in out
    assert op.ext_data_num == 2
    # joint aspect ratio 56/8 + 16/8 = 9 exceeds 64/8 = 8: nothing appended
    wide = {"image": np.zeros((8, 56, 3), np.uint8), "label": "a",
            "ext_data": [{"image": np.zeros((8, 16, 3), np.uint8), "label": "b"}]}
    assert op(wide)["label"] == "a"
    skip = RecConAug(prob=0.0)({"image": np.zeros((4, 8, 3), np.uint8), "label": "ab",
                                "ext_data": ext})
    assert skip["label"] == "ab" and "ext_data" not in skip


def test_rec_aug_keeps_dtype_and_shape():
    np.random.seed(0)
    img = np.random.randint(0, 256, (32, 100, 3)).astype(np.uint8)
    no_crop = RecAug(tia_prob=1, crop_prob=0, reverse_prob=1, noise_prob=1, jitter_prob=1,
                     blur_prob=1, hsv_aug_prob=1)
    out = no_crop({"image": img.copy()})["image"]
    assert out.shape == img.shape and out.dtype == np.uint8
    assert not np.array_equal(out, img)
    cropped = RecAug(tia_prob=0, crop_prob=1)({"image": img.copy()})["image"]
    assert 32 - 8 <= cropped.shape[0] < 32 and cropped.shape[1:] == (100, 3)
    for _ in range(5):
        out = RecAug()({"image": img.copy()})["image"]
        assert out.dtype == np.uint8 and out.ndim == 3 and out.shape[1] == 100
    small = RecAug(tia_prob=1, crop_prob=1)({"image": img[:10, :15].copy()})["image"]
    assert small.shape == (10, 15, 3)
    identity = RecAug(0, 0, 0, 0, 0, 0, 0)({"image": img.copy()})["image"]
    assert np.array_equal(identity, img)
    with pytest.raises(ConfigError, match="tia_prob"):
        RecAug(tia_prob=2)


def test_tia_warps_keep_the_picture_recognisable():
    img = np.zeros((32, 96, 3), np.uint8)
    cv2.putText(img, "ab12", (4, 26), cv2.FONT_HERSHEY_SIMPLEX, 0.9, (255, 255, 255), 2)
    aug = RecAug(tia_prob=1, crop_prob=0, reverse_prob=0, noise_prob=0, jitter_prob=0,
                 blur_prob=0, hsv_aug_prob=0)
    correlations = []
    for seed in range(10):
        np.random.seed(seed)
        out = aug({"image": img.copy()})["image"]
        # a warp, not a replacement: the ink stays roughly where it was and keeps its amount
        assert 0.4 < out.astype(float).sum() / img.astype(float).sum() < 1.6
        correlations.append(np.corrcoef(out.reshape(-1), img.reshape(-1))[0, 1])
    # unrelated images correlate ~0; warped ones clearly positively (0.2-0.4 across OpenCV 4/5)
    assert np.median(correlations) > 0.1 and min(correlations) > 0.0
