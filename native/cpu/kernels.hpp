// The cpu backend's numeric kernels, one set per instruction-set level, chosen at run time.
//
// Each set is compiled in its own file under a `#pragma GCC target` (kernels_avx512.cpp,
// kernels_avx2.cpp) or for the baseline (kernels_scalar.cpp) from the one template in
// kernels_impl.inc. Those files include no C++ standard headers and keep everything in an
// anonymous namespace, so no inline function compiled for AVX-512 can be merged into code that
// runs on an older CPU. This header holds only plain declarations and static helpers.
//
// Numerics: F32/F16/BF16 weights, and any GGML format without an int8 path (those that
// native/core/quant_blocks.hpp decodes), are dequantized to exact f32 and multiplied with f32
// activations. Q8_0, Q4_0, Q4_1, Q5_0 and Q5_1 take the Int8Set below instead: activations quantized per row, int8
// dot products, a result defined once in int8_dot.hpp; the k-quants likewise take the KqSet
// (kquant_dot.hpp). Every f32 output element
// has a single f32 accumulator that walks k upward in vector-width chunks, whatever the number
// of tokens or rows computed beside it, so a token's result does not depend on the batch it was
// in, on the thread that computed it, or on whether its weight rows came from a scratch copy.
#pragma once

#include <stdint.h>
#include <string.h>

