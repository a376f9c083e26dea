// 16-lane float vectors for cnnkit's kernels (GCC/Clang vector extensions: one AVX-512 register,
// or two AVX2 ones), and bf16 conversions as torch does them. Explicit vectors, because the
// compilers do not vectorize bf16 loads and stores in plain loops well (one backward loop that
// fell back to scalar code was many times slower: bench/README.md, fifth session).
#pragma once

#include <cstdint>
#include <cstring>

namespace cnnkit {

// -- one value: bf16 bits <-> float, and torch's round to nearest even (NaN to its quiet NaN)
inline float bf16_to_float(uint16_t bits) {
  const uint32_t u = static_cast<uint32_t>(bits) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

inline float bf16_round(float f) {  // the nearest bf16 value, as a float
  uint32_t u;
  std::memcpy(&u, &f, 4);
  const bool nan = (u & 0x7fffffffu) > 0x7f800000u;
  const uint32_t r = (u + 0x7fffu + ((u >> 16) & 1u)) & 0xffff0000u;
  u = nan ? 0x7fc00000u : r;
  float out;
  std::memcpy(&out, &u, 4);
  return out;
}

inline uint16_t bf16_bits(float f) {  // f rounded to bf16, as its bits
  uint32_t u;
  const float r = bf16_round(f);
  std::memcpy(&u, &r, 4);
  return static_cast<uint16_t>(u >> 16);
}

// -- 16 lanes

typedef float v16f __attribute__((vector_size(64)));
typedef uint32_t v16u __attribute__((vector_size(64)));
typedef int32_t v16i __attribute__((vector_size(64)));
typedef uint16_t v16h __attribute__((vector_size(32)));
typedef uint8_t v16b __attribute__((vector_size(16)));

inline v16f vload(const float* p) {
  v16f v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

inline void vstore(float* p, v16f v) { std::memcpy(p, &v, sizeof v); }

// torch's round to nearest even, a NaN to its quiet NaN; the result is a float holding a bf16
inline v16f vround(v16f f) {
  v16u u = reinterpret_cast<v16u>(f);
  const v16i nan = (u & 0x7fffffffu) > 0x7f800000u;
  const v16u r = (u + 0x7fffu + ((u >> 16) & 1u)) & 0xffff0000u;
  u = nan ? v16u{} + 0x7fc00000u : r;
  return reinterpret_cast<v16f>(u);
}

inline v16f vload_bf16(const uint16_t* p) {
  v16h bits;
  std::memcpy(&bits, p, sizeof bits);
  return reinterpret_cast<v16f>(__builtin_convertvector(bits, v16u) << 16);
}

inline void vstore_bf16(uint16_t* p, v16f rounded) {  // `rounded`: vround's result
  const v16h bits = __builtin_convertvector(reinterpret_cast<v16u>(rounded) >> 16, v16h);
  std::memcpy(p, &bits, sizeof bits);
}

// 16 values of a bf16 (bits) or float32 array as floats, and back (bf16: rounded)
template <bool BF>
inline v16f load16(const void* p, long i) {
  if constexpr (BF) {
    return vload_bf16(static_cast<const uint16_t*>(p) + i);
  } else {
    return vload(static_cast<const float*>(p) + i);
  }
}

template <bool BF>
inline void store16(void* p, long i, v16f v) {
  if constexpr (BF) {
    vstore_bf16(static_cast<uint16_t*>(p) + i, vround(v));
  } else {
    vstore(static_cast<float*>(p) + i, v);
  }
}

}  // namespace cnnkit
