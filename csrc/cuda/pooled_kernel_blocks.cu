// CUDA kernels of dccnn: plain kernel matrices and pooled kernel blocks (SPEC §1).
//
// Layout. The patches of every image are gathered once into a transposed, "expanded" array
// ZeT (d, n * M): for each image the members of window 0, then of window 1, ... (M = total
// window membership, M <= P without overlap). Every pooled output K_ij[q, q'] is then the sum
// over a rectangle of the (n1 M) x (n2 M) patch-kernel matrix, whose rows and columns are cut
// into "segments" (image, window) that are contiguous.
//
// Tiles. The rows (and the columns) are cut into chunks of at most BM rows that hold whole
// segments (a window with more than BM members is split into pieces: "split" mode). A thread
// block takes one row chunk against up to 8 consecutive column chunks, one BM x BM tile of
// patch-kernel values at a time: the operands arrive by asynchronous copies (the next column
// chunk is fetched while this one is computed; the row chunk stays resident), the dot products
// run from shared memory into an 8 x 8 (float) / 4 x 4 (double) register tile per thread, and
// the kernel is applied in registers (fused epilogue). The pooled sums follow without leaving
// the chip: when every window size is a multiple of the vector width (e.g. 2x2 pooling) each
// thread sums its 4-column (2-column) groups in registers and the block adds the group sums of
// each (row piece, column piece) in double; otherwise the values are parked in shared memory,
// each row is summed over the column pieces (float partial sums of at most 4 values,
// accumulated in double) and then over the row pieces (double). Without split windows every
// output belongs to exactly one tile and is written once, scaled by 1 / (|S_q| |S_q'|). With
// split windows an output gathers the sums of several (row piece, column piece) pairs, each
// from exactly one tile: every pair has its own slot in a double accumulator (R x R slots per
// output, R = the most pieces a window can have), and a last pass adds the slots in a fixed
// order and scales. Atomic additions would take less memory, but their order, and so the
// last bits of the blocks, would change from run to run.
//
// Symmetric case (Z2 = Z1): only the tiles with row chunk <= column chunk are computed; the
// other outputs are filled by a transpose pass. Batches of image pairs keep the device memory
// under a budget (plain cudaMalloc, no managed memory); two output slots let the copy of one
// batch to the host overlap the next batch's kernels, and large outputs go through pinned
// staging buffers copied out by several host threads.
#include <cuda_pipeline.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "block_reductions.cuh"
#include "cuda_kernels.hpp"
#include "device_memory.cuh"

