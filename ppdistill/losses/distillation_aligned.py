"""Label-aligned attention heads: which output rows line up with which label positions.

The attention branches of a recognition MultiHead (NRTR/GTC in PP-OCRv4, SAR in PP-OCRv3) emit
one distribution per label position, so a distillation loss between two such outputs can take
the ground-truth class of each row and ignore the padding rows. The CTC branch has no such
alignment (its timesteps are not label positions).

Layouts, with the MultiHead batch ``[image, label_ctc, label_gtc|label_sar, length, ...]``:

- ``gtc`` / ``nrtr``: logits ``[B, 1 + m, C]`` with ``m = max(batch[3])``. Row ``j`` predicts
  ``label_gtc[:, 1 + j]``, so the target is ``label_gtc[:, 1 : 2 + m]`` (the start token ``<s>``
  dropped, ``</s>`` kept). Padding is NRTR index 0 (PaddleOCR's shift and mask).
- ``sar``: logits ``[B, L, C]`` with ``L`` the label length (max_text_length). Row ``j``
  predicts ``label_sar[:, j + 1]`` (as SARLoss compares ``logits[:, :-1]`` with
  ``label[:, 1:]``), so the last row is dropped and the target is ``label_sar[:, 1:]``.
  Padding is SAR's ``<PAD>`` = the SARHead's ``out_channels - 1``, which equals the number of
  logit classes ``C`` (the head never predicts ``<PAD>``), e.g. 6626 for ppocr_keys_v1.txt with
  space. It is **not** index 0, which is a real character in the SAR dictionary.
"""
import paddle

#: dis_head values whose output rows line up with label positions.
ALIGNED_HEADS = ("gtc", "nrtr", "sar")


def _tensor(value, name):
    if value is None:
        raise ValueError(f"the batch has no {name}")
    return value if isinstance(value, paddle.Tensor) else paddle.to_tensor(value)


def aligned_rows(dis_head, batch, first, second, loss_name, pad_index=None, check_target=True):
    """Align two attention-head outputs with their label.

    Returns ``(first, second, target, mask)``: the two logits ``[B, T, C]`` (SAR: the last step
    dropped), the per-row target class ``[B, T]`` (int64; padding rows hold 0 so that they can be
    one-hot encoded) and ``mask``, a bool vector over the ``B·T`` rows that is False on padding.

    ``pad_index`` overrides the padding index (default: 0 for gtc/nrtr, ``C`` for sar).
    ``check_target``: fail when a non-padding target is not a class of the logits (losses that
    use only the mask pass False).
    """
    if dis_head not in ALIGNED_HEADS:
        raise ValueError(f"{loss_name}: dis_head {dis_head!r} is not label-aligned "
                         f"(aligned: {', '.join(ALIGNED_HEADS)})")
    if batch is None or len(batch) < 4:
        raise ValueError(f"{loss_name}: dis_head {dis_head!r} needs the MultiHead batch "
                         f"[image, label_ctc, label_{'sar' if dis_head == 'sar' else 'gtc'}, "
                         f"length, ...]")
    label = _tensor(batch[2], "label (batch[2])").astype("int64")
    num_classes = first.shape[-1]
    if dis_head == "sar":
        pad = num_classes if pad_index is None else int(pad_index)
        first, second = first[:, :-1], second[:, :-1]
        target = label[:, 1:]
    else:
        pad = 0 if pad_index is None else int(pad_index)
        max_len = int(_tensor(batch[3], "length (batch[3])").max())
        target = label[:, 1:2 + max_len]
    if list(first.shape[:2]) != list(target.shape) or list(second.shape) != list(first.shape):
        raise ValueError(f"{loss_name}: {dis_head} outputs {list(first.shape)} / "
                         f"{list(second.shape)} do not line up with the label positions "
                         f"{list(target.shape)} (batch {list(label.shape)})")
    mask = target != pad
    target = paddle.where(mask, target, paddle.zeros_like(target))
    if check_target and (bool((target >= num_classes).any()) or bool((target < 0).any())):
        raise ValueError(f"{loss_name}: {dis_head} label has a class outside [0, {num_classes}) "
                         f"of the {num_classes}-class logits (padding index {pad})")
    return first, second, target, mask.reshape([-1])
