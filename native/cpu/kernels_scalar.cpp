// Scalar kernels for the baseline target: any x86-64 (or other) CPU (see kernels.hpp).
#include "int8_dot.hpp"
#include "kernels.hpp"
#include "kquant_dot.hpp"
#include "../core/quant_blocks.hpp" // before any #pragma GCC target: compiled for the baseline

#include "specula.h"

namespace specula::cpu {
namespace {

static inline float f16_to_f32_fast(uint16_t h) { return f16_to_f32(h); }

struct V {
    static constexpr int W = 1;
    using v = float;
    static inline v zero() { return 0.0f; }
    static inline v set1(float a) { return a; }
    // weights may sit at any byte offset of the caller's file: load through memcpy
    static inline v load(const float *p) {
        float f;
        __builtin_memcpy(&f, p, 4);
        return f;
    }
    static inline void store(float *p, v a) { *p = a; }
    static inline v load_f16(const uint16_t *p) { return f16_to_f32(load_u16(p)); }
    static inline v load_bf16(const uint16_t *p) { return bf16_to_f32(load_u16(p)); }
    static inline v load_i8(const int8_t *p) { return (float)*p; }
    static inline v load_u4lo(const uint8_t *p) { return (float)(*p & 15); }
    static inline v load_u4hi(const uint8_t *p) { return (float)(*p >> 4); }
    static inline v pin(v a) { return a; }
    static inline v add(v a, v b) { return a + b; }
    static inline v sub(v a, v b) { return a - b; }
    static inline v mul(v a, v b) { return a * b; }
    static inline v div(v a, v b) { return a / b; }
    static inline v max(v a, v b) { return a > b ? a : b; }
    static inline v fma(v a, v b, v c) { return a * b + c; }
    static inline float hsum(v a) { return a; }
    static inline float hmax(v a) { return a; }
    static inline v exp(v x) { return __builtin_expf(x); }
    static inline void store_f16(uint16_t *p, v a) { *p = f32_to_f16(a); }
    static inline void store_bf16(uint16_t *p, v a) { *p = f32_to_bf16(a); }
};

#define KERNEL_NAME "scalar"
#define KERNEL_TMAX 4
#define GEMM_R 3
#define GEMM_T 4
#include "kernels_impl.inc"

// Int8 products in plain integers: signed weights, 16 lanes as arrays, the same float steps.
struct QI {
    static constexpr bool OFFSET = false;
    struct ivec {
        int32_t v[16];
    };
    struct fvec {
        float v[16];
    };
    struct wvec {
        const int8_t *w;
    };
    static inline ivec izero() { return ivec{}; }
    static inline ivec iload(const uint8_t *p) {
        ivec a;
        __builtin_memcpy(a.v, p, 64);
        return a;
    }
    static inline wvec wprep(const uint8_t *p) { return {(const int8_t *)p}; }
    static inline ivec dot(ivec acc, wvec w, const uint8_t *x) {
        const int8_t *xs = (const int8_t *)x;
        for (int j = 0; j < 16; j++)
            for (int e = 0; e < 4; e++) acc.v[j] += (int32_t)w.w[4 * j + e] * xs[4 * j + e];
        return acc;
    }
    static inline fvec cvt(const ivec &a) {
        fvec f;
        for (int j = 0; j < 16; j++) f.v[j] = (float)a.v[j];
        return f;
    }
    static inline fvec fzero() { return fvec{}; }
    static inline fvec fload(const uint8_t *p) {
        fvec f;
        __builtin_memcpy(f.v, p, 64);
        return f;
    }
    static inline fvec fload_h(const uint8_t *p) {
        fvec f;
        for (int j = 0; j < 16; j++) f.v[j] = f16_to_f32(load_u16(p + 2 * j));
        return f;
    }
    // Separate statements, and this file is built with -ffp-contract=off: never a fused multiply-add.
    static inline fvec fmul(const fvec &a, const fvec &b) {
        fvec f;
        for (int j = 0; j < 16; j++) f.v[j] = a.v[j] * b.v[j];
        return f;
    }
    static inline fvec fadd(const fvec &a, const fvec &b) {
        fvec f;
        for (int j = 0; j < 16; j++) f.v[j] = a.v[j] + b.v[j];
        return f;
    }
    static inline fvec fpin(const fvec &a) { return a; }
    static inline float fsum(const fvec &a) { return int8_lane_sum(a.v); }
    static inline ivec xsum(const uint8_t *corr) { // -128 * xsum -> xsum (exact: a multiple of 128)
        ivec a = iload(corr);
        for (int j = 0; j < 16; j++) a.v[j] = -(a.v[j] / 128);
        return a;
    }
    static inline void pack_group(int32_t dt, const uint8_t *blocks, int bb, int n, uint8_t *dst) {
        float d[16] = {}, m[16] = {};
        __builtin_memset(dst, 0, 512);
        for (int j = 0; j < n; j++) {
            int8_t q[32];
            int8_decode_block(dt, blocks + j * bb, q, &d[j], &m[j]);
            for (int e = 0; e < 32; e++) dst[64 * (e / 4) + 4 * j + e % 4] = (uint8_t)q[e];
        }
        __builtin_memcpy(dst + INT8_W_SCALE, d, sizeof d);
        __builtin_memcpy(dst + INT8_W_MIN, m, sizeof m);
    }
};
#define INT8_NAME "scalar"
#define INT8_R 2
#define INT8_T 2
#include "kernels_int8.inc"

// The k-quant products in plain integers, as kquant_dot.hpp defines them.
struct KQ {
    struct Row {
        uint8_t b[KQ_W_BYTES];
    };
    struct MemRow {
        const uint8_t *p;
    };
    struct Acc {
        float v[8];
    };
    static inline const uint8_t *bytes(const Row &r) { return r.b; }
    static inline const uint8_t *bytes(const MemRow &r) { return r.p; }
    static inline void unpack(int32_t dtype, const uint8_t *blk, Row &r) { kq_unpack_generic(dtype, blk, r.b); }
    static inline void store(const Row &r, uint8_t *dst) { __builtin_memcpy(dst, r.b, KQ_W_BYTES); }
    static inline Acc fzero() { return Acc{}; }
    static inline float fsum(const Acc &a) { return kq_lane_sum(a.v); }
    static inline int16_t i16(const uint8_t *p, int i) {
        int16_t v;
        __builtin_memcpy(&v, p + 2 * i, 2);
        return v;
    }
    template <int R, int T, bool MIN, bool UNI, class W>
    static inline void sb(const W *const *w, const uint8_t *const *x, Acc (&F)[R][T]) {
        for (int r = 0; r < R; r++) {
            const uint8_t *wb = bytes(*w[r]);
            float d, dmin;
            __builtin_memcpy(&d, wb + KQ_W_D, 4);
            __builtin_memcpy(&dmin, wb + KQ_W_DMIN, 4);
            for (int t = 0; t < T; t++) {
                const int8_t *xq = (const int8_t *)x[t];
                float dx;
                __builtin_memcpy(&dx, x[t] + KQ_X_D, 4);
                for (int l = 0; l < 8; l++) {
                    int32_t a = 0;
                    for (int k = 0; k < 8; k++)
                        for (int i = 0; i < 4; i++) {
                            const int e = 32 * k + 4 * l + i;
                            a += (int32_t)i16(wb + KQ_W_SC, e / 16) * wb[e] * xq[e];
                        }
                    const int32_t c = (int32_t)i16(wb + KQ_W_CR, 2 * l) * i16(x[t] + KQ_X_BSUM, 2 * l) +
                                      (int32_t)i16(wb + KQ_W_CR, 2 * l + 1) * i16(x[t] + KQ_X_BSUM, 2 * l + 1);
                    // separate statements, and this file is built with -ffp-contract=off
                    const float ddx = d * dx;
                    if (!MIN) {
                        const float term = ddx * (float)(a - c);
                        F[r][t].v[l] = F[r][t].v[l] + term;
                    } else {
                        const float dmx = dmin * dx;
                        const float term = ddx * (float)a, mterm = dmx * (float)c;
                        F[r][t].v[l] = F[r][t].v[l] + term;
                        F[r][t].v[l] = F[r][t].v[l] - mterm;
                    }
                }
            }
        }
    }
};
#define KQ_NAME "scalar"
#define KQ_R 2
#define KQ_T 2
#define KQ_TILE_T 4 // most tokens read in place (more: rows unpacked once, then the gemm)
#include "kernels_kquant.inc"

} // namespace

const KernelSet *kernels_scalar() {
    static const KernelSet ks = [] {
        KernelSet k = kernel_set;
        k.int8 = &int8_set;
        k.kq = &kq_set;
        return k;
    }();
    return &ks;
}

float g_f16_table[65536];

void init_tables() {
    static const bool done = [] {
        for (uint32_t h = 0; h < 65536; h++) g_f16_table[h] = f16_to_f32((uint16_t)h);
        return true;
    }();
    (void)done;
}

} // namespace specula::cpu
