// Patch extraction z_p(x) (SPEC §1) and the CCNN per-patch normalisation.
#pragma once

#include "dccnn/common.hpp"

namespace dccnn {

struct PatchGeometry {
  index_t channels, height, width;
  index_t size, stride, padding;
  index_t out_height() const { return (height + 2 * padding - size) / stride + 1; }
  index_t out_width() const { return (width + 2 * padding - size) / stride + 1; }
  index_t n_positions() const { return out_height() * out_width(); }
  index_t patch_dim() const { return channels * size * size; }
};

// Throws std::invalid_argument when the window does not fit the padded image.
void validate(const PatchGeometry& g);

// X: (n, C, H, W) C-contiguous; out: (n, P, d), d ordered (channel, dy, dx), P row-major.
template <class T>
void extract_patches(const T* X, index_t n, const PatchGeometry& g, T* out, int n_threads,
                     const InterruptCheck& check = {});

// In place on (count, d) rows: optionally subtract each row's mean, then optionally
// divide by (||row|| + eps).
template <class T>
void normalize_patches(T* Z, index_t count, index_t d, bool center, bool scale, double eps,
                       int n_threads);

}  // namespace dccnn
