"""SARHead: Show-Attend-Read decoder with 2-D attention (PaddleOCR's ``rec_sar_head``).

Used as the auxiliary branch of the PP-OCRv3 ``MultiHead``. Parameter names match PaddleOCR's
(``sar_head.encoder.rnn_encoder.weight_ih_l0``, ``sar_head.decoder.conv3x3_1.weight``, ...).
"""
import numbers

import numpy as np
import paddle
from paddle import nn
from paddle.nn import functional as F

from ppdistill.modeling.heads.class_count import DictionarySizedHead
from ppdistill.registry import HEADS, ConfigError

__all__ = ["SARHead", "SAREncoder", "ParallelSARDecoder", "as_tensor"]


def as_tensor(value, dtype=None):
    """``value`` as a paddle Tensor (numpy arrays and lists from the data loader are converted)."""
    if not isinstance(value, paddle.Tensor):
        value = paddle.to_tensor(np.asarray(value))
    if dtype is not None and value.dtype != getattr(paddle, dtype):
        value = value.astype(dtype)
    return value


def _rnn(gru, input_size, hidden_size, dropout, bidirectional):
    layer = nn.GRU if gru else nn.LSTM
    return layer(input_size, hidden_size, num_layers=2, time_major=False, dropout=dropout,
                 direction="bidirectional" if bidirectional else "forward")


def _valid_lengths(valid_ratios, size):
    """``min(size, ceil(ratio * size))`` per sample, as int64 (ratios in float32).

    ``size`` is an int or a 0-D/1-element integer tensor (an axis length read at run time).
    """
    ratios = as_tensor(valid_ratios, "float32").reshape([-1])
    size = size.astype("float32") if isinstance(size, paddle.Tensor) else float(size)
    return paddle.clip(paddle.ceil(ratios * size), max=size).astype("int64")


class SAREncoder(nn.Layer):
    """Holistic feature: max-pool over height, a 2-layer LSTM over the width, one Linear.

    With valid ratios the feature is taken at step ``min(T, ceil(ratio * T)) - 1`` of each
    sample, otherwise at the last step T - 1. Sub-layers ``rnn_encoder`` and ``linear``.
    """

    def __init__(self, enc_bi_rnn=False, enc_drop_rnn=0.1, enc_gru=False, d_model=512, d_enc=512):
        super().__init__()
        self.rnn_encoder = _rnn(enc_gru, d_model, d_enc, enc_drop_rnn, enc_bi_rnn)
        out_size = d_enc * (int(enc_bi_rnn) + 1)
        self.linear = nn.Linear(out_size, out_size)

    def forward(self, feat, valid_ratios=None):
        seq = paddle.max(feat, axis=2).transpose([0, 2, 1])  # [N, W, C]
        holistic = self.rnn_encoder(seq)[0]  # [N, T, E]
        if valid_ratios is not None:
            index = _valid_lengths(valid_ratios, paddle.shape(holistic)[1]) - 1
            rows = paddle.arange(holistic.shape[0], dtype="int64")
            picked = paddle.gather_nd(holistic, paddle.stack([rows, index], axis=1))
        else:
            picked = holistic[:, -1, :]
        return self.linear(picked)


