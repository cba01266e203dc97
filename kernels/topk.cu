// Exact scoring of a query batch against corpus rows fused with a per-query top-k.
//
// Layout (set up by src/score/cuda.rs): corpus rows are stored with a row stride `ld` (a
// multiple of 16 elements, zero padded) and the row count is padded with zero rows to a multiple
// of 128 (MMA_N); `xn` holds each row's squared norm (l2 only), `qn` each query's. Every block scores
// a group of queries against one chunk of rows tile by tile, keeps one top-k list per query in
// shared memory, and writes them as that chunk's partial lists; `topk_merge_f32` then reduces
// the chunks' lists of each query to the final k (best first, ties to the lower row id).
#include "common.cuh"

// ---- bandwidth path: few queries, any storage type ------------------------------------------

#define SIMT_TILE 256  // rows scored between top-k updates
// Blocks have 256 threads: 8 warps, each scoring 4 rows at a time with 8 lanes per row, for NQ
// queries (1, 2, 4 or 8: a batch of 1 does one product per element, not 8). Every warp keeps
// one list, for query warp % NQ over the candidates of slice warp / NQ of each tile, so all 8
// warps share the top-k work; a block emits 8 / NQ partial lists per query.

__device__ __forceinline__ void ptsel_load8(const __half* p, float* v) {
    const uint4 raw = *reinterpret_cast<const uint4*>(p);
    const __half2* h = reinterpret_cast<const __half2*>(&raw);
#pragma unroll
    for (int i = 0; i < 4; ++i) {
        const float2 f = __half22float2(h[i]);
        v[2 * i] = f.x;
        v[2 * i + 1] = f.y;
    }
}

__device__ __forceinline__ void ptsel_load8(const float* p, float* v) {
    const float4 a = *reinterpret_cast<const float4*>(p);
    const float4 b = *reinterpret_cast<const float4*>(p + 4);
    v[0] = a.x; v[1] = a.y; v[2] = a.z; v[3] = a.w;
    v[4] = b.x; v[5] = b.y; v[6] = b.z; v[7] = b.w;
}

// The 8 products of v and q[0..8], summed in one fixed order with explicit roundings: every
// kernel that scores a row with an f32 query (topk_simt, rescore) calls this, so a row's score
// has the same bits whichever kernel computes it (no contraction left to the compiler).
__device__ __forceinline__ float ptsel_dot8(const float* v, const float* q) {
    const float4 a = *reinterpret_cast<const float4*>(q);
    const float4 b = *reinterpret_cast<const float4*>(q + 4);
    float t = __fmul_rn(v[0], a.x);
    t = __fmaf_rn(v[1], a.y, t);
    t = __fmaf_rn(v[2], a.z, t);
    t = __fmaf_rn(v[3], a.w, t);
    t = __fmaf_rn(v[4], b.x, t);
    t = __fmaf_rn(v[5], b.y, t);
    t = __fmaf_rn(v[6], b.z, t);
    return __fmaf_rn(v[7], b.w, t);
}

// Inner product of row xr and query q (ld values each) as the 8 lanes part = 0..7 of a group
// compute it: lane `part` sums columns part * 8 + 64 i in order, then a fixed butterfly; every
// lane of the group returns the same value. The whole warp must call it.
template <typename T>
__device__ __forceinline__ float ptsel_row_dot(const T* xr, const float* q, int ld, int part, bool valid) {
    float acc = 0.0f;
    if (valid) {
#pragma unroll 4
        for (int c = part * 8; c < ld; c += 64) {
            float v[8];
            ptsel_load8(xr + c, v);
            acc = __fadd_rn(acc, ptsel_dot8(v, q + c));
        }
    }
    for (int o = 4; o > 0; o >>= 1) acc = __fadd_rn(acc, __shfl_xor_sync(PTSEL_FULL_MASK, acc, o));
    return acc;
}