namespace specula::cpu {

// One (token, kv head) unit of attention: the group of query heads sharing kv head `g`.
struct AttnParams {
    const float *q;        // G query heads x D, contiguous
    float *out;            // G x D
    int32_t G;             // query heads per kv head
    int32_t D;             // head_dim
    const uint8_t *kbase;  // the layer's K cache plus the byte offset of kv head g
    const uint8_t *vbase;  // same for V
    int64_t slot_bytes;    // bytes from one cache slot to the next
    int32_t kv_dtype;      // SPEC_DTYPE_F32 / F16 / BF16
    const int32_t *runs;   // n_runs pairs (first slot, count): the keys, in order
    int32_t n_runs;
    int32_t n_keys;        // sum of the counts
    float scale;
    float *scores;         // scratch, G * (n_keys + 1) floats
};

// Int8 products for quantized weights (see int8_dot.hpp for the layouts and the exact result).
// A dtype has an int8 path when pack() knows it; each set packs weights in the form its dot
// instruction wants, and every set's gemm gives the same bits.
struct Int8Set {
    const char *name;
    int rows;   // weight rows per gemm call
    int tokens; // most tokens per gemm call
    // Whether pack() takes this dtype (new block types: one case here and one in pack).
    bool (*has)(int32_t dtype);
    // One row of K elements in dtype (GGUF blocks) -> int8_groups(K) packed weight groups.
    // pf (optional): pf_bytes of weights the caller reads next, prefetched along the way.
    void (*pack)(int32_t dtype, const uint8_t *row, int64_t K, uint8_t *dst, const uint8_t *pf, int64_t pf_bytes);
    // out[t*rows + r] = packed row r (of dtype) . quantized activation row t, for t < T (1..tokens);
    // the activation rows are qx_stride bytes apart, ng groups each.
    void (*gemm)(int32_t dtype, const uint8_t *const *rows, int64_t ng, const uint8_t *qx, int64_t qx_stride, int T, float *out);
    // Optional (nullptr when the set has none): the same products for one row read in place, no
    // packing, for few tokens (decode). out[t] for t < T (1..tile_tokens); false: dtype not taken.
    int tile_tokens = 0;
    bool (*tile)(int32_t dtype, const uint8_t *row, int64_t K, const uint8_t *qx, int64_t qx_stride, int T, float *out,
                 const uint8_t *pf, int64_t pf_bytes) = nullptr;
    // Optional (nullptr: quantize_acts_row itself): quantize_acts_row in the set's instructions, the same
    // bytes for every input (test_int8_dot compares them).
    void (*quantize)(const float *x, int64_t K, uint8_t *dst) = nullptr;
    // Q8_0 rows prepacked once (at load): one row of K -> int8_groups(K) groups of INT8_P_GROUP_BYTES
    // (int8_dot.hpp), and gemm's products over such rows (the same bits; T 1..tokens). pf_rows (optional):
    // the `rows` rows the caller reads next; bytes [pf_b0, pf_b1) of each are prefetched along the way,
    // spread over the call's groups, one row after the other.
    void (*prepack)(const uint8_t *row, int64_t K, uint8_t *dst) = nullptr;
    void (*gemm_pre)(const uint8_t *const *rows, int64_t ng, const uint8_t *qx, int64_t qx_stride, int T, float *out,
                     const uint8_t *const *pf_rows, int64_t pf_b0, int64_t pf_b1) = nullptr;
};

// Int8 products for the k-quants (see kquant_dot.hpp for the layouts and the exact result): the
// same shape as Int8Set, over super-blocks of 256 instead of groups of 512.
struct KqSet {
    const char *name;
    int rows;        // weight rows per gemm call
    int tokens;      // most tokens per gemm call
    int tile_tokens; // most tokens per tile call
    // One row of K elements (a multiple of 256) in dtype -> K/256 unpacked super-blocks of KQ_W_BYTES.
    // pf (optional): pf_bytes of weights the caller reads next, prefetched along the way.
    void (*pack)(int32_t dtype, const uint8_t *row, int64_t K, uint8_t *dst, const uint8_t *pf, int64_t pf_bytes);
    // out[t*rows + r] = unpacked row r . quantized activation row t, for t < T (1..tokens); nsb
    // super-blocks each, activation rows qx_stride bytes apart.
    void (*gemm)(int32_t dtype, const uint8_t *const *rows, int64_t nsb, const uint8_t *qx, int64_t qx_stride, int T, float *out);
    // The same products for one row read in place (GGUF blocks), out[t] for t < T (1..tile_tokens).
    void (*tile)(int32_t dtype, const uint8_t *row, int64_t K, const uint8_t *qx, int64_t qx_stride, int T, float *out,
                 const uint8_t *pf, int64_t pf_bytes);
};

struct KernelSet {
    const char *name;
    int tmax;     // most tokens one tile call takes
    int gemm_r;   // rows per gemm call
    int gemm_t;   // most tokens per gemm call
    int lanes;    // floats per vector: gemm's acc holds gemm_r * T * lanes floats; k blocks are multiples of it
    // out[t*4 + r] = sum_k row_r[k] * X[t*ldx + k] for r < 4, t < T (1..tmax). rows are in dtype;
    // all four pointers must be valid (repeat one for fewer rows). pf (optional): pf_bytes of
    // weights the caller reads next, prefetched along the way.
    void (*tile)(int32_t dtype, const uint8_t *const *rows, int64_t K, const float *X, int64_t ldx, int T, float *out,
                 const uint8_t *pf, int64_t pf_bytes);
    // The same products for gemm_r f32 rows and T (1..gemm_t) tokens over k in [k0, k1), a
    // multiple of lanes except at K: the first block (k0 == 0) starts the sums, the last
    // (k1 == K) writes out[t*gemm_r + r]; between blocks the partial sums wait in acc.
    void (*gemm)(const float *const *rows, int64_t k0, int64_t k1, int64_t K, const float *X, int64_t ldx, int T,
                 float *acc, float *out);
    // out[0..K) = the row dequantized to f32, bit-identical to what tile() multiplies with.
    void (*dequant)(int32_t dtype, const uint8_t *row, int64_t K, float *out);
    // Softmax attention of one query-head group over the listed cache slots.
    void (*attention)(const AttnParams &p);
    // g[i] = silu(g[i]) * u[i]
    void (*silu_mul)(float *g, const float *u, int64_t n);
    // dst (kv dtype) = src rounded to nearest even.
    void (*store_kv)(void *dst, const float *src, int64_t n, int32_t kv_dtype);
    const Int8Set *int8 = nullptr; // set by the kernel set's accessor
    const KqSet *kq = nullptr;     // likewise, for the k-quants
    // gemm() over rows read in place in dtype (F32, F16 or BF16), each weight vector converted
    // once in registers and used for all T tokens; the same bits as gemm() over dequant()'s rows.
    // pf_rows (optional): the gemm_r rows the caller reads next; bytes [pf_b0, pf_b1) of each are
    // prefetched along the way, spread over the call's k steps in the order they will be read.
    void (*gemm_plain)(int32_t dtype, const uint8_t *const *rows, int64_t k0, int64_t k1, int64_t K, const float *X,
                       int64_t ldx, int T, float *acc, float *out, const uint8_t *const *pf_rows, int64_t pf_b0,
                       int64_t pf_b1) = nullptr;
};

// f16 -> f32 for every half, filled by init_tables() before any kernel runs: a quantized block's
// scale becomes one broadcast load instead of a conversion.
extern float g_f16_table[65536];
void init_tables(); // idempotent, thread-safe

const KernelSet *kernels_scalar();
const KernelSet *kernels_avx2();   // nullptr when not compiled for this target
const KernelSet *kernels_avx512(); // nullptr when not compiled for this target
const KernelSet *kernels_avx512_vnni(); // the same with VNNI int8 products; nullptr when not compiled
// AMX (int8 tiles) is detected at run time (select_kernels) but has no kernel yet: a tile gemm
// would be one more Int8Set over the same packed layout (no AMX machine here to test one).

// Scalar conversions shared by every set (and the only ones the scalar set uses).
static inline float f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1f, mant = h & 0x3ff, bits;
    if (exp == 0) {
        if (mant == 0) {
            bits = sign;
        } else { // subnormal half: normalize
            exp = 113;
            while (!(mant & 0x400)) {
                mant <<= 1;
                exp--;
            }
            bits = sign | (exp << 23) | ((mant & 0x3ff) << 13);
        }
    } else if (exp == 31) {
        bits = sign | 0x7f800000u | (mant << 13);
    } else {
        bits = sign | ((exp + 112) << 23) | (mant << 13);
    }
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

static inline uint16_t f32_to_f16(float f) { // round to nearest even (F. Giesen's float_to_half_rtne)
    uint32_t x;
    memcpy(&x, &f, 4);
    const uint32_t sign = x & 0x80000000u;
    x ^= sign;
    uint16_t o;
    if (x >= (127u + 16u) << 23) {
        o = x > (255u << 23) ? 0x7e00 : 0x7c00;
    } else if (x < (113u << 23)) {
        const uint32_t magic_u = ((127u - 15u) + (23u - 10u) + 1u) << 23;
        float magic, xf;
        memcpy(&magic, &magic_u, 4);
        memcpy(&xf, &x, 4);
        xf += magic;
        uint32_t xb;
        memcpy(&xb, &xf, 4);
        o = (uint16_t)(xb - magic_u);
    } else {
        uint32_t mant_odd = (x >> 13) & 1;
        x += 0xc8000fffu; // ((15 - 127) << 23) + 0xfff, modulo 2^32
        x += mant_odd;
        o = (uint16_t)(x >> 13);
    }
    return (uint16_t)(o | (sign >> 16));
}

static inline float bf16_to_f32(uint16_t h) {
    uint32_t bits = (uint32_t)h << 16;
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

static inline uint16_t f32_to_bf16(float f) { // round to nearest even
    uint32_t x;
    memcpy(&x, &f, 4);
    if ((x & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((x >> 16) | 0x40);
    x += 0x7fffu + ((x >> 16) & 1);
    return (uint16_t)(x >> 16);
}

static inline uint16_t load_u16(const void *p) {
    uint16_t v;
    memcpy(&v, p, 2);
    return v;
}

} // namespace specula::cpu