class ParallelSARDecoder(nn.Layer):
    """SAR decoder: LSTM over [holistic, char embeddings] with 2-D attention on the feature map.

    One attention step (``y`` = rnn_decoder output, ``feat`` [N, C, h, w])::

        e      = conv1x1_2(tanh(conv3x3_1(feat) + conv1x1_1(y)))     # [N, T, h, w]
        e[n, :, :, x] = -inf  for x >= min(w, ceil(valid_ratio_n * w))
        alpha  = softmax over the h*w positions
        glimpse= sum_hw feat * alpha                                # [N, T, C]
        logits = prediction(concat(y, glimpse, holistic))           # pred_concat

    ``start_idx`` (BOS/EOS) = out_channels - 2, ``padding_idx`` = out_channels - 1 (its
    embedding is always zero and it is never predicted: logits have out_channels - 1 classes).
    """

    def __init__(self, out_channels, enc_bi_rnn=False, dec_bi_rnn=False, dec_drop_rnn=0.0,
                 dec_gru=False, d_model=512, d_enc=512, d_k=64, pred_dropout=0.0,
                 max_text_length=30, pred_concat=True):
        super().__init__()
        self.num_classes = out_channels
        self.start_idx = out_channels - 2
        self.padding_idx = out_channels - 1
        self.max_seq_len = max_text_length
        self.pred_concat = pred_concat
        enc_size = d_enc * (int(enc_bi_rnn) + 1)
        dec_size = enc_size * (int(dec_bi_rnn) + 1)
        self.conv1x1_1 = nn.Linear(dec_size, d_k)
        self.conv3x3_1 = nn.Conv2D(d_model, d_k, kernel_size=3, stride=1, padding=1)
        self.conv1x1_2 = nn.Linear(d_k, 1)
        self.rnn_decoder = _rnn(dec_gru, enc_size, enc_size, dec_drop_rnn, dec_bi_rnn)
        self.embedding = nn.Embedding(out_channels, enc_size, padding_idx=self.padding_idx)
        self.pred_dropout = nn.Dropout(pred_dropout)
        in_features = dec_size + d_model + enc_size if pred_concat else d_model
        self.prediction = nn.Linear(in_features, out_channels - 1)

    def attend(self, decoder_input, feat, holistic, valid_ratios=None):
        """Logits ``[N, T', out_channels - 1]`` for a decoder input ``[N, T', E]``."""
        y = self.rnn_decoder(decoder_input)[0]
        query = self.conv1x1_1(y).unsqueeze([3, 4])  # [N, T', d_k, 1, 1]
        key = self.conv3x3_1(feat).unsqueeze(1)  # [N, 1, d_k, h, w]
        energy = paddle.tanh(key + query).transpose([0, 1, 3, 4, 2])
        score = self.conv1x1_2(energy).squeeze(-1)  # [N, T', h, w]
        if valid_ratios is not None:
            width = paddle.shape(score)[3]
            valid = _valid_lengths(valid_ratios, width)
            masked = paddle.arange(width, dtype="int64").unsqueeze(0) >= valid.unsqueeze(1)
            masked = masked.unsqueeze([1, 2]).expand_as(score)
            score = paddle.where(masked, paddle.full_like(score, float("-inf")), score)
        alpha = F.softmax(score.flatten(2), axis=-1).reshape(paddle.shape(score)).unsqueeze(2)
        glimpse = paddle.sum(feat.unsqueeze(1) * alpha, axis=[3, 4])  # [N, T', C]
        if self.pred_concat:
            holistic = holistic.expand([-1, y.shape[1], -1])
            logits = self.prediction(paddle.concat([y, glimpse, holistic], axis=2))
        else:
            logits = self.prediction(glimpse)
        return self.pred_dropout(logits) if self.training else logits

    def forward_train(self, feat, holistic, label, valid_ratios=None):
        """Teacher forcing: logits ``[N, L, C-1]``; position j predicts ``label[:, j+1]``."""
        holistic = holistic.unsqueeze(1)
        decoder_input = paddle.concat([holistic, self.embedding(label)], axis=1)
        return self.attend(decoder_input, feat, holistic, valid_ratios)[:, 1:, :]

    def forward_test(self, feat, holistic, valid_ratios=None):
        """Greedy decoding: softmax probabilities ``[N, max_text_length, C-1]``.

        Every step re-runs the decoder over [holistic, BOS or the predicted embeddings so far,
        BOS for the positions not yet decoded], as PaddleOCR does.
        """
        start = paddle.full_like(holistic[:, :1], self.start_idx, dtype="int64")
        start = self.embedding(start)
        holistic = holistic.unsqueeze(1)
        inputs = [holistic] + [start] * self.max_seq_len
        outputs = []
        for step in range(1, self.max_seq_len + 1):
            logits = self.attend(paddle.concat(inputs, axis=1), feat, holistic, valid_ratios)
            probs = F.softmax(logits[:, step, :], axis=-1)
            outputs.append(probs)
            if step < self.max_seq_len:
                inputs[step + 1] = self.embedding(paddle.argmax(probs, axis=1, keepdim=True))
        return paddle.stack(outputs, axis=1)


