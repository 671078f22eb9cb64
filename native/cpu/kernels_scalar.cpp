// Scalar kernels for the baseline target: any x86-64 (or other) CPU (see kernels.hpp).
#include "kernels.hpp"
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

} // namespace

const KernelSet *kernels_scalar() { return &kernel_set; }

float g_f16_table[65536];

void init_tables() {
    static const bool done = [] {
        for (uint32_t h = 0; h < 65536; h++) g_f16_table[h] = f16_to_f32((uint16_t)h);
        return true;
    }();
    (void)done;
}

} // namespace specula::cpu