namespace dccnn {
namespace cuda {

namespace {

// ---------------------------------------------------------------------------------------------
// Tile configuration and kernel arguments
// ---------------------------------------------------------------------------------------------

template <class T>
struct VecOf;
template <>
struct VecOf<float> {
  using type = float4;
};
template <>
struct VecOf<double> {
  using type = double2;
};

template <class T>
struct Cfg {
  static constexpr int VW = 16 / static_cast<int>(sizeof(T));  // elements per 16-byte vector
  static constexpr int BM = 32 * VW;    // tile rows = tile columns: 128 (float), 64 (double)
  static constexpr int HALF = BM / 2;
  static constexpr int TM = 2 * VW;     // register tile per thread: TM x TM
  static constexpr int KC = 36;         // patch dimensions per shared-memory stage
  static constexpr int LDT = BM + VW;   // row stride of the value tile (conflict-free)
  static constexpr int G = 32;          // column pieces per reduction pass
  static constexpr int LDC = BM + 1;    // stride of the column-piece sums (doubles)
  static constexpr int THREADS = 256;   // 16 x 16 threads
};

template <class T>
struct TileArgs {
  // Operands, already offset to the first row of the batch: element (k, r) at a[k * lda + r].
  const T* a;
  const T* a_sq;
  const T* b;
  const T* b_sq;
  long long lda, ldb;
  int d;
  int nrows_a, nrows_b;  // plain kernel matrix: rows of this batch
  // Pooled plan of the row side and of the column side.
  const int* a_chunk_row;
  const int* a_chunk_piece;
  const int* a_piece_seg;
  const int* a_piece_row;
  const int* a_piece_len;
  const int* b_chunk_row;
  const int* b_chunk_piece;
  const int* b_piece_seg;
  const int* b_piece_row;
  const int* b_piece_len;
  int Q;
  const double* inv_count;
  bool diag;  // symmetric diagonal batch: tiles below the diagonal are skipped
  T* out;
  double* acc;
  int piece_slots;  // split windows: R, the most pieces of one window (acc has R^2 per output)
  long long ld_pairs;  // column images (plain: columns) of the output buffer
  // Kernel parameters (rbf: gamma_e = gamma * log2(e) in float, gamma in double).
  T gamma_e, two_gamma_e, coef0, constant;
  int degree;
};

enum Kind : int { kRbf = 0, kInvPoly = 1, kPoly = 2, kLinear = 3 };

// Kernel values from the dot product and the two squared norms as parked in shared memory:
// for rbf the norms are stored pre-scaled, n = -gamma_e ||z||^2, so that
// -gamma ||z - z'||^2 = n_a + n_b + 2 gamma_e <z, z'> (clamped at 0) costs two instructions.
template <int KIND>
__device__ __forceinline__ float kernel_value(float dot, float na, float nb,
                                              const TileArgs<float>& p) {
  if constexpr (KIND == kRbf) {
    const float x = fminf(fmaf(p.two_gamma_e, dot, na + nb), 0.0f);
    float v;  // 2^x to ~2 ulp; 0 below -126 like the CPU's fast_exp underflow
    asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(v) : "f"(x));
    return v + p.constant;
  } else if constexpr (KIND == kInvPoly) {
    return __frcp_rn(2.0f - dot) + p.constant;
  } else if constexpr (KIND == kPoly) {
    const float base = dot + p.coef0;
    float v = base;
    for (int e = 1; e < p.degree; ++e) v *= base;
    return v + p.constant;
  } else {
    return dot + p.constant;
  }
}

template <int KIND>
__device__ __forceinline__ double kernel_value(double dot, double na, double nb,
                                               const TileArgs<double>& p) {
  if constexpr (KIND == kRbf) {
    return exp(fmin(fma(p.two_gamma_e, dot, na + nb), 0.0)) + p.constant;
  } else if constexpr (KIND == kInvPoly) {
    return 1.0 / (2.0 - dot) + p.constant;
  } else if constexpr (KIND == kPoly) {
    const double base = dot + p.coef0;
    double v = base;
    for (int e = 1; e < p.degree; ++e) v *= base;
    return v + p.constant;
  } else {
    return dot + p.constant;
  }
}

template <class T>
__device__ __forceinline__ void unpack(const typename VecOf<T>::type& v, T* out);
template <>
__device__ __forceinline__ void unpack<float>(const float4& v, float* o) {
  o[0] = v.x;
  o[1] = v.y;
  o[2] = v.z;
  o[3] = v.w;
}
template <>
__device__ __forceinline__ void unpack<double>(const double2& v, double* o) {
  o[0] = v.x;
  o[1] = v.y;
}
template <class T>
__device__ __forceinline__ typename VecOf<T>::type pack(const T* v);
template <>
__device__ __forceinline__ float4 pack<float>(const float* v) {
  return make_float4(v[0], v[1], v[2], v[3]);
}
template <>
__device__ __forceinline__ double2 pack<double>(const double* v) {
  return make_double2(v[0], v[1]);
}

// Tile modes: the plain kernel matrix, pooled blocks with any window layout, and pooled blocks
// whose column pieces all start and end on multiples of VW (every window size a multiple of VW,
// e.g. 2x2 pooling): there each thread reduces its VW-column groups in registers.
enum Mode : int { kPlain = 0, kPooled = 1, kPooledAligned = 2 };

// Shared memory, in this order:
//   kPooled:  value tile Ts (BM x LDT; A and B operand stages alias its start), norms sa, sb,
//             column-piece sums C1 (G x LDC doubles), piece tables.
//   others:   A stage, two B stages (the next column chunk is fetched while this one is
//             computed), norms sa, sb[2], piece tables (kPooledAligned; its group sums G1
//             alias the B stage of the tile).
template <class T, int MODE>
struct Smem {
  using C = Cfg<T>;
  static constexpr int s = static_cast<int>(sizeof(T));
  static constexpr int stage = C::KC * C::BM;  // elements of one operand stage
  static constexpr int operands =
      MODE == kPooled ? (C::BM * C::LDT > 2 * stage ? C::BM * C::LDT : 2 * stage) : 3 * stage;
  static_assert(C::BM * (C::BM / C::VW + C::VW) <= stage, "group sums must fit in a stage");
  static constexpr int norms = MODE == kPooled ? 2 * C::BM : 3 * C::BM;
  static constexpr int c1 = MODE == kPooled ? C::G * C::LDC * 8 : 0;
  static constexpr int tables = MODE == kPlain ? 0 : 4 * C::BM * 8 + 4 * C::BM * 4;
  static constexpr int bytes = (operands + norms) * s + c1 + tables;
};

// Rank of a piece among the pieces of its window, which are consecutive in the plan.
__device__ inline int piece_rank(const int* piece_seg, int piece) {
  int rank = 0;
  while (piece - rank > 0 && piece_seg[piece - rank - 1] == piece_seg[piece]) ++rank;
  return rank;
}

// Rows of one chunk of the row side against column chunks [blockIdx.x * tiles_per_block, ...)
// of the column side (kPooled: one column chunk per block). Each tile is BM x BM patch-kernel
// values.
template <class T, int KIND, int MODE, bool SPLIT>
__global__ void __launch_bounds__(256, 2) tile_kernel(const TileArgs<T> p, int n_chunks_b,
                                                      int tiles_per_block) {
  using C = Cfg<T>;
  using V = typename VecOf<T>::type;
  using S = Smem<T, MODE>;
  constexpr int VW = C::VW, BM = C::BM, HALF = C::HALF, TM = C::TM, KC = C::KC, LDT = C::LDT;
  constexpr bool POOLED = MODE != kPlain;
  constexpr bool PREFETCH = MODE != kPooled;
  constexpr int KSTEP = C::THREADS / BM;
  const int cr = blockIdx.y;
  int cc_begin = blockIdx.x * tiles_per_block;
  const int cc_end = min(cc_begin + tiles_per_block, n_chunks_b);
  if (p.diag) cc_begin = max(cc_begin, cr);
  if (cc_begin >= cc_end) return;

  extern __shared__ __align__(16) unsigned char smem[];
  T* Ts = reinterpret_cast<T*>(smem);
  T* As = Ts;
  // B stage b (0 or 1; always 0 without PREFETCH) and its column norms: pointers computed,
  // not indexed from an array (that would live in local memory).
  auto bstage = [&](int b) { return Ts + S::stage * (1 + b); };
  T* sa = Ts + S::operands;
  auto sbuf = [&](int b) { return sa + BM * (1 + b); };
  unsigned char* tables_base = smem + (S::operands + S::norms) * S::s + S::c1;
  double* C1 = reinterpret_cast<double*>(smem + (S::operands + S::norms) * S::s);
  // Output index of (piece k, piece l) = rp_off[k] + cp_off[l]; split windows: the index of
  // its slot in acc, and rp_mirror[k] + cp_mirror[l] that of the transposed pair's slot.
  long long* rp_off = reinterpret_cast<long long*>(tables_base);
  long long* cp_off = rp_off + BM;
  double* rp_inv = reinterpret_cast<double*>(cp_off + BM);  // 1 / |S_q|
  double* cp_inv = rp_inv + BM;
  // the last pass scales split windows: their inverse sizes' tables hold the mirror indices
  long long* rp_mirror = reinterpret_cast<long long*>(rp_inv);
  long long* cp_mirror = reinterpret_cast<long long*>(cp_inv);
  int* rp_start = reinterpret_cast<int*>(cp_inv + BM);
  int* rp_len = rp_start + BM;
  int* cp_start = rp_len + BM;
  int* cp_len = cp_start + BM;

  const int tid = threadIdx.x, tx = tid & 15, ty = tid >> 4;
  const int lr = tid % BM, kt = tid / BM;  // the row of a stage this thread copies
  const bool single_stage = p.d <= KC;

  auto chunk_cols = [&](int cc, int& col0, int& ncb) {
    if constexpr (POOLED) {
      col0 = p.b_chunk_row[cc];
      ncb = p.b_chunk_row[cc + 1] - col0;
    } else {
      col0 = cc * BM;
      ncb = min(BM, p.nrows_b - col0);
    }
  };
  // Asynchronous copies (sm_80+): every load of a stage is in flight at once. Rows past the
  // end of a chunk are zeros.
  auto load_stage = [&](T* dst, const T* src, long long ld, int first, int count, int k0, int kc) {
    const bool in = lr < count;
    const T* g = src + (long long)(k0 + kt) * ld + first + lr;
    for (int k = kt; k < kc; k += KSTEP, g += KSTEP * ld) {
      if (in)
        __pipeline_memcpy_async(dst + k * BM + lr, g, sizeof(T));
      else
        dst[k * BM + lr] = T(0);
    }
  };
  auto load_norms = [&](T* dst, const T* src, int first, int count) {
    if (tid < BM) {
      if (tid < count)
        __pipeline_memcpy_async(dst + tid, src + first + tid, sizeof(T));
      else
        dst[tid] = T(0);
    }
  };

  int row0, nra;
  if constexpr (POOLED) {
    row0 = p.a_chunk_row[cr];
    nra = p.a_chunk_row[cr + 1] - row0;
  } else {
    row0 = cr * BM;
    nra = min(BM, p.nrows_a - row0);
  }
  const long long Q = p.Q, QQ = Q * Q;
  int pa0 = 0, npa = 0;
  if constexpr (POOLED) {
    // out[((ia * ld + jb) * Q + qa) * Q + qb] = out[(ia * ld * Q^2 + qa * Q) + (jb * Q^2 + qb)].
    pa0 = p.a_chunk_piece[cr];
    npa = p.a_chunk_piece[cr + 1] - pa0;
    for (int e = tid; e < npa; e += C::THREADS) {
      const int seg = p.a_piece_seg[pa0 + e];
      const long long ia = seg / Q, qa = seg - ia * Q;
      rp_start[e] = p.a_piece_row[pa0 + e] - row0;
      rp_len[e] = p.a_piece_len[pa0 + e];
      if constexpr (SPLIT) {
        const long long R = p.piece_slots, rank = piece_rank(p.a_piece_seg, pa0 + e);
        rp_off[e] = (ia * p.ld_pairs * QQ + qa * Q) * R * R + rank * R;
        rp_mirror[e] = (ia * QQ + qa) * R * R + rank;
      } else {
        rp_off[e] = ia * p.ld_pairs * QQ + qa * Q;
        rp_inv[e] = p.inv_count[qa];
      }
    }
  }
  if (tid >= BM && tid < 2 * BM) {
    const int e = tid - BM;  // the row norms do not change from tile to tile
    sa[e] = e < nra ? p.a_sq[row0 + e] : T(0);
  }
  if (single_stage) {
    int col0, ncb;
    chunk_cols(cc_begin, col0, ncb);
    load_stage(As, p.a, p.lda, row0, nra, 0, p.d);
    load_stage(bstage(0), p.b, p.ldb, col0, ncb, 0, p.d);
    load_norms(sbuf(0), p.b_sq, col0, ncb);
    __pipeline_commit();
  }

  for (int cc = cc_begin, it = 0; cc < cc_end; ++cc, ++it) {
    const int buf = PREFETCH ? (it & 1) : 0;
    T* Bs = bstage(buf);
    T* sb = sbuf(buf);
    int col0, ncb;
    chunk_cols(cc, col0, ncb);
    if (single_stage) {
      if (PREFETCH && cc + 1 < cc_end) {
        int c0n, ncn;
        chunk_cols(cc + 1, c0n, ncn);
        load_stage(bstage(buf ^ 1), p.b, p.ldb, c0n, ncn, 0, p.d);
        load_norms(sbuf(buf ^ 1), p.b_sq, c0n, ncn);
        __pipeline_commit();
        __pipeline_wait_prior(1);
      } else {
        __pipeline_wait_prior(0);
      }
    } else {
      load_norms(sb, p.b_sq, col0, ncb);
      __pipeline_commit();
      __pipeline_wait_prior(0);
    }
    if constexpr (POOLED) {
      const int pb0 = p.b_chunk_piece[cc], npb = p.b_chunk_piece[cc + 1] - pb0;
      for (int e = tid; e < npb; e += C::THREADS) {
        const int seg = p.b_piece_seg[pb0 + e];
        const long long jb = seg / Q, qb = seg - jb * Q;
        cp_start[e] = p.b_piece_row[pb0 + e] - col0;
        cp_len[e] = p.b_piece_len[pb0 + e];
        if constexpr (SPLIT) {
          const long long R = p.piece_slots, rank = piece_rank(p.b_piece_seg, pb0 + e);
          cp_off[e] = (jb * QQ + qb) * R * R + rank;
          cp_mirror[e] = (jb * p.ld_pairs * QQ + qb * Q) * R * R + rank * R;
        } else {
          cp_off[e] = jb * QQ + qb;
          cp_inv[e] = p.inv_count[qb];
        }
      }
    }

    T acc[TM][TM];
#pragma unroll
    for (int i = 0; i < TM; ++i)
#pragma unroll
      for (int j = 0; j < TM; ++j) acc[i][j] = T(0);

    for (int k0 = 0; k0 < p.d; k0 += KC) {
      const int kc = min(KC, p.d - k0);
      if (!single_stage) {
        load_stage(As, p.a, p.lda, row0, nra, k0, kc);
        load_stage(Bs, p.b, p.ldb, col0, ncb, k0, kc);
        __pipeline_commit();
        __pipeline_wait_prior(0);
      }
      __syncthreads();
#pragma unroll 4
      for (int k = 0; k < kc; ++k) {
        T av[TM], bv[TM];
        unpack<T>(*reinterpret_cast<const V*>(As + k * BM + ty * VW), av);
        unpack<T>(*reinterpret_cast<const V*>(As + k * BM + HALF + ty * VW), av + VW);
        unpack<T>(*reinterpret_cast<const V*>(Bs + k * BM + tx * VW), bv);
        unpack<T>(*reinterpret_cast<const V*>(Bs + k * BM + HALF + tx * VW), bv + VW);
#pragma unroll
        for (int i = 0; i < TM; ++i)
#pragma unroll
          for (int j = 0; j < TM; ++j) acc[i][j] = fma(av[i], bv[j], acc[i][j]);
      }
      if (!single_stage) __syncthreads();
    }

    // Fused epilogue: the kernel applied in registers.
#pragma unroll
    for (int i = 0; i < TM; ++i) {
      const int r = (i < VW ? 0 : HALF) + ty * VW + (i % VW);
      const T na = sa[r];
#pragma unroll
      for (int j = 0; j < TM; ++j) {
        const int c = (j < VW ? 0 : HALF) + tx * VW + (j % VW);
        acc[i][j] = kernel_value<KIND>(acc[i][j], na, sb[c], p);
      }
    }

    if constexpr (!POOLED) {
#pragma unroll
      for (int i = 0; i < TM; ++i) {
        const int r = (i < VW ? 0 : HALF) + ty * VW + (i % VW);
        if (r >= nra) continue;
        T* orow = p.out + (long long)(row0 + r) * p.ld_pairs + col0;
#pragma unroll
        for (int j = 0; j < TM; ++j) {
          const int c = (j < VW ? 0 : HALF) + tx * VW + (j % VW);
          if (c < ncb) orow[c] = acc[i][j];
        }
      }
    } else {
      const int pb0 = p.b_chunk_piece[cc], npb = p.b_chunk_piece[cc + 1] - pb0;
      const bool mirror = SPLIT && p.diag && cr < cc;
      auto emit = [&](int k, int l, double s) {
        if constexpr (SPLIT) {
          // slot (output, rank of the row piece, rank of the column piece), see the top
          p.acc[rp_off[k] + cp_off[l]] = s;
          if (mirror) p.acc[rp_mirror[k] + cp_mirror[l]] = s;
        } else {
          p.out[rp_off[k] + cp_off[l]] = static_cast<T>(s * rp_inv[k] * cp_inv[l]);
        }
      };
      __syncthreads();  // every warp is done with the operand stage that is overwritten next

      if constexpr (MODE == kPooledAligned) {
        // Every VW-column group lies in one column piece: sum it in registers.
        constexpr int LDG = BM / VW + VW;  // G1[row][column group], padded
        T* G1 = Bs;
#pragma unroll
        for (int i = 0; i < TM; ++i) {
          const int r = (i < VW ? 0 : HALF) + ty * VW + (i % VW);
          T s0, s1;
          if constexpr (VW == 4) {
            s0 = (acc[i][0] + acc[i][1]) + (acc[i][2] + acc[i][3]);
            s1 = (acc[i][4] + acc[i][5]) + (acc[i][6] + acc[i][7]);
          } else {
            s0 = acc[i][0] + acc[i][1];
            s1 = acc[i][2] + acc[i][3];
          }
          G1[r * LDG + tx] = s0;
          G1[r * LDG + HALF / VW + tx] = s1;
        }
        __syncthreads();
        // At most BM / VW = 32 column pieces; consecutive lanes write consecutive q'.
        for (int e = tid; e < npa * 32; e += C::THREADS) {
          const int k = e / 32, l = e % 32;
          if (l >= npb) continue;
          const int r0 = rp_start[k], r1 = r0 + rp_len[k];
          const int g0 = cp_start[l] / VW, g1 = (cp_start[l] + cp_len[l]) / VW;
          double s = 0.0;
          for (int r = r0; r < r1; ++r)
            for (int g = g0; g < g1; ++g) s += static_cast<double>(G1[r * LDG + g]);
          emit(k, l, s);
        }
      } else {
        constexpr int G = C::G, LDC = C::LDC;
        constexpr int PARTS = C::THREADS / BM;  // threads per row in stage 1
#pragma unroll
        for (int i = 0; i < TM; ++i) {
          const int r = (i < VW ? 0 : HALF) + ty * VW + (i % VW);
          *reinterpret_cast<V*>(Ts + r * LDT + tx * VW) = pack<T>(&acc[i][0]);
          *reinterpret_cast<V*>(Ts + r * LDT + HALF + tx * VW) = pack<T>(&acc[i][VW]);
        }
        __syncthreads();
        const int r = tid % BM, part = tid / BM;
        for (int l0 = 0; l0 < npb; l0 += G) {
          const int g = min(G, npb - l0);
          // Stage 1: row r is summed over each column piece of this pass; the PARTS threads
          // of a row take disjoint runs of pieces. The lanes of a warp share the columns they
          // walk, so every branch below is uniform. Sums of at most VW values in T, then in
          // double.
          if (r < nra) {
            const int per = (g + PARTS - 1) / PARTS;
            const int lb = l0 + part * per, le = min(l0 + g, lb + per);
            const T* row = Ts + r * LDT;
            for (int l = lb; l < le; ++l) {
              const int c0 = cp_start[l], c1 = c0 + cp_len[l];
              double sd = 0.0;
              for (int c4 = c0 & ~(VW - 1); c4 < c1; c4 += VW) {
                T v[VW];
                unpack<T>(*reinterpret_cast<const V*>(row + c4), v);
                T sf;
                if (c4 >= c0 && c4 + VW <= c1) {
                  if constexpr (VW == 4)
                    sf = (v[0] + v[1]) + (v[2] + v[3]);
                  else
                    sf = v[0] + v[1];
                } else {
                  sf = T(0);
#pragma unroll
                  for (int e = 0; e < VW; ++e)
                    if (c4 + e >= c0 && c4 + e < c1) sf += v[e];
                }
                sd += static_cast<double>(sf);
              }
              C1[(l - l0) * LDC + r] = sd;
            }
          }
          __syncthreads();
          // Stage 2: sums over the row pieces in double; consecutive lanes write consecutive q'.
          for (int e = tid; e < npa * G; e += C::THREADS) {
            const int k = e / G, l = e % G;
            if (l >= g) continue;
            const double* col = C1 + l * LDC + rp_start[k];
            const int len = rp_len[k];
            double s = 0.0;
            for (int u = 0; u < len; ++u) s += col[u];
            emit(k, l0 + l, s);
          }
          __syncthreads();
        }
      }
    }
    __syncthreads();  // the next tile overwrites the stages, norms and column tables
  }
}

// ZeT[k, row_offset + i * M + m] = Z[i, epos[m], k]; sq[...] = scale ||Z[i, epos[m]]||^2.
template <class T>
__global__ void gather_kernel(const T* Z, int n_images, int P, int d, const int* epos, int M,
                              T* ZeT, T* sq, long long ld, long long row_offset, T scale) {
  const long long idx = blockIdx.x * (long long)blockDim.x + threadIdx.x;
  if (idx >= (long long)n_images * M) return;
  const long long i = idx / M;
  const int m = static_cast<int>(idx - i * M);
  const T* z = Z + (i * P + epos[m]) * (long long)d;
  T s = T(0);
  for (int k = 0; k < d; ++k) {
    const T v = z[k];
    ZeT[k * ld + row_offset + idx] = v;
    s += v * v;
  }
  sq[row_offset + idx] = scale * s;  // rbf: -gamma_e ||z||^2 (see kernel_value)
}

// dst (bj, bi, Q, Q)[jb, ia, qb, qa] = src (bi, bj, Q, Q)[ia, jb, qa, qb]. With seg_chunk
// (in place, bi == bj): only the entries whose row segment lies in a later chunk than their
// column segment, i.e. those the tile kernel skipped.
template <class T>
__global__ void transpose_blocks(const T* src, T* dst, int bi, int bj, int Q,
                                 const int* seg_chunk) {
  __shared__ T tile[32][33];
  const long long pair = blockIdx.x;
  const long long ia = pair / bj, jb = pair - ia * bj;
  const int ntq = (Q + 31) / 32;
  const int x = threadIdx.x;
  for (int t = blockIdx.y; t < ntq * ntq; t += gridDim.y) {
    const int tqa = t / ntq, tqb = t - tqa * ntq;
    __syncthreads();  // the previous tile has been written out
    for (int y = threadIdx.y; y < 32; y += 8) {
      const int qa = tqa * 32 + y, qb = tqb * 32 + x;
      if (qa < Q && qb < Q) tile[y][x] = src[(pair * Q + qa) * Q + qb];
    }
    __syncthreads();
    for (int y = threadIdx.y; y < 32; y += 8) {
      const int qb = tqb * 32 + y, qa = tqa * 32 + x;
      if (qa < Q && qb < Q) {
        if (seg_chunk && !(seg_chunk[jb * Q + qb] > seg_chunk[ia * Q + qa])) continue;
        dst[((jb * bi + ia) * Q + qb) * Q + qa] = tile[x][y];
      }
    }
  }
}

// The slots of each output (split windows) added in order, then scaled.
template <class T>
__global__ void finalize_kernel(const double* acc, int slots, T* out, long long count, int Q,
                                const double* inv_count) {
  for (long long idx = blockIdx.x * (long long)blockDim.x + threadIdx.x; idx < count;
       idx += (long long)gridDim.x * blockDim.x) {
    const long long qb = idx % Q, qa = (idx / Q) % Q;
    const double* a = acc + idx * slots;
    double sum = 0.0;
    for (int t = 0; t < slots; ++t) sum += a[t];
    out[idx] = static_cast<T>(sum * inv_count[qa] * inv_count[qb]);
  }
}

// ---------------------------------------------------------------------------------------------
// Host side: pooling layout, chunk plans, launches
// ---------------------------------------------------------------------------------------------

struct WindowLayout {
  int Q = 1, M = 1, max_window = 1;
  std::vector<int> epos{0};       // (M) expanded index -> position, window by window
  std::vector<double> inv{1.0};   // (Q) 1 / |S_q|
  std::vector<int> size{1};       // (Q) |S_q|
};

WindowLayout make_layout(index_t P, const index_t* ptr, const std::int32_t* win, index_t Q) {
  if (P < 1 || Q < 1 || !ptr || !win) throw std::invalid_argument("pooling: empty pooling map");
  if (ptr[0] != 0) throw std::invalid_argument("pooling: offsets must start at 0");
  if (Q > (1 << 30)) throw std::invalid_argument("pooling: too many windows");
  std::vector<std::vector<int>> members(static_cast<std::size_t>(Q));
  for (index_t pos = 0; pos < P; ++pos) {
    if (ptr[pos + 1] < ptr[pos])
      throw std::invalid_argument("pooling: offsets must be non-decreasing");
    for (index_t k = ptr[pos]; k < ptr[pos + 1]; ++k) {
      const auto w = win[k];
      if (w < 0 || w >= Q) throw std::invalid_argument("pooling: window out of range");
      members[static_cast<std::size_t>(w)].push_back(static_cast<int>(pos));
    }
  }
  WindowLayout L;
  L.Q = static_cast<int>(Q);
  L.epos.clear();
  L.inv.assign(static_cast<std::size_t>(Q), 0.0);
  L.size.assign(static_cast<std::size_t>(Q), 0);
  L.max_window = 0;
  for (index_t q = 0; q < Q; ++q) {
    const auto& m = members[static_cast<std::size_t>(q)];
    if (m.empty()) throw std::invalid_argument("pooling: every window needs at least one position");
    L.epos.insert(L.epos.end(), m.begin(), m.end());
    L.size[static_cast<std::size_t>(q)] = static_cast<int>(m.size());
    L.inv[static_cast<std::size_t>(q)] = 1.0 / static_cast<double>(m.size());
    L.max_window = std::max(L.max_window, static_cast<int>(m.size()));
  }
  if (L.epos.size() > static_cast<std::size_t>(1 << 30))
    throw std::invalid_argument("pooling: too many window memberships");
  L.M = static_cast<int>(L.epos.size());
  return L;
}

// Cut the expanded rows of `n_images` consecutive images into chunks of at most BM rows made
// of whole windows where a window fits in a chunk.
struct Plan {
  int n_images = 0;
  std::vector<int> chunk_row{0}, chunk_piece{0}, piece_seg, piece_row, piece_len, seg_chunk;
  int n_chunks() const { return static_cast<int>(chunk_row.size()) - 1; }
};

Plan make_plan(int n_images, const WindowLayout& L, int BM) {
  Plan pl;
  pl.n_images = n_images;
  int fill = 0, row = 0;
  auto close = [&] {
    if (fill == 0) return;
    pl.chunk_row.push_back(row);
    pl.chunk_piece.push_back(static_cast<int>(pl.piece_seg.size()));
    fill = 0;
  };
  pl.seg_chunk.resize(static_cast<std::size_t>(n_images) * L.Q);
  for (int i = 0; i < n_images; ++i)
    for (int q = 0; q < L.Q; ++q) {
      int c = L.size[static_cast<std::size_t>(q)];
      const int seg = i * L.Q + q;
      if (c <= BM && fill + c > BM) close();
      pl.seg_chunk[static_cast<std::size_t>(seg)] = pl.n_chunks();
      while (c > 0) {
        if (fill == BM) close();
        const int take = std::min(c, BM - fill);
        pl.piece_seg.push_back(seg);
        pl.piece_row.push_back(row);
        pl.piece_len.push_back(take);
        row += take;
        fill += take;
        c -= take;
      }
    }
  close();
  return pl;
}

struct DevicePlan {
  int n_images = -1, n_chunks = 0;
  DevBuf<int> chunk_row, chunk_piece, piece_seg, piece_row, piece_len, seg_chunk;
};

// The plans of the (at most two) batch sizes of one side, built on first use.
struct PlanCache {
  const WindowLayout* L = nullptr;
  int BM = 0;
  Tracker* tracker = nullptr;
  DevicePlan plans[2];
  const DevicePlan& get(int n_images, cudaStream_t s) {
    for (auto& dp : plans)
      if (dp.n_images == n_images) return dp;
    DevicePlan& dp = plans[0].n_images < 0 ? plans[0] : plans[1];
    const Plan pl = make_plan(n_images, *L, BM);
    upload_vector(dp.chunk_row, pl.chunk_row, tracker, s);
    upload_vector(dp.chunk_piece, pl.chunk_piece, tracker, s);
    upload_vector(dp.piece_seg, pl.piece_seg, tracker, s);
    upload_vector(dp.piece_row, pl.piece_row, tracker, s);
    upload_vector(dp.piece_len, pl.piece_len, tracker, s);
    upload_vector(dp.seg_chunk, pl.seg_chunk, tracker, s);
    // The vectors are freed on return: make sure the copies have read them.
    DCCNN_CUDA(cudaStreamSynchronize(s));
    dp.n_images = n_images;
    dp.n_chunks = pl.n_chunks();
    return dp;
  }
  // Upper bound of the bytes of one plan for n_images images.
  static std::int64_t bytes_bound(std::int64_t n_images, const WindowLayout& L, int BM) {
    const std::int64_t chunks = 2 * (n_images * L.M) / BM + 2;
    const std::int64_t pieces = n_images * L.Q + chunks;
    return 4 * (2 * (chunks + 1) + 3 * pieces + n_images * L.Q) + 6 * 256;
  }
};

template <class T, int KIND, int MODE, bool SPLIT>
void launch_tile(const TileArgs<T>& a, int n_chunks_a, int n_chunks_b, int tiles_per_block,
                 cudaStream_t s) {
  constexpr int bytes = Smem<T, MODE>::bytes;
  auto fn = &tile_kernel<T, KIND, MODE, SPLIT>;
  DCCNN_CUDA(cudaFuncSetAttribute(fn, cudaFuncAttributeMaxDynamicSharedMemorySize, bytes));
  if (MODE == kPooled) tiles_per_block = 1;
  const dim3 grid(static_cast<unsigned>((n_chunks_b + tiles_per_block - 1) / tiles_per_block),
                  static_cast<unsigned>(n_chunks_a));
  fn<<<grid, Cfg<T>::THREADS, bytes, s>>>(a, n_chunks_b, tiles_per_block);
  DCCNN_CUDA_LAUNCHED("tile_kernel");
}

template <class T, int MODE, bool SPLIT>
void launch_tile_kind(int kind, const TileArgs<T>& a, int nca, int ncb, int tpb, cudaStream_t s) {
  switch (kind) {
    case kRbf: return launch_tile<T, kRbf, MODE, SPLIT>(a, nca, ncb, tpb, s);
    case kInvPoly: return launch_tile<T, kInvPoly, MODE, SPLIT>(a, nca, ncb, tpb, s);
    case kPoly: return launch_tile<T, kPoly, MODE, SPLIT>(a, nca, ncb, tpb, s);
    default: return launch_tile<T, kLinear, MODE, SPLIT>(a, nca, ncb, tpb, s);
  }
}

// Column chunks per block: up to 8 (the operands of the next tile are fetched during this
// one), fewer when the grid would not give every multiprocessor several blocks.
// DCCNN_CUDA_TILES_PER_BLOCK=k forces k (the tests use it to cover the prefetching path).
int tiles_per_block(std::int64_t nca, std::int64_t ncb, bool diag, int sms) {
  if (const char* env = std::getenv("DCCNN_CUDA_TILES_PER_BLOCK")) {
    const int k = std::atoi(env);
    if (k > 0) return std::min(k, 64);
  }
  const std::int64_t tiles = diag ? nca * (ncb + 1) / 2 : nca * ncb;
  const std::int64_t per = tiles / (std::int64_t(sms) * 2 * 6);
  return static_cast<int>(std::max<std::int64_t>(1, std::min<std::int64_t>(8, per)));
}

template <class T>
void launch_tile_mode(int kind, int mode, bool split, const TileArgs<T>& a, int nca, int ncb,
                      int sms, cudaStream_t s) {
  const int tpb = tiles_per_block(nca, ncb, a.diag, sms);
  if (mode == kPlain) return launch_tile_kind<T, kPlain, false>(kind, a, nca, ncb, tpb, s);
  if (mode == kPooledAligned)
    return split ? launch_tile_kind<T, kPooledAligned, true>(kind, a, nca, ncb, tpb, s)
                 : launch_tile_kind<T, kPooledAligned, false>(kind, a, nca, ncb, tpb, s);
  return split ? launch_tile_kind<T, kPooled, true>(kind, a, nca, ncb, tpb, s)
               : launch_tile_kind<T, kPooled, false>(kind, a, nca, ncb, tpb, s);
}

template <class T>
void check_unit_ball(const T* Z, index_t rows, index_t d, const char* name) {
  for (index_t i = 0; i < rows; ++i) {
    T s = T(0);
    for (index_t k = 0; k < d; ++k) s += Z[i * d + k] * Z[i * d + k];
    if (s > T(1) + T(1e-5))
      throw std::invalid_argument(std::string(name) +
                                  ": inverse_polynomial needs every patch norm <= 1 (found " +
                                  std::to_string(std::sqrt(static_cast<double>(s))) +
                                  "); normalise or rescale the patches");
  }
}

void require_device() {
  int count = 0;
  const cudaError_t e = cudaGetDeviceCount(&count);
  if (e != cudaSuccess) {
    (void)cudaGetLastError();
    throw DeviceError(std::string("device='cuda': no usable CUDA device (") +
                      cudaGetErrorString(e) + ")");
  }
  if (count == 0) throw DeviceError("device='cuda': no CUDA device is present");
}

// rows x row_bytes, contiguous in src, into rows `pitch` apart in dst: one 2-d copy, or one
// copy per row where the pitch is beyond what cudaMemcpy2D takes.
void copy_rows(char* dst, std::size_t pitch, const char* src, std::size_t row_bytes,
               std::size_t rows, cudaMemcpyKind kind, cudaStream_t s) {
  cudaError_t e = cudaMemcpy2DAsync(dst, pitch, src, row_bytes, row_bytes, rows, kind, s);
  if (e == cudaErrorInvalidPitchValue || e == cudaErrorInvalidValue) {
    (void)cudaGetLastError();
    for (std::size_t r = 0; r < rows; ++r)
      DCCNN_CUDA(cudaMemcpyAsync(dst + r * pitch, src + r * row_bytes, row_bytes, kind, s));
    return;
  }
  DCCNN_CUDA(e);
}

// Large outputs go to the host through two pinned staging halves: the DMA of one piece runs
// while host threads copy the previous one into the (pageable) result array. Pageable copies
// straight from the device are several times slower (the driver stages them itself).
class StagedCopier {
 public:
  static constexpr std::size_t kHalf = std::size_t(32) << 20;
  // Pinned memory is optional: without it (allocation refused) copies stay pageable.
  explicit StagedCopier(bool wanted) {
    if (!wanted) return;
    if (cudaHostAlloc(&pinned_, 2 * kHalf, cudaHostAllocDefault) != cudaSuccess) {
      (void)cudaGetLastError();
      pinned_ = nullptr;
      return;
    }
    for (auto& e : done_) DCCNN_CUDA(cudaEventCreateWithFlags(&e, cudaEventDisableTiming));
    const unsigned hw = std::thread::hardware_concurrency();
    threads_ = static_cast<int>(std::max(1u, std::min(8u, hw)));
  }
  ~StagedCopier() {
    for (auto& e : done_)
      if (e) cudaEventDestroy(e);
    if (pinned_) cudaFreeHost(pinned_);
  }
  StagedCopier(const StagedCopier&) = delete;
  StagedCopier& operator=(const StagedCopier&) = delete;

