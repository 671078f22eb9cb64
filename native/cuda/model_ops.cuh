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

struct Embed {
    const void *embd;          // the token embedding matrix
    int32_t dtype;
    uint64_t row_bytes;
    int32_t n_embd;
    float scale;               // mm::embedding_scale (1: none)
    const double *inv_freq;    // the rope's frequencies, rope_half of them
    double pos_scale;
    const double *inv_freq_local; // the local layers' rope (mm::uses_local_rope), or null
    double pos_scale_local;
    int32_t rope_half;
    float *x, *rope, *rope_local; // rope_local: null when inv_freq_local is
};
// x[t] = embd[token_t] (dequantized) * scale, rope[t][i] = (cos, sin) of token t's angle for pair i
// (and rope_local[t][i] with the local frequencies); with a sliding window, the position of each
// row's cache slot into its sequence's slot_positions.
Status embed(const mm::StepParams *p, const Embed &a, int32_t rows, cudaStream_t stream, Failure &err);

// out[t] = x[t] * rms_scale * w (w null: out[t] = x[t], an EAGLE layer's absent output norm). With gather (the parameter block): out's row k is x's row
// head_src[k] for k < h.n_head and zeros past it (the LM head's rows, gathered; rows: their bucket).
Status rmsnorm(const float *x, const float *w, float *out, int32_t rows, int32_t n, float eps, const mm::StepParams *gather,
               cudaStream_t stream, Failure &err);

struct QkvPost {
    float *q, *k, *v;                 // row t of each at t * ld: n_head * D, n_head_kv * D, n_head_kv * D floats
    int64_t ld;                       // row stride of q, k and v (mm::qkv_width)
    const float *bq, *bk, *bv;        // biases or null
    const float *q_norm, *k_norm;     // per-head RMSNorm weights (head_dim each) or null: qwen3, gemma3
    float eps;
    const float *rope;                // [rows][rope_half][2]
    int32_t n_head, n_head_kv, head_dim, rope_half, kv_dtype;
    bool neox;
};
// Biases, the per-head q/k norms, RoPE on q and k, and the store of k and v into each row's sequence's KV cache at layer `layer`.
Status qkv_post(const mm::StepParams *p, const QkvPost &a, int32_t layer, int32_t rows, cudaStream_t stream, Failure &err);

struct Attention {
    const float *q;  // roped, row t at t * q_ld: n_head * D floats
    int64_t q_ld;
    float *out;      // [rows][n_head * D]
    float *part;     // partials of the splits (mm::attn_partial_floats)
    int32_t n_head, n_head_kv, head_dim, kv_dtype;
    float scale;
    int32_t window; // a local layer's sliding window (keys at positions > the query's - window), 0 = every key
};
// Tree attention of the slice's rows, each over its sequence's KV cache of `layer`.
Status attention(const mm::StepParams *p, const Attention &a, int32_t layer, int32_t rows, cudaStream_t stream, Failure &err);

// g = act(g) * u over `width` elements of each of `rows` rows, row t of both at t * ld (g and
// u may be the two halves of one buffer); act is silu, or gelu_tanh (gemma3).
Status gate_mul(float *g, const float *u, int64_t ld, int32_t rows, int64_t width, bool gelu, cudaStream_t stream, Failure &err);

// x[t] += y[t] * rms_scale(y[t]) * w for `rows` rows of n (gemma3's post-block norms: the block's
// output normalized before the residual add). y is left as it was.
Status add_rmsnorm(const float *y, const float *w, float *x, int32_t rows, int32_t n, float eps, cudaStream_t stream, Failure &err);

enum class Dest { Logits, ExitHidden, ExitLogits, FinalHidden };
enum class RowsOut {
    All,      // src rows [0, n_rows) to their sequences' exit or final_hidden buffers (ExitHidden, ExitLogits, FinalHidden)
    Head,     // src row k (the gathered LM head's output) to head_dst[k], k < h.n_head (Logits)
    HeadRows  // src row head_src[k] (a head over every row) to head_dst[k], k < h.n_head (Logits)
};
// Copies result rows of `width` floats to the caller's buffers named in the parameter block
// (nothing where it names none). rows: the grid's rows (the bucket for All, the head bucket else).
Status copy_out(const mm::StepParams *p, Dest dest, RowsOut which, const float *src, int64_t width, int32_t rows,
                cudaStream_t stream, Failure &err);

// Moves, in order, slot committed + pairs[2i+1] to slot committed + pairs[2i] for every K and V
// of layers [0, n_layers), and in slot_positions (int32 per slot) when it is given. pairs: device memory.
Status kv_move(void *kv, uint64_t layer_bytes, uint64_t slot_bytes, int32_t n_layers, int32_t committed,
               const int32_t *pairs, int32_t n_pairs, int32_t *slot_positions, cudaStream_t stream, Failure &err);

// ---------------------------------------------------------------- draft heads (ABI 0.8; cpu_model.cpp's heads_forward)

// Row j of x (stride ld) for j < rows: the hidden state h (n_embd floats), then for a conditioned
// head the embedding rows of tokens[j * n_tokens .. + n_tokens) (n_tokens = 0: h alone).
Status heads_input(const float *hidden, const void *embd, int32_t embd_dtype, uint64_t embd_row_bytes, int32_t n_embd,
                   const int32_t *tokens, int32_t n_tokens, int32_t rows, float *x, int64_t ld, cudaStream_t stream, Failure &err);

// A residual block's activation, in place over rows x n: y = silu(y + bias) (bias null: y alone).
Status heads_bias_silu(float *y, const float *bias, int32_t rows, int32_t n, cudaStream_t stream, Failure &err);

// A residual block's sum into x, [rows][n] contiguous: x = (r + res_bias) + y when r is given (the
// block's RES map; res_bias may be null), else x = x + y.
Status heads_residual(float *x, const float *r, const float *res_bias, const float *y, int32_t rows, int32_t n, cudaStream_t stream,
                      Failure &err);

// out[j][v] += bias[v] for j < rows, v < n; row j at j * ld.
Status add_row_bias(float *out, int64_t ld, const float *bias, int32_t rows, int64_t n, cudaStream_t stream, Failure &err);

// ---------------------------------------------------------------- EAGLE draft layers (ABI 0.9; cpu_model.cpp's embed)

// The fc's input rows of an EAGLE layer's slice: cat[t] = [e[t]; the n_embd floats at device address features[t]] for
// t < h.n_rows, zeros for the padding rows; e [rows][n_embd] (the rows' embeddings), cat [rows][2 n_embd].
Status eagle_input(const mm::StepParams *p, const float *e, const uint64_t *features, int32_t n_embd, float *cat, int32_t rows,
                   cudaStream_t stream, Failure &err);

} // namespace specula::cuda::ops
