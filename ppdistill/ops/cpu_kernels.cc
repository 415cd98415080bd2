// Multi-threaded CPU kernels for the training hot spots of the MobileNet students (paddle custom
// operators, compiled on first use by ppdistill/ops/loader.py).
//
//   ppdistill_depthwise_conv2d : NCHW depthwise convolution (groups == channels, multiplier 1),
//                                any kernel / stride / zero padding, dilation 1. Paddle's own
//                                CPU kernel runs one im2col + tiny GEMM per (image, channel) on
//                                one thread.
//   ppdistill_batch_norm_act   : training-mode BatchNorm (batch statistics, biased variance for
//                                the running update, as paddle) fused with none / relu /
//                                hardswish. Its backward recomputes the normalised value from
//                                the input, so only the BN input is kept for backward (paddle
//                                keeps BN input, BN output and activation output).
//   (PP-LCNetV3's LearnableRepLayer kernels are in rep_kernels.cc; shared helpers in
//   kernels_common.h)
//
// Sums over a row use `omp simd` reductions (-fopenmp-simd: vector partial sums, no OpenMP
// runtime), accumulated per row into doubles.
// Work is split over channels (or image planes) across `threads` std::threads; every output
// element is written by one thread only, so results do not depend on the thread count.
#include <algorithm>
#include <cmath>
#include <functional>
#include <thread>
#include <type_traits>
#include <vector>

#include "dw_stride1.h"
#include "kernels_common.h"