  // rows x row_bytes, contiguous on the device, into host rows `host_pitch` apart.
  void copy(char* host, std::size_t host_pitch, const char* dev, std::size_t row_bytes,
            std::size_t rows, cudaStream_t s) {
    if (rows == 0 || row_bytes == 0) return;
    if (!pinned_ || row_bytes > kHalf)
      return copy_rows(host, host_pitch, dev, row_bytes, rows, cudaMemcpyDeviceToHost, s);
    const std::size_t per = kHalf / row_bytes;  // rows per piece
    const std::size_t n_pieces = (rows + per - 1) / per;
    auto enqueue = [&](std::size_t piece) {
      const std::size_t r0 = piece * per, nr = std::min(per, rows - r0);
      DCCNN_CUDA(cudaMemcpyAsync(half(piece), dev + r0 * row_bytes, nr * row_bytes,
                                 cudaMemcpyDeviceToHost, s));
      DCCNN_CUDA(cudaEventRecord(done_[piece % 2], s));
    };
    enqueue(0);
    for (std::size_t piece = 0; piece < n_pieces; ++piece) {
      if (piece + 1 < n_pieces) enqueue(piece + 1);  // its half was emptied by piece - 1
      DCCNN_CUDA(cudaEventSynchronize(done_[piece % 2]));
      const std::size_t r0 = piece * per, nr = std::min(per, rows - r0);
      scatter(host + r0 * host_pitch, host_pitch, half(piece), row_bytes, nr);
    }
  }

