// Int8 dot products for quantized weights with blocks of 32 (Q8_0, Q4_0, Q4_1, Q5_0, Q5_1): the
// layouts, the activation quantizer, the weight decoder and the one definition of the result that
// every kernel set computes bit for bit.
//
// Activations are quantized per token row in blocks of 32, as llama.cpp's q8_0 does: d = amax/127
// (kept as f16, as llama.cpp keeps it), q = round-to-nearest-even(x * 127/amax). A weight block
// is decoded (int8_decode_block) to 32 signed integers w, its f32 scale dw and, for the formats
// with a min (Q4_1, Q5_1: weight = dw*w + mw), the f32 min mw. For every (weight row, token) pair:
//
//   isum[b] = sum over the 32 elements of block b of w*x       exact (|isum| < 2^24)
//   term[b] = (dw[b] * dx[b]) * (float)isum[b]                  two f32 roundings, in this order
//   lane[b % 16] = lane[b % 16] + term[b]                       for b = 0, 1, 2, ... in turn
//   with a min, right after: lane[b % 16] = lane[b % 16] + (mw[b] * dx[b]) * (float)xsum[b]
//     where xsum[b] = the sum of block b's quantized activations (exact)
//   result = ((l[i] + l[i+8]) then (+ [i+4]) then (+ [i+2]) then (+ [i+1]))   a fixed tree
//
// The integer sums are exact whatever the instructions, and the float operations run in one fixed
// order, so every kernel set (scalar, avx2, avx512, avx512 with VNNI) gives the same bits, and a
// token's result does not depend on the other tokens, rows or threads of its call.
//
// Layouts (16 blocks = 512 elements make a group; a row's last group is zero-padded):
//   packed weight row, per group (INT8_W_GROUP_BYTES):
//     bytes [64*i + 4*j, +4): elements 4i..4i+3 of block j (i < 8, j < 16), as the kernel set
//     wants them (signed, or signed ^ 0x80 = unsigned w + 128 for vpdpbusd); then 16 f32 dw;
//     then 16 f32 mw (0 for the formats without a min).
//   quantized activation row, per group (INT8_X_GROUP_BYTES): the same 512 bytes (signed), then
//     16 f32 dx, then 16 int32 -128 * sum(x of block j) (what w + 128 adds to the integer sum,
//     and -128 * xsum for the min term).
#pragma once

#include <stdint.h>
#include <string.h>

#include "kernels.hpp"
#include "specula.h"