// Shared memory: queries [NQ][ld] f32, scores [NQ][SIMT_TILE], lists [8][k] x 2. The grid is
// (query groups, chunks) so that blocks running together read the same rows through L2.
template <typename T, int NQ>
__device__ void topk_simt(const T* __restrict__ x, const float* __restrict__ xn, int rows, int ld,
                          const float* __restrict__ q, const float* __restrict__ qn, int nq, int l2, int k,
                          int chunk_rows, float* __restrict__ out_s, unsigned* __restrict__ out_i) {
    constexpr int SLICES = 8 / NQ;
    extern __shared__ float4 smem4[];
    float* qs = reinterpret_cast<float*>(smem4);
    float* sc = qs + NQ * ld;
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, part = lane & 7;
    float* ls = sc + NQ * SIMT_TILE + warp * k;
    unsigned* li = reinterpret_cast<unsigned*>(sc + NQ * SIMT_TILE + 8 * k) + warp * k;
    const int q0 = blockIdx.x * NQ, chunk = blockIdx.y;
    const int r_begin = chunk * chunk_rows, r_end = min(rows, r_begin + chunk_rows);
    // The batch is padded to a multiple of NQ rows on the host.
    for (int t = threadIdx.x; t < NQ * ld; t += blockDim.x) qs[t] = q[(size_t)q0 * ld + t];
    float qnr[NQ];
#pragma unroll
    for (int i = 0; i < NQ; ++i) qnr[i] = q0 + i < nq ? qn[q0 + i] : 0.0f;
    for (int j = lane; j < k; j += 32) { ls[j] = PTSEL_NEG_INF; li[j] = PTSEL_NO_ID; }
    __syncthreads();
    const int qq = warp % NQ, slice = warp / NQ;
    for (int t0 = r_begin; t0 < r_end; t0 += SIMT_TILE) {
        // rr takes 8 values for every lane: the shuffles below run with the whole warp.
        for (int rr = warp * 4 + (lane >> 3); rr < SIMT_TILE; rr += 32) {
            const int r = t0 + rr;
            float acc[NQ];
#pragma unroll
            for (int i = 0; i < NQ; ++i) acc[i] = 0.0f;
            if (r < r_end) {
                const T* xr = x + (size_t)r * ld;
#pragma unroll 4
                for (int c = part * 8; c < ld; c += 64) {
                    float v[8];
                    ptsel_load8(xr + c, v);
#pragma unroll
                    for (int i = 0; i < NQ; ++i) acc[i] = __fadd_rn(acc[i], ptsel_dot8(v, qs + i * ld + c));
                }
            }
            // The arithmetic of ptsel_row_dot (which cannot share this loop's row loads).
#pragma unroll
            for (int i = 0; i < NQ; ++i)
                for (int o = 4; o > 0; o >>= 1) acc[i] = __fadd_rn(acc[i], __shfl_xor_sync(PTSEL_FULL_MASK, acc[i], o));
            if (part == 0) {
#pragma unroll
                for (int i = 0; i < NQ; ++i)
                    sc[i * SIMT_TILE + rr] = r < r_end ? ptsel_sim(acc[i], l2, qnr[i], l2 ? xn[r] : 0.0f) : PTSEL_NEG_INF;
            }
        }
        __syncthreads();
        if (q0 + qq < nq) {  // whole warp
            for (int c = slice * 32 + lane; c < SIMT_TILE; c += 32 * SLICES) {
                const int r = t0 + c;
                const bool ok = r < r_end;
                ptsel_warp_offer(ls, li, k, ok ? sc[qq * SIMT_TILE + c] : PTSEL_NEG_INF, ok ? (unsigned)r : PTSEL_NO_ID);
            }
        }
        __syncthreads();
    }
    if (q0 + qq < nq) {
        // This warp's list is part (chunk * SLICES + slice) of query q0 + qq.
        const size_t o = ((size_t)(q0 + qq) * gridDim.y * SLICES + (size_t)chunk * SLICES + slice) * k;
        for (int j = lane; j < k; j += 32) { out_s[o + j] = ls[j]; out_i[o + j] = li[j]; }
    }
}

