// The GGML block formats beyond Q8_0 / Q4_0, decoded to floats exactly, written once for every
// user: the cpu kernels (native/cpu/kernels_impl.inc), the cuda kernels (through quant_chunks.hpp), model_math's
// dequant_element and the native tests' reference. Everything is __host__ __device__ (SPEC_HD).
//
// Layouts (little-endian f16 scales; a k-quant super-block holds 256 elements):
//   Q4_1  20 B / 32: d, m, 16 B of nibbles (element j < 16: byte j low, j + 16: byte j high); x = q*d + m
//   Q5_0  22 B / 32: d, qh (32 fifth bits, bit j for element j), 16 B of nibbles; x = (q - 16)*d
//   Q5_1  24 B / 32: d, m, qh, 16 B of nibbles; x = q*d + m
//   Q2_K  84 B: scales[16] (low nibble scale, high nibble min), qs[64] (2-bit), d, dmin;
//               x = d*sc*q - dmin*mn over 16 sub-blocks of 16
//   Q3_K 110 B: hmask[32] (third bit), qs[64] (2 low bits), scales[12] (16 six-bit scales), d;
//               x = d*(sc - 32)*(q - 4 when the hmask bit is clear, else q)
//   Q4_K 144 B: d, dmin, scales[12] (8 six-bit scales and 8 mins), qs[128]; x = d*sc*q - dmin*mn
//               over 8 sub-blocks of 32
//   Q5_K 176 B: d, dmin, scales[12], qh[32] (fifth bits), qs[128]; the same with 5-bit q
//   Q6_K 210 B: ql[128] (4 low bits), qh[64] (2 high bits), scales[16] (int8), d;
//               x = d*sc*(q - 32) over 16 sub-blocks of 16
//
// Exactness: every product here is exact in f32 (an f16 has 11 significant bits, the integer
// factors together at most 13), so each weight is rounded at most once, by the final subtraction
// or addition of a min. The values therefore do not depend on whether a compiler fuses that
// multiply-add, and every decoder below (block or element, cpu or gpu) gives the same bits.
#pragma once

#include "matmul_math.hpp"