 private:
  char* half(std::size_t piece) const {
    return static_cast<char*>(pinned_) + (piece % 2) * kHalf;
  }
  // Contiguous src (rows x row_bytes) -> host rows; the bytes are split evenly over threads.
  void scatter(char* host, std::size_t pitch, const char* src, std::size_t row_bytes,
               std::size_t rows) const {
    const std::size_t total = rows * row_bytes;
    auto work = [=](std::size_t b0, std::size_t b1) {
      while (b0 < b1) {
        const std::size_t r = b0 / row_bytes, off = b0 - r * row_bytes;
        const std::size_t len = std::min(b1 - b0, row_bytes - off);
        std::memcpy(host + r * pitch + off, src + b0, len);
        b0 += len;
      }
    };
    const int T = total < (std::size_t(8) << 20) ? 1 : threads_;
    std::vector<std::thread> pool;
    for (int t = 1; t < T; ++t) pool.emplace_back(work, total * t / T, total * (t + 1) / T);
    work(0, total / T);
    for (auto& th : pool) th.join();
  }

  void* pinned_ = nullptr;
  cudaEvent_t done_[2] = {nullptr, nullptr};
  int threads_ = 1;
};

std::int64_t isqrt(std::int64_t v) {
  if (v <= 0) return 0;
  std::int64_t r = static_cast<std::int64_t>(std::sqrt(static_cast<double>(v)));
  while (r * r > v) --r;
  while ((r + 1) * (r + 1) <= v) ++r;
  return r;
}

// What run() makes of each batch of blocks: copies it to the host (kBlocks), contracts it with
// beta into H on the device (kCross, H copied out at the end) or copies its traces (kTraces).
enum OutputKind : int { kBlocks = 0, kCross = 1, kTraces = 2 };

template <class T>
struct Output {
  OutputKind kind = kBlocks;
  T* blocks = nullptr;           // kBlocks: (n1, n2, Q, Q), or the plain (n1, n2) matrix
  const double* beta = nullptr;  // kCross: (n2, K)
  index_t K = 0;
  double* values = nullptr;      // kCross: H (n1, Q, Q, K); kTraces: (n1, n2)
};

// The whole computation for every entry point. Plain kernel matrix: P = 1, trivial layout,
// pooled = false, never symmetric, output kBlocks.
template <class T>
RunStats run(const T* Z1, index_t n1, const T* Z2, index_t n2, index_t P, index_t d,
             const WindowLayout& L, bool pooled, const KernelSpec& spec, const Output<T>& res,
             const Options& opt) {
  using Cf = Cfg<T>;
  constexpr int BM = Cf::BM;
  constexpr std::int64_t s = sizeof(T);
  RunStats st;
  const bool sym = pooled && Z2 == nullptr;
  const bool same_input = Z2 == nullptr || (Z2 == Z1 && n2 == n1);
  if (Z2 == nullptr) n2 = n1;
  if (n1 == 0 || n2 == 0) return st;
  if (d < 1) throw std::invalid_argument("Z1: patches must have at least one dimension");
  if (d > (1 << 24) || P > (1 << 30)) throw std::invalid_argument("Z1: dimensions too large");
  require_device();
  const bool cross = res.kind == kCross, traces = res.kind == kTraces;
  if (!opt.discard_output && !(res.kind == kBlocks ? static_cast<void*>(res.blocks) : res.values))
    throw std::invalid_argument("out: missing output buffer");
  if (cross && (!res.beta || res.K < 1 || res.K > (1 << 24)))
    throw std::invalid_argument("beta: expected between 1 and 2^24 columns");

  const std::int64_t Q = L.Q, M = L.M, Q2 = Q * Q, K = cross ? res.K : 0;
  const bool split = pooled && L.max_window > BM;
  st.split_windows = split;
  // A window of c > BM rows that starts inside a chunk has at most ceil(c / BM) + 1 pieces.
  const std::int64_t piece_slots = split ? (L.max_window + BM - 1) / BM + 1 : 1;
  const std::int64_t acc_slots = split ? piece_slots * piece_slots : 0;

  int dev = 0, sms = 1;
  DCCNN_CUDA(cudaGetDevice(&dev));
  DCCNN_CUDA(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev));
  // Budget.
  std::size_t free_b = 0, total_b = 0;
  DCCNN_CUDA(cudaMemGetInfo(&free_b, &total_b));
  const std::int64_t budget = opt.max_device_memory > 0
                                  ? opt.max_device_memory
                                  : static_cast<std::int64_t>(0.8 * static_cast<double>(free_b));
  const std::int64_t in_bytes =
      (n1 * M * (d + 1) + (same_input ? 0 : n2 * M * (d + 1))) * s;
  const std::int64_t stage_images =
      std::max<std::int64_t>(1, std::min<std::int64_t>(std::max(n1, n2), (32ll << 20) / (P * d * s)));
  const std::int64_t stage_bytes = stage_images * P * d * s;
  const std::int64_t small_bytes =
      (M + 2 * Q) * 8 +
      (pooled ? 2 * PlanCache::bytes_bound(std::max(n1, n2), L, BM) * 2 : 0) + (1 << 16);
  const std::int64_t cross_bytes = (n1 * Q2 * K + n2 * K) * 8;  // H and beta
  const std::int64_t fixed = in_bytes + small_bytes + cross_bytes;
  auto fail_budget = [&](std::int64_t need) {
    throw DeviceMemoryError(
        std::string(cross    ? "pooled_kernel_cross"
                    : traces ? "pooled_kernel_traces"
                    : pooled ? "pooled_kernel_blocks"
                             : "kernel_matrix") +
        " (device='cuda') needs at least " + mib(double(need)) +
        " of device memory (patches " + mib(double(in_bytes)) + " plus one output block), over the budget of " +
        mib(double(budget)) + "; raise the device memory budget or pass fewer images");
  };
  if (fixed + stage_bytes > budget) fail_budget(fixed + stage_bytes + 2 * Q2 * s);
  // Images (rows) per batch: two output slots of bi x bj blocks (and of their traces).
  auto per_pair = [&](bool with_mirror) {
    return Q2 * (s * (with_mirror ? 2 : 1) + 8 * acc_slots) +
           (traces ? 8 * (with_mirror ? 2 : 1) : 0);
  };
  const std::int64_t grid_cap = pooled ? std::max<std::int64_t>(1, (65535ll * BM) / (2 * M) - 1)
                                       : 65535ll * BM;
  std::int64_t bi, bj;
  if (sym) {
    std::int64_t pps = (budget - fixed) / (2 * per_pair(false));
    bi = std::min({n1, isqrt(pps), grid_cap});
    if (bi < n1) {
      pps = (budget - fixed) / (2 * per_pair(true));
      bi = std::min({n1, isqrt(pps), grid_cap});
    }
    bj = bi;
    if (bi < 1) fail_budget(fixed + 2 * per_pair(true));
  } else {
    const std::int64_t pps = (budget - fixed) / (2 * per_pair(false));
    if (pps < 1) fail_budget(fixed + 2 * per_pair(false));
    bi = std::min({n1, std::max<std::int64_t>(1, isqrt(pps)), grid_cap});
    bj = std::min(n2, std::max<std::int64_t>(1, pps / bi));
    bi = std::min({n1, std::max<std::int64_t>(1, pps / bj), grid_cap});
  }
  const bool multi = sym && bi < n1;
  st.batch_rows = bi;
  st.batch_cols = bj;

