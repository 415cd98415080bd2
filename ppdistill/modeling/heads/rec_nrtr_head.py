"""NRTR Transformer head (PaddleOCR's ``rec_nrtr_head.Transformer``).

Used as the GTC branch of a ``MultiHead`` (PP-OCRv4 style) and as a stand-alone head. Parameter
names match PaddleOCR's: ``embedding.embedding.weight``, the persistable buffer
``positional_encoding.pe``, ``decoder.{i}.self_attn.qkv.weight``, ``decoder.{i}.cross_attn.kv``,
``decoder.{i}.mlp.fc1``, ``decoder.{i}.norm{1,2,3}`` and ``tgt_word_prj.weight``.
"""
import math
import numbers

import paddle
from paddle import nn
from paddle.nn import functional as F

from ppdistill.modeling.heads.class_count import DictionarySizedHead
from ppdistill.modeling.heads.rec_sar_head import as_tensor
from ppdistill.modeling.necks.rec_svtr import Mlp
from ppdistill.registry import HEADS, ConfigError

__all__ = ["NRTRHead", "MultiheadAttention", "TransformerBlock", "PositionalEncoding",
           "Embeddings"]

BOS, EOS = 2, 3


class MultiheadAttention(nn.Layer):
    """Scaled dot-product attention with ``num_heads`` heads.

    Self-attention projects with one ``qkv`` Linear (d -> 3d); cross-attention with ``q``
    (d -> d) and ``kv`` (d -> 2d). ``softmax(q k^T * head_dim**-0.5 + mask) v``, heads
    concatenated, then ``out_proj``. The scale is applied after the product.
    """

    def __init__(self, embed_dim, num_heads, dropout=0.0, self_attn=False):
        super().__init__()
        if embed_dim % num_heads:
            raise ConfigError(f"MultiheadAttention: embed_dim {embed_dim} is not divisible by "
                              f"num_heads {num_heads}")
        self.embed_dim = embed_dim
        self.num_heads = num_heads
        self.head_dim = embed_dim // num_heads
        self.scale = self.head_dim ** -0.5
        self.self_attn = self_attn
        if self_attn:
            self.qkv = nn.Linear(embed_dim, embed_dim * 3)
        else:
            self.q = nn.Linear(embed_dim, embed_dim)
            self.kv = nn.Linear(embed_dim, embed_dim * 2)
        self.attn_drop = nn.Dropout(dropout)
        self.out_proj = nn.Linear(embed_dim, embed_dim)

    def forward(self, query, key=None, attn_mask=None):
        if self.self_attn:
            qkv = self.qkv(query).reshape([0, 0, 3, self.num_heads, self.head_dim])
            qkv = qkv.transpose([2, 0, 3, 1, 4])
            q, k, v = qkv[0], qkv[1], qkv[2]
        else:
            q = self.q(query).reshape([0, 0, self.num_heads, self.head_dim]).transpose([0, 2, 1, 3])
            kv = self.kv(key).reshape([0, 0, 2, self.num_heads, self.head_dim])
            kv = kv.transpose([2, 0, 3, 1, 4])
            k, v = kv[0], kv[1]
        attn = paddle.matmul(q, k, transpose_y=True) * self.scale
        if attn_mask is not None:
            attn = attn + attn_mask
        attn = self.attn_drop(F.softmax(attn, axis=-1))
        out = paddle.matmul(attn, v).transpose([0, 2, 1, 3]).reshape([0, 0, self.embed_dim])
        return self.out_proj(out)


