// Google Benchmark executables for the dccnn core (build with -DDCCNN_BUILD_BENCHMARKS=ON).
// Counters: items/s = kernel values, patches, coordinate updates or images per second;
// GFLOPs = kernel values times (2d + 15) flops, the "sgemm-equivalent" rate. When the
// environment variable DCCNN_SGEMM_GFLOPS holds the machine's float32 GEMM rate (e.g. from
// `python3 bench/compare.py --sgemm`), kernel benchmarks also report of_sgemm = GFLOPs / it.
//
// Patch dimensions d = 9, 25, 75 are 3x3 patches of 1 channel, 5x5 of 1 channel and 5x5 of 3
// channels (the first layer on grey and on RGB images).
#include <benchmark/benchmark.h>

#include <cstdlib>
#include <random>
#include <vector>

#include "dccnn/dual_cd.hpp"
#include "dccnn/kernel_blocks.hpp"
#include "dccnn/patches.hpp"

namespace {

using dccnn::index_t;

template <class T>
std::vector<T> uniform(size_t n, unsigned seed, T scale = T(1)) {
  std::mt19937 gen(seed);
  std::uniform_real_distribution<T> u(T(0), scale);
  std::vector<T> v(n);
  for (auto& x : v) x = u(gen);
  return v;
}

// The machine's float32 GEMM rate in GFLOP/s from DCCNN_SGEMM_GFLOPS, or 0 when unset.
double sgemm_gflops() {
  static const double rate = [] {
    const char* s = std::getenv("DCCNN_SGEMM_GFLOPS");
    return s ? std::atof(s) : 0.0;
  }();
  return rate;
}

// `values` kernel values of dimension d per iteration; items are `items` per iteration.
void set_kernel_counters(benchmark::State& st, double values, double d, double items) {
  st.SetItemsProcessed(static_cast<int64_t>(items * st.iterations()));
  const double flops = values * (2 * d + 15) * st.iterations();
  st.counters["GFLOPs"] = benchmark::Counter(flops * 1e-9, benchmark::Counter::kIsRate);
  if (sgemm_gflops() > 0)
    st.counters["of_sgemm"] =
        benchmark::Counter(flops * 1e-9 / sgemm_gflops(), benchmark::Counter::kIsRate);
}

// Patch geometry for d = 9 / 25 / 75 on side x side images.
dccnn::PatchGeometry geometry_for_dim(index_t d, index_t side) {
  switch (d) {
    case 9: return {1, side, side, 3, 1, 0};
    case 25: return {1, side, side, 5, 1, 0};
    case 75: return {3, side, side, 5, 1, 0};
    default: throw std::invalid_argument("patch dimension must be 9, 25 or 75");
  }
}

dccnn::KernelSpec kernel_spec(int64_t kind, index_t d) {
  dccnn::KernelSpec spec;
  spec.kind = static_cast<dccnn::KernelKind>(kind);
  spec.gamma = 1.0 / double(d);
  return spec;
}

// Pixel values in [0, scale] such that inverse-polynomial patches stay inside the unit ball.
template <class T>
T pixel_scale(const dccnn::KernelSpec& spec, index_t d) {
  return spec.kind == dccnn::KernelKind::inverse_polynomial ? T(1) / T(d) : T(1);
}

// 2x2 average pooling with stride 2 over the patch-position grid (trailing odd row/column
// dropped), as the CSR "windows containing position p" map of dccnn::PoolingMap.
struct Pool2x2 {
  std::vector<index_t> ptr;
  std::vector<int32_t> win;
  dccnn::PoolingMap map;

