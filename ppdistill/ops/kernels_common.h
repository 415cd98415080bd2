// Helpers shared by ppdistill's CPU kernels (cpu_kernels.cc, rep_kernels.cc): a std::thread
// parallel loop, argument checks and the per-plane depthwise convolution loops.
#pragma once

#include <algorithm>
#include <functional>
#include <thread>
#include <vector>

#include "paddle/extension.h"

namespace ppdistill_kernels {

// body(begin, end) over [0, count) split into `threads` contiguous chunks (one per thread).
inline void parallel_for(int64_t count, int threads,
                         const std::function<void(int64_t, int64_t)>& body) {
  int workers = static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(threads, count)));
  if (workers == 1) {
    body(0, count);
    return;
  }
  std::vector<std::thread> pool;
  int64_t chunk = (count + workers - 1) / workers;
  for (int w = 1; w < workers; ++w) {
    int64_t begin = w * chunk, end = std::min(count, begin + chunk);
    if (begin < end) pool.emplace_back(body, begin, end);
  }
  body(0, std::min(count, chunk));
  for (auto& t : pool) t.join();
}

// Branch-free hardswish and its derivative with paddle's conventions at the kinks (0 up to
// u = -3, 1 from u = 3), so the loops vectorise.
inline float hardswish_value(float u) {
  return u * std::min(std::max(u + 3.0f, 0.0f), 6.0f) / 6.0f;
}

inline float hardswish_grad(float u) {
  float r = (2.0f * u + 3.0f) / 6.0f;
  r = (u + 3.0f >= 6.0f) ? 1.0f : r;
  return (u + 3.0f <= 0.0f) ? 0.0f : r;
}

// The tail of PP-LCNetV3's layers on n floats, Lab = [ls, lb, as, ab]:
//   out = as * hardswish(ls * in + lb) + ab   (act)   or   out = ls * in + lb;   out may be in.
inline void lab_act_forward(const float* in, float* out, int64_t n, const float* lab, int act) {
  const float ls = lab[0], lb = lab[1], as = lab[2], ab = lab[3];
  if (act) {
#pragma omp simd
    for (int64_t t = 0; t < n; ++t) out[t] = as * hardswish_value(ls * in[t] + lb) + ab;
  } else {
#pragma omp simd
    for (int64_t t = 0; t < n; ++t) out[t] = ls * in[t] + lb;
  }
}

// Its backward for the output gradient d: grad_in (may be in, each element is read before it is
// written) and part = the float partial sums of the gradients of [ls, lb, as, ab] over the n values.
inline void lab_act_backward(const float* in, const float* d, float* grad_in, int64_t n,
                             const float* lab, int act, float part[4]) {
  const float ls = lab[0], lb = lab[1], as = lab[2];
  float p_ls = 0.0f, p_lb = 0.0f, p_as = 0.0f, p_ab = 0.0f;
  if (act) {
#pragma omp simd reduction(+ : p_ls, p_lb, p_as, p_ab)
    for (int64_t t = 0; t < n; ++t) {
      const float x = in[t], u = ls * x + lb;
      const float gu = d[t] * as * hardswish_grad(u);
      p_as += d[t] * hardswish_value(u);
      p_ab += d[t];
      p_ls += gu * x;
      p_lb += gu;
      grad_in[t] = gu * ls;
    }
  } else {
#pragma omp simd reduction(+ : p_ls, p_lb)
    for (int64_t t = 0; t < n; ++t) {
      p_ls += d[t] * in[t];
      p_lb += d[t];
      grad_in[t] = d[t] * ls;
    }
  }
  part[0] = p_ls;
  part[1] = p_lb;
  part[2] = p_as;
  part[3] = p_ab;
}

inline void check_cpu_float(const paddle::Tensor& t, const char* op, const char* name) {
  PD_CHECK(t.is_cpu(), op, ": ", name, " must be a CPU tensor");
  PD_CHECK(t.dtype() == paddle::DataType::FLOAT32, op, ": ", name, " must be float32");
}

// ------------------------------------------------------------------------- depthwise conv
struct DwShape {
  int64_t n, c, h, w, kh, kw, oh, ow;
  int sh, sw, ph, pw;
};

inline DwShape dw_shape(const paddle::Tensor& x, const paddle::Tensor& weight, int sh, int sw,
                        int ph, int pw) {
  auto xs = x.shape();
  auto ws = weight.shape();
  PD_CHECK(xs.size() == 4 && ws.size() == 4, "ppdistill_depthwise_conv2d: needs NCHW input and "
           "[C, 1, kh, kw] weight");
  PD_CHECK(ws[0] == xs[1] && ws[1] == 1, "ppdistill_depthwise_conv2d: weight ", ws[0], "x",
           ws[1], " does not match ", xs[1], " channels");
  DwShape s{xs[0], xs[1], xs[2], xs[3], ws[2], ws[3], 0, 0, sh, sw, ph, pw};
  s.oh = (s.h + 2 * ph - s.kh) / sh + 1;
  s.ow = (s.w + 2 * pw - s.kw) / sw + 1;
  PD_CHECK(s.oh > 0 && s.ow > 0, "ppdistill_depthwise_conv2d: empty output");
  return s;
}

