// cnnkit's stem kernel: a stride-1 KxK convolution (symmetric zero padding) followed by a 2x2,
// stride-2 max-pool, in one pass, on channels_last (NHWC) float32 images; and its backward for
// the weights and bias (the network's input needs no gradient).
//
// Why: at 28x28 the first conv of a small CNN has one input channel, so it is memory-bound, and
// torch writes its full-size output, reads it back to pool it (with int64 indices), then scatters
// the pooled gradient into a zeroed full-size tensor for the weight gradient. Here the full-size
// output lives only in registers; the pool keeps a one-byte code (which of the four won), and the
// weight gradient reads only the pooled gradient, the codes and the input.
//
// Arithmetic: with `bf16` set, it rounds as torch's bf16 autocast does: the input is rounded to
// bf16 (the caller passes weights and bias already rounded), products are summed in float32, and
// each conv output is rounded to bf16 before the pool compares them, so the pool picks what
// torch's pool would (the first maximum in row-major order; a NaN wins). Weight gradients are
// summed in float32 per thread and added up in thread order: deterministic for a thread count.
//
// Threads: OpenMP, sharing torch's own libgomp (the same soname, already loaded by libtorch), with
// the thread count the caller passes (torch.get_num_threads()).
#include <cstdint>
#include <cstring>
#include <vector>

#include <omp.h>

#include "vec.h"

