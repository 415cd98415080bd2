// The tail of PP-LCNetV3's layers as one pass (paddle custom operators, compiled with
// cpu_kernels.cc by ppdistill/ops/loader.py; the autograd node is ppdistill/ops/lab_act.py):
//   u = ls * s + lb,   y = as * hardswish(u) + ab   (act = 1)   or   y = u   (act = 0)
// with Lab = [ls, lb, as, ab] four scalars (two LearnableAffineBlocks around the hardswish).
// paddle's ops run this as five element-wise passes keeping s, u and hardswish(u) for backward;
// here the forward is one pass and the backward one pass over s and the output gradient, giving
// grad s and, per row of the [rows, hw] view, the four partial sums of the scalars' gradients.
#include <vector>

#include "kernels_common.h"

namespace {

using ppdistill_kernels::check_cpu_float;
using ppdistill_kernels::hardswish_grad;
using ppdistill_kernels::hardswish_value;
using ppdistill_kernels::parallel_for;

// rows x hw view of s: rows = N * C for [N, C, H, W] (the per-row partial sums are what the
// scalar gradients add up; float per row, summed by the caller).
struct RowShape {
  int64_t rows, hw;
};

RowShape row_shape(const paddle::Tensor& s, const paddle::Tensor& lab, const char* op) {
  check_cpu_float(s, op, "s");
  check_cpu_float(lab, op, "lab");
  PD_CHECK(lab.numel() == 4, op, ": lab must hold [scale, bias, act_scale, act_bias]");
  const auto& shape = s.shape();
  PD_CHECK(shape.size() >= 2, op, ": s must be at least 2-D");
  int64_t hw = 1;
  for (size_t i = 2; i < shape.size(); ++i) hw *= shape[i];
  return {shape[0] * shape[1], hw};
}

std::vector<paddle::Tensor> LabActForward(const paddle::Tensor& s, const paddle::Tensor& lab,
                                          int act, int threads) {
  RowShape r = row_shape(s, lab, "ppdistill_lab_act_forward");
  auto y = paddle::empty(s.shape(), paddle::DataType::FLOAT32, s.place());
  const float* sd = s.data<float>();
  float* yd = y.data<float>();
  const float* l = lab.data<float>();
  const float ls = l[0], lb = l[1], as = l[2], ab = l[3];
  parallel_for(r.rows, threads, [&](int64_t begin, int64_t end) {
    const float* in = sd + begin * r.hw;
    float* out = yd + begin * r.hw;
    const int64_t n = (end - begin) * r.hw;
    if (act) {
#pragma omp simd
      for (int64_t t = 0; t < n; ++t) out[t] = as * hardswish_value(ls * in[t] + lb) + ab;
    } else {
#pragma omp simd
      for (int64_t t = 0; t < n; ++t) out[t] = ls * in[t] + lb;
    }
  });
  return {y};
}

// GradS (like s) and LabPartials [rows, 4]: per row sum(g * d y/d ls), ... for ls, lb, as, ab.
std::vector<paddle::Tensor> LabActBackward(const paddle::Tensor& s, const paddle::Tensor& lab,
                                           const paddle::Tensor& grad_y, int act, int threads) {
  RowShape r = row_shape(s, lab, "ppdistill_lab_act_backward");
  check_cpu_float(grad_y, "ppdistill_lab_act_backward", "grad_y");
  PD_CHECK(grad_y.numel() == s.numel(), "ppdistill_lab_act_backward: gradient of the wrong size");
  auto grad_s = paddle::empty(s.shape(), paddle::DataType::FLOAT32, s.place());
  auto partials = paddle::empty({r.rows, 4}, paddle::DataType::FLOAT32, s.place());
  const float* sd = s.data<float>();
  const float* gd = grad_y.data<float>();
  float* gsd = grad_s.data<float>();
  float* pd = partials.data<float>();
  const float* l = lab.data<float>();
  const float ls = l[0], lb = l[1], as = l[2];
  parallel_for(r.rows, threads, [&](int64_t begin, int64_t end) {
    for (int64_t row = begin; row < end; ++row) {
      const float* in = sd + row * r.hw;
      const float* d = gd + row * r.hw;
      float* gs = gsd + row * r.hw;
      float p_ls = 0.0f, p_lb = 0.0f, p_as = 0.0f, p_ab = 0.0f;
      if (act) {
#pragma omp simd reduction(+ : p_ls, p_lb, p_as, p_ab)
        for (int64_t t = 0; t < r.hw; ++t) {
          const float u = ls * in[t] + lb;
          const float gu = d[t] * as * hardswish_grad(u);
          p_as += d[t] * hardswish_value(u);
          p_ab += d[t];
          p_ls += gu * in[t];
          p_lb += gu;
          gs[t] = gu * ls;
        }
      } else {
#pragma omp simd reduction(+ : p_ls, p_lb)
        for (int64_t t = 0; t < r.hw; ++t) {
          p_ls += d[t] * in[t];
          p_lb += d[t];
          gs[t] = d[t] * ls;
        }
      }
      float* p = pd + row * 4;
      p[0] = p_ls;
      p[1] = p_lb;
      p[2] = p_as;
      p[3] = p_ab;
    }
  });
  return {grad_s, partials};
}

}  // namespace

PD_BUILD_OP(ppdistill_lab_act_forward)
    .Inputs({"S", "Lab"})
    .Outputs({"Y"})
    .Attrs({"act: int", "threads: int"})
    .SetKernelFn(PD_KERNEL(LabActForward));

PD_BUILD_OP(ppdistill_lab_act_backward)
    .Inputs({"S", "Lab", "GradY"})
    .Outputs({"GradS", "LabPartials"})
    .Attrs({"act: int", "threads: int"})
    .SetKernelFn(PD_KERNEL(LabActBackward));
