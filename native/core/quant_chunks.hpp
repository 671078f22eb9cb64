// The GGML block formats of quant_blocks.hpp (Q4_1, Q5_0, Q5_1, Q2_K..Q6_K) eight elements at a
// time: the unit one thread of the cuda matrix products takes (native/cuda/matmul.cu). Host and
// device share every line here; test_quant_chunks runs it on the cpu against the independent
// reference (native/tests/quant_reference.hpp), test_cuda_quant on the device.
//
// Chunk c of a block is its elements 8c..8c+7 (a block of 32 has 4 chunks, a super-block of 256
// has 32). A chunk never straddles a sub-block (those are 16 or 32 elements), so it decodes to one
// scale dl, one min ml and eight small integers q, element i being q[i] * dl - ml: the same
// product and the same one rounding as quant_blocks.hpp's decoders, so the same bits.
//
// Decoding comes in two steps so that a kernel can issue a chunk's loads early and decode after
// other work has hidden their latency: fetch_chunk reads exactly the bytes the chunk needs (its
// eight quant bytes, its eight high-bit bytes, the f16 scales and the sub-block scale bytes) through
// a Load policy, decode_chunk turns them into a Chunk. Every multi-byte read is a 16-bit load at
// an even offset: blocks are only 2-byte aligned in a row (Q3_K is 110 bytes, Q6_K 210).
#pragma once

#include "quant_blocks.hpp"

