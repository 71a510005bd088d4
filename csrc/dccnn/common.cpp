#include "dccnn/common.hpp"

#ifdef DCCNN_HAVE_OPENMP
#include <omp.h>
#endif

namespace dccnn {

int resolve_threads(int n_threads) {
  if (n_threads > 0) return n_threads;
#ifdef DCCNN_HAVE_OPENMP
  return omp_get_max_threads();
#else
  return 1;
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
