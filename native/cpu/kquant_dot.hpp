// Int8 dot products for the k-quant super-blocks (Q2_K, Q3_K, Q4_K, Q5_K, Q6_K): the layouts, the
// activation quantizer, the unpacked weight block, and the one definition of the result that every
// kernel set computes bit for bit.
//
// Activations are quantized per token row in super-blocks of 256, exactly as llama.cpp's q8_K does
// (so the integer sums are the ones llama.cpp forms): max = the first x of largest |x|,
// iscale = -127/max, q = min(127, round-to-nearest-even(iscale * x)), d = 1/iscale (0 and q = 0 for
// an all-zero block), plus the sum of q over each 16 elements. A row's quantization depends on
// that row alone, so a token's result does not depend on the other tokens of its call.
//
// A weight super-block is unpacked (kq_unpack_generic, or a kernel set's faster equivalent that
// writes the same bytes) to unsigned integers u[256], a signed scale sc[16] and a correction
// cr[16] per sub-block of 16 elements, and the f32 scales d and dmin (kept as f32 of the f16):
//   Q4_K, Q5_K  u = the 4 / 5-bit quant, sc = the 6-bit scale of its 32, cr = its 6-bit min;  w = d*sc*u - dmin*cr
//   Q2_K        u = the 2-bit quant, sc = the low nibble, cr = the high nibble (the min);     w = d*sc*u - dmin*cr
//   Q6_K        u = the 6-bit quant, sc = the int8 scale, cr = 32*sc;                         w = d*sc*(u - 32)
//   Q3_K        u = the 2 low bits + 4 * the hmask bit, sc = the 6-bit scale - 32, cr = 4*sc; w = d*sc*(u - 4)
// For a (weight row, token) pair, per super-block b, lane l (0..7), with e = 32k + 4l + i:
//
//   A[l] = sum over k < 8, i < 4 of sc[e/16] * u[e] * x[e]          exact int32 (|A| < 2^26)
//   C[l] = cr[2l] * bsum[2l] + cr[2l+1] * bsum[2l+1]                  exact int32
//   without mins (Q6_K, Q3_K): F[l] = F[l] + (d*dx) * (float)(A[l] - C[l])
//   with mins (Q4_K, Q5_K, Q2_K): F[l] = F[l] + (d*dx) * (float)A[l], then F[l] = F[l] - (dmin*dx) * (float)C[l]
//   result = kq_lane_sum(F): ((F0+F4) + (F2+F6)) + ((F1+F5) + (F3+F7))
//
// each product and sum rounded to f32 on its own, in this order. Lane l is what a 256-bit
// maddubs / madd pass over one chunk of 32 leaves in its int32 lane l (elements 4l..4l+3 of every
// chunk), so the x86 sets need no shuffles; the integers are exact whatever the instructions, and
// the float steps run in one fixed order, so every kernel set (scalar, avx2, avx512, avx512 with
// VNNI) gives the same bits.
//
// Layouts (byte offsets; the unpacked weight block is what the packed many-token path stores):
//   quantized activation super-block (KQ_X_BYTES): q[256] int8, bsum[16] int16 at 256, d f32 at 288
//   unpacked weight super-block (KQ_W_BYTES): u[256] uint8, sc[16] int16 at 256, cr[16] int16 at
//   288, d f32 at 320, dmin f32 at 324
#pragma once

#include <stdint.h>
#include <string.h>

#include "kernels.hpp"
#include "specula.h"