// Every scoring kernel has this signature.
#define PTSEL_SIMT(NQ, T, SUFFIX)                                                                                    \
    extern "C" __global__ void __launch_bounds__(256, 4) topk_simt##NQ##_##SUFFIX(const T* x, const float* xn, int rows, int ld,              \
                                                        const float* q, const float* qn, int nq, int l2, int k,       \
                                                        int chunk_rows, float* out_s, unsigned* out_i) {              \
        topk_simt<T, NQ>(x, xn, rows, ld, q, qn, nq, l2, k, chunk_rows, out_s, out_i);                               \
    }
PTSEL_SIMT(1, __half, f16)
PTSEL_SIMT(2, __half, f16)
PTSEL_SIMT(4, __half, f16)
PTSEL_SIMT(8, __half, f16)
PTSEL_SIMT(1, float, f32)
PTSEL_SIMT(2, float, f32)
PTSEL_SIMT(4, float, f32)
PTSEL_SIMT(8, float, f32)

// ---- tensor-core path: large batches of fp16 -------------------------------------------------

#define MMA_N 128  // rows per tile
#define MMA_K 128  // halves of k per pipeline stage (4 sub-steps of 32)
// Blocks have WM x 4 warps (WM = 4: 128 queries, 512 threads; WM = 2: 64 queries, 256 threads,
// for when the larger block's shared memory does not fit), each computing 32 queries x 32 rows
// with mma.sync m16n8k16 (fp16 in, f32 accumulation): 2 x 4 tiles of 16 x 8. Inline PTX rather
// than <mma.h>, whose crt/ header is not in the NVRTC wheels.
//
// The queries stay in shared memory for the whole chunk. Corpus tiles stream through a
// two-stage cp.async pipeline of [MMA_N rows][MMA_K halves]: every corpus element is read from
// L2 once per block and shared by all its warps, with 64 mma per warp between barriers. Once a
// tile's products are done the stages hold its scores for the top-k. blockIdx.x walks the
// query groups so that blocks running together read the same corpus rows through L2.
//
// The dot product sums over k in any order, so A and B fragments may take their k elements in
// any order as long as both use the same one: in a 32-wide sub-step, lane (g = lane / 4,
// t = lane % 4) loads the 8 consecutive halves [8t, 8t + 8) of its query rows and of its corpus
// row with one 16-byte load each, and feeds halves 0-3 to the first mma and 4-7 to the second.
// Rows of both tiles are stored with their 16-byte chunks swizzled (chunk c of row r at
// c ^ 4 (r & 1)) so that the loads of rows g and g + 1 fall on distinct banks.
// Shared memory: queries [32 WM][ld] f16; stages [2][MMA_N][MMA_K] f16, reused as scores
// [32 WM][MMA_N] f32; lists [32 WM][k] x 2.

__device__ __forceinline__ void ptsel_mma_16816(float* c, unsigned a0, unsigned a1, unsigned a2, unsigned a3, unsigned b0, unsigned b1) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
}

__device__ __forceinline__ void ptsel_cp_async16(void* smem, const void* gmem) {
    const unsigned s = static_cast<unsigned>(__cvta_generic_to_shared(smem));
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(s), "l"(gmem));
}

__device__ __forceinline__ void ptsel_cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }

template <int N>
__device__ __forceinline__ void ptsel_cp_async_wait() { asm volatile("cp.async.wait_group %0;\n" ::"n"(N)); }

// Offset (in halves) of 16-byte chunk c of row r of a swizzled tile with rows of ld halves.
__device__ __forceinline__ int ptsel_qswz(int r, int c, int ld) { return r * ld + ((c ^ ((r & 1) << 2)) << 3); }

