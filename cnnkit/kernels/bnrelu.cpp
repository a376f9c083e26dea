// cnnkit's batch norm + ReLU for training: BatchNorm2d/1d in training mode followed by a ReLU,
// forward and backward, on channels-last data (rows of C channels: NHWC images or (N, C)
// features), bf16 or float32, with float32 parameters and statistics.
//
// Why: torch runs four kernels (batch norm, ReLU, and their backwards), each reading and writing
// the whole tensor, and its channels-last bf16 batch norm is slow at these sizes. Here the forward
// reads the input twice (statistics, then normalize and ReLU), the backward reads the gradient,
// the output and the input twice.
//
// Arithmetic, as torch's CPU batch norm: statistics over the batch (and H, W); the output is
// x * alpha + beta with alpha = invstd * gamma, beta = bias - mean * alpha, rounded to bf16 where
// the input is bf16; ReLU on the rounded value (the same as rounding after it). Moving statistics:
// mean and the unbiased variance, weighted by `momentum` (torch's: the new batch's weight).
// Backward: torch's formula, the ReLU's mask from the output (> 0). Sums are double; threads add
// theirs in thread order, so the result is deterministic for a thread count.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <type_traits>
#include <vector>

#include <omp.h>

#include "vec.h"

namespace {

template <bool BF>
using Elem = typename std::conditional<BF, uint16_t, float>::type;

template <bool BF>
inline float load(const Elem<BF>* p, long i) {
  if constexpr (BF) {
    return cnnkit::bf16_to_float(p[i]);
  } else {
    return p[i];
  }
}

template <bool BF>
inline void store(Elem<BF>* p, long i, float v) {
  if constexpr (BF) {
    p[i] = cnnkit::bf16_bits(v);
  } else {
    p[i] = v;
  }
}

constexpr long kBlock = 64;  // rows summed in float32 before they join the double totals

// Per-thread sums over rows [r0, r1): s1 += f1(row), s2 += f2(row), per channel.
template <typename F>
void sum_rows(long r0, long r1, int c, double* s1, double* s2, F&& terms) {
  std::vector<float> b1(c), b2(c);
  for (long start = r0; start < r1; start += kBlock) {
    const long end = start + kBlock < r1 ? start + kBlock : r1;
    std::fill(b1.begin(), b1.end(), 0.f);
    std::fill(b2.begin(), b2.end(), 0.f);
    for (long r = start; r < end; ++r) terms(r, b1.data(), b2.data());
    for (int k = 0; k < c; ++k) s1[k] += b1[k], s2[k] += b2[k];
  }
}

// The threads' sums (thread order) -> mean, invstd, the moving statistics, and the transform
// y = x * alpha + beta.
void finish_stats(const double* part, const float* shift, const float* gamma, const float* bias,
                  float* mean_out, float* invstd_out, float* running_mean, float* running_var,
                  float momentum, float eps, long m, int c, int nt, float* alpha, float* beta) {
  for (int k = 0; k < c; ++k) {
    double s1 = 0, s2 = 0;
    for (int t = 0; t < nt; ++t) {
      s1 += part[static_cast<size_t>(t) * 2 * c + k];
      s2 += part[static_cast<size_t>(t) * 2 * c + c + k];
    }
    const double dm = s1 / m;
    double var = s2 / m - dm * dm;
    var = var > 0 ? var : 0;
    const double mean = shift[k] + dm;
    const float invstd = static_cast<float>(1.0 / std::sqrt(var + eps));
    mean_out[k] = static_cast<float>(mean);
    invstd_out[k] = invstd;
    alpha[k] = invstd * gamma[k];
    beta[k] = bias[k] - static_cast<float>(mean) * alpha[k];
    if (running_mean) {
      const double unbiased = m > 1 ? var * m / (m - 1) : var;
      running_mean[k] = static_cast<float>((1 - momentum) * running_mean[k] + momentum * mean);
      running_var[k] = static_cast<float>((1 - momentum) * running_var[k] + momentum * unbiased);
    }
  }
}

// The threads' sums of g and g * (x - mean) -> dgamma, dbeta and the backward's coefficients.
void finish_grads(const double* part, const float* invstd, const float* gamma, float* dgamma,
                  float* dbeta, long m, int c, int nt, float* kx, float* gm, float* scale) {
  for (int k = 0; k < c; ++k) {
    double sg = 0, sgx = 0;
    for (int t = 0; t < nt; ++t) {
      sg += part[static_cast<size_t>(t) * 2 * c + k];
      sgx += part[static_cast<size_t>(t) * 2 * c + c + k];
    }
    dbeta[k] = static_cast<float>(sg);
    dgamma[k] = static_cast<float>(sgx * invstd[k]);
    kx[k] = static_cast<float>(sgx * invstd[k] * invstd[k] / m);
    gm[k] = static_cast<float>(sg / m);
    scale[k] = invstd[k] * gamma[k];
  }
}

template <bool BF>
void forward(const void* xv, const float* gamma, const float* bias, void* yv, float* mean_out,
             float* invstd_out, float* running_mean, float* running_var, float momentum,
             float eps, long m, int c, int nt) {
  const Elem<BF>* x = static_cast<const Elem<BF>*>(xv);
  Elem<BF>* y = static_cast<Elem<BF>*>(yv);
  // the first row's values as the shift: sums of (x - shift) keep the variance exact where the
  // mean is large against the spread
  std::vector<float> shift(c);
  for (int k = 0; k < c; ++k) shift[k] = load<BF>(x, k);
  std::vector<double> part(static_cast<size_t>(nt) * 2 * c, 0.0);
  const float* sh = shift.data();
#pragma omp parallel num_threads(nt)
  {
    const int t = omp_get_thread_num(), n = omp_get_num_threads();
    double* s1 = part.data() + static_cast<size_t>(t) * 2 * c;
    sum_rows(m * t / n, m * (t + 1) / n, c, s1, s1 + c, [&](long r, float* b1, float* b2) {
      const Elem<BF>* row = x + r * c;
#pragma omp simd
      for (int k = 0; k < c; ++k) {
        const float d = load<BF>(row, k) - sh[k];
        b1[k] += d;
        b2[k] += d * d;
      }
    });
  }
  std::vector<float> alpha(c), beta(c);
  finish_stats(part.data(), sh, gamma, bias, mean_out, invstd_out, running_mean, running_var,
               momentum, eps, m, c, nt, alpha.data(), beta.data());
  const float* a = alpha.data();
  const float* b = beta.data();
#pragma omp parallel for num_threads(nt) schedule(static)
  for (long r = 0; r < m; ++r) {
    const Elem<BF>* row = x + r * c;
    Elem<BF>* out = y + r * c;
#pragma omp simd
    for (int k = 0; k < c; ++k) {
      float v = load<BF>(row, k) * a[k] + b[k];
      v = v > 0.f ? v : (v != v ? v : 0.f);  // ReLU; a NaN stays NaN, as torch's
      store<BF>(out, k, v);
    }
  }
}

template <bool BF>
void backward(const void* gyv, const void* yv, const void* xv, const float* mean,
              const float* invstd, const float* gamma, void* gxv, float* dgamma, float* dbeta,
              long m, int c, int nt) {
  const Elem<BF>* gy = static_cast<const Elem<BF>*>(gyv);
  const Elem<BF>* y = static_cast<const Elem<BF>*>(yv);
  const Elem<BF>* x = static_cast<const Elem<BF>*>(xv);
  Elem<BF>* gx = static_cast<Elem<BF>*>(gxv);
  std::vector<double> part(static_cast<size_t>(nt) * 2 * c, 0.0);
#pragma omp parallel num_threads(nt)
  {
    const int t = omp_get_thread_num(), n = omp_get_num_threads();
    double* s = part.data() + static_cast<size_t>(t) * 2 * c;
    sum_rows(m * t / n, m * (t + 1) / n, c, s, s + c, [&](long r, float* sg, float* sgx) {
#pragma omp simd
      for (int k = 0; k < c; ++k) {
        const float up = load<BF>(gy, r * c + k);  // loaded always: a select, not a masked load
        const float g = load<BF>(y, r * c + k) > 0.f ? up : 0.f;
        sg[k] += g;
        sgx[k] += g * (load<BF>(x, r * c + k) - mean[k]);
      }
    });
  }
  std::vector<float> kx(c), gm(c), scale(c);
  finish_grads(part.data(), invstd, gamma, dgamma, dbeta, m, c, nt, kx.data(), gm.data(),
               scale.data());
  const float *kp = kx.data(), *gp = gm.data(), *sp = scale.data();
#pragma omp parallel for num_threads(nt) schedule(static)
  for (long r = 0; r < m; ++r) {
#pragma omp simd
    for (int k = 0; k < c; ++k) {
      const long i = r * c + k;
      const float up = load<BF>(gy, i);
      const float g = load<BF>(y, i) > 0.f ? up : 0.f;
      store<BF>(gx, i, (g - (load<BF>(x, i) - mean[k]) * kp[k] - gp[k]) * sp[k]);
    }
  }
}


// -- the fast path, 16 channels at a time in vector registers (vec.h), for C a multiple of 16.
using cnnkit::load16;
using cnnkit::store16;
using cnnkit::v16f;
using cnnkit::v16i;
using cnnkit::vload;

// Per-thread sums over rows [r0, r1) of channels [c0, c0 + 16): t1 += f1, t2 += f2, in float32
// over blocks of kBlock rows (two rows at a time: two chains of additions), then in double.
template <typename F>
inline void sum16(long r0, long r1, double* t1, double* t2, F&& terms) {
  for (long start = r0; start < r1; start += kBlock) {
    const long end = start + kBlock < r1 ? start + kBlock : r1;
    v16f a1 = v16f{}, a2 = v16f{}, b1 = v16f{}, b2 = v16f{};
    long r = start;
    for (; r + 1 < end; r += 2) {
      terms(r, a1, a2);
      terms(r + 1, b1, b2);
    }
    if (r < end) terms(r, a1, a2);
    a1 += b1, a2 += b2;
    for (int k = 0; k < 16; ++k) t1[k] += a1[k], t2[k] += a2[k];
  }
}

template <bool BF>
void forward_v(const void* x, const float* gamma, const float* bias, void* y, float* mean_out,
               float* invstd_out, float* running_mean, float* running_var, float momentum,
               float eps, long m, int c, int nt) {
  std::vector<float> shift(c);
  for (int c0 = 0; c0 < c; c0 += 16) cnnkit::vstore(shift.data() + c0, load16<BF>(x, c0));
  std::vector<double> part(static_cast<size_t>(nt) * 2 * c, 0.0);
  const float* sh = shift.data();
#pragma omp parallel num_threads(nt)
  {
    const int t = omp_get_thread_num(), n = omp_get_num_threads();
    double* s = part.data() + static_cast<size_t>(t) * 2 * c;
    for (int c0 = 0; c0 < c; c0 += 16) {
      const v16f s0 = vload(sh + c0);
      sum16(m * t / n, m * (t + 1) / n, s + c0, s + c + c0, [&](long r, v16f& a1, v16f& a2) {
        const v16f d = load16<BF>(x, r * c + c0) - s0;
        a1 += d;
        a2 += d * d;
      });
    }
  }
  std::vector<float> alpha(c), beta(c);
  finish_stats(part.data(), sh, gamma, bias, mean_out, invstd_out, running_mean, running_var,
               momentum, eps, m, c, nt, alpha.data(), beta.data());
  const float* a = alpha.data();
  const float* b = beta.data();
#pragma omp parallel for num_threads(nt) schedule(static)
  for (long r = 0; r < m; ++r) {
    for (int c0 = 0; c0 < c; c0 += 16) {
      const v16f v = load16<BF>(x, r * c + c0) * vload(a + c0) + vload(b + c0);
      store16<BF>(y, r * c + c0, (v > 0.f) | (v != v) ? v : v16f{});  // ReLU; NaN stays NaN
    }
  }
}

template <bool BF>
void backward_v(const void* gy, const void* y, const void* x, const float* mean,
                const float* invstd, const float* gamma, void* gx, float* dgamma, float* dbeta,
                long m, int c, int nt) {
  std::vector<double> part(static_cast<size_t>(nt) * 2 * c, 0.0);
#pragma omp parallel num_threads(nt)
  {
    const int t = omp_get_thread_num(), n = omp_get_num_threads();
    double* s = part.data() + static_cast<size_t>(t) * 2 * c;
    for (int c0 = 0; c0 < c; c0 += 16) {
      const v16f mu = vload(mean + c0);
      sum16(m * t / n, m * (t + 1) / n, s + c0, s + c + c0, [&](long r, v16f& sg, v16f& sgx) {
        const long i = r * c + c0;
        const v16f g = load16<BF>(y, i) > 0.f ? load16<BF>(gy, i) : v16f{};
        sg += g;
        sgx += g * (load16<BF>(x, i) - mu);
      });
    }
  }
  std::vector<float> kx(c), gm(c), scale(c);
  finish_grads(part.data(), invstd, gamma, dgamma, dbeta, m, c, nt, kx.data(), gm.data(),
               scale.data());
  const float *kp = kx.data(), *gp = gm.data(), *sp = scale.data();
#pragma omp parallel for num_threads(nt) schedule(static)
  for (long r = 0; r < m; ++r) {
    for (int c0 = 0; c0 < c; c0 += 16) {
      const long i = r * c + c0;
      const v16f g = load16<BF>(y, i) > 0.f ? load16<BF>(gy, i) : v16f{};
      const v16f d = load16<BF>(x, i) - vload(mean + c0);
      store16<BF>(gx, i, (g - d * vload(kp + c0) - vload(gp + c0)) * vload(sp + c0));
    }
  }
}

}  // namespace

