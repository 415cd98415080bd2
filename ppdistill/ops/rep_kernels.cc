// PP-LCNetV3's LearnableRepLayer in training form (paddle custom operators, compiled with
// cpu_kernels.cc by ppdistill/ops/loader.py; the autograd node is ppdistill/ops/rep_layer.py).
//
// The layer sums J branches, BN_j(conv_j(x)) for M stacked conv branches (B k x k convs and,
// for k > 1, a 1x1 conv) plus, when in == out and stride 1, an identity BN_J(x); then
//   u = ls * s + lb,   y = as * hardswish(u) + ab   (or y = u without act);  Lab = [ls, lb, as, ab]
// BatchNorms use batch statistics; running mean / variance are updated as paddle's BatchNorm
// (momentum, biased batch variance), like ppdistill_batch_norm_act.
//
//   ppdistill_rep_dw   : depthwise layers. Per channel (one thread owns a channel), every
//                        branch conv of every image goes into a per-thread scratch buffer (the
//                        input plane is read once for all branches), then statistics, sum and
//                        activations. Backward recomputes the convs into the scratch, turns
//                        them in place into their gradients and runs the depthwise backward.
//                        At stride 1 the k x k branches go through dw_stride1.h (a padded
//                        copy of the plane, register-held blocks, up to 4 branches per pass).
//                        No tensor of the stacked branch outputs is ever allocated.
//   ppdistill_rep_bn_act : pointwise layers, whose branch convs are one GEMM (paddle's):
//                        the same BN / sum / activation math on the stacked Z [N, M*C, H, W].
#include <algorithm>
#include <cmath>
#include <vector>

#include "dw_stride1.h"
#include "kernels_common.h"