template <int WM>
__device__ void topk_mma(const __half* __restrict__ x, const float* __restrict__ xn, int rows, int ld,
                         const __half* __restrict__ q, const float* __restrict__ qn, int nq, int l2, int k,
                         int chunk_rows, float* __restrict__ out_s, unsigned* __restrict__ out_i) {
    constexpr int MMA_M = 32 * WM, WARPS = 4 * WM, THREADS = 32 * WARPS;
    static_assert(2 * MMA_N * MMA_K * 2 >= MMA_M * MMA_N * 4, "the scores must fit in the stages");
    extern __shared__ float4 smem4[];
    __half* qs = reinterpret_cast<__half*>(smem4);
    __half* bs = qs + MMA_M * ld;
    float* sc = reinterpret_cast<float*>(bs);
    float* ls = reinterpret_cast<float*>(bs + 2 * MMA_N * MMA_K);
    unsigned* li = reinterpret_cast<unsigned*>(ls + MMA_M * k);
    const int q0 = blockIdx.x * MMA_M, chunk = blockIdx.y, chunks = gridDim.y;
    const int r_begin = chunk * chunk_rows, r_end = min(rows, r_begin + chunk_rows);
    // The query batch is padded to a multiple of MMA_M rows on the host; ld is a multiple of 64.
    const int vecs = ld / 8;
    for (int t = threadIdx.x; t < MMA_M * vecs; t += THREADS)
        *reinterpret_cast<uint4*>(qs + ptsel_qswz(t / vecs, t % vecs, ld)) = *reinterpret_cast<const uint4*>(q + ((size_t)q0 + t / vecs) * ld + (t % vecs) * 8);
    ptsel_lists_init(ls, li, MMA_M * k);
    __syncthreads();
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, wm = warp >> 2, wn = warp & 3, g = lane >> 2, tc = lane & 3;
    const int steps = (ld + MMA_K - 1) / MMA_K;
    // Stage `stage` of the step at k0: the [k0, k0 + width) halves of the tile's MMA_N rows.
    auto load_stage = [&](int stage, int t0, int k0) {
        const int width = min(MMA_K, ld - k0), per_row = width / 8;
        for (int u = threadIdx.x; u < MMA_N * per_row; u += THREADS) {
            const int r = u / per_row, c = u % per_row;
            ptsel_cp_async16(bs + stage * MMA_N * MMA_K + ptsel_qswz(r, c, MMA_K), x + (size_t)(t0 + r) * ld + k0 + c * 8);
        }
        ptsel_cp_async_commit();
    };
    for (int t0 = r_begin; t0 < r_end; t0 += MMA_N) {
        float acc[2][4][4];
#pragma unroll
        for (int i = 0; i < 2; ++i)
#pragma unroll
            for (int j = 0; j < 4; ++j)
#pragma unroll
                for (int e = 0; e < 4; ++e) acc[i][j][e] = 0.0f;
        // Rows are padded to a multiple of MMA_N on the device: the tile is always in bounds.
        load_stage(0, t0, 0);
        for (int s = 0; s < steps; ++s) {
            if (s + 1 < steps) {
                load_stage((s + 1) & 1, t0, (s + 1) * MMA_K);
                ptsel_cp_async_wait<1>();
            } else {
                ptsel_cp_async_wait<0>();
            }
            __syncthreads();
            const __half* stage = bs + (s & 1) * MMA_N * MMA_K;
            const int subs = min(MMA_K, ld - s * MMA_K) / 32;
            for (int ss = 0; ss < subs; ++ss) {
                uint4 xb[4];
#pragma unroll
                for (int j = 0; j < 4; ++j) xb[j] = *reinterpret_cast<const uint4*>(stage + ptsel_qswz(wn * 32 + j * 8 + g, ss * 4 + tc, MMA_K));
                const int c = s * (MMA_K / 8) + ss * 4 + tc;
#pragma unroll
                for (int i = 0; i < 2; ++i) {
                    const int r = wm * 32 + i * 16 + g;
                    const uint4 lo = *reinterpret_cast<const uint4*>(qs + ptsel_qswz(r, c, ld));
                    const uint4 hi = *reinterpret_cast<const uint4*>(qs + ptsel_qswz(r + 8, c, ld));
#pragma unroll
                    for (int j = 0; j < 4; ++j) {
                        ptsel_mma_16816(acc[i][j], lo.x, hi.x, lo.y, hi.y, xb[j].x, xb[j].y);
                        ptsel_mma_16816(acc[i][j], lo.z, hi.z, lo.w, hi.w, xb[j].z, xb[j].w);
                    }
                }
            }
            __syncthreads();  // the stage is refilled by the next step's load (or holds scores)
        }
        // Accumulator (i, j): elements 0-1 are row g, columns 2 (lane % 4) + {0, 1}; 2-3 row g + 8.
#pragma unroll
        for (int i = 0; i < 2; ++i)
#pragma unroll
            for (int j = 0; j < 4; ++j) {
                const int row = wm * 32 + i * 16 + g, col = wn * 32 + j * 8 + tc * 2;
                *reinterpret_cast<float2*>(sc + row * MMA_N + col) = make_float2(acc[i][j][0], acc[i][j][1]);
                *reinterpret_cast<float2*>(sc + (row + 8) * MMA_N + col) = make_float2(acc[i][j][2], acc[i][j][3]);
            }
        __syncthreads();
        for (int qq = warp; qq < MMA_M; qq += WARPS) {
            if (q0 + qq >= nq) break;
            const float qnv = qn[q0 + qq];
            float cs[MMA_N / 32];
            bool any = false;
            const float worst = ls[qq * k + k - 1];
            const unsigned worst_id = li[qq * k + k - 1];
#pragma unroll
            for (int u = 0; u < MMA_N / 32; ++u) {
                const int c = u * 32 + lane, r = t0 + c;
                cs[u] = r < r_end ? ptsel_sim(sc[qq * MMA_N + c], l2, qnv, l2 ? xn[r] : 0.0f) : PTSEL_NEG_INF;
                any |= ptsel_before(cs[u], (unsigned)r, worst, worst_id);
            }
            // Most tiles hold nothing better than the k-th entry: skip the offers.
            if (!__any_sync(PTSEL_FULL_MASK, any)) continue;
#pragma unroll
            for (int u = 0; u < MMA_N / 32; ++u) {
                const int r = t0 + u * 32 + lane;
                ptsel_warp_offer(ls + qq * k, li + qq * k, k, cs[u], r < r_end ? (unsigned)r : PTSEL_NO_ID);
            }
        }
        __syncthreads();  // the scores are overwritten by the next tile's first stage
    }
    ptsel_lists_store(ls, li, q0, MMA_M, nq, k, chunk, chunks, out_s, out_i);
}

