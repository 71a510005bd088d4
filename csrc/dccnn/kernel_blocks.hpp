// Blocked kernel evaluation: plain kernel matrices and pooled kernel blocks K_ij[q, q']
// (SPEC §1). Both are computed tile by tile with the kernel applied in registers; the
// pooled routine reduces each tile into window sums at once and never holds more than one
// strip of patch-kernel values per thread.
#pragma once

#include "dccnn/common.hpp"
#include "dccnn/kernel_spec.hpp"
#include "dccnn/pooling.hpp"

namespace dccnn {

// out (n1, n2) row-major: out[i, j] = k(Z1[i], Z2[j]). Z1: (n1, d), Z2: (n2, d).
template <class T>
void kernel_matrix(const T* Z1, index_t n1, const T* Z2, index_t n2, index_t d,
                   const KernelSpec& spec, T* out, int n_threads,
                   const InterruptCheck& check = {});

// out (n1, n2, Q, Q): out[i, j, q, q'] = mean_{p in S_q, p' in S_q'} k(Z1[i, p], Z2[j, p']).
// Z1: (n1, P, d), Z2: (n2, P, d). Z2 == nullptr means Z2 = Z1 and only half the pairs are
// evaluated (the other half is the transpose).
template <class T>
void pooled_kernel_blocks(const T* Z1, index_t n1, const T* Z2, index_t n2, index_t d,
                          const PoolingMap& pooling, const KernelSpec& spec, T* out,
                          int n_threads, const InterruptCheck& check = {});

// Name of the instruction set the tile engine runs on ("avx512", "avx2", "generic").
const char* tile_engine_name();

}  // namespace dccnn