namespace {

using ppdistill_kernels::channel_mean;
using ppdistill_kernels::channel_mean_variance;
using ppdistill_kernels::DwShape;
using ppdistill_kernels::check_cpu_float;
using ppdistill_kernels::dw_plane_backward;
using ppdistill_kernels::dw_plane_forward;
using ppdistill_kernels::dw_stride1_fits;
using ppdistill_kernels::dw_stride1_forward;
using ppdistill_kernels::dw_stride1_input_grad;
using ppdistill_kernels::dw_stride1_weight_grad;
using ppdistill_kernels::for_kernel_groups;
using ppdistill_kernels::pad_plane;
using ppdistill_kernels::PaddedPlane;
using ppdistill_kernels::lab_act_backward;
using ppdistill_kernels::lab_act_forward;
using ppdistill_kernels::parallel_for;

struct RepShape {
  int64_t n, c, hw, m, j;  // images, channels, pixels per plane, conv branches, all branches
};

// The BN parameters / statistics of the layer, J * C values each, branch-major.
struct RepParams {
  const float* gamma;
  const float* beta;
  const float* lab;
  int act;
};

// Forward of one channel. plane(j, b) is branch j's plane of image b (hw floats). Writes the
// batch statistics, the running-statistics update and y's planes of this channel.
template <typename Planes>
void rep_channel_forward(const RepShape& s, const RepParams& p, Planes plane, int64_t ch,
                         const float* run_mean, const float* run_var, float momentum,
                         float epsilon, float* sm, float* si, float* mo, float* vo, float* yd,
                         std::vector<float>* a) {
  float offset = 0.0f;
  for (int64_t j = 0; j < s.j; ++j) {
    float mu, var;
    channel_mean_variance([&](int64_t b) { return plane(j, b); }, s.n, s.hw, &mu, &var);
    const float inv_std = 1.0f / std::sqrt(var + epsilon);
    const int64_t k = j * s.c + ch;
    (*a)[j] = p.gamma[k] * inv_std;
    offset += p.beta[k] - mu * (*a)[j];
    sm[k] = mu;
    si[k] = inv_std;
    mo[k] = run_mean[k] * momentum + mu * (1.0f - momentum);
    vo[k] = run_var[k] * momentum + var * (1.0f - momentum);
  }
  for (int64_t b = 0; b < s.n; ++b) {
    float* q = yd + (b * s.c + ch) * s.hw;
    std::fill(q, q + s.hw, offset);
    for (int64_t j = 0; j < s.j; ++j) {
      const float* z = plane(j, b);
      const float aj = (*a)[j];
#pragma omp simd
      for (int64_t t = 0; t < s.hw; ++t) q[t] += aj * z[t];
    }
    lab_act_forward(q, q, s.hw, p.lab, p.act);
  }
}

// Per-thread work buffers of the backward.
struct RepScratch {
  std::vector<float> a, gsum, mean_gx;
  std::vector<double> dot;
  explicit RepScratch(const RepShape& s) : a(s.j), gsum(s.n * s.hw), mean_gx(s.j), dot(s.j) {}
};

// Backward of one channel: grad_plane(j, b) receives branch j's input gradient (it may be
// plane(j, b) itself: each element is read before it is written). Also writes the BN weight /
// bias gradients and the channel's 4 affine-gradient parts.
template <typename Planes, typename GradPlanes>
void rep_channel_backward(const RepShape& s, const RepParams& p, Planes plane,
                          GradPlanes grad_plane, int64_t ch, const float* sm, const float* si,
                          const float* gy, float* gs_out, float* gb_out, float* lp,
                          RepScratch* w) {
  const double count = static_cast<double>(s.n * s.hw);
  float offset = 0.0f;
  for (int64_t j = 0; j < s.j; ++j) {
    const int64_t k = j * s.c + ch;
    w->a[j] = p.gamma[k] * si[k];
    offset += p.beta[k] - sm[k] * w->a[j];
  }
  double g_ls = 0.0, g_lb = 0.0, g_as = 0.0, g_ab = 0.0, sum_g = 0.0;
  std::fill(w->dot.begin(), w->dot.end(), 0.0);
  for (int64_t b = 0; b < s.n; ++b) {
    float* q = w->gsum.data() + b * s.hw;  // first the branch sum, then its gradient
    std::fill(q, q + s.hw, offset);
    for (int64_t j = 0; j < s.j; ++j) {
      const float* z = plane(j, b);
      const float aj = w->a[j];
#pragma omp simd
      for (int64_t t = 0; t < s.hw; ++t) q[t] += aj * z[t];
    }
    float part4[4];
    lab_act_backward(q, gy + (b * s.c + ch) * s.hw, q, s.hw, p.lab, p.act, part4);
    g_ls += part4[0];
    g_lb += part4[1];
    g_as += part4[2];
    g_ab += part4[3];
    // while this image's planes are cache-hot: the sums of g and of g * xhat_j
    float part = 0.0f;
#pragma omp simd reduction(+ : part)
    for (int64_t t = 0; t < s.hw; ++t) part += q[t];
    sum_g += part;
    for (int64_t j = 0; j < s.j; ++j) {
      const float* z = plane(j, b);
      const float mu = sm[j * s.c + ch], inv_std = si[j * s.c + ch];
      float part_x = 0.0f;
#pragma omp simd reduction(+ : part_x)
      for (int64_t t = 0; t < s.hw; ++t) part_x += q[t] * ((z[t] - mu) * inv_std);
      w->dot[j] += part_x;
    }
  }
  lp[ch * 4 + 0] = static_cast<float>(g_ls);
  lp[ch * 4 + 1] = static_cast<float>(g_lb);
  lp[ch * 4 + 2] = static_cast<float>(g_as);
  lp[ch * 4 + 3] = static_cast<float>(g_ab);
  const float mean_g = static_cast<float>(sum_g / count);
  for (int64_t j = 0; j < s.j; ++j) {
    const int64_t k = j * s.c + ch;
    gs_out[k] = static_cast<float>(w->dot[j]);
    gb_out[k] = static_cast<float>(sum_g);
    w->mean_gx[j] = static_cast<float>(w->dot[j] / count);
  }
  // grad of branch j: gamma_j inv_std_j (g - mean(g) - xhat_j mean(g xhat_j))
  for (int64_t b = 0; b < s.n; ++b) {
    const float* q = w->gsum.data() + b * s.hw;
    for (int64_t j = 0; j < s.j; ++j) {
      const int64_t k = j * s.c + ch;
      const float mu = sm[k], inv_std = si[k], kj = p.gamma[k] * inv_std, mgx = w->mean_gx[j];
      const float* z = plane(j, b);
      float* out = grad_plane(j, b);
#pragma omp simd
      for (int64_t t = 0; t < s.hw; ++t) {
        out[t] = kj * (q[t] - mean_g - (z[t] - mu) * inv_std * mgx);
      }
    }
  }
}

struct RepOutputs {
  paddle::Tensor saved_mean, saved_inv_std, mean_out, variance_out;
  explicit RepOutputs(int64_t count, const paddle::Place& place)
      : saved_mean(paddle::empty({count}, paddle::DataType::FLOAT32, place)),
        saved_inv_std(paddle::empty({count}, paddle::DataType::FLOAT32, place)),
        mean_out(paddle::empty({count}, paddle::DataType::FLOAT32, place)),
        variance_out(paddle::empty({count}, paddle::DataType::FLOAT32, place)) {}
};

void check_bn_sizes(const RepShape& s, const paddle::Tensor& scale, const char* op) {
  PD_CHECK(scale.numel() == s.j * s.c, op, ": ", s.j * s.c, " BN values expected, got ",
           scale.numel());
}

// ----------------------------------------------------------------- depthwise layers
// X [N, C, H, W]; W [M_kxk * C, 1, kh, kw] (k x k branches stacked); W1 [C, 1, 1, 1] (the 1x1
// branch, used when with_1x1). Branch order: k x k branches, the 1x1 branch, the identity.
struct DwRep {
  DwShape s, s1;  // the k x k convs, the 1x1 conv
  RepShape r;
  int64_t kxk, kk;
  bool stride1;  // the k x k convs take dw_stride1.h's register-blocked loops
  PaddedPlane padded() const { return PaddedPlane(s.h, s.w, s.kh, s.kw); }
  // per-thread buffer: the padded input plane (backward: every image's, kept from the convs'
  // recomputation for the gradients), then (backward) each k x k branch's padded gradient plane
  int64_t pad_floats(bool backward) const {
    return stride1 ? padded().size() * (backward ? r.n + kxk : 1) : 0;
  }
};

DwRep dw_rep(const paddle::Tensor& x, const paddle::Tensor& w, int stride_h, int stride_w,
             int pad_h, int pad_w, int with_1x1, int identity) {
  auto xs = x.shape();
  auto ws = w.shape();
  PD_CHECK(xs.size() == 4 && ws.size() == 4 && ws[1] == 1 && ws[0] % xs[1] == 0,
           "ppdistill_rep_dw: needs NCHW input and [M*C, 1, kh, kw] weights");
  DwRep d;
  const int64_t c = xs[1];
  d.kxk = ws[0] / c;
  d.kk = ws[2] * ws[3];
  d.s = DwShape{xs[0], c, xs[2], xs[3], ws[2], ws[3], 0, 0, stride_h, stride_w, pad_h, pad_w};
  d.s.oh = (d.s.h + 2 * pad_h - d.s.kh) / stride_h + 1;
  d.s.ow = (d.s.w + 2 * pad_w - d.s.kw) / stride_w + 1;
  d.s1 = DwShape{xs[0], c, xs[2], xs[3], 1, 1, (xs[2] - 1) / stride_h + 1,
                 (xs[3] - 1) / stride_w + 1, stride_h, stride_w, 0, 0};
  PD_CHECK(d.s.oh > 0 && d.s.ow > 0, "ppdistill_rep_dw: empty output");
  PD_CHECK(!with_1x1 || (d.s1.oh == d.s.oh && d.s1.ow == d.s.ow),
           "ppdistill_rep_dw: the 1x1 branch does not fit the k x k branches");
  PD_CHECK(!identity || (d.s.oh == d.s.h && d.s.ow == d.s.w),
           "ppdistill_rep_dw: an identity branch needs an output of the input's size");
  d.stride1 = dw_stride1_fits(d.s.kh, d.s.kw, stride_h, stride_w, pad_h, pad_w);
  const int64_t m = d.kxk + (with_1x1 ? 1 : 0);
  d.r = RepShape{d.s.n, c, d.s.oh * d.s.ow, m, m + (identity ? 1 : 0)};
  return d;
}

// Every conv branch of channel ch, all images, into scratch [M][N][oh*ow]. When d.stride1,
// image b's padded input plane goes to pad + b * pad_step (pad_step 0: one reused plane).
void dw_branches(const DwRep& d, const float* xd, const float* wd, const float* w1d, int64_t ch,
                 float* scratch, float* pad, int64_t pad_step) {
  const RepShape& r = d.r;
  for (int64_t b = 0; b < r.n; ++b) {
    const float* in = xd + (b * r.c + ch) * d.s.h * d.s.w;  // read by every branch, cache-hot
    if (d.stride1) {
      const PaddedPlane g = d.padded();
      float* padded_in = pad + b * pad_step;
      pad_plane(g, in, padded_in);
      for_kernel_groups(d.kxk, [&](auto group, int64_t first) {
        constexpr int kGroup = decltype(group)::value;
        const float* kern[kGroup];
        float* out[kGroup];
        for (int q = 0; q < kGroup; ++q) {
          kern[q] = wd + ((first + q) * r.c + ch) * d.kk;
          out[q] = scratch + ((first + q) * r.n + b) * r.hw;
        }
        dw_stride1_forward<kGroup>(g, padded_in, kern, out);
      });
    } else {
      for (int64_t br = 0; br < d.kxk; ++br) {
        dw_plane_forward(d.s, in, wd + (br * r.c + ch) * d.kk, scratch + (br * r.n + b) * r.hw);
      }
    }
    if (r.m > d.kxk) dw_plane_forward(d.s1, in, w1d + ch, scratch + (d.kxk * r.n + b) * r.hw);
  }
}

// Backward of the k x k branches of channel ch, image b, stride 1: the branch gradients are in
// scratch, every image's padded input plane at the start of pad (dw_branches); adds into gx and
// acc (kxk * kk doubles).
void dw_stride1_branches_backward(const DwRep& d, const float* wd, int64_t ch, int64_t b,
                                  const float* scratch, float* pad, float* gx, double* acc) {
  const RepShape& r = d.r;
  const PaddedPlane g = d.padded();
  const float* padded_in = pad + b * g.size();
  float* grad_pads = pad + r.n * g.size();
  for (int64_t br = 0; br < d.kxk; ++br) {
    pad_plane(g, scratch + (br * r.n + b) * r.hw, grad_pads + br * g.size());
  }
  for_kernel_groups(d.kxk, [&](auto group, int64_t first) {
    constexpr int kGroup = decltype(group)::value;
    const float* kern[kGroup];
    const float* grads[kGroup];
    double* sums[kGroup];
    for (int q = 0; q < kGroup; ++q) {
      kern[q] = wd + ((first + q) * r.c + ch) * d.kk;
      grads[q] = grad_pads + (first + q) * g.size();
      sums[q] = acc + (first + q) * d.kk;
    }
    dw_stride1_weight_grad<kGroup>(g, padded_in, grads, sums);
    dw_stride1_input_grad<kGroup>(g, grads, kern, gx);
  });
}

std::vector<paddle::Tensor> RepDwForward(const paddle::Tensor& x, const paddle::Tensor& w,
                                         const paddle::Tensor& w1, const paddle::Tensor& scale,
                                         const paddle::Tensor& bias, const paddle::Tensor& mean,
                                         const paddle::Tensor& variance, const paddle::Tensor& lab,
                                         int stride_h, int stride_w, int pad_h, int pad_w,
                                         int with_1x1, int identity, float momentum,
                                         float epsilon, int act, int threads) {
  check_cpu_float(x, "ppdistill_rep_dw", "x");
  check_cpu_float(w, "ppdistill_rep_dw", "weight");
  DwRep d = dw_rep(x, w, stride_h, stride_w, pad_h, pad_w, with_1x1, identity);
  const RepShape& r = d.r;
  check_bn_sizes(r, scale, "ppdistill_rep_dw");
  auto y = paddle::empty({r.n, r.c, d.s.oh, d.s.ow}, paddle::DataType::FLOAT32, x.place());
  RepOutputs o(r.j * r.c, x.place());
  const float* xd = x.data<float>();
  const float* wd = w.data<float>();
  const float* w1d = with_1x1 ? w1.data<float>() : nullptr;
  const RepParams p{scale.data<float>(), bias.data<float>(), lab.data<float>(), act};
  parallel_for(r.c, threads, [&](int64_t begin, int64_t end) {
    std::vector<float> scratch(r.m * r.n * r.hw), a(r.j), pad(d.pad_floats(false));
    auto plane = [&](int64_t j, int64_t b) -> const float* {
      return j < r.m ? scratch.data() + (j * r.n + b) * r.hw : nullptr;
    };
    for (int64_t ch = begin; ch < end; ++ch) {
      dw_branches(d, xd, wd, w1d, ch, scratch.data(), pad.data(), 0);
      auto planes = [&](int64_t j, int64_t b) -> const float* {
        return j < r.m ? plane(j, b) : xd + (b * r.c + ch) * r.hw;
      };
      rep_channel_forward(r, p, planes, ch, mean.data<float>(), variance.data<float>(), momentum,
                          epsilon, o.saved_mean.data<float>(), o.saved_inv_std.data<float>(),
                          o.mean_out.data<float>(), o.variance_out.data<float>(),
                          y.data<float>(), &a);
    }
  });
  return {y, o.saved_mean, o.saved_inv_std, o.mean_out, o.variance_out};
}

// Gradients of x, the stacked k x k weights, the 1x1 weight ([1] without one), every BN
// weight / bias, and LabPartials [C, 4] (per-channel parts of the affine gradients).
std::vector<paddle::Tensor> RepDwBackward(const paddle::Tensor& x, const paddle::Tensor& w,
                                          const paddle::Tensor& w1, const paddle::Tensor& scale,
                                          const paddle::Tensor& bias,
                                          const paddle::Tensor& saved_mean,
                                          const paddle::Tensor& saved_inv_std,
                                          const paddle::Tensor& lab, const paddle::Tensor& grad_y,
                                          int stride_h, int stride_w, int pad_h, int pad_w,
                                          int with_1x1, int identity, int act, int threads) {
  DwRep d = dw_rep(x, w, stride_h, stride_w, pad_h, pad_w, with_1x1, identity);
  const RepShape& r = d.r;
  check_bn_sizes(r, scale, "ppdistill_rep_dw_backward");
  PD_CHECK(grad_y.numel() == r.n * r.c * r.hw, "ppdistill_rep_dw_backward: gradient of the "
           "wrong size");
  auto grad_x = paddle::empty(x.shape(), paddle::DataType::FLOAT32, x.place());
  auto grad_w = paddle::empty(w.shape(), paddle::DataType::FLOAT32, x.place());
  auto grad_w1 = paddle::empty({with_1x1 ? r.c : 1, 1, 1, 1}, paddle::DataType::FLOAT32,
                               x.place());
  auto grad_scale = paddle::empty({r.j * r.c}, paddle::DataType::FLOAT32, x.place());
  auto grad_bias = paddle::empty({r.j * r.c}, paddle::DataType::FLOAT32, x.place());
  auto lab_partials = paddle::empty({r.c, 4}, paddle::DataType::FLOAT32, x.place());
  const float* xd = x.data<float>();
  const float* wd = w.data<float>();
  const float* w1d = with_1x1 ? w1.data<float>() : nullptr;
  float* gxd = grad_x.data<float>();
  float* gwd = grad_w.data<float>();
  float* gw1d = grad_w1.data<float>();
  const RepParams p{scale.data<float>(), bias.data<float>(), lab.data<float>(), act};
  const int64_t in_plane = d.s.h * d.s.w;
  if (!with_1x1) gw1d[0] = 0.0f;
  parallel_for(r.c, threads, [&](int64_t begin, int64_t end) {
    std::vector<float> scratch(r.m * r.n * r.hw), pad(d.pad_floats(true));
    std::vector<double> acc(r.m * d.kk);
    RepScratch work(r);
    for (int64_t ch = begin; ch < end; ++ch) {
      dw_branches(d, xd, wd, w1d, ch, scratch.data(), pad.data(), d.padded().size());
      auto planes = [&](int64_t j, int64_t b) -> const float* {
        return j < r.m ? scratch.data() + (j * r.n + b) * r.hw : xd + (b * r.c + ch) * r.hw;
      };
      // conv branches: their gradients replace their outputs in the scratch; the identity's
      // goes straight into grad_x (whose planes the conv backward then adds to)
      auto grad_planes = [&](int64_t j, int64_t b) -> float* {
        return j < r.m ? scratch.data() + (j * r.n + b) * r.hw : gxd + (b * r.c + ch) * r.hw;
      };
      if (!identity) {
        for (int64_t b = 0; b < r.n; ++b) {
          std::fill(gxd + (b * r.c + ch) * in_plane, gxd + (b * r.c + ch + 1) * in_plane, 0.0f);
        }
      }
      rep_channel_backward(r, p, planes, grad_planes, ch, saved_mean.data<float>(),
                           saved_inv_std.data<float>(), grad_y.data<float>(),
                           grad_scale.data<float>(), grad_bias.data<float>(),
                           lab_partials.data<float>(), &work);
      std::fill(acc.begin(), acc.end(), 0.0);
      // The 1x1 branch's weight gradient sum_p g(p) x(p) at stride 1 as sum_p g(p) (x(p) - xbar):
      // its BN gradient g sums to 0, so the two are equal, but in float32 the rounding of sum g
      // times the channel mean would dominate on inputs with a large mean.
      const bool centred_1x1 = with_1x1 && d.stride1;
      const float xbar = centred_1x1 ? channel_mean([&](int64_t b) {
        return xd + (b * r.c + ch) * in_plane;
      }, r.n, in_plane) : 0.0f;
      for (int64_t b = 0; b < r.n; ++b) {
        const float* in = xd + (b * r.c + ch) * in_plane;
        float* gx = gxd + (b * r.c + ch) * in_plane;
        if (d.stride1) {
          dw_stride1_branches_backward(d, wd, ch, b, scratch.data(), pad.data(), gx,
                                       acc.data());
        } else {
          for (int64_t br = 0; br < d.kxk; ++br) {
            dw_plane_backward(d.s, in, wd + (br * r.c + ch) * d.kk,
                              scratch.data() + (br * r.n + b) * r.hw, gx, &acc[br * d.kk]);
          }
        }
        if (centred_1x1) {
          const float* g1 = scratch.data() + (d.kxk * r.n + b) * r.hw;
          const float w1 = w1d[ch];
          float dot = 0.0f;
#pragma omp simd reduction(+ : dot)
          for (int64_t t = 0; t < in_plane; ++t) {
            gx[t] += w1 * g1[t];
            dot += g1[t] * (in[t] - xbar);
          }
          acc[d.kxk * d.kk] += dot;
        } else if (with_1x1) {
          dw_plane_backward(d.s1, in, w1d + ch, scratch.data() + (d.kxk * r.n + b) * r.hw, gx,
                            &acc[d.kxk * d.kk]);
        }
      }
      for (int64_t br = 0; br < d.kxk; ++br) {
        for (int64_t t = 0; t < d.kk; ++t) {
          gwd[(br * r.c + ch) * d.kk + t] = static_cast<float>(acc[br * d.kk + t]);
        }
      }
      if (with_1x1) gw1d[ch] = static_cast<float>(acc[d.kxk * d.kk]);
    }
  });
  return {grad_x, grad_w, grad_w1, grad_scale, grad_bias, lab_partials};
}

// ----------------------------------------------------------------- pointwise layers
// Z [N, M * C, H, W]: branch m's conv output is channels m*C .. m*C+C-1; X [N, C, H, W] is the
// identity branch's input (read only with identity).
RepShape z_rep(const paddle::Tensor& z, const paddle::Tensor& x, const paddle::Tensor& scale,
               int branches, int identity, const char* op) {
  auto zs = z.shape();
  PD_CHECK(zs.size() == 4 && branches > 0 && zs[1] % branches == 0, op,
           ": Z must be [N, branches * C, H, W]");
  RepShape r{zs[0], zs[1] / branches, zs[2] * zs[3], branches, branches + (identity ? 1 : 0)};
  check_bn_sizes(r, scale, op);
  PD_CHECK(!identity || x.numel() == r.n * r.c * r.hw, op, ": the identity input must be "
           "[N, C, H, W] like one branch");
  return r;
}

std::vector<paddle::Tensor> RepBnActForward(const paddle::Tensor& z, const paddle::Tensor& x,
                                            const paddle::Tensor& scale, const paddle::Tensor& bias,
                                            const paddle::Tensor& mean,
                                            const paddle::Tensor& variance,
                                            const paddle::Tensor& lab, float momentum,
                                            float epsilon, int branches, int identity, int act,
                                            int threads) {
  check_cpu_float(z, "ppdistill_rep_bn_act", "z");
  RepShape r = z_rep(z, x, scale, branches, identity, "ppdistill_rep_bn_act");
  auto y = paddle::empty({r.n, r.c, z.shape()[2], z.shape()[3]}, paddle::DataType::FLOAT32,
                         z.place());
  RepOutputs o(r.j * r.c, z.place());
  const float* zd = z.data<float>();
  const float* xd = identity ? x.data<float>() : nullptr;
  const RepParams p{scale.data<float>(), bias.data<float>(), lab.data<float>(), act};
  parallel_for(r.c, threads, [&](int64_t begin, int64_t end) {
    std::vector<float> a(r.j);
    for (int64_t ch = begin; ch < end; ++ch) {
      auto planes = [&](int64_t j, int64_t b) -> const float* {
        return j < r.m ? zd + ((b * r.m + j) * r.c + ch) * r.hw : xd + (b * r.c + ch) * r.hw;
      };
      rep_channel_forward(r, p, planes, ch, mean.data<float>(), variance.data<float>(), momentum,
                          epsilon, o.saved_mean.data<float>(), o.saved_inv_std.data<float>(),
                          o.mean_out.data<float>(), o.variance_out.data<float>(),
                          y.data<float>(), &a);
    }
  });
  return {y, o.saved_mean, o.saved_inv_std, o.mean_out, o.variance_out};
}

// GradZ, GradXIdentity (the identity BN's input; [1] without one), GradScale, GradBias and
// LabPartials [C, 4].
std::vector<paddle::Tensor> RepBnActBackward(const paddle::Tensor& z, const paddle::Tensor& x,
                                             const paddle::Tensor& scale,
                                             const paddle::Tensor& bias,
                                             const paddle::Tensor& saved_mean,
                                             const paddle::Tensor& saved_inv_std,
                                             const paddle::Tensor& lab,
                                             const paddle::Tensor& grad_y, int branches,
                                             int identity, int act, int threads) {
  RepShape r = z_rep(z, x, scale, branches, identity, "ppdistill_rep_bn_act_backward");
  PD_CHECK(grad_y.numel() == r.n * r.c * r.hw, "ppdistill_rep_bn_act_backward: gradient of "
           "the wrong size");
  auto grad_z = paddle::empty(z.shape(), paddle::DataType::FLOAT32, z.place());
  auto grad_xid = identity ? paddle::empty(x.shape(), paddle::DataType::FLOAT32, z.place())
                           : paddle::empty({1}, paddle::DataType::FLOAT32, z.place());
  auto grad_scale = paddle::empty({r.j * r.c}, paddle::DataType::FLOAT32, z.place());
  auto grad_bias = paddle::empty({r.j * r.c}, paddle::DataType::FLOAT32, z.place());
  auto lab_partials = paddle::empty({r.c, 4}, paddle::DataType::FLOAT32, z.place());
  const float* zd = z.data<float>();
  const float* xd = identity ? x.data<float>() : nullptr;
  float* gzd = grad_z.data<float>();
  float* gxid = grad_xid.data<float>();
  if (!identity) gxid[0] = 0.0f;
  const RepParams p{scale.data<float>(), bias.data<float>(), lab.data<float>(), act};
  parallel_for(r.c, threads, [&](int64_t begin, int64_t end) {
    RepScratch work(r);
    for (int64_t ch = begin; ch < end; ++ch) {
      auto planes = [&](int64_t j, int64_t b) -> const float* {
        return j < r.m ? zd + ((b * r.m + j) * r.c + ch) * r.hw : xd + (b * r.c + ch) * r.hw;
      };
      auto grad_planes = [&](int64_t j, int64_t b) -> float* {
        return j < r.m ? gzd + ((b * r.m + j) * r.c + ch) * r.hw : gxid + (b * r.c + ch) * r.hw;
      };
      rep_channel_backward(r, p, planes, grad_planes, ch, saved_mean.data<float>(),
                           saved_inv_std.data<float>(), grad_y.data<float>(),
                           grad_scale.data<float>(), grad_bias.data<float>(),
                           lab_partials.data<float>(), &work);
    }
  });
  return {grad_z, grad_xid, grad_scale, grad_bias, lab_partials};
}

}  // namespace

