// Shared vocabulary of the core: index type, thread counts, cooperative cancellation.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <stdexcept>

namespace dccnn {

using index_t = std::int64_t;

// Polled by long loops so that a caller (e.g. Python's signal handling) can stop them.
// Returns true when the computation must stop. May be empty.
using InterruptCheck = std::function<bool()>;

struct Interrupted : std::runtime_error {
  Interrupted() : std::runtime_error("computation interrupted") {}
};

// Number of threads to use: n_threads > 0 is taken as is, anything else means
// "whatever OpenMP would use" (OMP_NUM_THREADS, omp_set_num_threads / threadpoolctl); never
// more than the processors available.
int resolve_threads(int n_threads);

// Shared by the threads of one parallel loop. Only the calling thread (OpenMP thread 0)
// polls the user's check, and at most every 50 ms: the check may need a lock (the GIL).
class CancelToken {
 public:
  explicit CancelToken(const InterruptCheck& check) : check_(check) {}
  bool stop_requested();
  void throw_if_stopped() const {
    if (stopped_.load(std::memory_order_relaxed)) throw Interrupted();
  }

 private:
  const InterruptCheck& check_;
  std::atomic<bool> stopped_{false};
  std::chrono::steady_clock::time_point last_poll_ = std::chrono::steady_clock::now();
};

}  // namespace dccnn
