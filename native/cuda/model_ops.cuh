// The cuda model's kernels other than the matrix products (matmul.cuh): embedding lookup,
// RMSNorm, the q/k/v epilogue (biases, RoPE, the KV cache store), tree attention over the KV
// cache, SwiGLU, copies of result rows to the caller, and kv_commit's slot moves.
//
// Kernels of a forward read the step's numbers (tokens, positions, key sets, each row's sequence
// with its KV cache and output addresses) from the device-side parameter block (mm::StepParams),
// never from launch arguments, so a captured graph replays for every step and every mix of
// sequences. `rows` is always the slice's bucket;
// rows at and past StepParams::h.n_rows are padding: they never touch the KV cache or the
// caller's buffers, and every kernel leaves them finite (zero activations).
#pragma once

#include "forward_plan.hpp"
#include "spec_cuda.cuh"

#include <cuda_runtime.h>

namespace specula::cuda::ops {

// Sets kernel attributes once per model (the attention kernel's shared memory for head_dim);
// never during a graph capture.
Status prepare(int32_t head_dim, Failure &err);

// x[t] = embd[token_t] (dequantized), rope[t][i] = (cos, sin) of token t's angle for pair i.
Status embed(const mm::StepParams *p, const void *embd, int32_t embd_dtype, uint64_t embd_row_bytes, int32_t n_embd,
             const double *inv_freq, double pos_scale, int32_t rope_half, int32_t rows, float *x, float *rope,
             cudaStream_t stream, Failure &err);

// out[t] = x[t] * rms_scale * w. With gather (the parameter block): out's row k is x's row
// head_src[k] for k < h.n_head and zeros past it (the LM head's rows, gathered; rows: their bucket).
Status rmsnorm(const float *x, const float *w, float *out, int32_t rows, int32_t n, float eps, const mm::StepParams *gather,
               cudaStream_t stream, Failure &err);

struct QkvPost {
    float *q, *k, *v;                 // row t of each at t * ld: n_head * D, n_head_kv * D, n_head_kv * D floats
    int64_t ld;                       // row stride of q, k and v (mm::qkv_width)
    const float *bq, *bk, *bv;        // biases or null
    const float *rope;                // [rows][rope_half][2]
    int32_t n_head, n_head_kv, head_dim, rope_half, kv_dtype;
    bool neox;
};
// Biases, RoPE on q and k, and the store of k and v into each row's sequence's KV cache at layer `layer`.
Status qkv_post(const mm::StepParams *p, const QkvPost &a, int32_t layer, int32_t rows, cudaStream_t stream, Failure &err);

struct Attention {
    const float *q;  // roped, row t at t * q_ld: n_head * D floats
    int64_t q_ld;
    float *out;      // [rows][n_head * D]
    float *part;     // partials of the splits (mm::attn_partial_floats)
    int32_t n_head, n_head_kv, head_dim, kv_dtype;
    float scale;
};
// Tree attention of the slice's rows, each over its sequence's KV cache of `layer`.
Status attention(const mm::StepParams *p, const Attention &a, int32_t layer, int32_t rows, cudaStream_t stream, Failure &err);

// g = silu(g) * u over `width` elements of each of `rows` rows, row t of both at t * ld (g and
// u may be the two halves of one buffer).
Status silu_mul(float *g, const float *u, int64_t ld, int32_t rows, int64_t width, cudaStream_t stream, Failure &err);

enum class Dest { Logits, ExitHidden, ExitLogits };
enum class RowsOut {
    All,      // src rows [0, n_rows) to their sequences' exit buffers (ExitHidden, ExitLogits)
    Head,     // src row k (the gathered LM head's output) to head_dst[k], k < h.n_head (Logits)
    HeadRows  // src row head_src[k] (a head over every row) to head_dst[k], k < h.n_head (Logits)
};
// Copies result rows of `width` floats to the caller's buffers named in the parameter block
// (nothing where it names none). rows: the grid's rows (the bucket for All, the head bucket else).
Status copy_out(const mm::StepParams *p, Dest dest, RowsOut which, const float *src, int64_t width, int32_t rows,
                cudaStream_t stream, Failure &err);

// Moves, in order, slot committed + pairs[2i+1] to slot committed + pairs[2i] for every K and V
// of layers [0, n_layers). pairs: device memory.
Status kv_move(void *kv, uint64_t layer_bytes, uint64_t slot_bytes, int32_t n_layers, int32_t committed,
               const int32_t *pairs, int32_t n_pairs, cudaStream_t stream, Failure &err);

} // namespace specula::cuda::ops
