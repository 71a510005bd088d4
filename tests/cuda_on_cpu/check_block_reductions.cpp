// csrc/cuda/block_reductions_kernels.cuh run on the CPU emulation (cuda_on_cpu.hpp) against
// explicit loops: the contraction of pooled blocks with dual weights and their traces, over block
// sizes below, at and above a thread block's width, K below, at and above the 8 outputs of
// one pass, column images over several staged chunks, and fewer grid rows than row images.
// Prints one line per failure and "failures: N"; exits 1 when N > 0.
#include <cmath>
#include <cstdio>
#include <random>

#include "cuda_on_cpu.hpp"
#include "cuda/block_reductions_kernels.cuh"

using namespace dccnn::cuda::reductions;

template <class T>
int check_contract(std::mt19937& gen, int Q, int K, long long nr, long long ns) {
  std::normal_distribution<double> normal;
  const int Q2 = Q * Q;
  std::vector<T> blocks(static_cast<std::size_t>(nr * ns * Q2));
  for (auto& v : blocks) v = static_cast<T>(normal(gen));
  std::vector<double> beta(static_cast<std::size_t>(ns * K));
  for (auto& v : beta) v = normal(gen);
  // H is added to: start from a value that is not zero
  std::vector<double> H(static_cast<std::size_t>(nr * Q2 * K), 0.25), want = H;
  for (long long r = 0; r < nr; ++r)
    for (long long s = 0; s < ns; ++s)
      for (int t = 0; t < Q2; ++t)
        for (int c = 0; c < K; ++c)
          want[(r * Q2 + t) * K + c] +=
              static_cast<double>(blocks[(r * ns + s) * Q2 + t]) * beta[s * K + c];
  const int TX = contract_tile_width(Q2);
  const dim3 grid(static_cast<unsigned>((Q2 + TX - 1) / TX),
                  static_cast<unsigned>(std::min<long long>(nr, 2)));
  cuda_on_cpu::launch("contract_kernel", contract_kernel<T>, grid, kThreads)(
      blocks.data(), nr, ns, Q2, TX, beta.data(), K, H.data());
  if (cudaStreamSynchronize(nullptr) != cudaSuccess) {
    std::printf("contract_kernel: %s\n", cudaGetErrorString(cudaGetLastError()));
    return 1;
  }
  double err = 0, scale = 1;
  for (std::size_t i = 0; i < H.size(); ++i) {
    err = std::max(err, std::abs(H[i] - want[i]));
    scale = std::max(scale, std::abs(want[i]));
  }
  if (err <= 1e-13 * scale * static_cast<double>(ns)) return 0;
  std::printf("contract_kernel<%s> Q=%d K=%d nr=%lld ns=%lld: max error %.3e\n",
              sizeof(T) == 4 ? "float" : "double", Q, K, nr, ns, err);
  return 1;
}

int check_traces(std::mt19937& gen, int Q, long long pairs, unsigned blocks_in_grid) {
  std::normal_distribution<double> normal;
  std::vector<double> blocks(static_cast<std::size_t>(pairs * Q * Q));
  for (auto& v : blocks) v = normal(gen);
  std::vector<double> traces(static_cast<std::size_t>(pairs), -1.0);
  cuda_on_cpu::launch("traces_kernel", traces_kernel<double>, dim3(blocks_in_grid), 256)(
      blocks.data(), pairs, Q, traces.data());
  if (cudaStreamSynchronize(nullptr) != cudaSuccess) {
    std::printf("traces_kernel: %s\n", cudaGetErrorString(cudaGetLastError()));
    return 1;
  }
  for (long long p = 0; p < pairs; ++p) {
    double want = 0;
    for (int q = 0; q < Q; ++q) want += blocks[(p * Q + q) * Q + q];
    if (std::abs(traces[p] - want) > 1e-12 * (1 + std::abs(want))) {
      std::printf("traces_kernel Q=%d pairs=%lld: pair %lld gives %.17g, not %.17g\n", Q, pairs,
                  p, traces[p], want);
      return 1;
    }
  }
  return 0;
}

int main() {
  std::mt19937 gen(20261127);
  int failures = 0;
  // Q2 = 1 (global pooling: 128 lanes per entry), 4, 81, 144 (two tiles of 128 entries)
  for (int Q : {1, 2, 9, 12})
    for (int K : {1, 3, 8, 11})
      for (long long nr : {1, 3})
        for (long long ns : {1, 5, 128, 300}) failures += check_contract<float>(gen, Q, K, nr, ns);
  failures += check_contract<double>(gen, 3, 10, 3, 257);
  for (int Q : {1, 4, 9}) failures += check_traces(gen, Q, 700, 2);  // grid-stride loop
  std::printf("failures: %d\n", failures);
  return failures ? 1 : 0;
}
