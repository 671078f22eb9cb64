// Per-element arithmetic of the cuda matrix products (native/cuda/matmul.cu), __host__ __device__
// so that the host tests (native/tests/test_matmul_math.cpp) check the very functions the kernels
// run, on a machine without a GPU.
//
//   - Weights are converted exactly: 16-bit floats widen to f32, and a quantized value is q * d
//     with |q| < 2^8 and d an f16 (11 significant bits), a product f32 holds exactly. This is the
//     cpu backend's kern.dequant, so both backends multiply the same weights.
//   - The tensor-core path feeds activations to mma as two 16-bit parts, x*s = hi + lo, where s
//     is a power of two per token (split_scale) that keeps the parts inside f16's range. The
//     products with both parts, summed in f32, reproduce the f32 product to 2^-17 relative
//     (bf16 parts; f16 parts do better, 2^-22 near the token's largest element), and scaling by
//     a power of two is exact.
//   - Quantized weights enter mma as their integers q; a 32-wide block's (or a 16- or 32-wide
//     sub-block's) products are summed in an f32 partial and then added to the accumulator scaled
//     by its d (add_scaled_block); formats with a min subtract it times the sub-block's activation
//     sum (subtract_block_min).
#pragma once

#include "kernel_math.hpp"

#if defined(__CUDACC__)
#include <cuda_fp16.h>
#endif

namespace specula::mm {

// ---------------------------------------------------------------- GGML block layouts

constexpr int QK = 32;               // elements per quantized block
constexpr int Q8_0_BLOCK_BYTES = 34; // f16 d, then 32 int8 q
constexpr int Q4_0_BLOCK_BYTES = 18; // f16 d, then 16 bytes: element j < 16 is byte j's low nibble, j + 16 its high one
constexpr int CHUNK = 8;             // the kernels take a block in four chunks of 8 consecutive elements

// Exact f16 -> f32 (hardware conversion on the device, the same value as km::f16_to_f32).
SPEC_HD float half_to_float(uint16_t h) {
#ifdef __CUDA_ARCH__
    return __half2float(__ushort_as_half(h));
#else
    return km::f16_to_f32(h);
#endif
}

// A block's scale, stored little-endian in its first two bytes.
SPEC_HD float block_scale(const uint8_t *blk) { return half_to_float((uint16_t)(blk[0] | (unsigned)blk[1] << 8)); }

SPEC_HD int q8_0_value(uint8_t byte) { return (int)(int8_t)byte; }
SPEC_HD int q4_0_value(uint8_t byte, int shift) { return (int)((byte >> shift) & 15u) - 8; }

// Chunk c (0..3) of a Q4_0 block, elements 8c..8c+7, sits in the 8 bytes from q4_0_chunk_byte(c)
// (of the 16 after the scale), in their low nibbles for c < 2 and high ones for c >= 2.
SPEC_HD int q4_0_chunk_byte(int c) { return CHUNK * (c & 1); }
SPEC_HD int q4_0_chunk_shift(int c) { return 4 * (c >> 1); }
// Chunk c of a Q8_0 block: the 8 int8 from byte 8c (of the 32 after the scale).
SPEC_HD int q8_0_chunk_byte(int c) { return CHUNK * c; }

// The integer of element j (0..31) of a block whose quants start at qs.
SPEC_HD int q8_0_element(const uint8_t *qs, int j) { return q8_0_value(qs[q8_0_chunk_byte(j >> 3) + (j & 7)]); }
SPEC_HD int q4_0_element(const uint8_t *qs, int j) {
    return q4_0_value(qs[q4_0_chunk_byte(j >> 3) + (j & 7)], q4_0_chunk_shift(j >> 3));
}

// The weight q * d: exact (see the top of this file), so the order of scaling does not matter
// on the streaming path.
SPEC_HD float dequant(int q, float d) { return km::fmul((float)q, d); }

// ---------------------------------------------------------------- activations split for mma

// The power of two s that puts a token's largest |x| in [2^14, 2^15): hi = f16(x*s) then never
// overflows (f16 tops out at 65504), and every element down to 2^-22 of the largest keeps 2^-17
// relative precision (lo may be an f16 subnormal there, with an absolute error of 2^-25); the
// smaller ones' share of a dot product is below what f32 accumulation loses anyway. Clamped
// to [2^-126, 2^126] so that s and 1/s are normal floats: a token whose largest |x| is below
// 2^-112 (nothing a model produces) keeps less precision. Zero, inf and nan leave s = 1.
SPEC_HD float split_scale(float absmax) {
    const int e = (int)((km::float_bits(absmax) >> 23) & 255u); // absmax >= 0, so no sign bit
    if (e == 255 || absmax == 0.0f) return 1.0f;
    int shift = 14 - (e - 127);
    shift = shift < -126 ? -126 : (shift > 126 ? 126 : shift);
    return km::bits_float((uint32_t)(shift + 127) << 23);
}
// 1/s, exact for the powers of two split_scale returns.
SPEC_HD float inverse_scale(float s) { return km::fdiv(1.0f, s); }

struct Split16 {
    uint16_t hi, lo; // f16 or bf16 bits
};

// x (already scaled) = hi + lo to 2^-22 relative: hi is x rounded to f16, lo the rest (x - hi is
// exact in f32) rounded to f16.
SPEC_HD Split16 split_f16(float x) {
    const uint16_t hi = km::f32_to_f16(x);
    return Split16{hi, km::f32_to_f16(km::fsub(x, km::f16_to_f32(hi)))};
}
// The same with bf16 parts: 8 significant bits each, so hi + lo is within 2^-17 of x.
SPEC_HD Split16 split_bf16(float x) {
    const uint16_t hi = km::f32_to_bf16(x);
    return Split16{hi, km::f32_to_bf16(km::fsub(x, km::bf16_to_f32(hi)))};
}

// hi + lo as an f32: what the two mma passes multiply a weight by. Exact: lo is below half an
// ulp of hi, so the two parts' significant bits span at most 22 (f16) or 16 (bf16) places.
SPEC_HD float split_value(Split16 p, bool bf16) {
    return bf16 ? km::fadd(km::bf16_to_f32(p.hi), km::bf16_to_f32(p.lo)) : km::fadd(half_to_float(p.hi), half_to_float(p.lo));
}

// ---------------------------------------------------------------- accumulation order

// acc + d * partial with one rounding: a quantized block's f32 partial sum of q * (hi + lo)
// products enters the accumulator scaled by the block's d.
SPEC_HD float add_scaled_block(float acc, float d, float partial) { return fmaf(d, partial, acc); }

// acc - ml * xsum with one rounding: a sub-block with a min (element q * dl - ml; quant_chunks.hpp)
// subtracts it times the sum of the sub-block's activations (the same hi + lo parts the products
// took, so sum (q dl - ml) x = dl * partial - ml * xsum).
SPEC_HD float subtract_block_min(float acc, float ml, float xsum) { return fmaf(-ml, xsum, acc); }

// The output: the accumulator brought back from the token's scale (exact: a power of two), then
// added to what Y held when accumulating.
SPEC_HD float finish_output(float acc, float inv_scale, bool accumulate, float previous) {
    const float v = km::fmul(acc, inv_scale);
    return accumulate ? km::fadd(previous, v) : v;
}

} // namespace specula::mm
