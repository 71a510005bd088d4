#include "dccnn/common.hpp"

#include <algorithm>

#ifdef DCCNN_HAVE_OPENMP
#include <omp.h>
#endif

namespace dccnn {

int resolve_threads(int n_threads) {
#ifdef DCCNN_HAVE_OPENMP
  // More threads than processors only oversubscribes the cores, and a count in the tens of
  // thousands makes the OpenMP runtime crash creating them; the Numba twin clamps alike.
  return std::min(n_threads > 0 ? n_threads : omp_get_max_threads(), omp_get_num_procs());
#else
  return n_threads > 0 ? n_threads : 1;
#endif
}

bool CancelToken::stop_requested() {
  if (stopped_.load(std::memory_order_relaxed)) return true;
  bool is_caller_thread = true;
#ifdef DCCNN_HAVE_OPENMP
  is_caller_thread = omp_get_thread_num() == 0;
#endif
  if (check_ && is_caller_thread) {
    const auto now = std::chrono::steady_clock::now();
    if (now - last_poll_ > std::chrono::milliseconds(50)) {
      last_poll_ = now;
      if (check_()) stopped_.store(true, std::memory_order_relaxed);
    }
  }
  return stopped_.load(std::memory_order_relaxed);
}

}  // namespace dccnn