class TransformerBlock(nn.Layer):
    """Post-norm block: ``x = norm1(x + self_attn(x))``, ``x = norm2(x + cross_attn(x, mem))``,
    ``x = norm3(x + mlp(x))`` (ReLU MLP, LayerNorm eps 1e-5, residual dropouts)."""

    def __init__(self, d_model, nhead, dim_feedforward=2048, attention_dropout_rate=0.0,
                 residual_dropout_rate=0.1, with_self_attn=True, with_cross_attn=False,
                 epsilon=1e-5):
        super().__init__()
        self.with_self_attn = with_self_attn
        if with_self_attn:
            self.self_attn = MultiheadAttention(d_model, nhead, dropout=attention_dropout_rate,
                                                self_attn=True)
            self.norm1 = nn.LayerNorm(d_model, epsilon=epsilon)
            self.dropout1 = nn.Dropout(residual_dropout_rate)
        self.with_cross_attn = with_cross_attn
        if with_cross_attn:
            self.cross_attn = MultiheadAttention(d_model, nhead, dropout=attention_dropout_rate)
            self.norm2 = nn.LayerNorm(d_model, epsilon=epsilon)
            self.dropout2 = nn.Dropout(residual_dropout_rate)
        self.mlp = Mlp(d_model, dim_feedforward, act_layer=nn.ReLU, drop=residual_dropout_rate)
        self.norm3 = nn.LayerNorm(d_model, epsilon=epsilon)
        self.dropout3 = nn.Dropout(residual_dropout_rate)

    def forward(self, tgt, memory=None, self_mask=None, cross_mask=None):
        if self.with_self_attn:
            tgt = self.norm1(tgt + self.dropout1(self.self_attn(tgt, attn_mask=self_mask)))
        if self.with_cross_attn:
            tgt = self.norm2(tgt + self.dropout2(
                self.cross_attn(tgt, key=memory, attn_mask=cross_mask)))
        return self.norm3(tgt + self.dropout3(self.mlp(tgt)))


class PositionalEncoding(nn.Layer):
    """Adds the sinusoidal table ``pe`` ([max_len, 1, dim], a persistable buffer) then dropout.

    ``pe[p, 0, 2i] = sin(p * exp(-2i ln(10000) / dim))`` and ``pe[p, 0, 2i+1]`` the cosine.
    """

    def __init__(self, dropout, dim, max_len=5000):
        super().__init__()
        self.dropout = nn.Dropout(p=dropout)
        position = paddle.arange(0, max_len, dtype="float32").unsqueeze(1)
        div_term = paddle.exp(paddle.arange(0, dim, 2).astype("float32")
                              * (-math.log(10000.0) / dim))
        angles = position * div_term  # [max_len, ceil(dim/2)]
        pe = paddle.stack([paddle.sin(angles), paddle.cos(angles)], axis=2).reshape([max_len, -1])
        pe = pe[:, :dim].unsqueeze(1)
        self.register_buffer("pe", pe)

    def forward(self, x):
        return self.dropout(x + self.pe[:x.shape[1]].transpose([1, 0, 2]))


class Embeddings(nn.Layer):
    """Token embedding (``embedding``, padding_idx gives zeros), times sqrt(d_model) when
    ``scale_embedding``."""

    def __init__(self, d_model, vocab, padding_idx=None, scale_embedding=True):
        super().__init__()
        self.embedding = nn.Embedding(vocab, d_model, padding_idx=padding_idx)
        self.d_model = d_model
        self.scale_embedding = scale_embedding

    def forward(self, x):
        x = self.embedding(x)
        return x * math.sqrt(self.d_model) if self.scale_embedding else x


