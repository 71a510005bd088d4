#include "dccnn/kernel_blocks.hpp"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "dccnn/tile_engine.hpp"

namespace dccnn {

void validate(const PoolingMap& m) {
  if (m.n_positions < 1 || m.n_windows < 1 || !m.position_ptr || !m.position_window)
    throw std::invalid_argument("pooling: empty pooling map");
  if (m.position_ptr[0] != 0) throw std::invalid_argument("pooling: offsets must start at 0");
  std::vector<char> used(static_cast<size_t>(m.n_windows), 0);
  for (index_t p = 0; p < m.n_positions; ++p) {
    if (m.position_ptr[p + 1] < m.position_ptr[p])
      throw std::invalid_argument("pooling: offsets must be non-decreasing");
    for (index_t k = m.position_ptr[p]; k < m.position_ptr[p + 1]; ++k) {
      const auto w = m.position_window[k];
      if (w < 0 || w >= m.n_windows) throw std::invalid_argument("pooling: window out of range");
      used[static_cast<size_t>(w)] = 1;
    }
  }
  if (std::find(used.begin(), used.end(), 0) != used.end())
    throw std::invalid_argument("pooling: every window needs at least one position");
}

namespace {

// Image pairs per parallel task of the non-symmetric pooled blocks: a pair costs P^2 d
// multiply-adds (tens of thousands), so 64 pairs amortise the scheduling.
constexpr index_t kPairsPerTask = 64;

// Run-time choice of the instruction set; DCCNN_TILE_ENGINE=generic|avx2|avx512 narrows it
// (used by the tests to check every build against the same references).
enum class Isa { generic, avx2, avx512 };

Isa detect_isa() {
  Isa best = Isa::generic;
#ifdef DCCNN_HAVE_X86_DISPATCH
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) best = Isa::avx2;
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") &&
      __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512bw"))
    best = Isa::avx512;
#endif
  if (const char* want = std::getenv("DCCNN_TILE_ENGINE")) {
    const std::string w(want);
    if (w == "generic") return Isa::generic;
    if (w == "avx2" && best != Isa::generic) return Isa::avx2;
  }
  return best;
}

Isa selected_isa() {
  static const Isa isa = detect_isa();
  return isa;
}

template <class T>
const TileEngine<T>& engine();

template <>
const TileEngine<float>& engine<float>() {
  switch (selected_isa()) {
#ifdef DCCNN_HAVE_X86_DISPATCH
    case Isa::avx512: return avx512_tile_engine_f32();
    case Isa::avx2: return avx2_tile_engine_f32();
#endif
    default: return generic_tile_engine_f32();
  }
}

template <>
const TileEngine<double>& engine<double>() {
  switch (selected_isa()) {
#ifdef DCCNN_HAVE_X86_DISPATCH
    case Isa::avx512: return avx512_tile_engine_f64();
    case Isa::avx2: return avx2_tile_engine_f64();
#endif
    default: return generic_tile_engine_f64();
  }
}

index_t round_up(index_t x, index_t m) { return (x + m - 1) / m * m; }

template <class T>
void check_unit_ball(const T* sqnorms, index_t count, const char* name) {
  for (index_t i = 0; i < count; ++i)
    if (sqnorms[i] > T(1) + T(1e-5))
      throw std::invalid_argument(std::string(name) +
                                  ": inverse_polynomial needs every patch norm <= 1 (found " +
                                  std::to_string(std::sqrt(static_cast<double>(sqnorms[i]))) +
                                  "); normalise or rescale the patches");
}

// rows (n, d) -> panels; parallel over groups of panels.
template <class T>
void pack_all(const TileEngine<T>& e, const T* rows, index_t n, index_t d, T* panels, T* sqn,
              int threads) {
  const index_t n_panels = (n + e.nr - 1) / e.nr;
#pragma omp parallel for schedule(static) num_threads(threads)
  for (index_t b = 0; b < n_panels; ++b) {
    const index_t r0 = b * e.nr;
    e.pack_panels(rows + r0 * d, std::min<index_t>(e.nr, n - r0), d, panels + b * d * e.nr,
                  sqn + b * e.nr);
  }
}

}  // namespace

