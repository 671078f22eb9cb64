// The transformer's shared arithmetic and the host-side logic of the cuda forward pass, in one
// header that the cpu backend, the cuda kernels and the host tests all include:
//   - per-element math both backends compute the same way (rope frequencies, the rotation of one
//     pair, the rmsnorm scale, silu, dequantizing one weight element);
//   - the cuda forward's fixed shapes: row buckets, slices, the graph key, the per-step
//     parameter block and the tree-attention key sets it carries, the attention kernel's split
//     of the keys and its online softmax, and the byte layouts of weights and scratch.
// Nothing here touches a device, so test_model_math checks all of it on any machine.
#pragma once

#include "kernel_math.hpp"
#include "matmul_math.hpp"
#include "quant_blocks.hpp"
#include "specula.h"

#include <cmath>
#include <cstddef>
#include <cstdint>

namespace specula::mm {

// ---------------------------------------------------------------- rope

SPEC_HD int32_t rope_dims(const spec_model_config &c) { return c.rope_dims > 0 ? c.rope_dims : c.head_dim; }

// Frequency of rotated pair i (of rope_dims / 2), with llama3 scaling applied.
inline double rope_inv_freq(const spec_model_config &c, int i) {
    const int rd = rope_dims(c);
    double theta = std::pow((double)c.rope_theta, -2.0 * i / rd);
    if (c.rope_scaling == SPEC_ROPE_SCALING_LLAMA3) {
        const double pi = 3.14159265358979323846;
        const double wavelen = 2.0 * pi / theta;
        const double low_wl = c.rope_orig_ctx / (double)c.rope_low_freq_factor;
        const double high_wl = c.rope_orig_ctx / (double)c.rope_high_freq_factor;
        if (wavelen < high_wl) {
            // high frequency: unchanged
        } else if (wavelen > low_wl) {
            theta /= c.rope_factor;
        } else {
            const double smooth = (c.rope_orig_ctx / wavelen - c.rope_low_freq_factor) /
                                  ((double)c.rope_high_freq_factor - c.rope_low_freq_factor);
            theta = (1.0 - smooth) * theta / c.rope_factor + smooth * theta;
        }
    }
    return theta;
}

// Linear scaling divides positions.
inline double rope_pos_scale(const spec_model_config &c) {
    return c.rope_scaling == SPEC_ROPE_SCALING_LINEAR ? 1.0 / c.rope_factor : 1.0;
}

// The rotation angle of pair i at a position, in double on both backends.
SPEC_HD double rope_angle(int32_t position, double pos_scale, double inv_freq) {
    return km::dmul(km::dmul((double)position, pos_scale), inv_freq);
}

// Which two elements of a head pair i rotates: adjacent (NORM) or half a rotation apart (NEOX).
SPEC_HD void rope_pair(int i, int half, bool neox, int &a, int &b) {
    a = neox ? i : 2 * i;
    b = neox ? i + half : 2 * i + 1;
}

// (x0, x1) rotated by the angle whose cosine and sine are c and s; no fused multiply-add, so
// both backends round alike.
SPEC_HD void rope_rotate(float x0, float x1, float c, float s, float &y0, float &y1) {
    y0 = km::fsub(km::fmul(x0, c), km::fmul(x1, s));
    y1 = km::fadd(km::fmul(x0, s), km::fmul(x1, c));
}

// ---------------------------------------------------------------- elementwise

// The factor rmsnorm multiplies a row by, from its sum of squares (accumulated in double).
SPEC_HD float rms_scale(double sum_squares, int64_t n, float eps) {
    return (float)(1.0 / sqrt(sum_squares / (double)n + (double)eps));
}

// silu(x) = x / (1 + e^-x). (The cpu backend's vector kernels compute the same expression with
// their own exp.)
SPEC_HD float silu(float x) {
#ifdef __CUDA_ARCH__
    return km::fdiv(x, km::fadd(1.0f, expf(-x)));
#else
    return x / (1.0f + std::exp(-x));
#endif
}

// Element k of a weight row, exactly: F32, F16, BF16, the GGML blocks of Q8_0 / Q4_0 as the
// matrix products read them (matmul_math.hpp), and the other GGML formats (quant_blocks.hpp). Reads bytes: rows may sit at any address.
SPEC_HD uint16_t load_u16_bytes(const uint8_t *p) { return (uint16_t)(p[0] | (uint16_t)p[1] << 8); }
SPEC_HD float dequant_element(int32_t dtype, const uint8_t *row, int64_t k) {
    switch (dtype) {
    case SPEC_DTYPE_F32: {
        const uint8_t *p = row + 4 * k;
        return km::bits_float((uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24);
    }
    case SPEC_DTYPE_F16: return km::f16_to_f32(load_u16_bytes(row + 2 * k));
    case SPEC_DTYPE_BF16: return km::bf16_to_f32(load_u16_bytes(row + 2 * k));
    case SPEC_DTYPE_Q8_0: {
        const uint8_t *b = row + (k / QK) * Q8_0_BLOCK_BYTES;
        return dequant(q8_0_element(b + 2, (int)(k % QK)), block_scale(b));
    }
    case SPEC_DTYPE_Q4_0: {
        const uint8_t *b = row + (k / QK) * Q4_0_BLOCK_BYTES;
        return dequant(q4_0_element(b + 2, (int)(k % QK)), block_scale(b));
    }
    default: {
        const int elems = qb::block_elems(dtype);
        if (!qb::is_block_decoded(dtype)) return 0.0f;
        return qb::block_element(dtype, row + (k / elems) * qb::block_bytes(dtype), (int)(k % elems));
    }
    }
}

// ---------------------------------------------------------------- shapes of the cuda forward

// Rows of one slice: inputs longer than this run in slices, and a call of n <= MAX_ROWS tokens
// runs as one slice padded to its bucket. It is also the largest tree (SPEC_TREE_MAX_NODES), so
// verification of any tree is one slice, one graph.
constexpr int32_t MAX_ROWS = 128;
static_assert(MAX_ROWS == SPEC_TREE_MAX_NODES, "a tree must fit one slice");

// The padded row count a slice of n tokens runs at: the next power of two (1, 2, 4, ..., 128).
// Padded rows write nothing to the KV cache and their outputs are never copied out.
SPEC_HD int32_t bucket_rows(int32_t n) {
    int32_t b = 1;
    while (b < n && b < MAX_ROWS) b *= 2;
    return b;
}

// What the LM head computes for one slice.
enum HeadMode : int32_t { HEAD_NONE = 0, HEAD_ALL = 1, HEAD_LAST = 2 };

// LAST wants the call's last token, so only the last slice runs the head; nothing runs past a
// stop-at-exit.
inline HeadMode slice_head(int32_t logits_mode, bool stop_at_exit, bool last_slice) {
    if (stop_at_exit || logits_mode == SPEC_LOGITS_NONE) return HEAD_NONE;
    if (logits_mode == SPEC_LOGITS_ALL) return HEAD_ALL;
    return last_slice ? HEAD_LAST : HEAD_NONE;
}

// Everything that fixes the sequence of launches of one slice, so one captured graph serves
// every step (and every kv cache of the model) with the same key. Pointers and per-step
// numbers live in the parameter block instead.
struct GraphKey {
    int32_t rows = 1;       // bucket_rows
    int32_t head = HEAD_NONE;
    int32_t exit_layer = 0; // 0 = none
    bool exit_hidden = false, exit_logits = false, stop_at_exit = false;

    uint64_t pack() const {
        return (uint64_t)(uint32_t)rows | (uint64_t)(uint32_t)head << 16 | (uint64_t)(uint32_t)exit_layer << 24 |
               (uint64_t)exit_hidden << 56 | (uint64_t)exit_logits << 57 | (uint64_t)stop_at_exit << 58;
    }
};

// ---------------------------------------------------------------- the per-step parameter block

constexpr int MASK_BITS = 128; // key slots a token's mask covers past its dense prefix

// One token of a slice. Its keys: every slot below dense_end (the committed prefix and the
// leading tokens of the call that are all its ancestors), and slot dense_end + b for each set
// bit b of mask (its other ancestors and itself).
struct StepRow {
    int32_t token, position, dense_end, reserved;
    uint32_t mask[MASK_BITS / 32];
};

// The slice's numbers; device addresses as integers (0 = no such output).
struct StepHeader {
    uint64_t kv;          // the kv cache: [n_layer][K, V][capacity][n_head_kv][head_dim]
    uint64_t layer_bytes; // capacity * slot bytes: one K (or V) of one layer
    uint64_t logits;      // this slice's first logits row (LAST: the only row)
    uint64_t exit_hidden; // this slice's first row of exit_hidden
    uint64_t exit_logits; // this slice's first row of exit_logits
    int32_t n_rows;       // real tokens in the slice (the rest of the bucket is padding)
    int32_t first_slot;   // cache slot of row 0: committed length + the slice's start
};

struct StepParams {
    StepHeader h;
    StepRow rows[MAX_ROWS];
};
static_assert(sizeof(StepRow) == 32 && sizeof(StepHeader) == 48, "the block is uploaded as bytes");

// Bytes to upload for a slice of n rows: the header and the rows in use.
SPEC_HD size_t step_upload_bytes(int32_t n) { return sizeof(StepHeader) + (size_t)n * sizeof(StepRow); }

SPEC_HD bool key_allowed(const StepRow &r, int32_t slot) {
    if (slot < r.dense_end) return true;
    const uint32_t b = (uint32_t)(slot - r.dense_end);
    return b < (uint32_t)MASK_BITS && ((r.mask[b >> 5] >> (b & 31)) & 1u);
}

// Fills dense (the count of leading call tokens that are all ancestors-or-self of token i) and
// the mask of its other ancestors relative to slot committed + dense[i], for tokens [0, n) of a
// call (parents topological, -1 = root). Returns -1, or the first token whose ancestors reach
// further than MASK_BITS past its dense prefix (possible only for trees of more than MAX_ROWS
// tokens: such a call is unsupported).
inline int32_t build_key_sets(const int32_t *parents, int32_t n, int32_t *dense, uint32_t (*mask)[MASK_BITS / 32]) {
    for (int32_t i = 0; i < n; i++) {
        const int32_t p = parents[i];
        // anc*(i) = anc*(p) + {i}: the leading run grows only when it already reaches i.
        dense[i] = p < 0 ? (i == 0 ? 1 : 0) : (dense[p] == i ? i + 1 : dense[p]);
        for (int w = 0; w < MASK_BITS / 32; w++) mask[i][w] = 0;
        for (int32_t j = i; j >= dense[i]; j = parents[j]) {
            const int32_t b = j - dense[i];
            if (b >= MASK_BITS) return i;
            mask[i][b >> 5] |= 1u << (b & 31);
        }
    }
    return -1;
}

// The parameter block of slice [u0, u0 + n_rows) of a call, from the call's arguments and the
// key sets above. Output addresses are the call's first rows (0 = none); the slice's rows are
// found from them by the row widths.
struct CallOutputs {
    uint64_t logits = 0, exit_hidden = 0, exit_logits = 0;
    int32_t logits_mode = SPEC_LOGITS_NONE;
};
inline void fill_step(StepParams &sp, const int32_t *tokens, const int32_t *positions, const int32_t *dense,
                      const uint32_t (*mask)[MASK_BITS / 32], int32_t committed, int32_t u0, int32_t n_rows, uint64_t kv,
                      uint64_t layer_bytes, const CallOutputs &out, int64_t n_embd, int64_t n_vocab) {
    sp.h.kv = kv;
    sp.h.layer_bytes = layer_bytes;
    sp.h.n_rows = n_rows;
    sp.h.first_slot = committed + u0;
    const uint64_t vrow = (uint64_t)n_vocab * 4, erow = (uint64_t)n_embd * 4;
    sp.h.logits = !out.logits ? 0 : out.logits_mode == SPEC_LOGITS_ALL ? out.logits + (uint64_t)u0 * vrow : out.logits;
    sp.h.exit_hidden = out.exit_hidden ? out.exit_hidden + (uint64_t)u0 * erow : 0;
    sp.h.exit_logits = out.exit_logits ? out.exit_logits + (uint64_t)u0 * vrow : 0;
    for (int32_t j = 0; j < n_rows; j++) {
        StepRow &r = sp.rows[j];
        const int32_t i = u0 + j;
        r.token = tokens[i];
        r.position = positions[i];
        r.dense_end = committed + dense[i];
        r.reserved = 0;
        for (int w = 0; w < MASK_BITS / 32; w++) r.mask[w] = mask[i][w];
    }
}

// ---------------------------------------------------------------- attention

// The attention kernel: a block takes ATT_ROWS query rows (row = token * G + g: the G query
// heads of one kv head, then the next token) and one split of the keys, in tiles of ATT_KEYS.
constexpr int ATT_ROWS = 16;
constexpr int ATT_KEYS = 32;
constexpr int ATT_TARGET_BLOCKS = 264; // about two blocks per SM of an H100/H200
constexpr int ATT_MAX_SPLITS = 32;
constexpr int ATT_MAX_HEAD_DIM = 256;

SPEC_HD int32_t attn_tiles(int32_t rows, int32_t G) { return (rows * G + ATT_ROWS - 1) / ATT_ROWS; }

// The kernel instance a head_dim runs on: head dims up to 32, 64, 128 or ATT_MAX_HEAD_DIM.
SPEC_HD int32_t attn_head_dim_bucket(int32_t head_dim) {
    return head_dim <= 32 ? 32 : head_dim <= 64 ? 64 : head_dim <= 128 ? 128 : ATT_MAX_HEAD_DIM;
}

// Dynamic shared memory of the attention kernel at head_dim D: Q rows, K tile (rows padded by
// one float), V tile, all f32.
SPEC_HD size_t attn_smem_bytes(int32_t D) {
    return sizeof(float) * ((size_t)ATT_ROWS * D + (size_t)ATT_KEYS * (D + 1) + (size_t)ATT_KEYS * D);
}

// Splits of the keys (flash decoding): enough blocks to fill the device when there are few rows,
// one split when the rows alone fill it. Fixed per bucket, so a graph's grid never changes;
// the split's share of the keys is computed from the step's key count.
SPEC_HD int32_t attn_splits(int32_t rows, int32_t G, int32_t n_head_kv) {
    const int32_t blocks = attn_tiles(rows, G) * n_head_kv;
    int32_t s = ATT_TARGET_BLOCKS / (blocks > 0 ? blocks : 1);
    return s < 1 ? 1 : (s > ATT_MAX_SPLITS ? ATT_MAX_SPLITS : s);
}

// Keys [k0, k1) of split s of n_keys keys: whole tiles, spread evenly.
SPEC_HD void split_range(int32_t n_keys, int32_t splits, int32_t s, int32_t &k0, int32_t &k1) {
    const int32_t tiles = (n_keys + ATT_KEYS - 1) / ATT_KEYS;
    const int32_t per = (tiles + splits - 1) / splits;
    k0 = s * per * ATT_KEYS;
    k1 = (s + 1) * per * ATT_KEYS;
    if (k0 > n_keys) k0 = n_keys;
    if (k1 > n_keys) k1 = n_keys;
}

// Online softmax: the factor an accumulator kept at running max m_old is rescaled by when the
// max becomes m_new (0 while nothing was accumulated).
SPEC_HD float softmax_rescale(float m_old, float m_new) {
    if (m_old == -INFINITY) return 0.0f;
#ifdef __CUDA_ARCH__
    return expf(m_old - m_new);
#else
    return std::exp(m_old - m_new);
#endif
}
SPEC_HD float softmax_weight(float score, float m) {
#ifdef __CUDA_ARCH__
    return expf(score - m);
#else
    return std::exp(score - m);
#endif
}

// Partial results of the splits of one query row: floats per (split, row) of the partial buffer.
SPEC_HD int64_t attn_partial_floats_per_row(int32_t head_dim) { return 2 + (int64_t)head_dim; }

// ---------------------------------------------------------------- device memory layouts

SPEC_HD uint64_t align256(uint64_t n) { return (n + 255) & ~(uint64_t)255; }

// Matrices that multiply the same activations (a layer's q, k, v; its gate and up) are placed
// back to back and run as one matrix of all their rows, one weight-streaming launch instead of
// several, when they share dtype and columns and each one's bytes are a multiple of 16: every
// piece then starts 16-byte aligned, as a matrix of its own would (matmul.cuh's fast paths), and
// its rows are the stacked matrix's rows at an offset. Otherwise they stay separate matrices.
struct MatrixPiece {
    int32_t dtype;
    int64_t rows, cols;
    uint64_t bytes; // rows * the dtype's row bytes
};
inline bool can_stack(const MatrixPiece *pieces, int n) {
    for (int i = 0; i < n; i++) {
        if (pieces[i].dtype != pieces[0].dtype || pieces[i].cols != pieces[0].cols) return false;
        if (pieces[i].bytes % 16 != 0 || pieces[i].rows <= 0) return false;
    }
    return n > 0;
}

// Upper bound of the pieces of the weight allocation: every matrix (uploaded once even when
// tied), every norm and bias converted to f32 (biases counted for every layer, whether given or
// not), the rope frequencies; each piece 256-byte aligned. given_bytes: the sum of the nbytes
// given to spec_model_set_weight (the matrices inside it only shrink when vectors or tied
// matrices are counted there). Stacked matrices (can_stack) take one piece for several, and a
// tied matrix inside a stack is copied again, which given_bytes already counts: still a bound.
inline uint64_t weight_alloc_bytes(const spec_model_config &c, uint64_t given_bytes) {
    const uint64_t L = (uint64_t)c.n_layer, E = (uint64_t)c.n_embd;
    const uint64_t QD = (uint64_t)c.n_head * c.head_dim, KD = (uint64_t)c.n_head_kv * c.head_dim;
    const uint64_t matrices = 2 + 7 * L, vectors = 1 + 5 * L;
    const uint64_t vector_floats = E + L * (2 * E + QD + 2 * KD);
    const uint64_t rope_bytes = (uint64_t)(rope_dims(c) / 2) * 8;
    return given_bytes + 256 * (matrices + vectors + 1) + 4 * vector_floats + rope_bytes;
}

// The activation scratch of one model: fixed, for one slice of MAX_ROWS rows.
struct ScratchLayout {
    size_t params = 0, commit = 0;           // StepParams; kv_commit's (dst, src) pairs
    size_t x = 0, xn = 0, att = 0;
    size_t qkv = 0;                          // [rows][qkv_width]: q, k, v of a row side by side
    size_t gu = 0;                           // [rows][2 n_ff]: gate, up; silu(gate) * up in the gate half
    size_t rope = 0;                         // [rows][rope_dims / 2][cos, sin]
    size_t head = 0;                         // [rows][n_vocab]: the LM head's output before it is copied out
    size_t part = 0;                         // attention partials
    size_t matmul = 0;                       // matmul()'s scratch
    size_t bytes = 0;
};

// Row strides of the q/k/v and gate/up activations: one matmul (stacked weights) or several
// (separate ones, written at column offsets) fill the same buffers, so everything downstream
// reads one layout. q at column 0, k at n_head * head_dim, v after k.
inline int64_t qkv_width(const spec_model_config &c) { return (int64_t)(c.n_head + 2 * c.n_head_kv) * c.head_dim; }
inline int64_t gu_width(const spec_model_config &c) { return 2 * (int64_t)c.n_ff; }

// Largest attention partial buffer over the buckets, in floats.
inline int64_t attn_partial_floats(const spec_model_config &c) {
    const int32_t G = c.n_head / c.n_head_kv;
    int64_t most = 0;
    for (int32_t rows = 1; rows <= MAX_ROWS; rows *= 2) {
        const int32_t s = attn_splits(rows, G, c.n_head_kv);
        if (s == 1) continue; // one split writes its output directly
        const int64_t f = (int64_t)s * attn_tiles(rows, G) * ATT_ROWS * c.n_head_kv * attn_partial_floats_per_row(c.head_dim);
        if (f > most) most = f;
    }
    return most;
}

// matmul_scratch: the most matmul() needs for any of the model's products at any bucket.
inline ScratchLayout scratch_layout(const spec_model_config &c, size_t matmul_scratch) {
    ScratchLayout s;
    size_t at = 0;
    auto add = [&](size_t n) {
        const size_t off = (size_t)align256(at);
        at = off + n;
        return off;
    };
    const size_t R = MAX_ROWS, E = (size_t)c.n_embd, QD = (size_t)c.n_head * c.head_dim, V = (size_t)c.n_vocab;
    s.params = add(sizeof(StepParams));
    s.commit = add(sizeof(int32_t) * 2 * MAX_ROWS);
    s.x = add(4 * R * E);
    s.xn = add(4 * R * E);
    s.qkv = add(4 * R * (size_t)qkv_width(c));
    s.att = add(4 * R * QD);
    s.gu = add(4 * R * (size_t)gu_width(c));
    s.rope = add(4 * R * (size_t)(rope_dims(c) / 2) * 2);
    s.head = add(4 * R * V);
    s.part = add(4 * (size_t)attn_partial_floats(c));
    s.matmul = add(matmul_scratch);
    s.bytes = (size_t)align256(at);
    return s;
}

} // namespace specula::mm
