// Shared helpers of ptsel's kernels: constants, conversions and the warp-cooperative top-k list.
// NVRTC has no libc: no INFINITY, no <math.h>; use CUDA intrinsics.
#pragma once
#include <cuda_fp16.h>

#define PTSEL_FULL_MASK 0xffffffffu
#define PTSEL_NO_ID 0xffffffffu
#define PTSEL_NEG_INF __int_as_float(0xff800000)
// Largest k of the GPU top-k (lists live in shared memory); must match cuda.rs TOPK_MAX.
#define PTSEL_TOPK_MAX 64

__device__ __forceinline__ float ptsel_to_f32(__half x) { return __half2float(x); }
__device__ __forceinline__ float ptsel_to_f32(float x) { return x; }

// Similarity of a raw inner product: higher is better; l2 negates |q - x|^2 = |q|^2 + |x|^2 - 2 q.x.
__device__ __forceinline__ float ptsel_sim(float dot, int l2, float qn, float xn) {
    return l2 ? fminf(2.0f * dot - qn - xn, 0.0f) : dot;
}

// Candidate (s, id) ranks before (t, tid): higher similarity, ties broken by the lower row id
// (the order every ptsel backend uses).
__device__ __forceinline__ bool ptsel_before(float s, unsigned id, float t, unsigned tid) {
    return s > t || (s == t && id < tid);
}

// Each lane of a warp offers one candidate to a list of k entries (ls, li) in shared memory,
// sorted best first and owned by this warp. Candidates that beat the current k-th entry are
// inserted one at a time: the warp counts the entries ranked before the candidate, shifts the
// tail right by one and writes the candidate. Cheap once the list is warm: most offers fail
// the first ballot. Invalid candidates use (-inf, PTSEL_NO_ID) and never enter.
__device__ void ptsel_warp_offer(float* ls, unsigned* li, int k, float s, unsigned id) {
    const int lane = threadIdx.x & 31;
    __syncwarp();
    unsigned pending = __ballot_sync(PTSEL_FULL_MASK, ptsel_before(s, id, ls[k - 1], li[k - 1]));
    while (pending) {
        const int src = __ffs(pending) - 1;
        pending &= pending - 1;
        const float cs = __shfl_sync(PTSEL_FULL_MASK, s, src);
        const unsigned cid = __shfl_sync(PTSEL_FULL_MASK, id, src);
        // The list may have changed since the ballot; every lane reads the same entry.
        if (!ptsel_before(cs, cid, ls[k - 1], li[k - 1])) continue;
        int pos = 0;
        for (int j = lane; j < k; j += 32) pos += ptsel_before(ls[j], li[j], cs, cid);
        for (int o = 16; o > 0; o >>= 1) pos += __shfl_xor_sync(PTSEL_FULL_MASK, pos, o);
        float vs[PTSEL_TOPK_MAX / 32];
        unsigned vi[PTSEL_TOPK_MAX / 32];
#pragma unroll
        for (int t = 0; t < PTSEL_TOPK_MAX / 32; ++t) {
            const int j = lane + 32 * t;
            if (j > pos && j < k) { vs[t] = ls[j - 1]; vi[t] = li[j - 1]; }
        }
        __syncwarp();
#pragma unroll
        for (int t = 0; t < PTSEL_TOPK_MAX / 32; ++t) {
            const int j = lane + 32 * t;
            if (j > pos && j < k) { ls[j] = vs[t]; li[j] = vi[t]; }
        }
        if (lane == 0) { ls[pos] = cs; li[pos] = cid; }
        __syncwarp();
    }
}

// Fills `n` list entries with (-inf, PTSEL_NO_ID) using all threads of the block.
__device__ __forceinline__ void ptsel_lists_init(float* ls, unsigned* li, int n) {
    for (int j = threadIdx.x; j < n; j += blockDim.x) { ls[j] = PTSEL_NEG_INF; li[j] = PTSEL_NO_ID; }
}

// Writes the block's lists of `count` queries (from q0) as chunk `chunk` of `chunks` partial
// lists per query: out[(q * chunks + chunk) * k + j].
__device__ __forceinline__ void ptsel_lists_store(const float* ls, const unsigned* li, int q0, int count, int nq, int k,
                                                  int chunk, int chunks, float* out_s, unsigned* out_i) {
    for (int t = threadIdx.x; t < count * k; t += blockDim.x) {
        const int qq = t / k, j = t % k;
        if (q0 + qq < nq) {
            const size_t o = ((size_t)(q0 + qq) * chunks + chunk) * k + j;
            out_s[o] = ls[t];
            out_i[o] = li[t];
        }
    }
}