namespace specula::qb {

constexpr int CHUNK = 8; // elements per chunk

SPEC_HD constexpr int chunks_per_block(int32_t dtype) { return block_elems(dtype) / CHUNK; }

// Formats whose sub-blocks carry a min (element = q * dl - ml with ml != 0).
SPEC_HD constexpr bool has_min(int32_t dtype) {
    return dtype == SPEC_DTYPE_Q4_1 || dtype == SPEC_DTYPE_Q5_1 || dtype == SPEC_DTYPE_Q2_K || dtype == SPEC_DTYPE_Q4_K ||
           dtype == SPEC_DTYPE_Q5_K;
}

// Loads for fetch_chunk. ByteLoad reads plain memory (host, tests); the cuda kernels use
// StreamingLoad (weights read once per call: __ldcs keeps them from evicting the activations) or
// CachedLoad (__ldg: a block shares its sectors with the next tile's). On the host both read
// plain memory, so a host build runs the very code the kernels run.
struct ByteLoad {
    SPEC_HD uint16_t u16(const uint8_t *p) const { return (uint16_t)(p[0] | (unsigned)p[1] << 8); }
    SPEC_HD uint8_t u8(const uint8_t *p) const { return *p; }
};
struct StreamingLoad {
    SPEC_HD uint16_t u16(const uint8_t *p) const {
#ifdef __CUDA_ARCH__
        return __ldcs(reinterpret_cast<const unsigned short *>(p));
#else
        return ByteLoad().u16(p);
#endif
    }
    SPEC_HD uint8_t u8(const uint8_t *p) const {
#ifdef __CUDA_ARCH__
        return __ldcs(p);
#else
        return *p;
#endif
    }
};
struct CachedLoad {
    SPEC_HD uint16_t u16(const uint8_t *p) const {
#ifdef __CUDA_ARCH__
        return __ldg(reinterpret_cast<const unsigned short *>(p));
#else
        return ByteLoad().u16(p);
#endif
    }
    SPEC_HD uint8_t u8(const uint8_t *p) const {
#ifdef __CUDA_ARCH__
        return __ldg(p);
#else
        return *p;
#endif
    }
};

// The bytes of one chunk, as fetched. Zero-initialised, it decodes to weights of zero (d = 0).
struct ChunkBytes {
    uint16_t q[4] = {0, 0, 0, 0}; // the 8 bytes of quants (low bits), little-endian pairs
    uint16_t h[4] = {0, 0, 0, 0}; // the 8 bytes of high bits (Q3_K hmask, Q5_K qh, Q6_K qh); Q5_0 / Q5_1: h[0] = its 8 fifth bits
    uint16_t d = 0, m = 0;        // f16 scale (super-scale) and min (super-min); m = 0 where the format has none
    uint8_t s[3] = {0, 0, 0};     // the bytes the sub-block's scale (and min) come from
};

// A decoded chunk: element i is q[i] * dl - ml.
struct Chunk {
    int q[CHUNK];
    float dl, ml;
};

SPEC_HD float chunk_weight(const Chunk &ch, int i) { return scaled_minus(ch.dl, ch.q[i], ch.ml); }

// Byte i (0..7) of a chunk's 8 bytes held as 4 little-endian pairs.
SPEC_HD int byte_of(const uint16_t (&pairs)[4], int i) { return (pairs[i >> 1] >> (8 * (i & 1))) & 0xff; }

template <class Load>
SPEC_HD void fetch8(const Load &ld, const uint8_t *p, uint16_t (&out)[4]) {
    SPEC_UNROLL
    for (int i = 0; i < 4; i++) out[i] = ld.u16(p + 2 * i);
}

// Where chunk c of a super-block sits (Q2_K, Q3_K, Q6_K): half (of 128 elements), quarter g
// (of 32) within it, the chunk's first element l0 (0, 8, 16, 24) within the quarter, and its
// sub-block of 16 (c >> 1). Q4_K / Q5_K: group of 64 (c >> 3), high nibble or not, sub-block of 32 (c >> 2).
struct KPos {
    int half, g, l0, sub16, g64, hi, sub32;
    SPEC_HD explicit KPos(int c)
        : half(c >> 4), g((c >> 2) & 3), l0((c & 3) * 8), sub16(c >> 1), g64(c >> 3), hi((c >> 2) & 1), sub32(c >> 2) {}
};

// Reads the bytes chunk c of the block at b needs.
template <int32_t DT, class Load>
SPEC_HD void fetch_chunk(const uint8_t *b, int c, const Load &ld, ChunkBytes &r) {
    static_assert(is_block_decoded(DT), "a format of quant_blocks.hpp");
    if constexpr (DT == SPEC_DTYPE_Q4_1) {
        r.d = ld.u16(b), r.m = ld.u16(b + 2);
        fetch8(ld, b + 4 + 8 * (c & 1), r.q);
    } else if constexpr (DT == SPEC_DTYPE_Q5_0) {
        r.d = ld.u16(b);
        r.h[0] = ld.u8(b + 2 + c); // bits 8c..8c+7 of the 32 fifth bits
        fetch8(ld, b + 6 + 8 * (c & 1), r.q);
    } else if constexpr (DT == SPEC_DTYPE_Q5_1) {
        r.d = ld.u16(b), r.m = ld.u16(b + 2);
        r.h[0] = ld.u8(b + 4 + c);
        fetch8(ld, b + 8 + 8 * (c & 1), r.q);
    } else if constexpr (DT == SPEC_DTYPE_Q2_K) {
        const KPos k(c);
        r.d = ld.u16(b + 80), r.m = ld.u16(b + 82);
        r.s[0] = ld.u8(b + k.sub16);
        fetch8(ld, b + 16 + k.half * 32 + k.l0, r.q);
    } else if constexpr (DT == SPEC_DTYPE_Q3_K) {
        const KPos k(c);
        r.d = ld.u16(b + 108);
        r.s[0] = ld.u8(b + 96 + (k.sub16 & 7));
        r.s[1] = ld.u8(b + 96 + 8 + (k.sub16 & 3));
        fetch8(ld, b + k.l0, r.h);
        fetch8(ld, b + 32 + k.half * 32 + k.l0, r.q);
    } else if constexpr (DT == SPEC_DTYPE_Q4_K || DT == SPEC_DTYPE_Q5_K) {
        const KPos k(c);
        r.d = ld.u16(b), r.m = ld.u16(b + 2);
        const int s3 = k.sub32 & 3;
        r.s[0] = ld.u8(b + 4 + s3), r.s[1] = ld.u8(b + 8 + s3), r.s[2] = ld.u8(b + 12 + s3);
        if constexpr (DT == SPEC_DTYPE_Q4_K) {
            fetch8(ld, b + 16 + k.g64 * 32 + k.l0, r.q);
        } else {
            fetch8(ld, b + 16 + k.l0, r.h);
            fetch8(ld, b + 48 + k.g64 * 32 + k.l0, r.q);
        }
    } else { // Q6_K
        const KPos k(c);
        r.d = ld.u16(b + 208);
        r.s[0] = ld.u8(b + 192 + k.sub16);
        fetch8(ld, b + k.half * 64 + (k.g & 1) * 32 + k.l0, r.q);
        fetch8(ld, b + 128 + k.half * 32 + k.l0, r.h);
    }
}

// Chunk c from its fetched bytes.
template <int32_t DT>
SPEC_HD void decode_chunk(const ChunkBytes &r, int c, Chunk &out) {
    const float d = mm::half_to_float(r.d);
    if constexpr (DT == SPEC_DTYPE_Q4_1 || DT == SPEC_DTYPE_Q5_0 || DT == SPEC_DTYPE_Q5_1) {
        const int shift = 4 * (c >> 1); // chunks 0, 1: low nibbles of bytes 0..15; 2, 3: high nibbles
        SPEC_UNROLL
        for (int i = 0; i < CHUNK; i++) {
            int q = (byte_of(r.q, i) >> shift) & 15;
            if constexpr (DT != SPEC_DTYPE_Q4_1) q |= ((r.h[0] >> i) & 1) << 4;
            out.q[i] = DT == SPEC_DTYPE_Q5_0 ? q - 16 : q;
        }
        out.dl = d;
        out.ml = DT == SPEC_DTYPE_Q5_0 ? 0.0f : -mm::half_to_float(r.m); // q * d + m
    } else if constexpr (DT == SPEC_DTYPE_Q2_K) {
        const KPos k(c);
        SPEC_UNROLL
        for (int i = 0; i < CHUNK; i++) out.q[i] = (byte_of(r.q, i) >> (2 * k.g)) & 3;
        out.dl = km::fmul(d, (float)(r.s[0] & 15));
        out.ml = km::fmul(mm::half_to_float(r.m), (float)(r.s[0] >> 4));
    } else if constexpr (DT == SPEC_DTYPE_Q3_K) {
        const KPos k(c);
        SPEC_UNROLL
        for (int i = 0; i < CHUNK; i++) {
            const int low = (byte_of(r.q, i) >> (2 * k.g)) & 3, high = (byte_of(r.h, i) >> (4 * k.half + k.g)) & 1;
            out.q[i] = low - (high ? 0 : 4);
        }
        out.dl = km::fmul(d, (float)q3_k_scale_of(k.sub16, r.s[0], r.s[1]));
        out.ml = 0.0f;
    } else if constexpr (DT == SPEC_DTYPE_Q4_K || DT == SPEC_DTYPE_Q5_K) {
        const KPos k(c);
        SPEC_UNROLL
        for (int i = 0; i < CHUNK; i++) {
            int q = (byte_of(r.q, i) >> (4 * k.hi)) & 15;
            if constexpr (DT == SPEC_DTYPE_Q5_K) q |= ((byte_of(r.h, i) >> k.sub32) & 1) << 4;
            out.q[i] = q;
        }
        int sc, mn;
        k4_scale_min_of(k.sub32, r.s[0], r.s[1], r.s[2], sc, mn);
        out.dl = km::fmul(d, (float)sc);
        out.ml = km::fmul(mm::half_to_float(r.m), (float)mn);
    } else { // Q6_K
        const KPos k(c);
        SPEC_UNROLL
        for (int i = 0; i < CHUNK; i++) {
            const int low = (byte_of(r.q, i) >> (4 * (k.g >> 1))) & 15, high = (byte_of(r.h, i) >> (2 * k.g)) & 3;
            out.q[i] = (low | high << 4) - 32;
        }
        out.dl = km::fmul(d, (float)(int8_t)r.s[0]);
        out.ml = 0.0f;
    }
}

// Both steps at once (the weight-streaming kernel, the tests).
template <int32_t DT, class Load = ByteLoad>
SPEC_HD void chunk_of(const uint8_t *blk, int c, Chunk &out, const Load &ld = Load()) {
    ChunkBytes r;
    fetch_chunk<DT>(blk, c, ld, r);
    decode_chunk<DT>(r, c, out);
}

// The same for a dtype known at run time (host tests); false for a dtype this header does not decode.
template <class Load = ByteLoad>
SPEC_HD bool chunk_of_dtype(int32_t dtype, const uint8_t *blk, int c, Chunk &out, const Load &ld = Load()) {
    switch (dtype) {
    case SPEC_DTYPE_Q4_1: chunk_of<SPEC_DTYPE_Q4_1>(blk, c, out, ld); return true;
    case SPEC_DTYPE_Q5_0: chunk_of<SPEC_DTYPE_Q5_0>(blk, c, out, ld); return true;
    case SPEC_DTYPE_Q5_1: chunk_of<SPEC_DTYPE_Q5_1>(blk, c, out, ld); return true;
    case SPEC_DTYPE_Q2_K: chunk_of<SPEC_DTYPE_Q2_K>(blk, c, out, ld); return true;
    case SPEC_DTYPE_Q3_K: chunk_of<SPEC_DTYPE_Q3_K>(blk, c, out, ld); return true;
    case SPEC_DTYPE_Q4_K: chunk_of<SPEC_DTYPE_Q4_K>(blk, c, out, ld); return true;
    case SPEC_DTYPE_Q5_K: chunk_of<SPEC_DTYPE_Q5_K>(blk, c, out, ld); return true;
    case SPEC_DTYPE_Q6_K: chunk_of<SPEC_DTYPE_Q6_K>(blk, c, out, ld); return true;
    default: return false;
    }
}

} // namespace specula::qb
