// Matrix products of the cuda model: Y = W X for the weights of one layer and the activations of
// the tokens of one forward call. Weights keep the dtype of the model file (F32, F16, BF16, Q8_0,
// Q4_0, Q4_1, Q5_0, Q5_1, Q2_K..Q6_K, in their GGML block layouts) and are row-major
// [rows = out features][cols = in features]; activations and outputs are f32.
//
// Two regimes, picked by n (the tokens of the call):
//   - few tokens (decode, small trees): weight streaming. The kernel reads each weight row once
//     for all n tokens, at close to the memory bandwidth; activations stay f32 and 16-bit or
//     quantized weights are converted exactly in registers (the cpu backend's arithmetic).
//   - many tokens (large trees, prompts): tensor cores (mma). Activations are split into a
//     high and a low 16-bit part (x = hi + lo) so that two mma passes reproduce f32 products to
//     about 2^-17 relative: greedy decisions then agree with the cpu backend's.
// Every launch goes to the given stream, allocates nothing and never synchronizes with the host,
// so a forward built from these can be captured into a CUDA graph.
#pragma once

#include "../core/internal.hpp"

#include <cuda_runtime.h>
#include <cstddef>
#include <cstdint>

namespace specula::cuda {

struct DeviceMatrix {
    const void *data = nullptr; // device memory, rows * row_bytes
    int32_t dtype = SPEC_DTYPE_F32;
    int64_t rows = 0, cols = 0;
    uint64_t row_bytes = 0;      // dtype_row_bytes(dtype, cols)
};

// Whether matmul() computes with weights of dtype: F32, F16, BF16, Q8_0, Q4_0 and the formats of
// native/core/quant_blocks.hpp (Q4_1, Q5_0, Q5_1, Q2_K..Q6_K).
bool matmul_supports(int32_t dtype);

// Bytes of device scratch that matmul() needs for n tokens of cols inputs (the split activations
// of the tensor-core path: 2 x n x round_up(cols, 32) 16-bit values, n floats, and n x
// round_up(cols, 32) / 16 activation sums; 0 when n <= 8, the streaming regime). Any dtype: the
// size does not depend on it.
size_t matmul_scratch_bytes(int64_t cols, int n);

// Y[t][r] = (accumulate ? Y[t][r] : 0) + sum_k W[r][k] X[t][k] for t < n, r < W.rows.
// X: f32 [n][ldx] (ldx >= W.cols), Y: f32 [n][ldy] (ldy >= W.rows), device memory; Y must not
// alias X. scratch: at least matmul_scratch_bytes(W.cols, n) bytes, 16-byte aligned (needed, and
// checked, whenever n > 8); one scratch may serve every call on a stream, since each call's kernels
// finish with it before the next call's start. Reports launch errors in err; invalid arguments
// (unknown dtype, quantized cols not a multiple of the block (32, or 256 for the k-quants),
// row_bytes not the GGML row size, W.data not aligned to its element size, 2 bytes for
// quantized) are SPEC_ERR_INVALID_ARGUMENT.
//
// Fast paths want 16-byte alignment: X with ldx % 4 == 0 (else scalar activation loads), and for
// F32/F16/BF16 W.data 16-byte aligned with cols % 8 == 0 (else a scalar streaming kernel is used
// for every n, correct but slow). F32 weights always stream (in chunks of 8 tokens for larger n).
// Results are deterministic: the same call gives the same bits every time, in a graph or not.
Status matmul(const DeviceMatrix &W, const float *X, int64_t ldx, int n, float *Y, int64_t ldy, bool accumulate,
              void *scratch, cudaStream_t stream, Failure &err);

} // namespace specula::cuda