namespace {

using cnnkit::bf16_round;

// 16 output channels at a time in vector registers (vec.h), the kernel size fixed at compile time.
using cnnkit::v16b;
using cnnkit::v16f;
using cnnkit::v16h;
using cnnkit::v16i;
using cnnkit::v16u;
using cnnkit::vload;
using cnnkit::vround;

// The K+1 input rows under one row of pooled outputs, zero-padded to w + 2*pad columns and
// rounded (bf16) once: the positions along the row then read it without bounds checks.
template <bool BF>
inline void load_band(const float* xi, int h, int w, int cin, int y0, int rows, int pad,
                      float* band) {
  const int wp = w + 2 * pad;
  for (int a = 0; a < rows; ++a) {
    const int iy = y0 + a;
    float* out = band + static_cast<long>(a) * wp * cin;
    if (iy < 0 || iy >= h) {
      for (int i = 0; i < wp * cin; ++i) out[i] = 0.f;
      continue;
    }
    for (int i = 0; i < pad * cin; ++i) out[i] = out[(wp - pad) * cin + i] = 0.f;
    const float* src = xi + static_cast<long>(iy) * w * cin;
    float* dst = out + pad * cin;
    const int count = w * cin;
    int i = 0;
    if (BF) {  // 16 at a time: the scalar rounding was a quarter of the forward's time
      for (; i + 16 <= count; i += 16) {
        const v16f v = vround(vload(src + i));
        std::memcpy(dst + i, &v, sizeof v);
      }
    }
    for (; i < count; ++i) dst[i] = BF ? bf16_round(src[i]) : src[i];
  }
}

// A per-thread scratch buffer that grows as needed and is kept between calls.
inline std::vector<float>& band_buffer(size_t n) {
  static thread_local std::vector<float> buf;
  if (buf.size() < n) buf.resize(n);
  return buf;
}

// One pooled output's 16 channels from its four conv sums: rounded (bf16), pooled, stored.
template <bool BF>
inline void pool_store(v16f a0, v16f a1, v16f a2, v16f a3, void* yv, uint8_t* code, long o) {
  if (BF) {
    a0 = vround(a0), a1 = vround(a1), a2 = vround(a2), a3 = vround(a3);
  }
  // the first maximum in row-major order wins; a NaN wins (torch's max-pool rule)
  v16f m = a0;
  v16i best = v16i{};
  v16i take = (a1 > m) | (a1 != a1);
  m = take ? a1 : m, best = take ? v16i{} + 1 : best;
  take = (a2 > m) | (a2 != a2);
  m = take ? a2 : m, best = take ? v16i{} + 2 : best;
  take = (a3 > m) | (a3 != a3);
  m = take ? a3 : m, best = take ? v16i{} + 3 : best;
  if (BF) {
    const v16h bits = __builtin_convertvector(reinterpret_cast<v16u>(m) >> 16, v16h);
    std::memcpy(static_cast<uint16_t*>(yv) + o, &bits, sizeof bits);
  } else {
    std::memcpy(static_cast<float*>(yv) + o, &m, sizeof m);
  }
  if (code) {
    const v16b cb = __builtin_convertvector(best, v16b);
    std::memcpy(code + o, &cb, sizeof cb);
  }
}

template <int K, bool BF>
void forward16(const float* x, const float* wt, const float* bias, void* yv, uint8_t* code,
               int n, int h, int w, int cin, int co, int, int pad, int nt) {
  constexpr int P = K + 1;
  const int ho = (h + 2 * pad - K + 1) / 2, wo = (w + 2 * pad - K + 1) / 2;
  const long rows = static_cast<long>(n) * ho;
#pragma omp parallel for num_threads(nt) schedule(static)
  for (long r = 0; r < rows; ++r) {
    const int img = static_cast<int>(r / ho), oh = static_cast<int>(r % ho);
    const float* xi = x + static_cast<long>(img) * h * w * cin;
    const int wp = w + 2 * pad;
    std::vector<float>& band = band_buffer(static_cast<size_t>(P) * wp * cin);
    load_band<BF>(xi, h, w, cin, 2 * oh - pad, P, pad, band.data());
    // two pooled outputs at a time: eight independent sums keep the FMA units busy (four
    // would wait on each other's latency); each sum adds its terms in the same order as one
    // output at a time would
    int ow = 0;
    for (; ow + 1 < wo; ow += 2) {
      for (int c0 = 0; c0 < co; c0 += 16) {
        const v16f b0 = bias ? vload(bias + c0) : v16f{};
        v16f a0 = b0, a1 = b0, a2 = b0, a3 = b0, e0 = b0, e1 = b0, e2 = b0, e3 = b0;
        for (int ci = 0; ci < cin; ++ci) {
          const float* q = band.data() + 2 * ow * cin + ci;  // (row a, column b): q[(a*wp+b)*cin]
          for (int ky = 0; ky < K; ++ky) {
            for (int kx = 0; kx < K; ++kx) {
              const v16f wv = vload(wt + ((ky * K + kx) * cin + ci) * co + c0);
              const float* t = q + (ky * wp + kx) * cin;
              const float* u = t + wp * cin;
              a0 += t[0] * wv, a1 += t[cin] * wv, a2 += u[0] * wv, a3 += u[cin] * wv;
              e0 += t[2 * cin] * wv, e1 += t[3 * cin] * wv;
              e2 += u[2 * cin] * wv, e3 += u[3 * cin] * wv;
            }
          }
        }
        pool_store<BF>(a0, a1, a2, a3, yv, code, (r * wo + ow) * co + c0);
        pool_store<BF>(e0, e1, e2, e3, yv, code, (r * wo + ow + 1) * co + c0);
      }
    }
    for (; ow < wo; ++ow) {
      for (int c0 = 0; c0 < co; c0 += 16) {
        const v16f b0 = bias ? vload(bias + c0) : v16f{};
        v16f a0 = b0, a1 = b0, a2 = b0, a3 = b0;
        for (int ci = 0; ci < cin; ++ci) {
          const float* q = band.data() + 2 * ow * cin + ci;
          for (int ky = 0; ky < K; ++ky) {
            for (int kx = 0; kx < K; ++kx) {
              const v16f wv = vload(wt + ((ky * K + kx) * cin + ci) * co + c0);
              const float* t = q + (ky * wp + kx) * cin;
              const float* u = t + wp * cin;
              a0 += t[0] * wv, a1 += t[cin] * wv, a2 += u[0] * wv, a3 += u[cin] * wv;
            }
          }
        }
        pool_store<BF>(a0, a1, a2, a3, yv, code, (r * wo + ow) * co + c0);
      }
    }
  }
}

template <int K, bool BF>
void backward16(const float* x, const void* gv, const uint8_t* code, float* dw, float* db, int n,
                int h, int w, int cin, int co, int, int pad, int nt) {
  constexpr int P = K + 1;
  const int ho = (h + 2 * pad - K + 1) / 2, wo = (w + 2 * pad - K + 1) / 2;
  const long rows = static_cast<long>(n) * ho;
  const int taps = K * K * cin;
  std::vector<float> partial(static_cast<size_t>(nt) * (taps + 1) * co, 0.f);
#pragma omp parallel num_threads(nt)
  {
    const int t = omp_get_thread_num(), nth = omp_get_num_threads();
    const long r0 = rows * t / nth, r1 = rows * (t + 1) / nth;  // static, as `omp for` would
    float* part = partial.data() + static_cast<size_t>(t) * (taps + 1) * co;
    const int wp = w + 2 * pad;
    std::vector<float>& band = band_buffer(static_cast<size_t>(P) * wp * cin);
    for (int c0 = 0; c0 < co; c0 += 16) {
      for (int ci = 0; ci < cin; ++ci) {
        v16f acc[K * K] = {};
        v16f bacc = v16f{};
        for (long r = r0; r < r1; ++r) {
          const int img = static_cast<int>(r / ho), oh = static_cast<int>(r % ho);
          const float* xi = x + static_cast<long>(img) * h * w * cin;
          load_band<BF>(xi, h, w, cin, 2 * oh - pad, P, pad, band.data());
          for (int ow = 0; ow < wo; ++ow) {
            const long o = (r * wo + ow) * co + c0;
            v16f g;
            if (BF) {
              v16h bits;
              std::memcpy(&bits, static_cast<const uint16_t*>(gv) + o, sizeof bits);
              g = reinterpret_cast<v16f>(__builtin_convertvector(bits, v16u) << 16);
            } else {
              g = vload(static_cast<const float*>(gv) + o);
            }
            v16b cb;
            std::memcpy(&cb, code + o, sizeof cb);
            const v16i cd = __builtin_convertvector(cb, v16i);
            const v16f g0 = cd == 0 ? g : v16f{}, g1 = cd == 1 ? g : v16f{};
            const v16f g2 = cd == 2 ? g : v16f{}, g3 = cd == 3 ? g : v16f{};
            if (ci == 0) bacc += g;
            const float* q = band.data() + 2 * ow * cin + ci;
            for (int ky = 0; ky < K; ++ky) {
              for (int kx = 0; kx < K; ++kx) {
                acc[ky * K + kx] += q[(ky * wp + kx) * cin] * g0 + q[(ky * wp + kx + 1) * cin] * g1 +
                                    q[((ky + 1) * wp + kx) * cin] * g2 +
                                    q[((ky + 1) * wp + kx + 1) * cin] * g3;
              }
            }
          }
        }
        for (int k = 0; k < K * K; ++k) std::memcpy(part + (k * cin + ci) * co + c0, &acc[k], 64);
        if (ci == 0) std::memcpy(part + taps * co + c0, &bacc, 64);
      }
    }
  }
  for (int i = 0; i < taps * co; ++i) dw[i] = 0.f;
  for (int c = 0; c < co; ++c) db[c] = 0.f;
  for (int t = 0; t < nt; ++t) {  // thread order: deterministic for a thread count
    const float* part = partial.data() + static_cast<size_t>(t) * (taps + 1) * co;
    for (int i = 0; i < taps * co; ++i) dw[i] += part[i];
    for (int c = 0; c < co; ++c) db[c] += part[taps * co + c];
  }
}

using ForwardFn = void (*)(const float*, const float*, const float*, void*, uint8_t*, int, int,
                           int, int, int, int, int, int);
using BackwardFn = void (*)(const float*, const void*, const uint8_t*, float*, float*, int, int,
                            int, int, int, int, int, int);

// The shapes cnnkit.kernels.stem.stem_pair admits: 16k filters, a 3x3 or 5x5 kernel.
template <bool BF>
ForwardFn pick_forward(int co, int k) {
  if (co % 16) return nullptr;
  return k == 3 ? forward16<3, BF> : k == 5 ? forward16<5, BF> : nullptr;
}

template <bool BF>
BackwardFn pick_backward(int co, int k) {
  if (co % 16) return nullptr;
  return k == 3 ? backward16<3, BF> : k == 5 ? backward16<5, BF> : nullptr;
}

}  // namespace

