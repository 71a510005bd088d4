#include "dccnn/patches.hpp"

#include <cmath>
#include <string>

namespace dccnn {

void validate(const PatchGeometry& g) {
  if (g.channels < 1 || g.height < 1 || g.width < 1)
    throw std::invalid_argument("X: images must have at least one channel, row and column");
  if (g.size < 1) throw std::invalid_argument("size: must be >= 1");
  if (g.stride < 1) throw std::invalid_argument("stride: must be >= 1");
  if (g.padding < 0) throw std::invalid_argument("padding: must be >= 0");
  if (g.size > g.height + 2 * g.padding || g.size > g.width + 2 * g.padding)
    throw std::invalid_argument("size: a " + std::to_string(g.size) + "x" +
                                std::to_string(g.size) + " window does not fit the padded " +
                                std::to_string(g.height + 2 * g.padding) + "x" +
                                std::to_string(g.width + 2 * g.padding) + " image");
}

template <class T>
void extract_patches(const T* X, index_t n, const PatchGeometry& g, T* out, int n_threads,
                     const InterruptCheck& check) {
  validate(g);
  const index_t Ho = g.out_height(), Wo = g.out_width(), P = Ho * Wo, d = g.patch_dim();
  const index_t s = g.size;
  CancelToken cancel(check);
#pragma omp parallel for schedule(static) num_threads(resolve_threads(n_threads))
  for (index_t i = 0; i < n; ++i) {
    if (cancel.stop_requested()) continue;
    const T* img = X + i * g.channels * g.height * g.width;
    T* zi = out + i * P * d;
    for (index_t oy = 0; oy < Ho; ++oy)
      for (index_t ox = 0; ox < Wo; ++ox) {
        T* z = zi + (oy * Wo + ox) * d;
        for (index_t c = 0; c < g.channels; ++c)
          for (index_t dy = 0; dy < s; ++dy) {
            const index_t y = oy * g.stride - g.padding + dy;
            T* dst = z + (c * s + dy) * s;
            if (y < 0 || y >= g.height) {
              for (index_t dx = 0; dx < s; ++dx) dst[dx] = T(0);
              continue;
            }
            const T* row = img + (c * g.height + y) * g.width;
            for (index_t dx = 0; dx < s; ++dx) {
              const index_t x = ox * g.stride - g.padding + dx;
              dst[dx] = (x >= 0 && x < g.width) ? row[x] : T(0);
            }
          }
      }
  }
  cancel.throw_if_stopped();
}

template <class T>
void normalize_patches(T* Z, index_t count, index_t d, bool center, bool scale, double eps,
                       int n_threads) {
  if (eps < 0) throw std::invalid_argument("eps: must be >= 0");
#pragma omp parallel for schedule(static) num_threads(resolve_threads(n_threads))
  for (index_t r = 0; r < count; ++r) {
    T* z = Z + r * d;
    if (center) {
      double mean = 0;
      for (index_t k = 0; k < d; ++k) mean += z[k];
      mean /= static_cast<double>(d);
      for (index_t k = 0; k < d; ++k) z[k] = static_cast<T>(z[k] - mean);
    }
    if (scale) {
      double sq = 0;
      for (index_t k = 0; k < d; ++k) sq += static_cast<double>(z[k]) * z[k];
      const double inv = 1.0 / (std::sqrt(sq) + eps);
      if (!std::isfinite(inv)) continue;  // eps = 0 and a zero patch: leave it at zero
      for (index_t k = 0; k < d; ++k) z[k] = static_cast<T>(z[k] * inv);
    }
  }
}

template void extract_patches<float>(const float*, index_t, const PatchGeometry&, float*, int,
                                     const InterruptCheck&);
template void extract_patches<double>(const double*, index_t, const PatchGeometry&, double*, int,
                                      const InterruptCheck&);
template void normalize_patches<float>(float*, index_t, index_t, bool, bool, double, int);
template void normalize_patches<double>(double*, index_t, index_t, bool, bool, double, int);

}  // namespace dccnn