namespace {

using ppdistill_kernels::channel_mean_variance;
using ppdistill_kernels::DwShape;
using ppdistill_kernels::dw_shape;
using ppdistill_kernels::check_cpu_float;
using ppdistill_kernels::dw_plane_backward;
using ppdistill_kernels::dw_plane_forward;
using ppdistill_kernels::dw_stride1_fits;
using ppdistill_kernels::dw_stride1_forward;
using ppdistill_kernels::dw_stride1_input_grad;
using ppdistill_kernels::dw_stride1_weight_grad;
using ppdistill_kernels::pad_plane;
using ppdistill_kernels::PaddedPlane;
using ppdistill_kernels::parallel_for;

std::vector<paddle::Tensor> DepthwiseForward(const paddle::Tensor& x, const paddle::Tensor& weight,
                                             int stride_h, int stride_w, int pad_h, int pad_w,
                                             int threads) {
  check_cpu_float(x, "ppdistill_depthwise_conv2d", "x");
  check_cpu_float(weight, "ppdistill_depthwise_conv2d", "weight");
  DwShape s = dw_shape(x, weight, stride_h, stride_w, pad_h, pad_w);
  auto out = paddle::empty({s.n, s.c, s.oh, s.ow}, paddle::DataType::FLOAT32, x.place());
  const float* xd = x.data<float>();
  const float* wd = weight.data<float>();
  float* od = out.data<float>();
  const bool stride1 = dw_stride1_fits(s.kh, s.kw, s.sh, s.sw, s.ph, s.pw);
  const PaddedPlane g(s.h, s.w, s.kh, s.kw);
  parallel_for(s.n * s.c, threads, [&](int64_t begin, int64_t end) {
    std::vector<float> pad(stride1 ? g.size() : 0);
    for (int64_t plane = begin; plane < end; ++plane) {
      const float* k = wd + (plane % s.c) * s.kh * s.kw;
      float* o = od + plane * s.oh * s.ow;
      if (stride1) {  // dw_stride1.h: register-held output blocks over a padded copy
        pad_plane(g, xd + plane * s.h * s.w, pad.data());
        dw_stride1_forward<1>(g, pad.data(), &k, &o);
      } else {
        dw_plane_forward(s, xd + plane * s.h * s.w, k, o);
      }
    }
  });
  return {out};
}

std::vector<paddle::Tensor> DepthwiseBackward(const paddle::Tensor& x, const paddle::Tensor& weight,
                                              const paddle::Tensor& grad_out, int stride_h,
                                              int stride_w, int pad_h, int pad_w, int threads) {
  DwShape s = dw_shape(x, weight, stride_h, stride_w, pad_h, pad_w);
  auto grad_x = paddle::empty(x.shape(), paddle::DataType::FLOAT32, x.place());
  auto grad_w = paddle::empty(weight.shape(), paddle::DataType::FLOAT32, x.place());
  const float* xd = x.data<float>();
  const float* wd = weight.data<float>();
  const float* gd = grad_out.data<float>();
  float* gxd = grad_x.data<float>();
  float* gwd = grad_w.data<float>();
  // One channel per task: its input-gradient planes and its kernel gradient (summed over the
  // batch in a fixed order) belong to that task only.
  const bool stride1 = dw_stride1_fits(s.kh, s.kw, s.sh, s.sw, s.ph, s.pw);
  const PaddedPlane padded(s.h, s.w, s.kh, s.kw);
  parallel_for(s.c, threads, [&](int64_t begin, int64_t end) {
    std::vector<double> acc(s.kh * s.kw);
    // stride 1: the padded input plane, then the padded output-gradient plane
    std::vector<float> pad(stride1 ? 2 * padded.size() : 0);
    for (int64_t ch = begin; ch < end; ++ch) {
      const float* k = wd + ch * s.kh * s.kw;
      std::fill(acc.begin(), acc.end(), 0.0);
      for (int64_t b = 0; b < s.n; ++b) {
        int64_t plane = b * s.c + ch;
        const float* in = xd + plane * s.h * s.w;
        const float* g = gd + plane * s.oh * s.ow;
        float* gx = gxd + plane * s.h * s.w;
        std::fill(gx, gx + s.h * s.w, 0.0f);
        if (stride1) {
          float* grad_pad = pad.data() + padded.size();
          pad_plane(padded, in, pad.data());
          pad_plane(padded, g, grad_pad);
          const float* grads[1] = {grad_pad};
          double* sums[1] = {acc.data()};
          dw_stride1_weight_grad<1>(padded, pad.data(), grads, sums);
          dw_stride1_input_grad<1>(padded, grads, &k, gx);
        } else {
          dw_plane_backward(s, in, k, g, gx, acc.data());
        }
      }
      for (int64_t t = 0; t < s.kh * s.kw; ++t) gwd[ch * s.kh * s.kw + t] = static_cast<float>(acc[t]);
    }
  });
  return {grad_x, grad_w};
}

// ---------------------------------------------------------------- batch norm + activation
enum Act { kNone = 0, kRelu = 1, kHardswish = 2 };

template <typename Body>
void with_activation(int act, Body body) {
  // The activation becomes a compile-time constant inside the loops, so they vectorise.
  if (act == kRelu) {
    body(std::integral_constant<int, kRelu>());
  } else if (act == kHardswish) {
    body(std::integral_constant<int, kHardswish>());
  } else {
    body(std::integral_constant<int, kNone>());
  }
}

inline float activate(float z, int act) {
  if (act == kRelu) return z > 0.0f ? z : 0.0f;
  if (act == kHardswish) return z * std::min(std::max(z + 3.0f, 0.0f), 6.0f) / 6.0f;
  return z;
}

// d act / dz with paddle's conventions at the kinks (relu: 0 at 0; hardswish: the quadratic
// branch on -3 < z < 3, 0 below, 1 from 3 up).
inline float activate_grad(float z, int act) {
  if (act == kRelu) return z > 0.0f ? 1.0f : 0.0f;
  if (act == kHardswish) {
    if (z + 3.0f <= 0.0f) return 0.0f;
    if (z + 3.0f >= 6.0f) return 1.0f;
    return (2.0f * z + 3.0f) / 6.0f;
  }
  return 1.0f;
}

struct BnShape {
  int64_t n, c, hw;
};

BnShape bn_shape(const paddle::Tensor& x) {
  auto xs = x.shape();
  PD_CHECK(xs.size() >= 2, "ppdistill_batch_norm_act: needs N, C, ... input");
  int64_t hw = 1;
  for (size_t i = 2; i < xs.size(); ++i) hw *= xs[i];
  return {xs[0], xs[1], hw};
}

std::vector<paddle::Tensor> BatchNormActForward(const paddle::Tensor& x, const paddle::Tensor& scale,
                                                const paddle::Tensor& bias,
                                                const paddle::Tensor& mean,
                                                const paddle::Tensor& variance, float momentum,
                                                float epsilon, int act, int threads) {
  check_cpu_float(x, "ppdistill_batch_norm_act", "x");
  BnShape s = bn_shape(x);
  auto y = paddle::empty(x.shape(), paddle::DataType::FLOAT32, x.place());
  auto saved_mean = paddle::empty({s.c}, paddle::DataType::FLOAT32, x.place());
  auto saved_inv_std = paddle::empty({s.c}, paddle::DataType::FLOAT32, x.place());
  auto mean_out = paddle::empty({s.c}, paddle::DataType::FLOAT32, x.place());
  auto variance_out = paddle::empty({s.c}, paddle::DataType::FLOAT32, x.place());
  const float* xd = x.data<float>();
  const float* gamma = scale.data<float>();
  const float* beta = bias.data<float>();
  const float* run_mean = mean.data<float>();
  const float* run_var = variance.data<float>();
  float* yd = y.data<float>();
  float* sm = saved_mean.data<float>();
  float* si = saved_inv_std.data<float>();
  float* mo = mean_out.data<float>();
  float* vo = variance_out.data<float>();
  parallel_for(s.c, threads, [&](int64_t begin, int64_t end) {
    for (int64_t ch = begin; ch < end; ++ch) {
      float mu, var;
      channel_mean_variance([&](int64_t b) { return xd + (b * s.c + ch) * s.hw; }, s.n, s.hw,
                            &mu, &var);
      const float inv_std = 1.0f / std::sqrt(var + epsilon);
      const float a = gamma[ch] * inv_std, c0 = beta[ch] - mu * a;
      with_activation(act, [&](auto tag) {
        constexpr int kAct = decltype(tag)::value;
        for (int64_t b = 0; b < s.n; ++b) {
          const float* p = xd + (b * s.c + ch) * s.hw;
          float* q = yd + (b * s.c + ch) * s.hw;
          for (int64_t t = 0; t < s.hw; ++t) q[t] = activate(p[t] * a + c0, kAct);
        }
      });
      sm[ch] = mu;
      si[ch] = inv_std;
      mo[ch] = run_mean[ch] * momentum + mu * (1.0f - momentum);
      vo[ch] = run_var[ch] * momentum + var * (1.0f - momentum);
    }
  });
  return {y, saved_mean, saved_inv_std, mean_out, variance_out};
}

std::vector<paddle::Tensor> BatchNormActBackward(const paddle::Tensor& x,
                                                 const paddle::Tensor& scale,
                                                 const paddle::Tensor& bias,
                                                 const paddle::Tensor& saved_mean,
                                                 const paddle::Tensor& saved_inv_std,
                                                 const paddle::Tensor& grad_y, int act,
                                                 int threads) {
  BnShape s = bn_shape(x);
  auto grad_x = paddle::empty(x.shape(), paddle::DataType::FLOAT32, x.place());
  auto grad_scale = paddle::empty({s.c}, paddle::DataType::FLOAT32, x.place());
  auto grad_bias = paddle::empty({s.c}, paddle::DataType::FLOAT32, x.place());
  const float* xd = x.data<float>();
  const float* gamma = scale.data<float>();
  const float* beta = bias.data<float>();
  const float* sm = saved_mean.data<float>();
  const float* si = saved_inv_std.data<float>();
  const float* gy = grad_y.data<float>();
  float* gx = grad_x.data<float>();
  float* gs = grad_scale.data<float>();
  float* gb = grad_bias.data<float>();
  const double count = static_cast<double>(s.n * s.hw);
  parallel_for(s.c, threads, [&](int64_t begin, int64_t end) {
    for (int64_t ch = begin; ch < end; ++ch) {
      const float mu = sm[ch], inv_std = si[ch], g = gamma[ch], be = beta[ch];
      double sum_dz = 0.0, sum_dz_xhat = 0.0;
      with_activation(act, [&](auto tag) {
        constexpr int kAct = decltype(tag)::value;
        for (int64_t b = 0; b < s.n; ++b) {
          const float* p = xd + (b * s.c + ch) * s.hw;
          const float* d = gy + (b * s.c + ch) * s.hw;
          float part_dz = 0.0f, part_dzx = 0.0f;
#pragma omp simd reduction(+ : part_dz, part_dzx)
          for (int64_t t = 0; t < s.hw; ++t) {
            float xhat = (p[t] - mu) * inv_std;
            float dz = d[t] * activate_grad(g * xhat + be, kAct);
            part_dz += dz;
            part_dzx += dz * xhat;
          }
          sum_dz += part_dz;
          sum_dz_xhat += part_dzx;
        }
      });
      gs[ch] = static_cast<float>(sum_dz_xhat);
      gb[ch] = static_cast<float>(sum_dz);
      const float mean_dz = static_cast<float>(sum_dz / count);
      const float mean_dzx = static_cast<float>(sum_dz_xhat / count);
      const float k = g * inv_std;
      with_activation(act, [&](auto tag) {
        constexpr int kAct = decltype(tag)::value;
        for (int64_t b = 0; b < s.n; ++b) {
          const float* p = xd + (b * s.c + ch) * s.hw;
          const float* d = gy + (b * s.c + ch) * s.hw;
          float* q = gx + (b * s.c + ch) * s.hw;
          for (int64_t t = 0; t < s.hw; ++t) {
            float xhat = (p[t] - mu) * inv_std;
            float dz = d[t] * activate_grad(g * xhat + be, kAct);
            q[t] = k * (dz - mean_dz - xhat * mean_dzx);
          }
        }
      });
    }
  });
  return {grad_x, grad_scale, grad_bias};
}


// ------------------------------------------------- mutual-learning (DML) loss on softmax rows
// S = sum over rows and classes of  q (log(q + eps) - log p) + p (log(p + eps) - log q),
// p = softmax(x) + eps, q = softmax(y) + eps: the sum inside PaddleOCR's DMLLoss(act=softmax,
// use_log=True), which divides it by 2 * batch. Its backward recomputes the softmaxes from the
// logits, so nothing but x and y is kept (autograd through paddle ops keeps ~10 tensors of the
// logits' size).
struct RowShape {
  int64_t rows, classes;
};

RowShape row_shape(const paddle::Tensor& x, const paddle::Tensor& y) {
  PD_CHECK(x.shape() == y.shape(), "ppdistill_dml_softmax: both inputs need the same shape");
  auto xs = x.shape();
  PD_CHECK(!xs.empty() && xs.back() > 0, "ppdistill_dml_softmax: empty class axis");
  return {x.numel() / xs.back(), xs.back()};
}

void softmax_row(const float* in, int64_t k, float* out) {
  float top = in[0];
  for (int64_t j = 1; j < k; ++j) top = std::max(top, in[j]);
  float total = 0.0f;
  for (int64_t j = 0; j < k; ++j) {
    out[j] = std::exp(in[j] - top);
    total += out[j];
  }
  const float inv = 1.0f / total;
  for (int64_t j = 0; j < k; ++j) out[j] *= inv;
}

std::vector<paddle::Tensor> DmlSoftmaxForward(const paddle::Tensor& x, const paddle::Tensor& y,
                                              float eps, int threads) {
  check_cpu_float(x, "ppdistill_dml_softmax", "x");
  check_cpu_float(y, "ppdistill_dml_softmax", "y");
  RowShape s = row_shape(x, y);
  auto loss = paddle::empty({1}, paddle::DataType::FLOAT32, x.place());
  const float* xd = x.data<float>();
  const float* yd = y.data<float>();
  std::vector<double> partial(static_cast<size_t>(std::max(1, threads)), 0.0);
  int workers = static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(threads, s.rows)));
  int64_t chunk = (s.rows + workers - 1) / workers;
  parallel_for(workers, workers, [&](int64_t begin, int64_t end) {
    std::vector<float> p(s.classes), q(s.classes);
    for (int64_t w = begin; w < end; ++w) {
      double acc = 0.0;
      for (int64_t r = w * chunk; r < std::min(s.rows, (w + 1) * chunk); ++r) {
        softmax_row(xd + r * s.classes, s.classes, p.data());
        softmax_row(yd + r * s.classes, s.classes, q.data());
        double row = 0.0;
        for (int64_t j = 0; j < s.classes; ++j) {
          const float pj = p[j] + eps, qj = q[j] + eps;
          row += qj * (std::log(qj + eps) - std::log(pj)) + pj * (std::log(pj + eps) - std::log(qj));
        }
        acc += row;
      }
      partial[w] = acc;
    }
  });
  double total = 0.0;
  for (int w = 0; w < workers; ++w) total += partial[w];
  loss.data<float>()[0] = static_cast<float>(total);
  return {loss};
}