  Tracker tracker;
  // Buffers first, streams and the exit guard after them (destroyed first).
  DevBuf<T> zeT1, sq1, zeT2, sq2, stage;
  DevBuf<int> epos_d;
  DevBuf<double> inv_d;
  DevBuf<T> outp[2], outm[2];
  DevBuf<double> accb[2];
  DevBuf<double> H_d, beta_d, trp[2], trm[2];
  Stream compute, copy;
  Event start(true), stop(true), computed[2], copied[2];
  // Bytes per image pair that go to the host (kCross: none until the end).
  const std::int64_t pair_bytes = traces ? 8 : Q2 * s;
  // Pinned staging for outputs of 64 MiB and more, where it beats the cost of pinning
  // (declared before the guard: the guard waits for the copies before the staging is freed).
  StagedCopier copier(!opt.discard_output && !opt.out_on_device && !cross &&
                      n1 * n2 * pair_bytes >= (std::int64_t(64) << 20));
  SyncOnExit guard{compute.s, copy.s};
  PlanCache plans_a, plans_b;
  plans_a.L = plans_b.L = &L;
  plans_a.BM = plans_b.BM = BM;
  plans_a.tracker = plans_b.tracker = &tracker;

  DCCNN_CUDA(cudaEventRecord(start.e, compute.s));
  upload_vector(epos_d, L.epos, &tracker, compute.s);
  upload_vector(inv_d, L.inv, &tracker, compute.s);