  explicit Pool2x2(const dccnn::PatchGeometry& g) {
    const index_t Hp = g.out_height(), Wp = g.out_width(), P = g.n_positions();
    const index_t Hq = Hp / 2, Wq = Wp / 2;
    ptr.assign(static_cast<size_t>(P + 1), 0);
    for (index_t p = 0; p < P; ++p) {
      const index_t y = p / Wp, x = p % Wp;
      if (y / 2 < Hq && x / 2 < Wq) win.push_back(static_cast<int32_t>((y / 2) * Wq + x / 2));
      ptr[static_cast<size_t>(p + 1)] = static_cast<index_t>(win.size());
    }
    map = dccnn::PoolingMap{P, Hq * Wq, ptr.data(), win.data()};
  }
};

template <class T>
void BM_extract_patches(benchmark::State& st) {
  // 1000 images of 28x28; args: d.
  const index_t n = 1000, d = st.range(0);
  const auto g = geometry_for_dim(d, 28);
  auto X = uniform<T>(static_cast<size_t>(n * g.channels * 28 * 28), 1);
  std::vector<T> out(static_cast<size_t>(n * g.n_positions() * g.patch_dim()));
  for (auto _ : st) dccnn::extract_patches<T>(X.data(), n, g, out.data(), 0);
  st.SetItemsProcessed(n * g.n_positions() * st.iterations());
  st.SetBytesProcessed(static_cast<int64_t>(out.size() * sizeof(T)) * st.iterations());
}

template <class T>
void BM_kernel_matrix(benchmark::State& st) {
  const index_t n1 = 4000, n2 = 2000, d = st.range(0);
  const auto spec = kernel_spec(st.range(1), d);
  const T scale = pixel_scale<T>(spec, d);
  auto A = uniform<T>(static_cast<size_t>(n1 * d), 2, scale);
  auto B = uniform<T>(static_cast<size_t>(n2 * d), 3, scale);
  std::vector<T> out(static_cast<size_t>(n1 * n2));
  for (auto _ : st) dccnn::kernel_matrix<T>(A.data(), n1, B.data(), n2, d, spec, out.data(), 0);
  const double values = double(n1) * double(n2);
  set_kernel_counters(st, values, double(d), values);
}

template <class T>
void BM_pooled_kernel_blocks(benchmark::State& st) {
  // All pairs of n images of side x side, 2x2 pooling; args: side, n, d, kernel kind.
  const index_t side = st.range(0), n = st.range(1), d = st.range(2);
  const auto g = geometry_for_dim(d, side);
  const Pool2x2 pool(g);
  const index_t P = g.n_positions(), Q = pool.map.n_windows;
  const auto spec = kernel_spec(st.range(3), d);
  auto X = uniform<T>(static_cast<size_t>(n * g.channels * side * side), 4,
                      pixel_scale<T>(spec, d));
  std::vector<T> Z(static_cast<size_t>(n * P * d)), out(static_cast<size_t>(n * n * Q * Q));
  dccnn::extract_patches<T>(X.data(), n, g, Z.data(), 0);
  for (auto _ : st)
    dccnn::pooled_kernel_blocks<T>(Z.data(), n, nullptr, n, d, pool.map, spec, out.data(), 0);
  // the symmetric routine evaluates n(n+1)/2 image pairs
  const double values = double(n) * double(n + 1) / 2 * double(P) * double(P);
  set_kernel_counters(st, values, double(d), values);
}

// One epoch of dual coordinate descent on a dense contracted Gram of N = n*K coordinates
// (the inner problem of the exact back-end, SPEC §3), squared hinge, from alpha = 0 so that
// every coordinate moves. The Gram is an rbf kernel matrix of random points (positive
// definite, unit diagonal). Items (coordinate updates) are counted per epoch over arg epochs.
void BM_dual_cd_dense(benchmark::State& st) {
  const index_t N = st.range(0), epochs = st.range(1), dim = 16;
  const auto pts = uniform<double>(static_cast<size_t>(N * dim), 5);
  std::vector<double> gram(static_cast<size_t>(N * N));
  dccnn::KernelSpec spec;
  spec.gamma = 1.0 / dim;
  dccnn::kernel_matrix<double>(pts.data(), N, pts.data(), N, dim, spec, gram.data(), 0);
  const std::vector<double> lin(static_cast<size_t>(N), -1.0);
  std::vector<double> alpha(static_cast<size_t>(N)), grad(static_cast<size_t>(N));
  dccnn::CdOptions opt;
  opt.C = 1.0;
  opt.tol = 1e-300;  // never converged: run exactly `epochs` epochs
  opt.max_epochs = epochs;
  opt.shrinking = false;
  for (auto _ : st) {
    std::fill(alpha.begin(), alpha.end(), 0.0);
    std::fill(grad.begin(), grad.end(), 0.0);  // Gram alpha at alpha = 0
    benchmark::DoNotOptimize(dccnn::dual_cd_dense(gram.data(), N, 1, nullptr, lin.data(),
                                                  alpha.data(), grad.data(), opt, 1));
  }
  st.SetItemsProcessed(N * epochs * st.iterations());
  // every update streams one Gram row: the epoch is bound by memory bandwidth
  st.SetBytesProcessed(static_cast<int64_t>(N * N * epochs * sizeof(double)) * st.iterations());
}

// The kernel expansion of recovered filters, i.e. ConvexLayer.transform on the exact back-end
// (python/dccnn/layer.py _pooled_outputs): pooled kernel blocks of n_new images against ns
// support images, then the contraction
//   H[j, q, q'*K + c] = sum_i beta[i, c] blocks[j, i, q, q']     (cross_from_blocks)
//   u[j, q, l]        = sum_t H[j, q, t] F[t, l]                  (conv_outputs)
// Args: n_new, ns, d, kernel kind, contract (0: the kernel blocks only, to show what the
// contraction costs on top of them); K = 10 classes, r = 16 filters, 12x12 images.
template <class T>
void BM_kernel_expansion(benchmark::State& st) {
  const index_t n_new = st.range(0), ns = st.range(1), d = st.range(2), side = 12;
  const bool contract = st.range(4) != 0;
  const index_t K = 10, r = 16;
  const auto g = geometry_for_dim(d, side);
  const Pool2x2 pool(g);
  const index_t P = g.n_positions(), Q = pool.map.n_windows, T_ = Q * K;
  const auto spec = kernel_spec(st.range(3), d);
  const T scale = pixel_scale<T>(spec, d);
  auto Xn = uniform<T>(static_cast<size_t>(n_new * g.channels * side * side), 6, scale);
  auto Xs = uniform<T>(static_cast<size_t>(ns * g.channels * side * side), 7, scale);
  std::vector<T> Zn(static_cast<size_t>(n_new * P * d)), Zs(static_cast<size_t>(ns * P * d));
  dccnn::extract_patches<T>(Xn.data(), n_new, g, Zn.data(), 0);
  dccnn::extract_patches<T>(Xs.data(), ns, g, Zs.data(), 0);
  const auto beta = uniform<double>(static_cast<size_t>(ns * K), 8);
  const auto F = uniform<double>(static_cast<size_t>(T_ * r), 9);
  std::vector<T> blocks(static_cast<size_t>(n_new * ns * Q * Q));
  std::vector<double> H(static_cast<size_t>(Q * T_)), u(static_cast<size_t>(n_new * Q * r));
  for (auto _ : st) {
    dccnn::pooled_kernel_blocks<T>(Zn.data(), n_new, Zs.data(), ns, d, pool.map, spec,
                                   blocks.data(), 0);
    for (index_t j = 0; contract && j < n_new; ++j) {
      std::fill(H.begin(), H.end(), 0.0);
      for (index_t i = 0; i < ns; ++i) {
        const T* b = blocks.data() + (j * ns + i) * Q * Q;
        const double* bi = beta.data() + i * K;
        for (index_t q = 0; q < Q; ++q)
          for (index_t qq = 0; qq < Q; ++qq) {
            const double v = double(b[q * Q + qq]);
            double* h = H.data() + q * T_ + qq * K;
            for (index_t c = 0; c < K; ++c) h[c] += v * bi[c];
          }
      }
      double* uj = u.data() + j * Q * r;
      for (index_t q = 0; q < Q; ++q)
        for (index_t l = 0; l < r; ++l) {
          double s = 0;
          for (index_t t = 0; t < T_; ++t) s += H[static_cast<size_t>(q * T_ + t)] * F[t * r + l];
          uj[q * r + l] = s;
        }
    }
    benchmark::DoNotOptimize(u.data());
  }
  const double values = double(n_new) * double(ns) * double(P) * double(P);
  set_kernel_counters(st, values, double(d), double(n_new));
}

}  // namespace