const char* tile_engine_name() { return engine<float>().name; }

template <class T>
void kernel_matrix(const T* Z1, index_t n1, const T* Z2, index_t n2, index_t d,
                   const KernelSpec& spec, T* out, int n_threads, const InterruptCheck& check) {
  validate(spec);
  if (n1 == 0 || n2 == 0) return;
  const TileEngine<T>& e = engine<T>();
  const int threads = resolve_threads(n_threads);
  const index_t nr = e.nr, mr = e.mr;

  std::vector<T> panels(static_cast<size_t>(round_up(n2, nr) * d));
  std::vector<T> panel_sqn(static_cast<size_t>(round_up(n2, nr)));
  pack_all(e, Z2, n2, d, panels.data(), panel_sqn.data(), threads);

  // Rows are read in place; only the last partial group of mr rows is copied and padded.
  const index_t n1_full = n1 / mr * mr;
  std::vector<T> x_sqn(static_cast<size_t>(round_up(n1, mr)), T(0));
  std::vector<T> tail(static_cast<size_t>(mr * d), T(0));
  for (index_t i = 0; i < n1; ++i) {
    T s = T(0);
    for (index_t k = 0; k < d; ++k) s += Z1[i * d + k] * Z1[i * d + k];
    x_sqn[static_cast<size_t>(i)] = s;
  }
  if (n1_full < n1) std::memcpy(tail.data(), Z1 + n1_full * d, sizeof(T) * (n1 - n1_full) * d);
  if (spec.kind == KernelKind::inverse_polynomial) {
    check_unit_ball(x_sqn.data(), n1, "Z1");
    check_unit_ball(panel_sqn.data(), n2, "Z2");  // padding lanes are zero
  }

  // Work unit: a block of rows against a chunk of columns that stays in cache.
  const index_t row_block = mr * 16;
  const index_t col_chunk = std::max<index_t>(nr, (32768 / (d * sizeof(T))) / nr * nr);
  const index_t n_row_blocks = (n1 + row_block - 1) / row_block;
  CancelToken cancel(check);
#pragma omp parallel for schedule(dynamic, 1) num_threads(threads)
  for (index_t rb = 0; rb < n_row_blocks; ++rb) {
    if (cancel.stop_requested()) continue;
    const index_t r0 = rb * row_block;
    const index_t r1 = std::min(n1, r0 + row_block);
    const index_t full_end = std::min(r1, n1_full);
    for (index_t c0 = 0; c0 < n2; c0 += col_chunk) {
      const index_t nc = std::min(col_chunk, n2 - c0);
      const T* pan = panels.data() + (c0 / nr) * d * nr;
      const T* psq = panel_sqn.data() + c0;
      if (full_end > r0)
        e.kernel_rows(Z1 + r0 * d, x_sqn.data() + r0, full_end - r0, pan, psq, nc, d, spec,
                      out + r0 * n2 + c0, n2, full_end - r0);
      if (r1 > full_end)
        e.kernel_rows(tail.data(), x_sqn.data() + n1_full, mr, pan, psq, nc, d, spec,
                      out + n1_full * n2 + c0, n2, n1 - n1_full);
    }
  }
  cancel.throw_if_stopped();
}