  // Upload and gather the patches (squared norms pre-scaled for rbf, see kernel_value).
  const T norm_scale = spec.kind == KernelKind::rbf
                           ? static_cast<T>(-(sizeof(T) == 4 ? spec.gamma * 1.4426950408889634
                                                             : spec.gamma))
                           : T(1);
  stage.reset(static_cast<std::size_t>(stage_bytes / s), &tracker);
  auto upload = [&](const T* Z, std::int64_t n, DevBuf<T>& zeT, DevBuf<T>& sq) {
    zeT.reset(static_cast<std::size_t>(d * n * M), &tracker);
    sq.reset(static_cast<std::size_t>(n * M), &tracker);
    for (std::int64_t i0 = 0; i0 < n; i0 += stage_images) {
      const std::int64_t ni = std::min(stage_images, n - i0);
      DCCNN_CUDA(cudaMemcpyAsync(stage.get(), Z + i0 * P * d, static_cast<std::size_t>(ni * P * d * s),
                                 cudaMemcpyHostToDevice, compute.s));
      const std::int64_t threads = ni * M;
      gather_kernel<T><<<static_cast<unsigned>((threads + 255) / 256), 256, 0, compute.s>>>(
          stage.get(), static_cast<int>(ni), static_cast<int>(P), static_cast<int>(d),
          epos_d.get(), static_cast<int>(M), zeT.get(), sq.get(), n * M, i0 * M, norm_scale);
      DCCNN_CUDA_LAUNCHED("gather_kernel");
    }
  };
  upload(Z1, n1, zeT1, sq1);
  if (!same_input) upload(Z2, n2, zeT2, sq2);
  DCCNN_CUDA(cudaStreamSynchronize(compute.s));
  stage.release();
  const T* A = zeT1.get();
  const T* Asq = sq1.get();
  const T* B = same_input ? zeT1.get() : zeT2.get();
  const T* Bsq = same_input ? sq1.get() : sq2.get();