// Output columns [lo, hi) for which input column ow * sw - pw + j lies inside [0, w).
inline void valid_columns(const DwShape& s, int64_t j, int64_t* lo, int64_t* hi) {
  int64_t first = s.pw - j;  // ow * sw >= first
  *lo = first <= 0 ? 0 : (first + s.sw - 1) / s.sw;
  int64_t last = s.w - 1 + s.pw - j;  // ow * sw <= last
  *hi = last < 0 ? 0 : std::min<int64_t>(s.ow, last / s.sw + 1);
}

// One output plane of a depthwise conv: o = conv(in, k) for one (image, channel).
inline void dw_plane_forward(const DwShape& s, const float* in, const float* k, float* o) {
  std::fill(o, o + s.oh * s.ow, 0.0f);
  for (int64_t r = 0; r < s.oh; ++r) {
    float* orow = o + r * s.ow;
    for (int64_t i = 0; i < s.kh; ++i) {
      int64_t ih = r * s.sh - s.ph + i;
      if (ih < 0 || ih >= s.h) continue;
      const float* irow = in + ih * s.w;
      for (int64_t j = 0; j < s.kw; ++j) {
        float kv = k[i * s.kw + j];
        int64_t lo, hi;
        valid_columns(s, j, &lo, &hi);
        int64_t shift = j - s.pw;
        if (s.sw == 1) {
          const float* src = irow + shift;
          for (int64_t c = lo; c < hi; ++c) orow[c] += kv * src[c];
        } else {
          for (int64_t c = lo; c < hi; ++c) orow[c] += kv * irow[c * s.sw + shift];
        }
      }
    }
  }
}

// Backward of one plane: adds the input gradient into gx and the kernel gradient into acc
// (kh * kw doubles), given the output gradient g.
inline void dw_plane_backward(const DwShape& s, const float* in, const float* k, const float* g,
                              float* gx, double* acc) {
  for (int64_t r = 0; r < s.oh; ++r) {
    const float* grow = g + r * s.ow;
    for (int64_t i = 0; i < s.kh; ++i) {
      int64_t ih = r * s.sh - s.ph + i;
      if (ih < 0 || ih >= s.h) continue;
      const float* irow = in + ih * s.w;
      float* gxrow = gx + ih * s.w;
      for (int64_t j = 0; j < s.kw; ++j) {
        float kv = k[i * s.kw + j];
        int64_t lo, hi;
        valid_columns(s, j, &lo, &hi);
        int64_t shift = j - s.pw;
        float dot = 0.0f;
        if (s.sw == 1) {
          const float* src = irow + shift;
          float* dst = gxrow + shift;
          for (int64_t c = lo; c < hi; ++c) dst[c] += kv * grow[c];
#pragma omp simd reduction(+ : dot)
          for (int64_t c = lo; c < hi; ++c) dot += grow[c] * src[c];
        } else {
          for (int64_t c = lo; c < hi; ++c) {
            gxrow[c * s.sw + shift] += kv * grow[c];
            dot += grow[c] * irow[c * s.sw + shift];
          }
        }
        acc[i * s.kw + j] += dot;
      }
    }
  }
}

// Batch mean of one channel whose n planes of hw floats plane(b) returns: float32 sums per
// plane, accumulated in double.
template <typename Plane>
inline float channel_mean(Plane plane, int64_t n, int64_t hw) {
  double sum = 0.0;
  for (int64_t b = 0; b < n; ++b) {
    const float* q = plane(b);
    float part = 0.0f;
#pragma omp simd reduction(+ : part)
    for (int64_t t = 0; t < hw; ++t) part += q[t];
    sum += part;
  }
  return static_cast<float>(sum / static_cast<double>(n * hw));
}

// Batch mean and (biased) variance of such a channel, the variance from the centred values.
template <typename Plane>
inline void channel_mean_variance(Plane plane, int64_t n, int64_t hw, float* mean,
                                  float* variance) {
  const double count = static_cast<double>(n * hw);
  const float mu = channel_mean(plane, n, hw);
  double sq = 0.0;
  for (int64_t b = 0; b < n; ++b) {
    const float* q = plane(b);
    float part = 0.0f;
#pragma omp simd reduction(+ : part)
    for (int64_t t = 0; t < hw; ++t) {
      float d = q[t] - mu;
      part += d * d;
    }
    sq += part;
  }
  *mean = mu;
  *variance = static_cast<float>(sq / count);
}

}  // namespace ppdistill_kernels