template <class T>
void pooled_kernel_blocks(const T* Z1, index_t n1, const T* Z2, index_t n2, index_t d,
                          const PoolingMap& pooling, const KernelSpec& spec, T* out,
                          int n_threads, const InterruptCheck& check) {
  validate(spec);
  validate(pooling);
  const bool symmetric = Z2 == nullptr;
  if (symmetric) {
    Z2 = Z1;
    n2 = n1;
  }
  if (n1 == 0 || n2 == 0) return;
  const TileEngine<T>& e = engine<T>();
  const int threads = resolve_threads(n_threads);
  const index_t P = pooling.n_positions, Q = pooling.n_windows;
  const index_t nr = e.nr, mr = e.mr;
  const index_t a_stride = round_up(P, nr);  // packed lanes per image of Z1
  const index_t b_stride = round_up(P, mr);  // padded rows per image of Z2

  std::vector<T> a_panels(static_cast<size_t>(n1 * a_stride * d));
  std::vector<T> a_sqn(static_cast<size_t>(n1 * a_stride));
  std::vector<T> b_rows(static_cast<size_t>(n2 * b_stride * d), T(0));
  std::vector<T> b_sqn(static_cast<size_t>(n2 * b_stride), T(0));
#pragma omp parallel for schedule(static) num_threads(threads)
  for (index_t i = 0; i < n1; ++i)
    e.pack_panels(Z1 + i * P * d, P, d, a_panels.data() + i * a_stride * d,
                  a_sqn.data() + i * a_stride);
#pragma omp parallel for schedule(static) num_threads(threads)
  for (index_t j = 0; j < n2; ++j)
    for (index_t p = 0; p < P; ++p) {
      const T* z = Z2 + (j * P + p) * d;
      T* dst = b_rows.data() + (j * b_stride + p) * d;
      T s = T(0);
      for (index_t k = 0; k < d; ++k) {
        dst[k] = z[k];
        s += z[k] * z[k];
      }
      b_sqn[static_cast<size_t>(j * b_stride + p)] = s;
    }
  if (spec.kind == KernelKind::inverse_polynomial) {
    check_unit_ball(a_sqn.data(), n1 * a_stride, "Z1");
    check_unit_ball(b_sqn.data(), n2 * b_stride, "Z2");
  }

  std::vector<T> inv_count(static_cast<size_t>(Q), T(0));
  for (index_t k = 0; k < pooling.position_ptr[P]; ++k) inv_count[pooling.position_window[k]] += 1;
  for (auto& c : inv_count) c = T(1) / c;

  // Symmetric: one task per row i, pairs j >= i (the rows shorten, so dynamic scheduling).
  // Otherwise a task is a run of pairs of one row, so that a few rows against many images
  // (the exact back-end's rows evaluated again on each pass) still spread over every thread.
  const index_t run = symmetric ? n2 : std::min<index_t>(n2, kPairsPerTask);
  const index_t runs_per_row = (n2 + run - 1) / run;
  CancelToken cancel(check);
#pragma omp parallel num_threads(threads)
  {
    std::vector<T> work(static_cast<size_t>(Q * nr));
    std::vector<T> block(static_cast<size_t>(Q * Q));
#pragma omp for schedule(dynamic, 1)
    for (index_t task = 0; task < n1 * runs_per_row; ++task) {
      if (cancel.stop_requested()) continue;
      const index_t i = task / runs_per_row;
      const index_t j_begin = symmetric ? i : (task % runs_per_row) * run;
      const index_t j_end = std::min(n2, (task % runs_per_row) * run + run);
      for (index_t j = j_begin; j < j_end; ++j) {
        std::fill(block.begin(), block.end(), T(0));
        e.pooled_block(a_panels.data() + i * a_stride * d, a_sqn.data() + i * a_stride,
                       b_rows.data() + j * b_stride * d, b_sqn.data() + j * b_stride, d, pooling,
                       spec, work.data(), block.data());
        T* oij = out + (i * n2 + j) * Q * Q;
        for (index_t q = 0; q < Q; ++q)
          for (index_t r = 0; r < Q; ++r) oij[q * Q + r] = block[q * Q + r] * inv_count[q] * inv_count[r];
        if (symmetric && j != i) {
          T* oji = out + (j * n2 + i) * Q * Q;
          for (index_t q = 0; q < Q; ++q)
            for (index_t r = 0; r < Q; ++r) oji[r * Q + q] = oij[q * Q + r];
        }
      }
    }
  }
  cancel.throw_if_stopped();
}

#define DCCNN_INSTANTIATE(T)                                                                  \
  template void kernel_matrix<T>(const T*, index_t, const T*, index_t, index_t,               \
                                 const KernelSpec&, T*, int, const InterruptCheck&);          \
  template void pooled_kernel_blocks<T>(const T*, index_t, const T*, index_t, index_t,        \
                                        const PoolingMap&, const KernelSpec&, T*, int,        \
                                        const InterruptCheck&);
DCCNN_INSTANTIATE(float)
DCCNN_INSTANTIATE(double)
#undef DCCNN_INSTANTIATE

}  // namespace dccnn