  for (int k = 0; k < 2; ++k) {
    outp[k].reset(static_cast<std::size_t>(bi * bj * Q2), &tracker);
    if (multi) outm[k].reset(static_cast<std::size_t>(bi * bj * Q2), &tracker);
    if (split) accb[k].reset(static_cast<std::size_t>(bi * bj * Q2 * acc_slots), &tracker);
    if (traces) trp[k].reset(static_cast<std::size_t>(bi * bj), &tracker);
    if (traces && multi) trm[k].reset(static_cast<std::size_t>(bi * bj), &tracker);
  }
  if (cross) {
    H_d.reset(static_cast<std::size_t>(n1 * Q2 * K), &tracker);
    DCCNN_CUDA(cudaMemsetAsync(H_d.get(), 0, static_cast<std::size_t>(n1 * Q2 * K * 8), compute.s));
    beta_d.reset(static_cast<std::size_t>(n2 * K), &tracker);
    DCCNN_CUDA(cudaMemcpyAsync(beta_d.get(), res.beta, static_cast<std::size_t>(n2 * K * 8),
                               cudaMemcpyHostToDevice, compute.s));
  }

  TileArgs<T> base{};
  base.d = static_cast<int>(d);
  base.lda = n1 * M;
  base.ldb = (same_input ? n1 : n2) * M;
  base.Q = static_cast<int>(Q);
  base.inv_count = inv_d.get();
  if (spec.kind == KernelKind::rbf) {
    const double ge = sizeof(T) == 4 ? spec.gamma * 1.4426950408889634 : spec.gamma;
    base.gamma_e = static_cast<T>(ge);
    base.two_gamma_e = static_cast<T>(2 * ge);
  }
  base.coef0 = static_cast<T>(spec.coef0);
  base.constant = static_cast<T>(spec.constant);
  base.degree = spec.degree;
  const int kind = static_cast<int>(spec.kind);
  // Column pieces on VW boundaries when every window size is a multiple of VW (chunks start at
  // 0 and BM is a multiple of VW, so split pieces keep the alignment).
  bool aligned = pooled;
  for (int c : L.size) aligned = aligned && c % Cf::VW == 0;
  const int mode = !pooled ? kPlain : aligned ? kPooledAligned : kPooled;

  struct Pending {
    bool active = false;
    std::int64_t i0 = 0, ni = 0, j0 = 0, nj = 0;
    bool mirror = false;
  } pending[2];
  auto flush = [&](int slot) {
    Pending& pd = pending[slot];
    if (!pd.active) return;
    DCCNN_CUDA(cudaStreamWaitEvent(copy.s, computed[slot].e, 0));
    if (!opt.discard_output && !cross) {
      char* dest = traces ? reinterpret_cast<char*>(res.values) : reinterpret_cast<char*>(res.blocks);
      const char* dp = traces ? reinterpret_cast<const char*>(trp[slot].get())
                              : reinterpret_cast<const char*>(outp[slot].get());
      const char* dm = traces ? reinterpret_cast<const char*>(trm[slot].get())
                              : reinterpret_cast<const char*>(outm[slot].get());
      const std::size_t pitch = static_cast<std::size_t>(n2 * pair_bytes);
      auto out_rows = [&](std::int64_t r0, std::int64_t nr, std::int64_t c0, std::int64_t nc,
                          const char* src) {
        char* dst = dest + (r0 * n2 + c0) * pair_bytes;
        const auto row_bytes = static_cast<std::size_t>(nc * pair_bytes);
        if (opt.out_on_device)
          copy_rows(dst, pitch, src, row_bytes, static_cast<std::size_t>(nr), cudaMemcpyDeviceToDevice,
                    copy.s);
        else
          copier.copy(dst, pitch, src, row_bytes, static_cast<std::size_t>(nr), copy.s);
      };
      out_rows(pd.i0, pd.ni, pd.j0, pd.nj, dp);
      if (pd.mirror) out_rows(pd.j0, pd.nj, pd.i0, pd.ni, dm);
    }
    DCCNN_CUDA(cudaEventRecord(copied[slot].e, copy.s));
    pd.active = false;
  };

  std::int64_t counter = 0;
  for (std::int64_t i0 = 0; i0 < n1; i0 += bi) {
    const std::int64_t ni = std::min(bi, n1 - i0);
    for (std::int64_t j0 = sym ? i0 : 0; j0 < n2; j0 += bj) {
      const std::int64_t nj = std::min(bj, n2 - j0);
      const int slot = static_cast<int>(counter % 2);
      const bool diag = sym && j0 == i0;
      if (counter >= 2) DCCNN_CUDA(cudaStreamWaitEvent(compute.s, copied[slot].e, 0));
      TileArgs<T> a = base;
      a.a = A + i0 * M;
      a.a_sq = Asq + i0 * M;
      a.b = B + j0 * M;
      a.b_sq = Bsq + j0 * M;
      a.nrows_a = static_cast<int>(ni * M);
      a.nrows_b = static_cast<int>(nj * M);
      a.diag = diag;
      a.out = outp[slot].get();
      a.acc = split ? accb[slot].get() : nullptr;
      a.piece_slots = static_cast<int>(piece_slots);
      a.ld_pairs = nj;
      int nca, ncb;
      const DevicePlan* pa = nullptr;
      if (pooled) {
        // Each cache holds the (at most two) batch sizes of its side; entries never move.
        pa = &plans_a.get(static_cast<int>(ni), compute.s);
        const DevicePlan& pb = (sym ? plans_a : plans_b).get(static_cast<int>(nj), compute.s);
        a.a_chunk_row = pa->chunk_row.get();
        a.a_chunk_piece = pa->chunk_piece.get();
        a.a_piece_seg = pa->piece_seg.get();
        a.a_piece_row = pa->piece_row.get();
        a.a_piece_len = pa->piece_len.get();
        a.b_chunk_row = pb.chunk_row.get();
        a.b_chunk_piece = pb.chunk_piece.get();
        a.b_piece_seg = pb.piece_seg.get();
        a.b_piece_row = pb.piece_row.get();
        a.b_piece_len = pb.piece_len.get();
        nca = pa->n_chunks;
        ncb = pb.n_chunks;
      } else {
        nca = static_cast<int>((ni + BM - 1) / BM);
        ncb = static_cast<int>((nj + BM - 1) / BM);
      }
      const std::int64_t count = ni * nj * Q2;
      if (split) {
        // the slots of pieces a window does not have stay 0
        DCCNN_CUDA(cudaMemsetAsync(accb[slot].get(), 0, static_cast<std::size_t>(count * acc_slots * 8),
                                   compute.s));
        launch_tile_mode<T>(kind, mode, true, a, nca, ncb, sms, compute.s);
        const unsigned blocks = static_cast<unsigned>(std::min<std::int64_t>((count + 255) / 256, 1 << 20));
        finalize_kernel<T><<<blocks, 256, 0, compute.s>>>(accb[slot].get(), static_cast<int>(acc_slots),
                                                         outp[slot].get(), count,
                                                         static_cast<int>(Q), inv_d.get());
        DCCNN_CUDA_LAUNCHED("finalize_kernel");
      } else {
        launch_tile_mode<T>(kind, mode, false, a, nca, ncb, sms, compute.s);
      }
      const unsigned ntiles = static_cast<unsigned>(std::min<std::int64_t>(((Q + 31) / 32) * ((Q + 31) / 32), 65535));
      if (diag && !split) {
        transpose_blocks<T><<<dim3(static_cast<unsigned>(ni * ni), ntiles),
                              dim3(32, 8), 0, compute.s>>>(outp[slot].get(), outp[slot].get(),
                                                           static_cast<int>(ni), static_cast<int>(ni),
                                                           static_cast<int>(Q), pa->seg_chunk.get());
        DCCNN_CUDA_LAUNCHED("transpose_blocks");
      }
      const bool mirror = sym && !diag;
      if (mirror) {
        transpose_blocks<T><<<dim3(static_cast<unsigned>(ni * nj), ntiles),
                              dim3(32, 8), 0, compute.s>>>(outp[slot].get(), outm[slot].get(),
                                                           static_cast<int>(ni), static_cast<int>(nj),
                                                           static_cast<int>(Q), nullptr);
        DCCNN_CUDA_LAUNCHED("transpose_blocks");
      }
      if (cross) {
        // rows i0.. against columns j0.., and (mirror) rows j0.. against columns i0..
        launch_contract_blocks<T>(outp[slot].get(), ni, nj, static_cast<int>(Q2),
                                  beta_d.get() + j0 * K, static_cast<int>(K),
                                  H_d.get() + i0 * Q2 * K, compute.s);
        if (mirror)
          launch_contract_blocks<T>(outm[slot].get(), nj, ni, static_cast<int>(Q2),
                                    beta_d.get() + i0 * K, static_cast<int>(K),
                                    H_d.get() + j0 * Q2 * K, compute.s);
      } else if (traces) {
        launch_block_traces<T>(outp[slot].get(), ni * nj, static_cast<int>(Q), trp[slot].get(),
                               compute.s);
        if (mirror)
          launch_block_traces<T>(outm[slot].get(), nj * ni, static_cast<int>(Q),
                                 trm[slot].get(), compute.s);
      }
      DCCNN_CUDA(cudaEventRecord(computed[slot].e, compute.s));
      pending[slot] = Pending{true, i0, ni, j0, nj, mirror};
      ++counter;
      flush(1 - slot);  // the previous batch goes to the host while this one computes
      if (opt.check && opt.check()) throw DeviceInterrupted();
    }
  }
  flush(0);
  flush(1);
  DCCNN_CUDA(cudaStreamWaitEvent(compute.s, copied[0].e, 0));
  DCCNN_CUDA(cudaStreamWaitEvent(compute.s, copied[1].e, 0));
  if (cross && !opt.discard_output)
    DCCNN_CUDA(cudaMemcpyAsync(res.values, H_d.get(), static_cast<std::size_t>(n1 * Q2 * K * 8),
                               cudaMemcpyDeviceToHost, compute.s));
  DCCNN_CUDA(cudaEventRecord(stop.e, compute.s));
  DCCNN_CUDA(cudaStreamSynchronize(copy.s));
  DCCNN_CUDA(cudaStreamSynchronize(compute.s));
  float ms = 0;
  DCCNN_CUDA(cudaEventElapsedTime(&ms, start.e, stop.e));
  st.device_seconds = ms * 1e-3;
  st.batches = counter;
  st.device_bytes = tracker.peak;
  return st;
}

}  // namespace

