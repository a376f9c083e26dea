// cnnkit's 2x2, stride-2 max-pool on channels_last (NHWC) bf16 or float32 tensors, forward and
// backward.
//
// Why: torch's CPU max-pool stores an int64 index per output (8 bytes where a bf16 output is 2)
// and its backward zero-fills the full-size gradient, then scatters into it. Here the forward
// keeps a one-byte code (which of the four won) and the backward writes every input gradient once,
// the winner's and three zeros, with no separate fill.
//
// Rule: the first maximum in row-major order wins, and a NaN wins (torch's rule), so outputs and
// gradients are torch's to the bit. Odd sizes floor, as torch does: the last row or column, which
// no window covers, gets a zero gradient.
#include <cstdint>
#include <cstring>
#include <type_traits>

#include <omp.h>

#include "vec.h"

namespace {

using cnnkit::bf16_to_float;

template <bool BF>
void pool_forward(const void* xv, void* yv, uint8_t* code, long n, int h, int w, int c, int nt) {
  using T = typename std::conditional<BF, uint16_t, float>::type;
  const T* x = static_cast<const T*>(xv);
  T* y = static_cast<T*>(yv);
  const int ho = h / 2, wo = w / 2;
  const long rows = n * ho;
#pragma omp parallel for num_threads(nt) schedule(static)
  for (long r = 0; r < rows; ++r) {
    const long img = r / ho;
    const int oh = static_cast<int>(r % ho);
    const T* top = x + ((img * h + 2 * oh) * static_cast<long>(w)) * c;
    const T* bottom = top + static_cast<long>(w) * c;
    for (int ow = 0; ow < wo; ++ow) {
      const T* a = top + 2L * ow * c;
      const T* b = bottom + 2L * ow * c;
      T* out = y + (r * wo + ow) * c;
      uint8_t* cd = code ? code + (r * wo + ow) * c : nullptr;
#pragma omp simd
      for (int k = 0; k < c; ++k) {
        const T t0 = a[k], t1 = a[c + k], t2 = b[k], t3 = b[c + k];
        float v0, v1, v2, v3;
        if constexpr (BF) {
          v0 = bf16_to_float(t0), v1 = bf16_to_float(t1), v2 = bf16_to_float(t2);
          v3 = bf16_to_float(t3);
        } else {
          v0 = t0, v1 = t1, v2 = t2, v3 = t3;
        }
        float m = v0;
        T best_bits = t0;
        int best = 0;
        bool take = (v1 > m) || (v1 != v1);
        m = take ? v1 : m, best_bits = take ? t1 : best_bits, best = take ? 1 : best;
        take = (v2 > m) || (v2 != v2);
        m = take ? v2 : m, best_bits = take ? t2 : best_bits, best = take ? 2 : best;
        take = (v3 > m) || (v3 != v3);
        m = take ? v3 : m, best_bits = take ? t3 : best_bits, best = take ? 3 : best;
        out[k] = best_bits;
        if (cd) cd[k] = static_cast<uint8_t>(best);
      }
    }
  }
}

template <bool BF>
void pool_backward(const void* gv, const uint8_t* code, void* gxv, long n, int h, int w, int c,
                   int nt) {
  using T = typename std::conditional<BF, uint16_t, float>::type;
  const T* g = static_cast<const T*>(gv);
  T* gx = static_cast<T*>(gxv);
  const int ho = h / 2, wo = w / 2;
  const long images_rows = n * h;  // every input row, so odd tails get their zeros too
#pragma omp parallel for num_threads(nt) schedule(static)
  for (long rr = 0; rr < images_rows; ++rr) {
    const long img = rr / h;
    const int ih = static_cast<int>(rr % h);
    T* out = gx + rr * static_cast<long>(w) * c;
    const int oh = ih / 2, dy = ih % 2;
    if (oh >= ho) {  // the row no window covers
      std::memset(out, 0, sizeof(T) * static_cast<size_t>(w) * c);
      continue;
    }
    const long base = ((img * ho + oh) * static_cast<long>(wo)) * c;
    for (int ow = 0; ow < wo; ++ow) {
      const T* gi = g + base + static_cast<long>(ow) * c;
      const uint8_t* cd = code + base + static_cast<long>(ow) * c;
      T* left = out + 2L * ow * c;
      T* right = left + c;
      const int s0 = 2 * dy, s1 = 2 * dy + 1;
#pragma omp simd
      for (int k = 0; k < c; ++k) {
        const T v = gi[k];
        left[k] = cd[k] == s0 ? v : T(0);
        right[k] = cd[k] == s1 ? v : T(0);
      }
    }
    if (w % 2) std::memset(out + 2L * wo * c, 0, sizeof(T) * c);  // the column no window covers
  }
}

}  // namespace

extern "C" {

// x (n, h, w, c) bf16 bits or float32; y (n, h/2, w/2, c) the same; code the same shape or null.
void cnnkit_pool2_forward(const void* x, void* y, uint8_t* code, long n, int h, int w, int c,
                          int bf16, int nt) {
  (bf16 ? pool_forward<true> : pool_forward<false>)(x, y, code, n, h, w, c, nt);
}

// g (n, h/2, w/2, c); gx (n, h, w, c), every element written.
void cnnkit_pool2_backward(const void* g, const uint8_t* code, void* gx, long n, int h, int w,
                           int c, int bf16, int nt) {
  (bf16 ? pool_backward<true> : pool_backward<false>)(g, code, gx, n, h, w, c, nt);
}

}  // extern "C"
