// Just enough of CUDA C++ to run simple device kernels on the CPU: a launch runs the thread
// blocks one after another, each as blockDim.x host threads that meet at __syncthreads (a
// std::barrier); __shared__ arrays become function statics, private to the block that runs.
// For checking the logic of kernels (indices, lanes, barriers) where no GPU is present; it says
// nothing about their speed, and kernels that use warp intrinsics or atomics need more.
#pragma once

#include <algorithm>
#include <barrier>
#include <thread>
#include <vector>

using std::min;

struct dim3 {
  unsigned x = 1, y = 1, z = 1;
};

inline thread_local dim3 threadIdx, blockIdx;
inline dim3 gridDim, blockDim;
inline std::barrier<>* block_barrier = nullptr;

#define __global__
#define __launch_bounds__(...)
#define __shared__ static
#define __syncthreads() block_barrier->arrive_and_wait()

// kernel(args...) over grid (x, y) with `threads` threads per block.
template <class Kernel>
void launch_on_cpu(dim3 grid, unsigned threads, Kernel kernel) {
  gridDim = grid;
  blockDim = dim3{threads, 1, 1};
  for (unsigned by = 0; by < grid.y; ++by)
    for (unsigned bx = 0; bx < grid.x; ++bx) {
      std::barrier<> barrier(static_cast<std::ptrdiff_t>(threads));
      block_barrier = &barrier;
      std::vector<std::thread> pool;
      for (unsigned t = 0; t < threads; ++t)
        pool.emplace_back([&, t] {
          threadIdx = dim3{t, 0, 0};
          blockIdx = dim3{bx, by, 0};
          kernel();
        });
      for (auto& th : pool) th.join();
    }
}
