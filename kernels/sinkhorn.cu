// Scaling steps of the generalised Sinkhorn-Knopp iteration for entropic unbalanced OT
// (DESIGN.md §1, step 4), in f64 like select::uot::solve: with K = exp(-M / eps) ([rows, cols],
// row-major), u = (a / K v)^fi_s and v = (b / K^T u)^fi_t. The host checks convergence.
#include "common.cuh"

// u_i = (a_i / sum_j K_ij v_j)^fi: one warp per row.
extern "C" __global__ void sinkhorn_rows_f64(const double* __restrict__ kernel, const double* __restrict__ v,
                                             const double* __restrict__ a, int rows, int cols, double fi,
                                             double* __restrict__ u) {
    const int row = blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5), lane = threadIdx.x & 31;
    if (row >= rows) return;  // whole warp
    double s = 0.0;
    for (int j = lane; j < cols; j += 32) s += kernel[(size_t)row * cols + j] * v[j];
    for (int o = 16; o > 0; o >>= 1) s += __shfl_xor_sync(PTSEL_FULL_MASK, s, o);
    if (lane == 0) u[row] = pow(a[row] / s, fi);
}

// v_j = (b_j / sum_i K_ij u_i)^fi: one thread per column, so a warp reads adjacent columns.
// Also writes the column sums (the host rejects a zero one, like the CPU solver).
extern "C" __global__ void sinkhorn_cols_f64(const double* __restrict__ kernel, const double* __restrict__ u,
                                             const double* __restrict__ b, int rows, int cols, double fi,
                                             double* __restrict__ v, double* __restrict__ ktu) {
    const int col = blockIdx.x * blockDim.x + threadIdx.x;
    if (col >= cols) return;
    double s = 0.0;
    for (int i = 0; i < rows; ++i) s += kernel[(size_t)i * cols + col] * u[i];
    ktu[col] = s;
    v[col] = pow(b[col] / s, fi);
}
