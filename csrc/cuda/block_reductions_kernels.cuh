// The device kernels of block_reductions.cu, apart from their launches, so that a test can
// run them alone on the CPU emulation (tests/cuda_on_cpu/check_block_reductions.cpp) against
// explicit loops, over shapes the end-to-end tests do not reach; nothing here calls the CUDA
// runtime.
#pragma once

namespace dccnn {
namespace cuda {
namespace reductions {

constexpr int kThreads = 128;
constexpr int kRows = 128;  // column images s whose weights are staged in shared memory at once
constexpr int kOutputs = 8;  // outputs c accumulated in registers by one pass over the blocks

// Block entries t per thread block of contract_kernel: Q2 rounded up to a power of two, at
// most kThreads (the grid's x dimension covers Q2 in tiles of this width).
inline int contract_tile_width(int Q2) {
  int TX = 1;
  while (TX < Q2 && TX < kThreads) TX *= 2;
  return TX;
}

// One thread block per (row image r, tile of TX block entries t). Thread = (lane, x): entry
// t = tile * TX + x, column images s = lane, lane + lanes, ... (lanes = kThreads / TX, so that
// small blocks, Q2 < kThreads, still keep every thread busy). Reads of the blocks are
// coalesced along t; the weights of kRows column images sit in shared memory; the lanes of an
// entry are summed in lane order, so no atomics and the same result on every run.
template <class T>
__global__ void __launch_bounds__(kThreads) contract_kernel(const T* blocks, long long nr,
                                                            long long ns, int Q2, int TX,
                                                            const double* beta, int K,
                                                            double* H) {
  __shared__ double sbeta[kRows * kOutputs];
  __shared__ double partial[kThreads * kOutputs];
  const int lanes = kThreads / TX;
  const int x = threadIdx.x % TX, lane = threadIdx.x / TX;
  const int t = blockIdx.x * TX + x;
  for (long long r = blockIdx.y; r < nr; r += gridDim.y) {
    const T* row = blocks + r * ns * Q2;
    for (int c0 = 0; c0 < K; c0 += kOutputs) {
      const int kc = min(kOutputs, K - c0);
      double acc[kOutputs] = {};
      for (long long s0 = 0; s0 < ns; s0 += kRows) {
        const int rows = static_cast<int>(min(static_cast<long long>(kRows), ns - s0));
        __syncthreads();  // the previous weights (and partial sums) have been read
        for (int idx = threadIdx.x; idx < rows * kOutputs; idx += kThreads) {
          const int s = idx / kOutputs, c = idx - s * kOutputs;
          sbeta[idx] = c < kc ? beta[(s0 + s) * K + c0 + c] : 0.0;
        }
        __syncthreads();
        if (t < Q2)
          for (int s = lane; s < rows; s += lanes) {
            const double v = static_cast<double>(row[(s0 + s) * Q2 + t]);
#pragma unroll
            for (int c = 0; c < kOutputs; ++c) acc[c] += v * sbeta[s * kOutputs + c];
          }
      }
#pragma unroll
      for (int c = 0; c < kOutputs; ++c) partial[threadIdx.x * kOutputs + c] = acc[c];
      __syncthreads();
      if (lane == 0 && t < Q2) {
        double* h = H + (r * Q2 + t) * K + c0;
        for (int c = 0; c < kc; ++c) {
          double sum = 0.0;
          for (int l = 0; l < lanes; ++l) sum += partial[(l * TX + x) * kOutputs + c];
          h[c] += sum;
        }
      }
    }
  }
}

template <class T>
__global__ void traces_kernel(const T* blocks, long long pairs, int Q, double* traces) {
  const long long Q2 = static_cast<long long>(Q) * Q;
  for (long long p = blockIdx.x * static_cast<long long>(blockDim.x) + threadIdx.x; p < pairs;
       p += static_cast<long long>(gridDim.x) * blockDim.x) {
    const T* b = blocks + p * Q2;
    double s = 0.0;
    for (int q = 0; q < Q; ++q) s += static_cast<double>(b[q * (Q + 1)]);
    traces[p] = s;
  }
}

}  // namespace reductions
}  // namespace cuda
}  // namespace dccnn
