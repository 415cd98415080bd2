// Stride-1 "same" depthwise convolutions of one plane with several kernels at once, for
// PP-LCNetV3's k x k branches (rep_kernels.cc), which all read the same input plane.
//
// The plane is copied once into a zero-padded buffer; each output row is computed in blocks of
// kDwBlock columns held in registers over the k x k taps, every loaded input vector serving every
// branch of the group (up to 4). The per-tap loops of kernels_common.h's dw_plane_* instead load
// and store the output row at every tap and pay their boundary arithmetic per tap and row, which
// dominates on PP-LCNetV3 det's 20 x 20 and 10 x 10 planes. Same sums in the same tap order.
#pragma once

#include <algorithm>
#include <cstdint>
#include <type_traits>

namespace ppdistill_kernels {

constexpr int64_t kDwBlock = 16;

// An h x w plane padded by (ph, pw) zeros for a kh x kw kernel with kh = 2 ph + 1 and
// kw = 2 pw + 1; rows of `cols` floats, with kDwBlock columns of slack so whole blocks can be read.
struct PaddedPlane {
  int64_t h, w, kh, kw, ph, pw, cols, rows;
  PaddedPlane(int64_t h_, int64_t w_, int64_t kh_, int64_t kw_)
      : h(h_), w(w_), kh(kh_), kw(kw_), ph((kh_ - 1) / 2), pw((kw_ - 1) / 2),
        cols(w_ + kw_ - 1 + kDwBlock), rows(h_ + kh_ - 1) {}
  int64_t size() const { return rows * cols; }
};

// Whether a depthwise conv of this geometry takes the functions below.
inline bool dw_stride1_fits(int64_t kh, int64_t kw, int sh, int sw, int ph, int pw) {
  return sh == 1 && sw == 1 && kh % 2 == 1 && kw % 2 == 1 && ph == (kh - 1) / 2 &&
         pw == (kw - 1) / 2;
}

// plane (h x w) into pad (g.size() floats), zeros around it.
inline void pad_plane(const PaddedPlane& g, const float* plane, float* pad) {
  std::fill(pad, pad + g.size(), 0.0f);
  for (int64_t r = 0; r < g.h; ++r) {
    std::copy(plane + r * g.w, plane + (r + 1) * g.w, pad + (r + g.ph) * g.cols + g.pw);
  }
}

// out[b] = conv(plane, kern[b]) for the NB kernels (kh * kw floats each); pad is the padded plane.
template <int NB>
void dw_stride1_forward(const PaddedPlane& g, const float* pad, const float* const* kern,
                        float* const* out) {
  for (int64_t r = 0; r < g.h; ++r) {
    for (int64_t c0 = 0; c0 < g.w; c0 += kDwBlock) {
      float acc[NB][kDwBlock] = {};
      for (int64_t i = 0; i < g.kh; ++i) {
        const float* row = pad + (r + i) * g.cols + c0;
        for (int64_t j = 0; j < g.kw; ++j) {
          const float* src = row + j;
          for (int b = 0; b < NB; ++b) {
            const float kv = kern[b][i * g.kw + j];
#pragma omp simd
            for (int64_t t = 0; t < kDwBlock; ++t) acc[b][t] += kv * src[t];
          }
        }
      }
      const int64_t n = std::min(kDwBlock, g.w - c0);
      for (int b = 0; b < NB; ++b) std::copy(acc[b], acc[b] + n, out[b] + r * g.w + c0);
    }
  }
}

// gx += sum_b conv_transpose(grad_b, kern[b]): a correlation of the padded output gradients
// grad_pad[b] with the flipped kernels.
template <int NB>
void dw_stride1_input_grad(const PaddedPlane& g, const float* const* grad_pad,
                           const float* const* kern, float* gx) {
  for (int64_t r = 0; r < g.h; ++r) {
    for (int64_t c0 = 0; c0 < g.w; c0 += kDwBlock) {
      float acc[kDwBlock] = {};
      for (int64_t i = 0; i < g.kh; ++i) {
        for (int64_t j = 0; j < g.kw; ++j) {
          const int64_t flipped = (g.kh - 1 - i) * g.kw + (g.kw - 1 - j);
          for (int b = 0; b < NB; ++b) {
            const float kv = kern[b][flipped];
            const float* src = grad_pad[b] + (r + i) * g.cols + c0 + j;
#pragma omp simd
            for (int64_t t = 0; t < kDwBlock; ++t) acc[t] += kv * src[t];
          }
        }
      }
      const int64_t n = std::min(kDwBlock, g.w - c0);
      float* dst = gx + r * g.w + c0;
      for (int64_t t = 0; t < n; ++t) dst[t] += acc[t];
    }
  }
}

// acc[b][i * kw + j] += sum_{r,c} grad_b[r][c] * plane[r + i - ph][c + j - pw]: float partial
// sums per lane over kRowChunk rows, then into the double accumulators.
template <int NB>
void dw_stride1_weight_grad(const PaddedPlane& g, const float* pad, const float* const* grad_pad,
                            double* const* acc) {
  constexpr int64_t kRowChunk = 8;
  for (int64_t i = 0; i < g.kh; ++i) {
    for (int64_t j = 0; j < g.kw; ++j) {
      double total[NB] = {};
      for (int64_t r0 = 0; r0 < g.h; r0 += kRowChunk) {
        float part[NB][kDwBlock] = {};
        const int64_t r1 = std::min(g.h, r0 + kRowChunk);
        for (int64_t r = r0; r < r1; ++r) {
          const float* src = pad + (r + i) * g.cols + j;
          for (int64_t c0 = 0; c0 < g.w; c0 += kDwBlock) {
            for (int b = 0; b < NB; ++b) {
              // the gradient's own row, zero beyond column w (padding and slack)
              const float* gr = grad_pad[b] + (r + g.ph) * g.cols + g.pw + c0;
#pragma omp simd
              for (int64_t t = 0; t < kDwBlock; ++t) part[b][t] += gr[t] * src[c0 + t];
            }
          }
        }
        for (int b = 0; b < NB; ++b) {
          float sum = 0.0f;
          for (int64_t t = 0; t < kDwBlock; ++t) sum += part[b][t];
          total[b] += sum;
        }
      }
      for (int b = 0; b < NB; ++b) acc[b][i * g.kw + j] += total[b];
    }
  }
}

// fn(std::integral_constant<int, NB>, first) for groups of up to 4 of `count` kernels.
template <typename Fn>
void for_kernel_groups(int64_t count, Fn fn) {
  for (int64_t first = 0; first < count; first += 4) {
    switch (std::min<int64_t>(4, count - first)) {
      case 4: fn(std::integral_constant<int, 4>(), first); break;
      case 3: fn(std::integral_constant<int, 3>(), first); break;
      case 2: fn(std::integral_constant<int, 2>(), first); break;
      default: fn(std::integral_constant<int, 1>(), first); break;
    }
  }
}

}  // namespace ppdistill_kernels