namespace specula::cpu {

constexpr int INT8_BLOCK = 32;
constexpr int INT8_GROUP_BLOCKS = 16;
constexpr int INT8_GROUP = INT8_BLOCK * INT8_GROUP_BLOCKS; // 512 elements
constexpr int INT8_W_GROUP_BYTES = 512 + 128;
constexpr int INT8_X_GROUP_BYTES = 512 + 64 + 64;
constexpr int INT8_X_SCALE = 512;  // offset of dx in an activation group
constexpr int INT8_X_CORR = 576;   // offset of the -128*sum corrections
constexpr int INT8_W_SCALE = 512;  // offset of dw in a weight group
constexpr int INT8_W_MIN = 576;    // offset of mw in a weight group
// A Q8_0 row prepacked once, at load (Int8Set::prepack): per group the same 512 bytes as a packed
// weight group, then the 16 blocks' f16 scales as the file stores them: 544 bytes, the size of the
// 16 Q8_0 blocks, so a prepacked matrix streams as many bytes as the file's and needs no packing per call.
constexpr int INT8_P_GROUP_BYTES = 512 + 32;
constexpr int INT8_P_SCALE = 512; // offset of the f16 dw in a prepacked group

// The formats with an int8 path (a kernel set's Int8Set::has says which it takes).
inline bool int8_is_block32(int32_t dtype) {
    return dtype == SPEC_DTYPE_Q8_0 || dtype == SPEC_DTYPE_Q4_0 || dtype == SPEC_DTYPE_Q4_1 || dtype == SPEC_DTYPE_Q5_0 ||
           dtype == SPEC_DTYPE_Q5_1;
}
// Whether the format adds a min per block (weight = dw*w + mw).
inline bool int8_has_min(int32_t dtype) { return dtype == SPEC_DTYPE_Q4_1 || dtype == SPEC_DTYPE_Q5_1; }
inline int int8_block_bytes(int32_t dtype) {
    switch (dtype) {
    case SPEC_DTYPE_Q8_0: return 34;
    case SPEC_DTYPE_Q4_0: return 18;
    case SPEC_DTYPE_Q4_1: return 20;
    case SPEC_DTYPE_Q5_0: return 22;
    case SPEC_DTYPE_Q5_1: return 24;
    default: return 0;
    }
}

// The definition of a block's integers: its 32 signed integers into q, its scale into *d and its
// min (0 without one) into *m. Element e < 16 is byte e's low nibble, e + 16 its high one; the
// 5-bit formats add bit e of the 32-bit qh as bit 4. Q4_0 and Q5_0 are centred (minus 8, 16).
inline void int8_decode_block(int32_t dtype, const uint8_t *blk, int8_t *q, float *d, float *m) {
    *d = f16_to_f32((uint16_t)(blk[0] | blk[1] << 8));
    *m = int8_has_min(dtype) ? f16_to_f32((uint16_t)(blk[2] | blk[3] << 8)) : 0.0f;
    if (dtype == SPEC_DTYPE_Q8_0) {
        memcpy(q, blk + 2, 32);
        return;
    }
    const bool five = dtype == SPEC_DTYPE_Q5_0 || dtype == SPEC_DTYPE_Q5_1;
    const int qs_at = int8_block_bytes(dtype) - 16; // the 16 bytes of nibbles end the block
    const int centre = dtype == SPEC_DTYPE_Q4_0 ? 8 : dtype == SPEC_DTYPE_Q5_0 ? 16 : 0;
    uint32_t qh = 0;
    if (five) memcpy(&qh, blk + qs_at - 4, 4);
    for (int e = 0; e < 16; e++) {
        const int lo = (blk[qs_at + e] & 15) | (five ? (int)((qh >> e) & 1) << 4 : 0);
        const int hi = (blk[qs_at + e] >> 4) | (five ? (int)((qh >> (e + 16)) & 1) << 4 : 0);
        q[e] = (int8_t)(lo - centre);
        q[e + 16] = (int8_t)(hi - centre);
    }
}

inline int64_t int8_groups(int64_t K) { return (K + INT8_GROUP - 1) / INT8_GROUP; }

// Quantizes one token's K activations (K a multiple of 32) into n groups of INT8_X_GROUP_BYTES.
// Plain scalar code compiled once: every kernel set reads the same bytes.
inline void quantize_acts_row(const float *x, int64_t K, uint8_t *dst) {
    const int64_t nb = K / INT8_BLOCK, ng = int8_groups(K);
    memset(dst, 0, (size_t)(ng * INT8_X_GROUP_BYTES));
    for (int64_t b = 0; b < nb; b++) {
        const float *xb = x + b * INT8_BLOCK;
        float amax = 0.0f;
        for (int e = 0; e < INT8_BLOCK; e++) {
            const float a = xb[e] < 0 ? -xb[e] : xb[e];
            amax = a > amax ? a : amax;
        }
        const float id = amax > 0.0f ? 127.0f / amax : 0.0f;
        const float d = f16_to_f32(f32_to_f16(amax / 127.0f));
        uint8_t *g = dst + (b / INT8_GROUP_BLOCKS) * INT8_X_GROUP_BYTES;
        const int j = (int)(b % INT8_GROUP_BLOCKS);
        int32_t sum = 0;
        for (int e = 0; e < INT8_BLOCK; e++) {
            float v = __builtin_rintf(xb[e] * id); // the default rounding mode: nearest, ties to even
            v = v > 127.0f ? 127.0f : v < -127.0f ? -127.0f : v;
            const int q = (int)v;
            sum += q;
            g[64 * (e / 4) + 4 * j + (e % 4)] = (uint8_t)(int8_t)q;
        }
        memcpy(g + INT8_X_SCALE + 4 * j, &d, 4);
        const int32_t corr = -128 * sum;
        memcpy(g + INT8_X_CORR + 4 * j, &corr, 4);
    }
}

// The fixed reduction of 16 lanes (the order AVX-512's and AVX2's horizontal sums take).
inline float int8_lane_sum(const float *l) {
    float a[8], b[4], c[2];
    for (int i = 0; i < 8; i++) a[i] = l[i] + l[i + 8];
    for (int i = 0; i < 4; i++) b[i] = a[i] + a[i + 4];
    for (int i = 0; i < 2; i++) c[i] = b[i] + b[i + 2];
    return c[0] + c[1];
}

} // namespace specula::cpu
