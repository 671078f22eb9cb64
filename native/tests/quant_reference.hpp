// An independent scalar reference for the GGML block formats beyond Q8_0 / Q4_0, written the way
// GGML's own dequantize_row_* functions walk a block (the Q3_K scales unpacked with the 32-bit
// mask trick, Q6_K four quarters at a time), in double precision, so that it shares no code with
// native/core/quant_blocks.hpp. Every product is exact in both (see that header), and the one
// rounding f32 makes is applied at the end, so the two must agree bit for bit.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

#include "specula.h"

namespace quant_ref {

inline double half(const uint8_t *p) {
    const unsigned h = p[0] | (unsigned)p[1] << 8;
    const int s = h >> 15, e = (h >> 10) & 31, m = h & 1023;
    double v = e == 0 ? std::ldexp((double)m, -24) : e == 31 ? (m ? NAN : INFINITY) : std::ldexp(1024.0 + m, e - 25);
    return s ? -v : v;
}

// f32 of an exact product minus (or plus) another: the one rounding of the formats with a min.
inline float r(double v) { return (float)v; }

inline int elems(int32_t dtype) {
    switch (dtype) {
    case SPEC_DTYPE_Q4_1:
    case SPEC_DTYPE_Q5_0:
    case SPEC_DTYPE_Q5_1: return 32;
    default: return 256;
    }
}

inline int bytes(int32_t dtype) {
    switch (dtype) {
    case SPEC_DTYPE_Q4_1: return 20;
    case SPEC_DTYPE_Q5_0: return 22;
    case SPEC_DTYPE_Q5_1: return 24;
    case SPEC_DTYPE_Q2_K: return 84;
    case SPEC_DTYPE_Q3_K: return 110;
    case SPEC_DTYPE_Q4_K: return 144;
    case SPEC_DTYPE_Q5_K: return 176;
    case SPEC_DTYPE_Q6_K: return 210;
    default: return 0;
    }
}

inline void scale_min_k4(int j, const uint8_t *q, int *d, int *m) {
    if (j < 4) {
        *d = q[j] & 63;
        *m = q[j + 4] & 63;
    } else {
        *d = (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4);
        *m = (q[j + 4] >> 4) | ((q[j - 0] >> 6) << 4);
    }
}

// One block of dtype into y (elems(dtype) floats).
inline void dequant_block(int32_t dtype, const uint8_t *x, float *y) {
    switch (dtype) {
    case SPEC_DTYPE_Q4_1: {
        const double d = half(x), m = half(x + 2);
        for (int j = 0; j < 16; j++) {
            y[j] = r((x[4 + j] & 0x0F) * d + m);
            y[j + 16] = r((x[4 + j] >> 4) * d + m);
        }
        break;
    }
    case SPEC_DTYPE_Q5_0:
    case SPEC_DTYPE_Q5_1: {
        const bool one = dtype == SPEC_DTYPE_Q5_1;
        const double d = half(x), m = one ? half(x + 2) : 0.0;
        uint32_t qh;
        std::memcpy(&qh, x + (one ? 4 : 2), 4);
        const uint8_t *qs = x + (one ? 8 : 6);
        for (int j = 0; j < 16; j++) {
            const int xh0 = ((qh >> (j + 0)) << 4) & 0x10;
            const int xh1 = ((qh >> (j + 12))) & 0x10;
            const int x0 = ((qs[j] & 0x0F) | xh0) - (one ? 0 : 16);
            const int x1 = ((qs[j] >> 4) | xh1) - (one ? 0 : 16);
            y[j] = one ? r(x0 * d + m) : r(x0 * d); // Q5_0 has no min (an all-zero block decodes to -0)
            y[j + 16] = one ? r(x1 * d + m) : r(x1 * d);
        }
        break;
    }
    case SPEC_DTYPE_Q2_K: {
        const double d = half(x + 80), mn = half(x + 82);
        const uint8_t *q = x + 16;
        int is = 0;
        for (int n = 0; n < 256; n += 128) {
            int shift = 0;
            for (int j = 0; j < 4; ++j) {
                int sc = x[is++];
                double dl = d * (sc & 0xF), ml = mn * (sc >> 4);
                for (int l = 0; l < 16; ++l) *y++ = r(dl * ((q[l] >> shift) & 3) - ml);
                sc = x[is++];
                dl = d * (sc & 0xF), ml = mn * (sc >> 4);
                for (int l = 0; l < 16; ++l) *y++ = r(dl * ((q[l + 16] >> shift) & 3) - ml);
                shift += 2;
            }
            q += 32;
        }
        break;
    }
    case SPEC_DTYPE_Q3_K: {
        const uint32_t kmask1 = 0x03030303, kmask2 = 0x0f0f0f0f;
        uint32_t aux[4];
        std::memcpy(aux, x + 96, 12);
        const uint32_t tmp = aux[2];
        aux[2] = ((aux[0] >> 4) & kmask2) | (((tmp >> 4) & kmask1) << 4);
        aux[3] = ((aux[1] >> 4) & kmask2) | (((tmp >> 6) & kmask1) << 4);
        aux[0] = (aux[0] & kmask2) | (((tmp >> 0) & kmask1) << 4);
        aux[1] = (aux[1] & kmask2) | (((tmp >> 2) & kmask1) << 4);
        int8_t scales[16];
        std::memcpy(scales, aux, 16);
        const double d_all = half(x + 108);
        const uint8_t *q = x + 32, *hm = x;
        uint8_t m = 1;
        int is = 0;
        for (int n = 0; n < 256; n += 128) {
            int shift = 0;
            for (int j = 0; j < 4; ++j) {
                double dl = d_all * (scales[is++] - 32);
                for (int l = 0; l < 16; ++l) *y++ = r(dl * (((q[l] >> shift) & 3) - ((hm[l] & m) ? 0 : 4)));
                dl = d_all * (scales[is++] - 32);
                for (int l = 0; l < 16; ++l) *y++ = r(dl * (((q[l + 16] >> shift) & 3) - ((hm[l + 16] & m) ? 0 : 4)));
                shift += 2;
                m <<= 1;
            }
            q += 32;
        }
        break;
    }
    case SPEC_DTYPE_Q4_K:
    case SPEC_DTYPE_Q5_K: {
        const bool five = dtype == SPEC_DTYPE_Q5_K;
        const double d = half(x), mn = half(x + 2);
        const uint8_t *sc = x + 4, *qh = x + 16, *ql = x + (five ? 48 : 16);
        int is = 0;
        uint8_t u1 = 1, u2 = 2;
        for (int j = 0; j < 256; j += 64) {
            int s, m;
            scale_min_k4(is + 0, sc, &s, &m);
            const double d1 = d * s, m1 = mn * m;
            scale_min_k4(is + 1, sc, &s, &m);
            const double d2 = d * s, m2 = mn * m;
            for (int l = 0; l < 32; ++l) *y++ = r(d1 * ((ql[l] & 0xF) + (five && (qh[l] & u1) ? 16 : 0)) - m1);
            for (int l = 0; l < 32; ++l) *y++ = r(d2 * ((ql[l] >> 4) + (five && (qh[l] & u2) ? 16 : 0)) - m2);
            ql += 32;
            is += 2;
            u1 <<= 2;
            u2 <<= 2;
        }
        break;
    }
    case SPEC_DTYPE_Q6_K: {
        const double d = half(x + 208);
        const uint8_t *ql = x, *qh = x + 128;
        const int8_t *sc = (const int8_t *)(x + 192);
        for (int n = 0; n < 256; n += 128) {
            for (int l = 0; l < 32; ++l) {
                const int is = l / 16;
                const int q1 = ((ql[l + 0] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32;
                const int q2 = ((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32;
                const int q3 = ((ql[l + 0] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
                const int q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
                y[l + 0] = r(d * sc[is + 0] * q1);
                y[l + 32] = r(d * sc[is + 2] * q2);
                y[l + 64] = r(d * sc[is + 4] * q3);
                y[l + 96] = r(d * sc[is + 6] * q4);
            }
            y += 128;
            ql += 64;
            qh += 32;
            sc += 8;
        }
        break;
    }
    default: break;
    }
}

// Where a block's f16 scales sit: the super-scale d, and the min scale (or -1 when it has none).
inline void scale_offsets(int32_t dtype, int *d_at, int *min_at) {
    switch (dtype) {
    case SPEC_DTYPE_Q4_1:
    case SPEC_DTYPE_Q5_1: *d_at = 0, *min_at = 2; break;
    case SPEC_DTYPE_Q5_0: *d_at = 0, *min_at = -1; break;
    case SPEC_DTYPE_Q2_K: *d_at = 80, *min_at = 82; break;
    case SPEC_DTYPE_Q3_K: *d_at = 108, *min_at = -1; break;
    case SPEC_DTYPE_Q4_K:
    case SPEC_DTYPE_Q5_K: *d_at = 0, *min_at = 2; break;
    case SPEC_DTYPE_Q6_K: *d_at = 208, *min_at = -1; break;
    default: *d_at = -1, *min_at = -1; break;
    }
}

// The largest |integer factor| d multiplies in a format (sub-scale times quant), and the largest
// min multiple: a model fixture picks d = amp / that to get weights of about amp.
inline double d_reach(int32_t dtype) {
    switch (dtype) {
    case SPEC_DTYPE_Q4_1: return 15;
    case SPEC_DTYPE_Q5_0: return 16;
    case SPEC_DTYPE_Q5_1: return 31;
    case SPEC_DTYPE_Q2_K: return 45;
    case SPEC_DTYPE_Q3_K: return 128;
    case SPEC_DTYPE_Q4_K: return 63 * 15;
    case SPEC_DTYPE_Q5_K: return 63 * 31;
    case SPEC_DTYPE_Q6_K: return 128 * 32;
    default: return 1;
    }
}
inline double min_reach(int32_t dtype) {
    switch (dtype) {
    case SPEC_DTYPE_Q2_K: return 15;
    case SPEC_DTYPE_Q4_K:
    case SPEC_DTYPE_Q5_K: return 63;
    default: return 1; // Q4_1 / Q5_1: the min is the f16 itself
    }
}

} // namespace quant_ref
