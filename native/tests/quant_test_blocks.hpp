// Test blocks of the GGML formats beyond Q8_0 / Q4_0, shared by the chunk decoders' cpu test
// (test_quant_chunks.cpp) and their device test (cuda/test_cuda_quant.cu), so that both check the
// same blocks: random bytes under a spread of f16 scales, the f16 extremes (largest, smallest
// subnormal, largest subnormal, smallest normal, both signs, negative zero), all-ones bytes with
// sane and with the largest scales, and all-zero blocks.
#pragma once

#include <cstdint>

#include "../core/kernel_math.hpp"
#include "quant_reference.hpp"
#include "test_random.hpp"

namespace quant_test {

constexpr int32_t kTypes[] = {SPEC_DTYPE_Q4_1, SPEC_DTYPE_Q5_0, SPEC_DTYPE_Q5_1, SPEC_DTYPE_Q2_K,
                              SPEC_DTYPE_Q3_K, SPEC_DTYPE_Q4_K, SPEC_DTYPE_Q5_K, SPEC_DTYPE_Q6_K};
constexpr int kTypeCount = 8;

inline const char *type_name(int32_t dt) {
    switch (dt) {
    case SPEC_DTYPE_Q4_1: return "Q4_1";
    case SPEC_DTYPE_Q5_0: return "Q5_0";
    case SPEC_DTYPE_Q5_1: return "Q5_1";
    case SPEC_DTYPE_Q2_K: return "Q2_K";
    case SPEC_DTYPE_Q3_K: return "Q3_K";
    case SPEC_DTYPE_Q4_K: return "Q4_K";
    case SPEC_DTYPE_Q5_K: return "Q5_K";
    case SPEC_DTYPE_Q6_K: return "Q6_K";
    default: return "?";
    }
}

constexpr int kKinds = 11; // block kinds, cycled by block index
constexpr int kZeroKind = 10;

inline void put_half(uint8_t *p, uint16_t h) {
    p[0] = (uint8_t)h;
    p[1] = (uint8_t)(h >> 8);
}

inline uint16_t finite_half(uint64_t &s) {
    for (;;) {
        const uint16_t h = (uint16_t)splitmix64(s);
        if (((h >> 10) & 31) != 31) return h;
    }
}

// Block of the given kind (0..kKinds-1) of dtype into blk (quant_ref::bytes(dtype) bytes).
inline void fill_block(uint64_t &s, int32_t dtype, int kind, uint8_t *blk) {
    const int bb = quant_ref::bytes(dtype);
    int d_at, min_at;
    quant_ref::scale_offsets(dtype, &d_at, &min_at);
    for (int i = 0; i < bb; i++) blk[i] = kind == kZeroKind ? 0 : kind >= 8 ? 0xFF : (uint8_t)splitmix64(s);
    if (kind == kZeroKind) return;
    uint16_t d, m;
    switch (kind) {
    case 0: d = specula::km::f32_to_f16(uniform(s, 0.0f, 0.01f)), m = specula::km::f32_to_f16(uniform(s, -0.05f, 0.05f)); break;
    case 1: d = finite_half(s), m = finite_half(s); break;
    case 2: d = 0x7bff, m = 0xfbff; break; // 65504, -65504
    case 3: d = 0xfbff, m = 0x7bff; break; // -65504, 65504
    case 4: d = 0x0001, m = 0x8000; break; // 2^-24, -0
    case 5: d = 0x03ff, m = 0x0400; break; // the largest subnormal, the smallest normal
    case 6: d = 0x8001, m = 0x8400; break; // -2^-24, -2^-14
    case 7: d = 0x7bff, m = 0x7bff; break; // both the largest, random quants
    case 8: d = 0x3c00, m = 0xbc00; break; // all ones, 1 and -1
    default: d = 0x7bff, m = 0xfbff; break; // all ones, the largest scales
    }
    put_half(blk + d_at, d);
    if (min_at >= 0) put_half(blk + min_at, m);
}

} // namespace quant_test