int device_count() {
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess) {
    (void)cudaGetLastError();
    return 0;
  }
  return count;
}

std::string unavailable_reason() {
  int count = 0;
  const cudaError_t e = cudaGetDeviceCount(&count);
  if (e != cudaSuccess) {
    (void)cudaGetLastError();
    return cudaGetErrorString(e);
  }
  return count == 0 ? "no CUDA device is present" : "";
}

DeviceInfo device_info() {
  require_device();
  int dev = 0;
  DCCNN_CUDA(cudaGetDevice(&dev));
  cudaDeviceProp prop{};
  DCCNN_CUDA(cudaGetDeviceProperties(&prop, dev));
  DeviceInfo info;
  info.name = prop.name;
  info.major = prop.major;
  info.minor = prop.minor;
  info.multiprocessors = prop.multiProcessorCount;
  DCCNN_CUDA(cudaDeviceGetAttribute(&info.clock_khz, cudaDevAttrClockRate, dev));
  std::size_t free_b = 0, total_b = 0;
  DCCNN_CUDA(cudaMemGetInfo(&free_b, &total_b));
  info.memory_total = static_cast<std::int64_t>(total_b);
  info.memory_free = static_cast<std::int64_t>(free_b);
  info.l2_bytes = prop.l2CacheSize;
  // FMA units per SM (CUDA C++ Programming Guide, arithmetic instruction throughput).
  const int cc = prop.major * 10 + prop.minor;
  info.fp32_lanes_per_sm = cc == 80 ? 64 : 128;
  info.fp64_lanes_per_sm = cc == 80 ? 32 : (cc == 90 || cc == 100) ? 64 : 2;
  return info;
}

template <class T>
RunStats kernel_matrix(const T* Z1, index_t n1, const T* Z2, index_t n2, index_t d,
                       const KernelSpec& spec, T* out, const Options& opt) {
  dccnn::validate(spec);
  if (spec.kind == KernelKind::inverse_polynomial) {
    check_unit_ball(Z1, n1, d, "Z1");
    if (Z2 && Z2 != Z1) check_unit_ball(Z2, n2, d, "Z2");
  }
  const WindowLayout L;  // one position, one window
  Output<T> res;
  res.blocks = out;
  return run<T>(Z1, n1, Z2 ? Z2 : Z1, Z2 ? n2 : n1, 1, d, L, false, spec, res, opt);
}

namespace {

template <class T>
RunStats run_pooled(const T* Z1, index_t n1, const T* Z2, index_t n2, index_t P, index_t d,
                    const index_t* position_ptr, const std::int32_t* position_window,
                    index_t n_windows, const KernelSpec& spec, const Output<T>& res,
                    const Options& opt) {
  dccnn::validate(spec);
  const WindowLayout L = make_layout(P, position_ptr, position_window, n_windows);
  if (spec.kind == KernelKind::inverse_polynomial) {
    check_unit_ball(Z1, n1 * P, d, "Z1");
    if (Z2) check_unit_ball(Z2, n2 * P, d, "Z2");
  }
  return run<T>(Z1, n1, Z2, n2, P, d, L, true, spec, res, opt);
}

}  // namespace

template <class T>
RunStats pooled_kernel_blocks(const T* Z1, index_t n1, const T* Z2, index_t n2, index_t P,
                              index_t d, const index_t* position_ptr,
                              const std::int32_t* position_window, index_t n_windows,
                              const KernelSpec& spec, T* out, const Options& opt) {
  Output<T> res;
  res.blocks = out;
  return run_pooled<T>(Z1, n1, Z2, n2, P, d, position_ptr, position_window, n_windows, spec,
                       res, opt);
}

template <class T>
RunStats pooled_kernel_cross(const T* Z1, index_t n1, const T* Z2, index_t n2, index_t P,
                             index_t d, const index_t* position_ptr,
                             const std::int32_t* position_window, index_t n_windows,
                             const KernelSpec& spec, const double* beta, index_t K, double* H,
                             const Options& opt) {
  Output<T> res;
  res.kind = kCross;
  res.beta = beta;
  res.K = K;
  res.values = H;
  return run_pooled<T>(Z1, n1, Z2, n2, P, d, position_ptr, position_window, n_windows, spec,
                       res, opt);
}

template <class T>
RunStats pooled_kernel_traces(const T* Z1, index_t n1, const T* Z2, index_t n2, index_t P,
                              index_t d, const index_t* position_ptr,
                              const std::int32_t* position_window, index_t n_windows,
                              const KernelSpec& spec, double* traces, const Options& opt) {
  Output<T> res;
  res.kind = kTraces;
  res.values = traces;
  return run_pooled<T>(Z1, n1, Z2, n2, P, d, position_ptr, position_window, n_windows, spec,
                       res, opt);
}

#define DCCNN_CUDA_INSTANTIATE(T)                                                              \
  template RunStats kernel_matrix<T>(const T*, index_t, const T*, index_t, index_t,           \
                                     const KernelSpec&, T*, const Options&);                  \
  template RunStats pooled_kernel_blocks<T>(const T*, index_t, const T*, index_t, index_t,    \
                                            index_t, const index_t*, const std::int32_t*,     \
                                            index_t, const KernelSpec&, T*, const Options&);  \
  template RunStats pooled_kernel_cross<T>(const T*, index_t, const T*, index_t, index_t,     \
                                           index_t, const index_t*, const std::int32_t*,      \
                                           index_t, const KernelSpec&, const double*,         \
                                           index_t, double*, const Options&);                 \
  template RunStats pooled_kernel_traces<T>(const T*, index_t, const T*, index_t, index_t,    \
                                            index_t, const index_t*, const std::int32_t*,     \
                                            index_t, const KernelSpec&, double*,              \
                                            const Options&);
DCCNN_CUDA_INSTANTIATE(float)
DCCNN_CUDA_INSTANTIATE(double)
#undef DCCNN_CUDA_INSTANTIATE

}  // namespace cuda
}  // namespace dccnn
