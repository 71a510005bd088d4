// Google Benchmark executables for the dccnn core (build with -DDCCNN_BUILD_BENCHMARKS=ON).
// Counters: items/s = kernel values (or patches) per second; GFLOPs = kernel values times
// (2d + 15) flops, the "sgemm-equivalent" rate to set against the machine's sgemm peak.
#include <benchmark/benchmark.h>

#include <random>
#include <vector>

#include "dccnn/kernel_blocks.hpp"
#include "dccnn/patches.hpp"

namespace {

template <class T>
std::vector<T> uniform(size_t n, unsigned seed, T scale = T(1)) {
  std::mt19937 gen(seed);
  std::uniform_real_distribution<T> u(T(0), scale);
  std::vector<T> v(n);
  for (auto& x : v) x = u(gen);
  return v;
}

void set_kernel_counters(benchmark::State& st, double values, double d) {
  st.SetItemsProcessed(static_cast<int64_t>(values) * st.iterations());
  st.counters["GFLOPs"] = benchmark::Counter(values * (2 * d + 15) * 1e-9 * st.iterations(),
                                             benchmark::Counter::kIsRate);
}

template <class T>
void BM_extract_patches(benchmark::State& st) {
  const dccnn::index_t n = 1000, size = st.range(0);
  const dccnn::PatchGeometry g{1, 28, 28, size, 1, 0};
  auto X = uniform<T>(n * 28 * 28, 1);
  std::vector<T> out(n * g.n_positions() * g.patch_dim());
  for (auto _ : st) dccnn::extract_patches<T>(X.data(), n, g, out.data(), 0);
  st.SetItemsProcessed(n * g.n_positions() * st.iterations());
}

template <class T>
void BM_kernel_matrix(benchmark::State& st) {
  const dccnn::index_t n1 = 4000, n2 = 2000, d = st.range(0);
  dccnn::KernelSpec spec;
  spec.kind = static_cast<dccnn::KernelKind>(st.range(1));
  spec.gamma = 1.0 / d;
  // inverse_polynomial needs patches inside the unit ball
  const T scale = spec.kind == dccnn::KernelKind::inverse_polynomial ? T(1) / d : T(1);
  auto A = uniform<T>(n1 * d, 2, scale), B = uniform<T>(n2 * d, 3, scale);
  std::vector<T> out(n1 * n2);
  for (auto _ : st) dccnn::kernel_matrix<T>(A.data(), n1, B.data(), n2, d, spec, out.data(), 0);
  set_kernel_counters(st, double(n1) * n2, double(d));
}

template <class T>
void BM_pooled_kernel_blocks(benchmark::State& st) {
  // n images of 12x12 (or 28x28), 5x5 patches, 2x2 pooling stride 2.
  const dccnn::index_t n = st.range(1), side = st.range(0), s = 5;
  const dccnn::PatchGeometry g{1, side, side, s, 1, 0};
  const dccnn::index_t Hp = g.out_height(), P = g.n_positions(), d = g.patch_dim();
  const dccnn::index_t Hq = Hp / 2, Q = Hq * Hq;
  std::vector<dccnn::index_t> ptr(P + 1, 0);
  std::vector<int32_t> win;
  for (dccnn::index_t p = 0; p < P; ++p) {
    const dccnn::index_t y = p / Hp, x = p % Hp;
    if (y / 2 < Hq && x / 2 < Hq) win.push_back(static_cast<int32_t>((y / 2) * Hq + x / 2));
    ptr[p + 1] = static_cast<dccnn::index_t>(win.size());
  }
  const dccnn::PoolingMap pool{P, Q, ptr.data(), win.data()};
  auto X = uniform<T>(n * side * side, 4);
  std::vector<T> Z(n * P * d), out(n * n * Q * Q);
  dccnn::extract_patches<T>(X.data(), n, g, Z.data(), 0);
  dccnn::KernelSpec spec;
  spec.gamma = 1.0 / d;
  for (auto _ : st)
    dccnn::pooled_kernel_blocks<T>(Z.data(), n, nullptr, n, d, pool, spec, out.data(), 0);
  // the symmetric routine evaluates n(n+1)/2 image pairs
  set_kernel_counters(st, double(n) * (n + 1) / 2 * P * P, double(d));
}

}  // namespace

BENCHMARK(BM_extract_patches<float>)->Arg(3)->Arg(5)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_kernel_matrix<float>)
    ->ArgsProduct({{9, 25, 75}, {0, 1}})
    ->ArgNames({"d", "kind"})
    ->Unit(benchmark::kMillisecond);
BENCHMARK(BM_kernel_matrix<double>)
    ->ArgsProduct({{9, 25, 75}, {0, 1}})
    ->ArgNames({"d", "kind"})
    ->Unit(benchmark::kMillisecond);
BENCHMARK(BM_pooled_kernel_blocks<float>)
    ->Args({12, 400})
    ->Args({28, 60})
    ->ArgNames({"side", "n"})
    ->Unit(benchmark::kMillisecond);
BENCHMARK(BM_pooled_kernel_blocks<double>)
    ->Args({12, 400})
    ->ArgNames({"side", "n"})
    ->Unit(benchmark::kMillisecond);
BENCHMARK_MAIN();