extern "C" {

// x, y (m, c) bf16 bits or float32; gamma, bias (c); mean, invstd (c) written; running_mean and
// running_var (c) updated in place, or null.
void cnnkit_bnrelu_forward(const void* x, const float* gamma, const float* bias, void* y,
                           float* mean, float* invstd, float* running_mean, float* running_var,
                           float momentum, float eps, long m, int c, int bf16, int nt) {
  auto fn = c % 16 == 0 ? (bf16 ? forward_v<true> : forward_v<false>)
                        : (bf16 ? forward<true> : forward<false>);
  fn(x, gamma, bias, y, mean, invstd, running_mean, running_var, momentum, eps, m, c, nt);
}

// gy, y, x, gx (m, c); dgamma, dbeta (c) written.
void cnnkit_bnrelu_backward(const void* gy, const void* y, const void* x, const float* mean,
                            const float* invstd, const float* gamma, void* gx, float* dgamma,
                            float* dbeta, long m, int c, int bf16, int nt) {
  auto fn = c % 16 == 0 ? (bf16 ? backward_v<true> : backward_v<false>)
                        : (bf16 ? backward<true> : backward<false>);
  fn(gy, y, x, mean, invstd, gamma, gx, dgamma, dbeta, m, c, nt);
}

}  // extern "C"
