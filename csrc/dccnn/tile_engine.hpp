// Internal: the instruction-set specific part of the kernel evaluation. Each ISA build
// (tile_engine_<isa>.cpp) fills one table; kernel_blocks.cpp picks one at run time and
// owns every allocation and loop over images, so the ISA files hold only arithmetic.
#pragma once

#include "dccnn/common.hpp"
#include "dccnn/kernel_spec.hpp"
#include "dccnn/pooling.hpp"

namespace dccnn {

// A panel is nr consecutive rows stored transposed (d x nr) so that one vector load gives
// one coordinate of nr rows; rows past the end are zero. Each panel has nr squared norms.
template <class T>
struct TileEngine {
  const char* name;
  int mr;  // rows per broadcast group
  int nr;  // rows per panel (vector lanes)

  // rows: (n, d) row-major -> ceil(n / nr) panels and their squared norms.
  void (*pack_panels)(const T* rows, index_t n, index_t d, T* panels, T* panel_sqnorms);

  // out[r, c] = k(x[r], panel row c) for r < n_rows, c < n_cols. x: (n_rows, d) with
  // n_rows a multiple of mr (zero rows allowed), x_sqnorms its squared norms.
  void (*kernel_rows)(const T* x, const T* x_sqnorms, index_t n_rows, const T* panels,
                      const T* panel_sqnorms, index_t n_cols, index_t d, const KernelSpec& spec,
                      T* out, index_t ld_out, index_t rows_to_write);

  // One pooled block: out[q, q'] += sum_{p in S_q, p' in S_q'} k(a[p], b[p']), where the
  // patches a[0..P) are packed in ceil(P / nr) panels and b is (P_pad, d) row-major with
  // P_pad = P rounded up to mr. work: Q * nr scratch values. out: (Q, Q), zeroed by caller.
  void (*pooled_block)(const T* a_panels, const T* a_sqnorms, const T* b, const T* b_sqnorms,
                       index_t d, const PoolingMap& pooling, const KernelSpec& spec, T* work,
                       T* out);
};

const TileEngine<float>& generic_tile_engine_f32();
const TileEngine<double>& generic_tile_engine_f64();
const TileEngine<float>& avx2_tile_engine_f32();
const TileEngine<double>& avx2_tile_engine_f64();
const TileEngine<float>& avx512_tile_engine_f32();
const TileEngine<double>& avx512_tile_engine_f64();

}  // namespace dccnn