#define PTSEL_MMA(WM, M)                                                                                             \
    extern "C" __global__ void __launch_bounds__(4 * M) topk_mma##M##_f16(const __half* x, const float* xn, int rows, int ld,                  \
                                                 const __half* q, const float* qn, int nq, int l2, int k,             \
                                                 int chunk_rows, float* out_s, unsigned* out_i) {                     \
        topk_mma<WM>(x, xn, rows, ld, q, qn, nq, l2, k, chunk_rows, out_s, out_i);                              \
    }
PTSEL_MMA(4, 128)
PTSEL_MMA(2, 64)

// ---- exact re-scoring of the tensor-core candidates ---------------------------------------------

// topk_mma scores fp16-rounded queries; its candidates (ids [nq][kc] from topk_merge_f32, PTSEL_NO_ID
// for none) are scored again here with the f32 query (q: [nq][ld], as topk_simt reads it) by
// ptsel_row_dot, which gives topk_simt's bits. out[nq][kc]: the similarities (-inf for none);
// src/score/rescore.rs then keeps the k best, or sends the query to topk_simt. Blocks of 256
// threads, 8 lanes per (query, candidate) pair.
template <typename T>
__device__ void rescore(const T* __restrict__ x, const float* __restrict__ xn, int ld, const float* __restrict__ q,
                        const float* __restrict__ qn, int nq, int l2, int kc, const unsigned* __restrict__ ids,
                        float* __restrict__ out) {
    const size_t pair = ((size_t)blockIdx.x * blockDim.x + threadIdx.x) >> 3;
    const int part = threadIdx.x & 7;
    // Lanes past the last pair still join the butterfly's shuffles.
    const bool in = pair < (size_t)nq * kc;
    const unsigned id = in ? ids[pair] : PTSEL_NO_ID;
    const int qi = in ? (int)(pair / kc) : 0;
    const float dot = ptsel_row_dot(x + (size_t)(id == PTSEL_NO_ID ? 0 : id) * ld, q + (size_t)qi * ld, ld, part, id != PTSEL_NO_ID);
    if (in && part == 0) out[pair] = id == PTSEL_NO_ID ? PTSEL_NEG_INF : ptsel_sim(dot, l2, qn[qi], l2 ? xn[id] : 0.0f);
}