@HEADS.register()
class SARHead(DictionarySizedHead, nn.Layer):
    """Show, Attend and Read head over a 4-D feature map ``[N, C, H, W]``.

    Training (``targets`` = ``[label_sar, ..., valid_ratio]``, label laid out as
    ``[BOS, c1..cn, EOS, PAD...]`` of length ``max_text_length``) returns teacher-forced logits
    ``[N, max_text_length, out_channels - 1]``; evaluation returns greedy-decoded softmax
    probabilities of the same shape. The last element of ``targets``, when given, is the valid
    width ratio used to mask padded columns.

    Args:
        in_channels: C (set by the model).
        out_channels: classes = characters + ``<UKN>``, ``<BOS/EOS>``, ``<PAD>`` (CTC count + 2).
        enc_dim: encoder LSTM width.
        max_text_length: decoding length.
        enc_bi_rnn, enc_drop_rnn, enc_gru: encoder RNN settings.
        dec_bi_rnn, dec_drop_rnn, dec_gru: decoder RNN settings.
        d_k: attention width.
        pred_dropout: dropout on the training logits.
        pred_concat: predict from [rnn output, glimpse, holistic] instead of the glimpse alone.

    YAML (a ``MultiHead`` branch)::

        - SARHead:
            enc_dim: 512
            max_text_length: *max_text_length
    """

    label_decoder = "SARLabelDecode"
    dictionary_extra_classes = 2  # characters + <UKN>, <BOS/EOS>, <PAD> = CTC count + 2

    def __init__(self, in_channels, out_channels, enc_dim=512, max_text_length=30,
                 enc_bi_rnn=False, enc_drop_rnn=0.1, enc_gru=False, dec_bi_rnn=False,
                 dec_drop_rnn=0.0, dec_gru=False, d_k=512, pred_dropout=0.1, pred_concat=True):
        super().__init__()
        if not isinstance(out_channels, numbers.Integral) or out_channels < 4:
            raise ConfigError(f"SARHead: out_channels must be an int >= 4 (characters + 3 special "
                              f"tokens), got {out_channels!r}")
        self.max_text_length = max_text_length
        self.encoder = SAREncoder(enc_bi_rnn=enc_bi_rnn, enc_drop_rnn=enc_drop_rnn,
                                  enc_gru=enc_gru, d_model=in_channels, d_enc=enc_dim)
        self.decoder = ParallelSARDecoder(
            out_channels, enc_bi_rnn=enc_bi_rnn, dec_bi_rnn=dec_bi_rnn,
            dec_drop_rnn=dec_drop_rnn, dec_gru=dec_gru, d_model=in_channels, d_enc=enc_dim,
            d_k=d_k, pred_dropout=pred_dropout, max_text_length=max_text_length,
            pred_concat=pred_concat)

    def forward(self, feat, targets=None):
        valid_ratios = targets[-1] if targets is not None and len(targets) else None
        holistic = self.encoder(feat, valid_ratios)
        if not self.training:
            return self.decoder.forward_test(feat, holistic, valid_ratios)
        if targets is None or not len(targets):
            raise ValueError("SARHead: training needs targets [label_sar, ..., valid_ratio] "
                             "(the batch after the image)")
        label = as_tensor(targets[0], "int64")
        return self.decoder.forward_train(feat, holistic, label, valid_ratios)