namespace specula::qb {

constexpr int QK_K = 256; // elements of a k-quant super-block

constexpr int Q4_1_BYTES = 20, Q5_0_BYTES = 22, Q5_1_BYTES = 24;
constexpr int Q2_K_BYTES = 84, Q3_K_BYTES = 110, Q4_K_BYTES = 144, Q5_K_BYTES = 176, Q6_K_BYTES = 210;

// Elements per block of dtype (1 for the plain float types, 0 for an unknown dtype).
SPEC_HD constexpr int block_elems(int32_t dtype) {
    switch (dtype) {
    case SPEC_DTYPE_F32:
    case SPEC_DTYPE_F16:
    case SPEC_DTYPE_BF16: return 1;
    case SPEC_DTYPE_Q8_0:
    case SPEC_DTYPE_Q4_0:
    case SPEC_DTYPE_Q4_1:
    case SPEC_DTYPE_Q5_0:
    case SPEC_DTYPE_Q5_1: return 32;
    case SPEC_DTYPE_Q2_K:
    case SPEC_DTYPE_Q3_K:
    case SPEC_DTYPE_Q4_K:
    case SPEC_DTYPE_Q5_K:
    case SPEC_DTYPE_Q6_K: return QK_K;
    default: return 0;
    }
}

// Bytes per block of dtype (0 for an unknown dtype).
SPEC_HD constexpr int block_bytes(int32_t dtype) {
    switch (dtype) {
    case SPEC_DTYPE_F32: return 4;
    case SPEC_DTYPE_F16:
    case SPEC_DTYPE_BF16: return 2;
    case SPEC_DTYPE_Q8_0: return mm::Q8_0_BLOCK_BYTES;
    case SPEC_DTYPE_Q4_0: return mm::Q4_0_BLOCK_BYTES;
    case SPEC_DTYPE_Q4_1: return Q4_1_BYTES;
    case SPEC_DTYPE_Q5_0: return Q5_0_BYTES;
    case SPEC_DTYPE_Q5_1: return Q5_1_BYTES;
    case SPEC_DTYPE_Q2_K: return Q2_K_BYTES;
    case SPEC_DTYPE_Q3_K: return Q3_K_BYTES;
    case SPEC_DTYPE_Q4_K: return Q4_K_BYTES;
    case SPEC_DTYPE_Q5_K: return Q5_K_BYTES;
    case SPEC_DTYPE_Q6_K: return Q6_K_BYTES;
    default: return 0;
    }
}

// The block formats this header decodes (the ones beyond F32/F16/BF16/Q8_0/Q4_0).
SPEC_HD constexpr bool is_block_decoded(int32_t dtype) {
    return dtype == SPEC_DTYPE_Q4_1 || dtype == SPEC_DTYPE_Q5_0 || dtype == SPEC_DTYPE_Q5_1 || dtype == SPEC_DTYPE_Q2_K ||
           dtype == SPEC_DTYPE_Q3_K || dtype == SPEC_DTYPE_Q4_K || dtype == SPEC_DTYPE_Q5_K || dtype == SPEC_DTYPE_Q6_K;
}

SPEC_HD float f16_at(const uint8_t *p) { return mm::half_to_float((uint16_t)(p[0] | (unsigned)p[1] << 8)); }
SPEC_HD uint32_t u32_at(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

// q * d + m (the min-offset formats): the product is exact, the sum rounds once.
SPEC_HD float scaled_plus(int q, float d, float m) { return km::fadd(km::fmul((float)q, d), m); }
// d*q - m with d*q exact.
SPEC_HD float scaled_minus(float d, int q, float m) { return km::fsub(km::fmul(d, (float)q), m); }

// ---------------------------------------------------------------- per-element decoders

// Element j (0..31) of a legacy block.
SPEC_HD float q4_1_element(const uint8_t *b, int j) {
    const int q = (b[4 + (j & 15)] >> (j < 16 ? 0 : 4)) & 15;
    return scaled_plus(q, f16_at(b), f16_at(b + 2));
}
SPEC_HD int q5_quant(const uint8_t *qh, const uint8_t *qs, int j) {
    return ((qs[j & 15] >> (j < 16 ? 0 : 4)) & 15) | (int)((u32_at(qh) >> j) & 1u) << 4;
}
SPEC_HD float q5_0_element(const uint8_t *b, int j) { return mm::dequant(q5_quant(b + 2, b + 6, j) - 16, f16_at(b)); }
SPEC_HD float q5_1_element(const uint8_t *b, int j) { return scaled_plus(q5_quant(b + 4, b + 8, j), f16_at(b), f16_at(b + 2)); }

// The 6-bit scale and min of sub-block s (0..7) of Q4_K / Q5_K, packed in 12 bytes: they come
// from bytes s & 3, 4 + (s & 3) and, for s >= 4, 8 + (s & 3) (k4_scale_min_of: the cuda kernels
// fetch those three bytes first and decode them later).
SPEC_HD void k4_scale_min_of(int s, uint8_t b0, uint8_t b4, uint8_t b8, int &scale, int &min) {
    if (s < 4) {
        scale = b0 & 63;
        min = b4 & 63;
    } else {
        scale = (b8 & 15) | (b0 >> 6) << 4;
        min = (b8 >> 4) | (b4 >> 6) << 4;
    }
}
SPEC_HD void k4_scale_min(const uint8_t *sc, int s, int &scale, int &min) {
    k4_scale_min_of(s, sc[s & 3], sc[4 + (s & 3)], sc[8 + (s & 3)], scale, min);
}

// The signed scale (-32..31) of sub-block s (0..15) of Q3_K: its low four bits are a nibble of
// byte s & 7, its high two a pair of bits of byte 8 + (s & 3).
SPEC_HD int q3_k_scale_of(int s, uint8_t low_byte, uint8_t high_byte) {
    const int low = s < 8 ? low_byte & 15 : low_byte >> 4;
    const int high = (high_byte >> (2 * (s >> 2))) & 3;
    return (low | high << 4) - 32;
}
SPEC_HD int q3_k_scale(const uint8_t *sc, int s) { return q3_k_scale_of(s, sc[s & 7], sc[8 + (s & 3)]); }

// Elements j (0..255) of the k-quant super-blocks. Q2_K, Q3_K and Q6_K lay 256 elements out as
// two halves of 128; within a half, quarter g (32 elements) takes bit pair g of its 32 quant
// bytes, split in sub-blocks of 16.
SPEC_HD float q2_k_element(const uint8_t *b, int j) {
    const int half = j >> 7, g = (j >> 5) & 3, l = j & 31;
    const int s = b[half * 8 + g * 2 + (l >> 4)];
    const int q = (b[16 + half * 32 + l] >> (2 * g)) & 3;
    return scaled_minus(km::fmul(f16_at(b + 80), (float)(s & 15)), q, km::fmul(f16_at(b + 82), (float)(s >> 4)));
}
SPEC_HD float q3_k_element(const uint8_t *b, int j) {
    const int half = j >> 7, g = (j >> 5) & 3, l = j & 31;
    const int low = (b[32 + half * 32 + l] >> (2 * g)) & 3;
    const int high = (b[l] >> (half * 4 + g)) & 1;
    const float dl = km::fmul(f16_at(b + 108), (float)q3_k_scale(b + 96, half * 8 + g * 2 + (l >> 4)));
    return mm::dequant(low - (high ? 0 : 4), dl);
}
SPEC_HD float q4_k_element(const uint8_t *b, int j) {
    const int g = j >> 6, l = j & 31, hi = (j >> 5) & 1;
    int sc, mn;
    k4_scale_min(b + 4, 2 * g + hi, sc, mn);
    const int q = (b[16 + g * 32 + l] >> (4 * hi)) & 15;
    return scaled_minus(km::fmul(f16_at(b), (float)sc), q, km::fmul(f16_at(b + 2), (float)mn));
}
SPEC_HD float q5_k_element(const uint8_t *b, int j) {
    const int g = j >> 6, l = j & 31, hi = (j >> 5) & 1;
    int sc, mn;
    k4_scale_min(b + 4, 2 * g + hi, sc, mn);
    const int q = ((b[48 + g * 32 + l] >> (4 * hi)) & 15) | ((b[16 + l] >> (2 * g + hi)) & 1) << 4;
    return scaled_minus(km::fmul(f16_at(b), (float)sc), q, km::fmul(f16_at(b + 2), (float)mn));
}
SPEC_HD float q6_k_element(const uint8_t *b, int j) {
    const int half = j >> 7, g = (j >> 5) & 3, l = j & 31;
    const int low = (b[half * 64 + (g & 1) * 32 + l] >> (4 * (g >> 1))) & 15;
    const int high = (b[128 + half * 32 + l] >> (2 * g)) & 3;
    const int sc = (int)(int8_t)b[192 + half * 8 + g * 2 + (l >> 4)];
    return mm::dequant((low | high << 4) - 32, km::fmul(f16_at(b + 208), (float)sc));
}

// Element j of one block of a block-decoded dtype (0 for any other dtype).
SPEC_HD float block_element(int32_t dtype, const uint8_t *b, int j) {
    switch (dtype) {
    case SPEC_DTYPE_Q4_1: return q4_1_element(b, j);
    case SPEC_DTYPE_Q5_0: return q5_0_element(b, j);
    case SPEC_DTYPE_Q5_1: return q5_1_element(b, j);
    case SPEC_DTYPE_Q2_K: return q2_k_element(b, j);
    case SPEC_DTYPE_Q3_K: return q3_k_element(b, j);
    case SPEC_DTYPE_Q4_K: return q4_k_element(b, j);
    case SPEC_DTYPE_Q5_K: return q5_k_element(b, j);
    case SPEC_DTYPE_Q6_K: return q6_k_element(b, j);
    default: return 0.0f;
    }
}

// ---------------------------------------------------------------- whole-block decoders

// A block unpacked: its integer quants (offsets applied, so element j is q[j] * dl[s] - ml[s] with
// s = j / sub_block_elems(dtype)) and each sub-block's scale dl and min ml (0 where the format has none; the
// negated offset for Q4_1 / Q5_1). The products are exact, so q * dl - ml rounds once, the same
// value as the element decoders above, and an fma (q, dl, -ml) gives it too: the cpu kernels
// convert q with vector instructions and run that fma.
struct Unpacked {
    int8_t q[QK_K];
    float dl[16], ml[16];
};

// Elements per sub-block of an unpacked block (one scale and min each).
SPEC_HD constexpr int sub_block_elems(int32_t dtype) {
    return dtype == SPEC_DTYPE_Q2_K || dtype == SPEC_DTYPE_Q3_K || dtype == SPEC_DTYPE_Q6_K ? 16 : 32;
}

SPEC_HD void unpack_q4_1(const uint8_t *b, Unpacked &u) {
    u.dl[0] = f16_at(b), u.ml[0] = -f16_at(b + 2);
    for (int j = 0; j < 16; j++) u.q[j] = (int8_t)(b[4 + j] & 15), u.q[j + 16] = (int8_t)(b[4 + j] >> 4);
}
SPEC_HD void unpack_q5(const uint8_t *qh, const uint8_t *qs, int offset, Unpacked &u) {
    const uint32_t h = u32_at(qh);
    for (int j = 0; j < 16; j++) {
        u.q[j] = (int8_t)(((qs[j] & 15) | ((h >> j) & 1u) << 4) - offset);
        u.q[j + 16] = (int8_t)(((qs[j] >> 4) | ((h >> (j + 16)) & 1u) << 4) - offset);
    }
}
SPEC_HD void unpack_q5_0(const uint8_t *b, Unpacked &u) {
    u.dl[0] = f16_at(b), u.ml[0] = 0.0f;
    unpack_q5(b + 2, b + 6, 16, u);
}
SPEC_HD void unpack_q5_1(const uint8_t *b, Unpacked &u) {
    u.dl[0] = f16_at(b), u.ml[0] = -f16_at(b + 2);
    unpack_q5(b + 4, b + 8, 0, u);
}
SPEC_HD void unpack_q2_k(const uint8_t *b, Unpacked &u) {
    const float d = f16_at(b + 80), dmin = f16_at(b + 82);
    for (int s = 0; s < 16; s++) u.dl[s] = km::fmul(d, (float)(b[s] & 15)), u.ml[s] = km::fmul(dmin, (float)(b[s] >> 4));
    for (int half = 0; half < 2; half++)
        for (int g = 0; g < 4; g++)
            for (int l = 0; l < 32; l++) u.q[half * 128 + g * 32 + l] = (int8_t)((b[16 + half * 32 + l] >> (2 * g)) & 3);
}
SPEC_HD void unpack_q3_k(const uint8_t *b, Unpacked &u) {
    const float d = f16_at(b + 108);
    for (int s = 0; s < 16; s++) u.dl[s] = km::fmul(d, (float)q3_k_scale(b + 96, s)), u.ml[s] = 0.0f;
    for (int half = 0; half < 2; half++)
        for (int g = 0; g < 4; g++)
            for (int l = 0; l < 32; l++)
                u.q[half * 128 + g * 32 + l] =
                    (int8_t)(((b[32 + half * 32 + l] >> (2 * g)) & 3) - (((b[l] >> (half * 4 + g)) & 1) ? 0 : 4));
}
SPEC_HD void unpack_q4_k(const uint8_t *b, Unpacked &u) {
    const float d = f16_at(b), dmin = f16_at(b + 2);
    for (int s = 0; s < 8; s++) {
        int sc, mn;
        k4_scale_min(b + 4, s, sc, mn);
        u.dl[s] = km::fmul(d, (float)sc), u.ml[s] = km::fmul(dmin, (float)mn);
    }
    for (int g = 0; g < 4; g++)
        for (int l = 0; l < 32; l++) {
            u.q[g * 64 + l] = (int8_t)(b[16 + g * 32 + l] & 15);
            u.q[g * 64 + 32 + l] = (int8_t)(b[16 + g * 32 + l] >> 4);
        }
}
SPEC_HD void unpack_q5_k(const uint8_t *b, Unpacked &u) {
    unpack_q4_k(b, u); // the same scales; the low nibbles sit 32 bytes further on, after the fifth bits
    for (int g = 0; g < 4; g++)
        for (int l = 0; l < 32; l++) {
            u.q[g * 64 + l] = (int8_t)((b[48 + g * 32 + l] & 15) | ((b[16 + l] >> (2 * g)) & 1) << 4);
            u.q[g * 64 + 32 + l] = (int8_t)((b[48 + g * 32 + l] >> 4) | ((b[16 + l] >> (2 * g + 1)) & 1) << 4);
        }
}
SPEC_HD void unpack_q6_k(const uint8_t *b, Unpacked &u) {
    const float d = f16_at(b + 208);
    for (int s = 0; s < 16; s++) u.dl[s] = km::fmul(d, (float)(int8_t)b[192 + s]), u.ml[s] = 0.0f;
    for (int half = 0; half < 2; half++)
        for (int g = 0; g < 4; g++)
            for (int l = 0; l < 32; l++)
                u.q[half * 128 + g * 32 + l] = (int8_t)((((b[half * 64 + (g & 1) * 32 + l] >> (4 * (g >> 1))) & 15) |
                                                         ((b[128 + half * 32 + l] >> (2 * g)) & 3) << 4) - 32);
}

// One block of a block-decoded dtype, unpacked (nothing for others).
SPEC_HD void unpack_block(int32_t dtype, const uint8_t *b, Unpacked &u) {
    switch (dtype) {
    case SPEC_DTYPE_Q4_1: unpack_q4_1(b, u); break;
    case SPEC_DTYPE_Q5_0: unpack_q5_0(b, u); break;
    case SPEC_DTYPE_Q5_1: unpack_q5_1(b, u); break;
    case SPEC_DTYPE_Q2_K: unpack_q2_k(b, u); break;
    case SPEC_DTYPE_Q3_K: unpack_q3_k(b, u); break;
    case SPEC_DTYPE_Q4_K: unpack_q4_k(b, u); break;
    case SPEC_DTYPE_Q5_K: unpack_q5_k(b, u); break;
    case SPEC_DTYPE_Q6_K: unpack_q6_k(b, u); break;
    default: break;
    }
}

// One block of a block-decoded dtype into out (block_elems(dtype) floats); nothing for others.
SPEC_HD void decode_block(int32_t dtype, const uint8_t *b, float *out) {
    if (!is_block_decoded(dtype)) return;
    Unpacked u;
    unpack_block(dtype, b, u);
    const int n = block_elems(dtype), sub = sub_block_elems(dtype);
    for (int j = 0; j < n; j++) out[j] = scaled_minus(u.dl[j / sub], u.q[j], u.ml[j / sub]);
}

} // namespace specula::qb