extern "C" {

int cnnkit_kernels_abi() { return 2; }  // bumped when a signature in any kernel file changes

// x (n, h, w, cin) float32; wt (k, k, cin, co) float32; bias (co) or null;
// y (n, ho, wo, co) bf16 bits or float32; code (n, ho, wo, co) or null (inference).
void cnnkit_stem_forward(const float* x, const float* wt, const float* bias, void* y,
                         uint8_t* code, int n, int h, int w, int cin, int co, int k, int pad,
                         int bf16, int nt) {
  const ForwardFn fn = bf16 ? pick_forward<true>(co, k) : pick_forward<false>(co, k);
  if (fn) fn(x, wt, bias, y, code, n, h, w, cin, co, k, pad, nt);
}

// g (n, ho, wo, co) bf16 bits or float32; dw (k, k, cin, co) and db (co) float32, overwritten.
void cnnkit_stem_backward(const float* x, const void* g, const uint8_t* code, float* dw,
                          float* db, int n, int h, int w, int cin, int co, int k, int pad,
                          int bf16, int nt) {
  const BackwardFn fn = bf16 ? pick_backward<true>(co, k) : pick_backward<false>(co, k);
  if (fn) fn(x, g, code, dw, db, n, h, w, cin, co, k, pad, nt);
}

}  // extern "C"
