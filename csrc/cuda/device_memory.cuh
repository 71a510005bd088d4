// Errors and device resources of the CUDA host code: CUDA errors as exceptions, plain
// cudaMalloc buffers counted against a budget, streams and events that free themselves.
#pragma once

#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include "cuda_kernels.hpp"

namespace dccnn {
namespace cuda {

inline void check_cuda(cudaError_t e, const char* what, const char* file, int line) {
  if (e == cudaSuccess) return;
  (void)cudaGetLastError();  // clear a non-sticky error so that later calls can run
  std::string msg = std::string("CUDA error ") + cudaGetErrorName(e) + " (" +
                    cudaGetErrorString(e) + ") in " + what + " [" + file + ":" +
                    std::to_string(line) + "]";
  if (e == cudaErrorMemoryAllocation) throw DeviceMemoryError(msg);
  throw DeviceError(msg);
}

#define DCCNN_CUDA(expr) check_cuda((expr), #expr, __FILE__, __LINE__)
#define DCCNN_CUDA_LAUNCHED(name) check_cuda(cudaGetLastError(), name, __FILE__, __LINE__)

inline std::string mib(double bytes) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.1f MiB", bytes / (1024.0 * 1024.0));
  return buf;
}

struct Tracker {
  std::int64_t now = 0, peak = 0;
  void add(std::int64_t b) {
    now += b;
    peak = std::max(peak, now);
  }
};

template <class U>
class DevBuf {
 public:
  DevBuf() = default;
  DevBuf(std::size_t n, Tracker* t) { reset(n, t); }
  DevBuf(const DevBuf&) = delete;
  DevBuf& operator=(const DevBuf&) = delete;
  ~DevBuf() { release(); }
  void reset(std::size_t n, Tracker* t) {
    release();
    if (n == 0) return;
    void* p = nullptr;
    const cudaError_t e = cudaMalloc(&p, n * sizeof(U));
    if (e != cudaSuccess) {
      (void)cudaGetLastError();
      throw DeviceMemoryError("cudaMalloc of " + mib(double(n * sizeof(U))) +
                              " failed: " + cudaGetErrorString(e));
    }
    ptr_ = static_cast<U*>(p);
    bytes_ = static_cast<std::int64_t>(n * sizeof(U));
    tracker_ = t;
    if (tracker_) tracker_->add(bytes_);
  }
  void release() {
    if (ptr_) {
      cudaFree(ptr_);
      if (tracker_) tracker_->now -= bytes_;
    }
    ptr_ = nullptr;
    bytes_ = 0;
  }
  U* get() const { return ptr_; }

 private:
  U* ptr_ = nullptr;
  std::int64_t bytes_ = 0;
  Tracker* tracker_ = nullptr;
};

template <class U>
void upload_vector(DevBuf<U>& buf, const std::vector<U>& v, Tracker* t, cudaStream_t s) {
  buf.reset(std::max<std::size_t>(v.size(), 1), t);
  if (!v.empty())
    DCCNN_CUDA(cudaMemcpyAsync(buf.get(), v.data(), v.size() * sizeof(U), cudaMemcpyHostToDevice, s));
}

struct Stream {
  cudaStream_t s = nullptr;
  Stream() { DCCNN_CUDA(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking)); }
  ~Stream() {
    if (s) cudaStreamDestroy(s);
  }
  Stream(const Stream&) = delete;
  Stream& operator=(const Stream&) = delete;
};

struct Event {
  cudaEvent_t e = nullptr;
  explicit Event(bool timing = false) {
    DCCNN_CUDA(cudaEventCreateWithFlags(&e, timing ? cudaEventDefault : cudaEventDisableTiming));
  }
  ~Event() {
    if (e) cudaEventDestroy(e);
  }
  Event(const Event&) = delete;
  Event& operator=(const Event&) = delete;
};

// Destroyed before the buffers it is declared after: no kernel or copy still runs on memory
// that is being freed when an exception unwinds the orchestration.
struct SyncOnExit {
  cudaStream_t a, b;
  ~SyncOnExit() {
    if (a) cudaStreamSynchronize(a);
    if (b) cudaStreamSynchronize(b);
  }
};

}  // namespace cuda
}  // namespace dccnn