#define PTSEL_RESCORE(T, SUFFIX)                                                                                     \
    extern "C" __global__ void __launch_bounds__(256) rescore_##SUFFIX(const T* x, const float* xn, int ld, const float* q,   \
                                                                       const float* qn, int nq, int l2, int kc,       \
                                                                       const unsigned* ids, float* out) {            \
        rescore<T>(x, xn, ld, q, qn, nq, l2, kc, ids, out);                                                         \
    }
PTSEL_RESCORE(__half, f16)
PTSEL_RESCORE(float, f32)

// ---- merge ------------------------------------------------------------------------------------

// Reduces `parts` partial lists of k per query (ps/pi: [nq][parts][k]) to the final k, best
// first. One block of 8 warps per query: warp w offers candidates w * 32 + lane + 256 i to its
// own list, four loads in flight per lane, then warp 0 merges the 8 lists. Shared memory:
// lists [8][k] x 2.
extern "C" __global__ void __launch_bounds__(256) topk_merge_f32(const float* __restrict__ ps, const unsigned* __restrict__ pi, int nq, int parts, int k,
                                                                 float* __restrict__ out_s, unsigned* __restrict__ out_i) {
    extern __shared__ float4 smem4[];
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    float* lists_s = reinterpret_cast<float*>(smem4);
    unsigned* lists_i = reinterpret_cast<unsigned*>(lists_s + 8 * k);
    float* ls = lists_s + warp * k;
    unsigned* li = lists_i + warp * k;
    for (int j = lane; j < k; j += 32) { ls[j] = PTSEL_NEG_INF; li[j] = PTSEL_NO_ID; }
    const int qi = blockIdx.x;
    const int n = parts * k;
    const size_t base = (size_t)qi * n;
    for (int c0 = warp * 32 + lane; c0 - lane < n; c0 += 256 * 4) {
        float s[4];
        unsigned id[4];
#pragma unroll
        for (int u = 0; u < 4; ++u) {
            const int c = c0 + u * 256;
            s[u] = c < n ? ps[base + c] : PTSEL_NEG_INF;
            id[u] = c < n ? pi[base + c] : PTSEL_NO_ID;
        }
#pragma unroll
        for (int u = 0; u < 4; ++u) ptsel_warp_offer(ls, li, k, s[u], id[u]);
    }
    __syncthreads();
    if (warp != 0) return;
    for (int w = 1; w < 8; ++w)
        for (int j0 = 0; j0 < k; j0 += 32) {
            const int j = j0 + lane;
            ptsel_warp_offer(lists_s, lists_i, k, j < k ? lists_s[w * k + j] : PTSEL_NEG_INF, j < k ? lists_i[w * k + j] : PTSEL_NO_ID);
        }
    __syncwarp();
    for (int j = lane; j < k; j += 32) {
        out_s[(size_t)qi * k + j] = lists_s[j];
        out_i[(size_t)qi * k + j] = lists_i[j];
    }
}