namespace specula::cpu {

constexpr int KQ_BLOCK = 256;
constexpr int KQ_X_BYTES = 320;
constexpr int KQ_X_BSUM = 256;
constexpr int KQ_X_D = 288;
constexpr int KQ_W_BYTES = 352;
constexpr int KQ_W_SC = 256;
constexpr int KQ_W_CR = 288;
constexpr int KQ_W_D = 320;
constexpr int KQ_W_DMIN = 324;

inline bool kq_is_kquant(int32_t dtype) {
    return dtype == SPEC_DTYPE_Q2_K || dtype == SPEC_DTYPE_Q3_K || dtype == SPEC_DTYPE_Q4_K || dtype == SPEC_DTYPE_Q5_K ||
           dtype == SPEC_DTYPE_Q6_K;
}
// Whether the format subtracts dmin * min (else its correction belongs to the d term).
inline bool kq_has_min(int32_t dtype) { return dtype == SPEC_DTYPE_Q2_K || dtype == SPEC_DTYPE_Q4_K || dtype == SPEC_DTYPE_Q5_K; }
// Whether both sub-blocks of 16 of every chunk of 32 share one scale (the formats with scales per 32).
inline bool kq_chunk_uniform(int32_t dtype) { return dtype == SPEC_DTYPE_Q4_K || dtype == SPEC_DTYPE_Q5_K; }
inline int kq_block_bytes(int32_t dtype) {
    switch (dtype) {
    case SPEC_DTYPE_Q2_K: return 84;
    case SPEC_DTYPE_Q3_K: return 110;
    case SPEC_DTYPE_Q4_K: return 144;
    case SPEC_DTYPE_Q5_K: return 176;
    case SPEC_DTYPE_Q6_K: return 210;
    default: return 0;
    }
}

// llama.cpp's nearest_int: round to nearest even through the float adder (|v| < 2^22).
inline int kq_nearest_int(float v) {
    float t = v + 12582912.0f;
    int32_t i;
    memcpy(&i, &t, 4);
    return (i & 0x007fffff) - 0x00400000;
}

// Quantizes one token's K activations (K a multiple of 256) into K/256 super-blocks of KQ_X_BYTES.
// Plain scalar code compiled once: every kernel set reads the same bytes.
inline void kq_quantize_row(const float *x, int64_t K, uint8_t *dst) {
    for (int64_t b = 0; b < K / KQ_BLOCK; b++, x += KQ_BLOCK, dst += KQ_X_BYTES) {
        memset(dst, 0, KQ_X_BYTES);
        float max = 0.0f, amax = 0.0f;
        for (int j = 0; j < KQ_BLOCK; j++) {
            const float a = x[j] < 0 ? -x[j] : x[j];
            if (a > amax) amax = a, max = x[j];
        }
        if (!(amax > 0.0f)) continue; // d = 0, q = 0, sums 0
        const float iscale = -127.0f / max;
        int8_t *q = (int8_t *)dst;
        for (int j = 0; j < KQ_BLOCK; j++) {
            const int v = kq_nearest_int(iscale * x[j]);
            q[j] = (int8_t)(v < 127 ? v : 127);
        }
        for (int s = 0; s < 16; s++) {
            int sum = 0;
            for (int j = 0; j < 16; j++) sum += q[16 * s + j];
            const int16_t s16 = (int16_t)sum;
            memcpy(dst + KQ_X_BSUM + 2 * s, &s16, 2);
        }
        const float d = 1.0f / iscale;
        memcpy(dst + KQ_X_D, &d, 4);
    }
}

// The 6-bit scale and min of sub-block s (0..7) of Q4_K / Q5_K.
inline void kq_scale_min_k4(const uint8_t *sc, int s, int &scale, int &min) {
    if (s < 4) {
        scale = sc[s] & 63;
        min = sc[s + 4] & 63;
    } else {
        scale = (sc[s + 4] & 15) | (sc[s - 4] >> 6) << 4;
        min = (sc[s + 4] >> 4) | (sc[s] >> 6) << 4;
    }
}

// One super-block of a k-quant into the unpacked layout above, in plain scalar code (the
// definition; kernel sets may write the same bytes faster).
inline void kq_unpack_generic(int32_t dtype, const uint8_t *b, uint8_t *dst) {
    memset(dst, 0, KQ_W_BYTES);
    uint8_t *u = dst;
    int16_t sc[16], cr[16];
    float d = 0.0f, dmin = 0.0f;
    switch (dtype) {
    case SPEC_DTYPE_Q2_K:
        for (int s = 0; s < 16; s++) sc[s] = (int16_t)(b[s] & 15), cr[s] = (int16_t)(b[s] >> 4);
        for (int h = 0; h < 2; h++)
            for (int g = 0; g < 4; g++)
                for (int l = 0; l < 32; l++) u[128 * h + 32 * g + l] = (uint8_t)((b[16 + 32 * h + l] >> (2 * g)) & 3);
        d = f16_to_f32((uint16_t)(b[80] | b[81] << 8)), dmin = f16_to_f32((uint16_t)(b[82] | b[83] << 8));
        break;
    case SPEC_DTYPE_Q3_K:
        for (int s = 0; s < 16; s++) {
            const int low = s < 8 ? b[96 + s] & 15 : b[96 + s - 8] >> 4;
            const int high = (b[96 + 8 + (s & 3)] >> (2 * (s >> 2))) & 3;
            sc[s] = (int16_t)((low | high << 4) - 32), cr[s] = (int16_t)(4 * sc[s]);
        }
        for (int h = 0; h < 2; h++)
            for (int g = 0; g < 4; g++)
                for (int l = 0; l < 32; l++)
                    u[128 * h + 32 * g + l] = (uint8_t)(((b[32 + 32 * h + l] >> (2 * g)) & 3) | ((b[l] >> (4 * h + g)) & 1) << 2);
        d = f16_to_f32((uint16_t)(b[108] | b[109] << 8));
        break;
    case SPEC_DTYPE_Q4_K:
    case SPEC_DTYPE_Q5_K: {
        const bool five = dtype == SPEC_DTYPE_Q5_K;
        const uint8_t *qs = b + (five ? 48 : 16);
        for (int s = 0; s < 8; s++) {
            int scale, min;
            kq_scale_min_k4(b + 4, s, scale, min);
            sc[2 * s] = sc[2 * s + 1] = (int16_t)scale, cr[2 * s] = cr[2 * s + 1] = (int16_t)min;
        }
        for (int g = 0; g < 4; g++)
            for (int l = 0; l < 32; l++) {
                u[64 * g + l] = (uint8_t)(qs[32 * g + l] & 15);
                u[64 * g + 32 + l] = (uint8_t)(qs[32 * g + l] >> 4);
                if (five) {
                    u[64 * g + l] |= (uint8_t)(((b[16 + l] >> (2 * g)) & 1) << 4);
                    u[64 * g + 32 + l] |= (uint8_t)(((b[16 + l] >> (2 * g + 1)) & 1) << 4);
                }
            }
        d = f16_to_f32((uint16_t)(b[0] | b[1] << 8)), dmin = f16_to_f32((uint16_t)(b[2] | b[3] << 8));
        break;
    }
    case SPEC_DTYPE_Q6_K:
        for (int s = 0; s < 16; s++) sc[s] = (int16_t)(int8_t)b[192 + s], cr[s] = (int16_t)(32 * sc[s]);
        for (int h = 0; h < 2; h++)
            for (int g = 0; g < 4; g++)
                for (int l = 0; l < 32; l++)
                    u[128 * h + 32 * g + l] =
                        (uint8_t)(((b[64 * h + 32 * (g & 1) + l] >> (4 * (g >> 1))) & 15) | ((b[128 + 32 * h + l] >> (2 * g)) & 3) << 4);
        d = f16_to_f32((uint16_t)(b[208] | b[209] << 8));
        break;
    default: return;
    }
    memcpy(dst + KQ_W_SC, sc, 32);
    memcpy(dst + KQ_W_CR, cr, 32);
    memcpy(dst + KQ_W_D, &d, 4);
    memcpy(dst + KQ_W_DMIN, &dmin, 4);
}

// The fixed reduction of 8 lanes (the order AVX2's horizontal sum takes).
inline float kq_lane_sum(const float *l) {
    float a[4], b[2];
    for (int i = 0; i < 4; i++) a[i] = l[i] + l[i + 4];
    for (int i = 0; i < 2; i++) b[i] = a[i] + a[i + 2];
    return b[0] + b[1];
}

} // namespace specula::cpu
