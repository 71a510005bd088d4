// Reductions of one batch of pooled kernel blocks while it is still on the device: the
// contraction with dual weights (the products behind M(alpha), the scores and the recovered
// filters' outputs, SPEC §3-4) and the traces (the Gram of the concatenated pooled features).
// Only their results leave the device: n Q^2 K (or n^2) numbers instead of n^2 Q^2.
#pragma once

#include <cuda_runtime.h>

namespace dccnn {
namespace cuda {

// H[r, t*K + c] += sum_s beta[s, c] blocks[r, s, t] for blocks (nr, ns, Q2), t = q*Q + q',
// H (nr, Q2*K) and beta (ns, K) already offset to the batch's first row and column image.
// Deterministic: every H entry is added to once per call, its terms summed in a fixed order.
template <class T>
void launch_contract_blocks(const T* blocks, long long nr, long long ns, int Q2,
                            const double* beta, int K, double* H, cudaStream_t stream);

// traces[p] = sum_q blocks[p, q, q] for blocks (pairs, Q, Q).
template <class T>
void launch_block_traces(const T* blocks, long long pairs, int Q, double* traces,
                         cudaStream_t stream);

}  // namespace cuda
}  // namespace dccnn
