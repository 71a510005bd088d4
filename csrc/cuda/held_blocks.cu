// Pooled kernel blocks held in device memory across the passes of a solver (HeldBlocks in
// cuda_kernels.hpp): evaluated once by pooled_kernel_blocks straight into a device buffer,
// then reduced by the kernels of block_reductions.cu on every pass.
#include <cuda_runtime.h>

#include <cstdint>
#include <string>

#include "block_reductions.cuh"
#include "cuda_kernels.hpp"
#include "device_memory.cuh"

namespace dccnn {
namespace cuda {

namespace {

// The budget of a call: the caller's, else 80% of the device memory free now.
std::int64_t resolve_budget(std::int64_t max_device_memory) {
  if (max_device_memory > 0) return max_device_memory;
  std::size_t free_b = 0, total_b = 0;
  DCCNN_CUDA(cudaMemGetInfo(&free_b, &total_b));
  return static_cast<std::int64_t>(0.8 * static_cast<double>(free_b));
}

void check_fits(std::int64_t need, std::int64_t budget, const char* what) {
  if (need > budget)
    throw DeviceMemoryError(std::string(what) + " needs " + mib(double(need)) +
                            " of device memory, over the budget of " + mib(double(budget)));
}

}  // namespace

template <class T>
HeldBlocks<T>::HeldBlocks(const T* Z, index_t n, index_t P, index_t d, const index_t* position_ptr,
                          const std::int32_t* position_window, index_t n_windows,
                          const KernelSpec& spec, const Options& opt)
    : n_(n), Q_(n_windows) {
  if (n < 1) throw std::invalid_argument("Z: expected at least one image");
  if (n_windows < 1) throw std::invalid_argument("n_windows: expected at least one window");
  const std::int64_t budget = resolve_budget(opt.max_device_memory);
  // The blocks may take half the budget; the rest is for the batches of their evaluation and
  // for the reductions. In double first: n^2 Q^2 can overflow 64 bits long before it fits.
  const double need = double(n) * double(n) * double(n_windows) * double(n_windows) * sizeof(T);
  if (need > 0.5 * double(budget))
    throw DeviceMemoryError("holding the pooled kernel blocks of " + std::to_string(n) +
                            " images needs " + mib(need) + " of device memory, over half the "
                            "budget of " + mib(double(budget)));
  const std::int64_t held = held_bytes();
  void* p = nullptr;
  DCCNN_CUDA(cudaMalloc(&p, static_cast<std::size_t>(held)));
  blocks_ = static_cast<T*>(p);
  // Left to the evaluation's batches now, and to the reductions afterwards.
  budget_ = opt.max_device_memory > 0 ? budget - held : 0;
  Options evaluate = opt;
  evaluate.max_device_memory = budget - held;
  evaluate.out_on_device = true;
  evaluate.discard_output = false;
  try {
    evaluation_ = pooled_kernel_blocks<T>(Z, n, nullptr, n, P, d, position_ptr, position_window,
                                          n_windows, spec, blocks_, evaluate);
  } catch (...) {
    cudaFree(blocks_);
    throw;
  }
  evaluation_.device_bytes += held;
}

template <class T>
HeldBlocks<T>::~HeldBlocks() {
  if (blocks_) cudaFree(blocks_);
}

template <class T>
std::int64_t HeldBlocks<T>::held_bytes() const {
  return n_ * n_ * Q_ * Q_ * static_cast<std::int64_t>(sizeof(T));
}

template <class T>
RunStats HeldBlocks<T>::cross(const double* beta, index_t K, double* H) const {
  if (K < 1 || K > (1 << 24)) throw std::invalid_argument("beta: expected between 1 and 2^24 columns");
  const std::int64_t Q2 = Q_ * Q_;
  Tracker tracker;
  check_fits((n_ * Q2 * K + n_ * K) * 8, resolve_budget(budget_), "pooled_kernel_cross (held blocks)");
  DevBuf<double> beta_d(static_cast<std::size_t>(n_ * K), &tracker);
  DevBuf<double> H_d(static_cast<std::size_t>(n_ * Q2 * K), &tracker);
  Stream stream;
  Event start(true), stop(true);
  SyncOnExit guard{stream.s, nullptr};
  DCCNN_CUDA(cudaEventRecord(start.e, stream.s));
  DCCNN_CUDA(cudaMemcpyAsync(beta_d.get(), beta, static_cast<std::size_t>(n_ * K * 8),
                             cudaMemcpyHostToDevice, stream.s));
  DCCNN_CUDA(cudaMemsetAsync(H_d.get(), 0, static_cast<std::size_t>(n_ * Q2 * K * 8), stream.s));
  launch_contract_blocks<T>(blocks_, n_, n_, static_cast<int>(Q2), beta_d.get(), static_cast<int>(K),
                            H_d.get(), stream.s);
  DCCNN_CUDA(cudaMemcpyAsync(H, H_d.get(), static_cast<std::size_t>(n_ * Q2 * K * 8),
                             cudaMemcpyDeviceToHost, stream.s));
  DCCNN_CUDA(cudaEventRecord(stop.e, stream.s));
  DCCNN_CUDA(cudaStreamSynchronize(stream.s));
  RunStats st;
  float ms = 0;
  DCCNN_CUDA(cudaEventElapsedTime(&ms, start.e, stop.e));
  st.device_seconds = ms * 1e-3;
  st.batches = 1;
  st.batch_rows = st.batch_cols = n_;
  st.device_bytes = tracker.peak;
  return st;
}

template <class T>
RunStats HeldBlocks<T>::traces(double* out) const {
  Tracker tracker;
  check_fits(n_ * n_ * 8, resolve_budget(budget_), "pooled_kernel_traces (held blocks)");
  DevBuf<double> traces_d(static_cast<std::size_t>(n_ * n_), &tracker);
  Stream stream;
  SyncOnExit guard{stream.s, nullptr};
  launch_block_traces<T>(blocks_, n_ * n_, static_cast<int>(Q_), traces_d.get(), stream.s);
  DCCNN_CUDA(cudaMemcpyAsync(out, traces_d.get(), static_cast<std::size_t>(n_ * n_ * 8),
                             cudaMemcpyDeviceToHost, stream.s));
  DCCNN_CUDA(cudaStreamSynchronize(stream.s));
  RunStats st;
  st.batches = 1;
  st.batch_rows = st.batch_cols = n_;
  st.device_bytes = tracker.peak;
  return st;
}

template class HeldBlocks<float>;
template class HeldBlocks<double>;

}  // namespace cuda
}  // namespace dccnn