PD_BUILD_OP(ppdistill_rep_dw_forward)
    .Inputs({"X", "W", "W1", "Scale", "Bias", "Mean", "Variance", "Lab"})
    .Outputs({"Y", "SavedMean", "SavedInvStd", "MeanOut", "VarianceOut"})
    .Attrs({"stride_h: int", "stride_w: int", "pad_h: int", "pad_w: int", "with_1x1: int",
            "identity: int", "momentum: float", "epsilon: float", "act: int", "threads: int"})
    .SetKernelFn(PD_KERNEL(RepDwForward));

PD_BUILD_OP(ppdistill_rep_dw_backward)
    .Inputs({"X", "W", "W1", "Scale", "Bias", "SavedMean", "SavedInvStd", "Lab", "GradY"})
    .Outputs({"GradX", "GradW", "GradW1", "GradScale", "GradBias", "LabPartials"})
    .Attrs({"stride_h: int", "stride_w: int", "pad_h: int", "pad_w: int", "with_1x1: int",
            "identity: int", "act: int", "threads: int"})
    .SetKernelFn(PD_KERNEL(RepDwBackward));

PD_BUILD_OP(ppdistill_rep_bn_act_forward)
    .Inputs({"Z", "X", "Scale", "Bias", "Mean", "Variance", "Lab"})
    .Outputs({"Y", "SavedMean", "SavedInvStd", "MeanOut", "VarianceOut"})
    .Attrs({"momentum: float", "epsilon: float", "branches: int", "identity: int", "act: int",
            "threads: int"})
    .SetKernelFn(PD_KERNEL(RepBnActForward));

PD_BUILD_OP(ppdistill_rep_bn_act_backward)
    .Inputs({"Z", "X", "Scale", "Bias", "SavedMean", "SavedInvStd", "Lab", "GradY"})
    .Outputs({"GradZ", "GradXIdentity", "GradScale", "GradBias", "LabPartials"})
    .Attrs({"branches: int", "identity: int", "act: int", "threads: int"})
    .SetKernelFn(PD_KERNEL(RepBnActBackward));
