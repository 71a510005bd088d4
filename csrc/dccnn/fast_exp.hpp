// Branch-free exp for vectorised loops (Cephes range reduction and coefficients).
// Included only by the tile engine builds; `static` keeps one private copy per ISA build so
// that the linker can never hand AVX-512 code to a machine without it.
#pragma once

#include <cstdint>
#include <cstring>

namespace dccnn {

// Both take x in [kExpFloor, 88] and contain no select: a clamp against a compile-time
// constant lets GCC thread the clamped branch into a constant and give up vectorising the
// loop, so callers clamp against a run-time value instead (see Params in tile_engine.inc).
// At the floor, round(x / ln 2) is the exponent whose scale bits are all zero, so the result
// is exactly 0 there, as for any true value below the smallest normal number.
constexpr float kExpFloorF32 = -88.0f;
constexpr double kExpFloorF64 = -709.0;

static inline float fast_exp(float x) {
  // round(x / ln 2) with the 1.5 * 2^23 trick: the integer lands in the low mantissa bits.
  const float magic = 12582912.0f;
  float shifted = x * 1.44269504088896341f + magic;
  std::int32_t bits;
  std::memcpy(&bits, &shifted, sizeof bits);
  const std::int32_t n = bits - 0x4B400000;
  const float nf = shifted - magic;
  const float r = (x - nf * 0.693359375f) + nf * 2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * (r * r) + r + 1.0f;
  const std::int32_t scale_bits = (n + 127) << 23;
  float scale;
  std::memcpy(&scale, &scale_bits, sizeof scale);
  return p * scale;
}

static inline double fast_exp(double x) {
  const double magic = 6755399441055744.0;  // 1.5 * 2^52
  double shifted = x * 1.4426950408889634073599 + magic;
  std::int64_t bits;
  std::memcpy(&bits, &shifted, sizeof bits);
  const std::int64_t n = bits - 0x4338000000000000LL;
  const double nf = shifted - magic;
  const double r = (x - nf * 6.93145751953125e-1) - nf * 1.42860682030941723212e-6;
  const double rr = r * r;
  const double px =
      r * ((1.26177193074810590878e-4 * rr + 3.02994407707441961300e-2) * rr +
           9.99999999999999999910e-1);
  const double qx = ((3.00198505138664455042e-6 * rr + 2.52448340349684104192e-3) * rr +
                     2.27265548208155028766e-1) * rr + 2.00000000000000000009e0;
  const double e = 1.0 + 2.0 * px / (qx - px);
  const std::int64_t scale_bits = (n + 1023) << 52;
  double scale;
  std::memcpy(&scale, &scale_bits, sizeof scale);
  return e * scale;
}

}  // namespace dccnn