BENCHMARK(BM_extract_patches<float>)->Arg(9)->Arg(25)->Arg(75)->ArgName("d")
    ->Unit(benchmark::kMillisecond);
BENCHMARK(BM_extract_patches<double>)->Arg(9)->Arg(25)->Arg(75)->ArgName("d")
    ->Unit(benchmark::kMillisecond);
BENCHMARK(BM_kernel_matrix<float>)
    ->ArgsProduct({{9, 25, 75}, {0, 1}})
    ->ArgNames({"d", "kind"})
    ->Unit(benchmark::kMillisecond);
BENCHMARK(BM_kernel_matrix<double>)
    ->ArgsProduct({{9, 25, 75}, {0, 1}})
    ->ArgNames({"d", "kind"})
    ->Unit(benchmark::kMillisecond);
// kind: 0 = rbf, 1 = inverse polynomial
BENCHMARK(BM_pooled_kernel_blocks<float>)
    ->ArgsProduct({{12}, {400}, {9, 25, 75}, {0, 1}})
    ->Args({28, 60, 25, 0})
    ->ArgNames({"side", "n", "d", "kind"})
    ->Unit(benchmark::kMillisecond);
BENCHMARK(BM_pooled_kernel_blocks<double>)
    ->ArgsProduct({{12}, {400}, {9, 25, 75}, {0, 1}})
    ->ArgNames({"side", "n", "d", "kind"})
    ->Unit(benchmark::kMillisecond);
// N = n*K: 100 and 300 images with 10 classes
BENCHMARK(BM_dual_cd_dense)
    ->ArgsProduct({{1000, 3000}, {1, 10}})
    ->ArgNames({"N", "epochs"})
    ->Unit(benchmark::kMillisecond);
BENCHMARK(BM_kernel_expansion<float>)
    ->ArgsProduct({{500}, {100}, {9, 25, 75}, {0, 1}, {1}})
    ->Args({500, 100, 25, 0, 0})
    ->ArgNames({"n_new", "ns", "d", "kind", "contract"})
    ->Unit(benchmark::kMillisecond);
BENCHMARK(BM_kernel_expansion<double>)
    ->ArgsProduct({{500}, {100}, {25}, {0, 1}, {1}})
    ->ArgNames({"n_new", "ns", "d", "kind", "contract"})
    ->Unit(benchmark::kMillisecond);
BENCHMARK_MAIN();
