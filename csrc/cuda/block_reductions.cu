// Device reductions of pooled kernel blocks (see block_reductions.cuh).
#include <algorithm>
#include <string>

#include "block_reductions.cuh"
#include "block_reductions_kernels.cuh"
#include "cuda_kernels.hpp"

namespace dccnn {
namespace cuda {

namespace {

using reductions::contract_kernel;
using reductions::kThreads;
using reductions::traces_kernel;

void check_launch(const char* name) {
  const cudaError_t e = cudaGetLastError();
  if (e != cudaSuccess)
    throw DeviceError(std::string("CUDA error ") + cudaGetErrorName(e) + " (" +
                      cudaGetErrorString(e) + ") in " + name);
}

}  // namespace

template <class T>
void launch_contract_blocks(const T* blocks, long long nr, long long ns, int Q2,
                            const double* beta, int K, double* H, cudaStream_t stream) {
  if (nr <= 0 || ns <= 0 || K <= 0) return;
  const int TX = reductions::contract_tile_width(Q2);
  const dim3 grid(static_cast<unsigned>((Q2 + TX - 1) / TX),
                  static_cast<unsigned>(std::min<long long>(nr, 65535)));
  contract_kernel<T><<<grid, kThreads, 0, stream>>>(blocks, nr, ns, Q2, TX, beta, K, H);
  check_launch("contract_kernel");
}

template <class T>
void launch_block_traces(const T* blocks, long long pairs, int Q, double* traces,
                         cudaStream_t stream) {
  if (pairs <= 0) return;
  const unsigned grid = static_cast<unsigned>(std::min<long long>((pairs + 255) / 256, 1 << 16));
  traces_kernel<T><<<grid, 256, 0, stream>>>(blocks, pairs, Q, traces);
  check_launch("traces_kernel");
}

#define DCCNN_REDUCTIONS_INSTANTIATE(T)                                                        \
  template void launch_contract_blocks<T>(const T*, long long, long long, int, const double*, \
                                          int, double*, cudaStream_t);                        \
  template void launch_block_traces<T>(const T*, long long, int, double*, cudaStream_t);
DCCNN_REDUCTIONS_INSTANTIATE(float)
DCCNN_REDUCTIONS_INSTANTIATE(double)
#undef DCCNN_REDUCTIONS_INSTANTIATE

}  // namespace cuda
}  // namespace dccnn
