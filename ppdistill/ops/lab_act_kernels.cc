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
using ppdistill_kernels::lab_act_backward;
using ppdistill_kernels::lab_act_forward;
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
  parallel_for(r.rows, threads, [&](int64_t begin, int64_t end) {
    lab_act_forward(sd + begin * r.hw, yd + begin * r.hw, (end - begin) * r.hw,
                    lab.data<float>(), act);
  });
  return {y};
}

// GradS (like s) and LabPartials [rows, 4]: per row the partial sums of the gradients of
// [ls, lb, as, ab].
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
  parallel_for(r.rows, threads, [&](int64_t begin, int64_t end) {
    for (int64_t row = begin; row < end; ++row) {
      const int64_t at = row * r.hw;
      lab_act_backward(sd + at, gd + at, gsd + at, r.hw, lab.data<float>(), act, pd + row * 4);
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