std::vector<paddle::Tensor> DmlSoftmaxBackward(const paddle::Tensor& x, const paddle::Tensor& y,
                                               const paddle::Tensor& grad_loss, float eps,
                                               int threads) {
  RowShape s = row_shape(x, y);
  auto grad_x = paddle::empty(x.shape(), paddle::DataType::FLOAT32, x.place());
  auto grad_y = paddle::empty(y.shape(), paddle::DataType::FLOAT32, y.place());
  const float* xd = x.data<float>();
  const float* yd = y.data<float>();
  const float scale = grad_loss.data<float>()[0];
  float* gxd = grad_x.data<float>();
  float* gyd = grad_y.data<float>();
  parallel_for(s.rows, threads, [&](int64_t begin, int64_t end) {
    std::vector<float> p(s.classes), q(s.classes);
    for (int64_t r = begin; r < end; ++r) {
      softmax_row(xd + r * s.classes, s.classes, p.data());
      softmax_row(yd + r * s.classes, s.classes, q.data());
      float* gx = gxd + r * s.classes;
      float* gy = gyd + r * s.classes;
      float dot_x = 0.0f, dot_y = 0.0f;
      for (int64_t j = 0; j < s.classes; ++j) {
        const float pj = p[j] + eps, qj = q[j] + eps;
        const float log_p = std::log(pj), log_q = std::log(qj);
        // dS/dp and dS/dq per element (p and q are the softmaxes plus eps)
        gx[j] = scale * (std::log(pj + eps) + pj / (pj + eps) - log_q - qj / pj);
        gy[j] = scale * (std::log(qj + eps) + qj / (qj + eps) - log_p - pj / qj);
        dot_x += p[j] * gx[j];
        dot_y += q[j] * gy[j];
      }
      // through the softmax: g_x = s * (g - <s, g>)
      for (int64_t j = 0; j < s.classes; ++j) {
        gx[j] = p[j] * (gx[j] - dot_x);
        gy[j] = q[j] * (gy[j] - dot_y);
      }
    }
  });
  return {grad_x, grad_y};
}

}  // namespace

