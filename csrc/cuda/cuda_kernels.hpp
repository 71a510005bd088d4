// Host interface of the optional CUDA kernels (the extension dccnn._cuda). Nothing here needs
// CUDA headers: csrc/cuda/bindings.cpp is compiled by the host compiler and calls these.
//
// Semantics follow the CPU core (csrc/dccnn/kernel_blocks.hpp, SPEC §1) exactly: same kernel
// codes, same pooling map (CSR "which windows contain position p"), same output layouts.
#pragma once

#include <cstdint>
#include <functional>
#include <stdexcept>
#include <string>

#include "dccnn/kernel_spec.hpp"

namespace dccnn {
namespace cuda {

using index_t = std::int64_t;

// A CUDA call failed (no device, driver too old, launch failure, ...). -> RuntimeError.
struct DeviceError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// The work does not fit the device memory budget. -> MemoryError.
struct DeviceMemoryError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// The caller's interrupt check asked to stop (Ctrl-C). -> KeyboardInterrupt in the bindings.
struct DeviceInterrupted : std::runtime_error {
  DeviceInterrupted() : std::runtime_error("computation interrupted") {}
};

struct Options {
  // Bytes of device memory the call may allocate in total; <= 0 means 80% of the free memory.
  std::int64_t max_device_memory = 0;
  // Benchmarks only: compute every block on the device but copy nothing back (out may be null).
  bool discard_output = false;
  // out is device memory (HeldBlocks): the blocks are copied there, not to the host.
  bool out_on_device = false;
  // Polled between batches; returns true when the computation must stop. May be empty.
  std::function<bool()> check;
};

struct RunStats {
  double device_seconds = 0;  // from the first upload to the last copy back (CUDA events)
  std::int64_t batches = 0;   // batch pairs launched
  std::int64_t batch_rows = 0, batch_cols = 0;  // images (or rows) per batch
  bool split_windows = false;  // some window was larger than a tile (accumulated in slots)
  std::int64_t device_bytes = 0;  // peak bytes allocated by the call
};

struct DeviceInfo {
  std::string name;
  int major = 0, minor = 0, multiprocessors = 0;
  int clock_khz = 0;  // SM clock (cudaDevAttrClockRate)
  std::int64_t memory_total = 0, memory_free = 0, l2_bytes = 0;
  int fp32_lanes_per_sm = 0, fp64_lanes_per_sm = 0;  // FMA units, for peak estimates
};

// Number of usable CUDA devices; 0 when there is no driver or no device (never throws).
int device_count();
// The current device's properties. Throws DeviceError.
DeviceInfo device_info();
// Message of the reason device_count() is 0 ("" when it is not).
std::string unavailable_reason();

// out (n1, n2) row-major: out[i, j] = k(Z1[i], Z2[j]). Z1: (n1, d), Z2: (n2, d).
template <class T>
RunStats kernel_matrix(const T* Z1, index_t n1, const T* Z2, index_t n2, index_t d,
                       const KernelSpec& spec, T* out, const Options& opt);

// out (n1, n2, Q, Q): out[i, j, q, q'] = mean_{p in S_q, p' in S_q'} k(Z1[i, p], Z2[j, p']).
// Z1: (n1, P, d), Z2: (n2, P, d); Z2 == nullptr means Z2 = Z1 and only half of the pairs are
// evaluated. The pooling map: position_ptr (P + 1), position_window (position_ptr[P]).
template <class T>
RunStats pooled_kernel_blocks(const T* Z1, index_t n1, const T* Z2, index_t n2, index_t P,
                              index_t d, const index_t* position_ptr,
                              const std::int32_t* position_window, index_t n_windows,
                              const KernelSpec& spec, T* out, const Options& opt);

// The pooled blocks reduced on the device, batch by batch, so that only the results come back
// (same arguments as pooled_kernel_blocks; Z2 == nullptr again means Z2 = Z1, half the pairs):
//
// H (n1, Q, Q * K) float64: H[i, q, r*K + c] = sum_j beta[j, c] K_ij[q, r], beta (n2, K)
// float64. The products of the dual solvers (M(alpha) and the scores, SPEC §3) and the outputs
// of the recovered filters (SPEC §4) need only these.
template <class T>
RunStats pooled_kernel_cross(const T* Z1, index_t n1, const T* Z2, index_t n2, index_t P,
                             index_t d, const index_t* position_ptr,
                             const std::int32_t* position_window, index_t n_windows,
                             const KernelSpec& spec, const double* beta, index_t K, double* H,
                             const Options& opt);

// traces (n1, n2) float64: traces[i, j] = tr K_ij, the Gram of the concatenated pooled
// features.
template <class T>
RunStats pooled_kernel_traces(const T* Z1, index_t n1, const T* Z2, index_t n2, index_t P,
                              index_t d, const index_t* position_ptr,
                              const std::int32_t* position_window, index_t n_windows,
                              const KernelSpec& spec, double* traces, const Options& opt);

// The pooled blocks of all pairs of one set of images (Z2 = Z1), evaluated once and held in
// device memory, for solvers that reduce them with new weights on every pass: each cross()
// or traces() then reads n^2 Q^2 values instead of evaluating them again. The constructor
// throws DeviceMemoryError, before allocating anything, when the blocks (n^2 Q^2 T) take more
// than half of opt.max_device_memory; the batches of their evaluation, then the reductions'
// own buffers (n Q^2 K + n K, or n^2, float64), must fit what is left of it.
template <class T>
class HeldBlocks {
 public:
  HeldBlocks(const T* Z, index_t n, index_t P, index_t d, const index_t* position_ptr,
             const std::int32_t* position_window, index_t n_windows, const KernelSpec& spec,
             const Options& opt);
  ~HeldBlocks();
  HeldBlocks(const HeldBlocks&) = delete;
  HeldBlocks& operator=(const HeldBlocks&) = delete;

  // H (n, Q, Q * K) float64, as pooled_kernel_cross with Z2 = Z1.
  RunStats cross(const double* beta, index_t K, double* H) const;
  // traces (n, n) float64, as pooled_kernel_traces with Z2 = Z1.
  RunStats traces(double* out) const;
  index_t n() const { return n_; }
  index_t n_windows() const { return Q_; }
  // Bytes held on the device, and the statistics of the evaluation.
  std::int64_t held_bytes() const;
  const RunStats& evaluation() const { return evaluation_; }

 private:
  T* blocks_ = nullptr;
  index_t n_ = 0, Q_ = 0;
  std::int64_t budget_ = 0;  // what the reductions may use beside the blocks (0: no limit set)
  RunStats evaluation_;
};

}  // namespace cuda
}  // namespace dccnn