@HEADS.register()
class NRTRHead(DictionarySizedHead, nn.Layer):
    """NRTR Transformer decoder (optionally with an encoder) over a token sequence ``[N, L, d]``.

    The vocabulary has ``out_channels + 1`` entries: 0 padding, 1 ``<unk>``, 2 ``<s>``,
    3 ``</s>``, then the characters (NRTRLabelEncode's table).

    - Training (``targets = [label, length, ...]``): ``tgt = label[:, :2 + max(length)]``; the
      decoder reads ``tgt[:, :-1]`` with a causal mask and returns logits
      ``[N, 1 + max(length), out_channels + 1]`` (position j predicts ``tgt[:, j+1]``).
    - Evaluation: greedy decoding from ``<s>`` for at most ``max_len - 1`` steps, stopping early
      when every sample emits ``</s>``; returns ``[dec_seq, dec_prob]`` (token ids starting with
      ``<s>`` and their probabilities, the first being 1).

    Registered as ``NRTRHead`` and, for PaddleOCR's stand-alone NRTR configs, as ``Transformer``.

    Args:
        d_model, nhead, dim_feedforward: transformer sizes.
        num_encoder_layers: encoder blocks over the input (<= 0: none, the input is the memory).
        beam_size: only greedy decoding (<= 0) is provided.
        num_decoder_layers: decoder blocks.
        max_len: maximum decoded length (max_text_length).
        attention_dropout_rate, residual_dropout_rate: dropouts.
        in_channels: accepted for the model interface (unused: the input already has d_model).
        out_channels: NRTRLabelDecode class count (CTC count + 3).
        scale_embedding: multiply embeddings by sqrt(d_model).

    YAML (stand-alone)::

        Head:
          name: Transformer
          d_model: 512
          num_encoder_layers: 6
          beam_size: -1
    """

    label_decoder = "NRTRLabelDecode"
    dictionary_extra_classes = 3  # blank, <unk>, <s>, </s> + characters = CTC count + 3

    def __init__(self, d_model=512, nhead=8, num_encoder_layers=6, beam_size=0,
                 num_decoder_layers=6, max_len=25, dim_feedforward=1024,
                 attention_dropout_rate=0.0, residual_dropout_rate=0.1, in_channels=0,
                 out_channels=0, scale_embedding=True):
        super().__init__()
        if not isinstance(out_channels, numbers.Integral) or out_channels < 4:
            raise ConfigError(f"NRTRHead: out_channels must be an int >= 4 (NRTRLabelDecode "
                              f"classes), got {out_channels!r}")
        if beam_size > 0:
            raise ConfigError("NRTRHead: beam search (beam_size > 0) is not implemented; "
                              "use beam_size: -1 for greedy decoding")
        self.out_channels = out_channels + 1
        self.max_len = max_len
        self.d_model = d_model
        self.nhead = nhead
        self.beam_size = beam_size
        self.embedding = Embeddings(d_model, self.out_channels, padding_idx=0,
                                    scale_embedding=scale_embedding)
        self.positional_encoding = PositionalEncoding(residual_dropout_rate, d_model)
        self.encoder = None
        if num_encoder_layers > 0:
            self.encoder = nn.LayerList([
                TransformerBlock(d_model, nhead, dim_feedforward, attention_dropout_rate,
                                 residual_dropout_rate, with_self_attn=True, with_cross_attn=False)
                for _ in range(num_encoder_layers)])
        self.decoder = nn.LayerList([
            TransformerBlock(d_model, nhead, dim_feedforward, attention_dropout_rate,
                             residual_dropout_rate, with_self_attn=True, with_cross_attn=True)
            for _ in range(num_decoder_layers)])
        self.tgt_word_prj = nn.Linear(d_model, self.out_channels, bias_attr=False)
        for layer in self.sublayers():
            if isinstance(layer, nn.Linear):
                nn.initializer.XavierNormal()(layer.weight)
                if layer.bias is not None:
                    nn.initializer.Constant(0.0)(layer.bias)
        nn.initializer.Normal(0.0, d_model ** -0.5)(self.embedding.embedding.weight)

    @staticmethod
    def causal_mask(size):
        """``[1, 1, size, size]`` with 0 on and below the diagonal and -inf above it."""
        mask = paddle.triu(paddle.full([size, size], float("-inf"), dtype="float32"), diagonal=1)
        return mask.unsqueeze([0, 1])

    def encode(self, src):
        if self.encoder is None:
            return src
        src = self.positional_encoding(src)
        for layer in self.encoder:
            src = layer(src)
        return src

    def decode(self, tokens, memory):
        tgt = self.positional_encoding(self.embedding(tokens))
        mask = self.causal_mask(tgt.shape[1])
        for layer in self.decoder:
            tgt = layer(tgt, memory, self_mask=mask)
        return tgt

    def forward_train(self, src, tgt):
        return self.tgt_word_prj(self.decode(tgt[:, :-1], self.encode(src)))

    def forward_test(self, src):
        memory = self.encode(src)
        dec_seq = paddle.full_like(memory[:, :1, 0], BOS, dtype="int64")
        dec_prob = paddle.full_like(memory[:, :1, 0], 1.0, dtype="float32")
        for _ in range(1, self.max_len):
            out = self.decode(dec_seq, memory)[:, -1, :]
            word_prob = F.softmax(self.tgt_word_prj(out), axis=-1)
            preds_idx = paddle.argmax(word_prob, axis=-1)
            if bool(paddle.all(preds_idx == EOS)):
                break
            preds_prob = paddle.max(word_prob, axis=-1)
            dec_seq = paddle.concat([dec_seq, preds_idx.reshape([-1, 1])], axis=1)
            dec_prob = paddle.concat([dec_prob, preds_prob.reshape([-1, 1])], axis=1)
        return [dec_seq, dec_prob]

    def forward(self, src, targets=None):
        if not self.training:
            return self.forward_test(src)
        if targets is None or len(targets) < 2:
            raise ValueError("NRTRHead: training needs targets [label, length, ...] "
                             "(the batch after the image)")
        label = as_tensor(targets[0], "int64")
        max_length = int(as_tensor(targets[1]).max())
        return self.forward_train(src, label[:, :2 + max_length])


HEADS.register("Transformer")(NRTRHead)