// Plain operators (no autograd links): ppdistill/ops/functional.py wires them into paddle's
// autograd with a PyLayer that recomputes the convolution in backward.
PD_BUILD_OP(ppdistill_depthwise_conv2d_forward)
    .Inputs({"X", "W"})
    .Outputs({"Out"})
    .Attrs({"stride_h: int", "stride_w: int", "pad_h: int", "pad_w: int", "threads: int"})
    .SetKernelFn(PD_KERNEL(DepthwiseForward));

PD_BUILD_OP(ppdistill_depthwise_conv2d_backward)
    .Inputs({"X", "W", "GradOut"})
    .Outputs({"GradX", "GradW"})
    .Attrs({"stride_h: int", "stride_w: int", "pad_h: int", "pad_w: int", "threads: int"})
    .SetKernelFn(PD_KERNEL(DepthwiseBackward));

PD_BUILD_OP(ppdistill_batch_norm_act_forward)
    .Inputs({"X", "Scale", "Bias", "Mean", "Variance"})
    .Outputs({"Y", "SavedMean", "SavedInvStd", "MeanOut", "VarianceOut"})
    .Attrs({"momentum: float", "epsilon: float", "act: int", "threads: int"})
    .SetKernelFn(PD_KERNEL(BatchNormActForward));

PD_BUILD_OP(ppdistill_batch_norm_act_backward)
    .Inputs({"X", "Scale", "Bias", "SavedMean", "SavedInvStd", "GradY"})
    .Outputs({"GradX", "GradScale", "GradBias"})
    .Attrs({"act: int", "threads: int"})
    .SetKernelFn(PD_KERNEL(BatchNormActBackward));

PD_BUILD_OP(ppdistill_dml_softmax_forward)
    .Inputs({"X", "Y"})
    .Outputs({"Loss"})
    .Attrs({"eps: float", "threads: int"})
    .SetKernelFn(PD_KERNEL(DmlSoftmaxForward));

PD_BUILD_OP(ppdistill_dml_softmax_backward)
    .Inputs({"X", "Y", "GradLoss"})
    .Outputs({"GradX", "GradY"})
    .Attrs({"eps: float", "threads: int"})
    .SetKernelFn(PD_KERNEL(DmlSoftmaxBackward));

