// AVX2 kernels (avx2 + fma + f16c), for x86-64 CPUs without AVX-512 (see kernels.hpp).
#include "int8_dot.hpp"
#include "kernels.hpp"
#include "kquant_dot.hpp"
#include "../core/quant_blocks.hpp" // before any #pragma GCC target: compiled for the baseline

#include "specula.h"

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>

#pragma GCC push_options
#pragma GCC target("avx2,fma,f16c,bmi2")

namespace specula::cpu {
namespace {

static inline float f16_to_f32_fast(uint16_t h) { return g_f16_table[h]; }

struct V {
    static constexpr int W = 8;
    using v = __m256;
    static inline v zero() { return _mm256_setzero_ps(); }
    static inline v set1(float a) { return _mm256_set1_ps(a); }
    static inline v load(const float *p) { return _mm256_loadu_ps(p); }
    static inline void store(float *p, v a) { _mm256_storeu_ps(p, a); }
    static inline v load_f16(const uint16_t *p) { return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)p)); }
    static inline v load_bf16(const uint16_t *p) {
        return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)p)), 16));
    }
    static inline v load_i8(const int8_t *p) { return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)p))); }
    static inline v nib(__m128i b) { return _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(b)); }
    static inline v load_u4lo(const uint8_t *p) { return nib(_mm_and_si128(_mm_loadl_epi64((const __m128i *)p), _mm_set1_epi8(15))); }
    static inline v load_u4hi(const uint8_t *p) {
        return nib(_mm_and_si128(_mm_srli_epi16(_mm_loadl_epi64((const __m128i *)p), 4), _mm_set1_epi8(15)));
    }
    static inline v pin(v a) {
        __asm__("" : "+v"(a));
        return a;
    }
    static inline v add(v a, v b) { return _mm256_add_ps(a, b); }
    static inline v sub(v a, v b) { return _mm256_sub_ps(a, b); }
    static inline v mul(v a, v b) { return _mm256_mul_ps(a, b); }
    static inline v div(v a, v b) { return _mm256_div_ps(a, b); }
    static inline v max(v a, v b) { return _mm256_max_ps(a, b); }
    static inline v fma(v a, v b, v c) { return _mm256_fmadd_ps(a, b, c); }
    static inline float hsum(v a) {
        __m128 q = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
        q = _mm_add_ps(q, _mm_movehl_ps(q, q));
        q = _mm_add_ss(q, _mm_movehdup_ps(q));
        return _mm_cvtss_f32(q);
    }
    static inline float hmax(v a) {
        __m128 q = _mm_max_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
        q = _mm_max_ps(q, _mm_movehl_ps(q, q));
        q = _mm_max_ss(q, _mm_movehdup_ps(q));
        return _mm_cvtss_f32(q);
    }
    static inline v exp(v x) { // Cephes expf: |relative error| < 2e-7
        x = _mm256_min_ps(_mm256_max_ps(x, _mm256_set1_ps(-87.3f)), _mm256_set1_ps(88.3f));
        v fx = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
        v r = _mm256_fnmadd_ps(fx, _mm256_set1_ps(0.693359375f), x);
        r = _mm256_fnmadd_ps(fx, _mm256_set1_ps(-2.12194440e-4f), r);
        v y = _mm256_set1_ps(1.9875691500e-4f);
        y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(1.3981999507e-3f));
        y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(8.3334519073e-3f));
        y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(4.1665795894e-2f));
        y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(1.6666665459e-1f));
        y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(5.0000001201e-1f));
        y = _mm256_fmadd_ps(y, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
        __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(fx), _mm256_set1_epi32(127)), 23);
        return _mm256_mul_ps(y, _mm256_castsi256_ps(e));
    }
    static inline void store_f16(uint16_t *p, v a) {
        _mm_storeu_si128((__m128i *)p, _mm256_cvtps_ph(a, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
    }
    static inline void store_bf16(uint16_t *p, v a) {
        alignas(32) float tmp[8];
        _mm256_store_ps(tmp, a);
        for (int i = 0; i < 8; i++) p[i] = f32_to_bf16(tmp[i]);
    }
};

#define KERNEL_NAME "avx2"
#define KERNEL_TMAX 2
#define GEMM_R 3
#define GEMM_T 4
#include "kernels_impl.inc"

#include "kernels_int8_x86.inc"

// Int8 products without VNNI: 16 lanes are two registers; |w| times x with w's sign, vpmaddubsw
// then vpmaddwd (no saturation: |w|, |x| <= 127 and 2 * 127 * 127 < 32768).
// (AVX-VNNI's vpdpbusd on 256 bits would be one more traits struct like kernels_avx512.cpp's vnni
// one; no CPU here has it, so it is not written.)
struct QI {
    static constexpr bool OFFSET = false;
    struct ivec {
        __m256i lo, hi;
    };
    struct fvec {
        __m256 lo, hi;
    };
    struct wvec {
        __m256i alo, ahi, wlo, whi;
    };
    static inline ivec izero() { return {_mm256_setzero_si256(), _mm256_setzero_si256()}; }
    static inline ivec iload(const uint8_t *p) {
        return {_mm256_loadu_si256((const __m256i *)p), _mm256_loadu_si256((const __m256i *)(p + 32))};
    }
    static inline wvec wprep(const uint8_t *p) {
        const __m256i lo = _mm256_loadu_si256((const __m256i *)p), hi = _mm256_loadu_si256((const __m256i *)(p + 32));
        return {_mm256_abs_epi8(lo), _mm256_abs_epi8(hi), lo, hi};
    }
    static inline __m256i dot8(__m256i acc, __m256i a, __m256i w, __m256i x) {
        return _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_maddubs_epi16(a, _mm256_sign_epi8(x, w)), _mm256_set1_epi16(1)));
    }
    static inline ivec dot(const ivec &acc, const wvec &w, const uint8_t *x) {
        return {dot8(acc.lo, w.alo, w.wlo, _mm256_loadu_si256((const __m256i *)x)),
                dot8(acc.hi, w.ahi, w.whi, _mm256_loadu_si256((const __m256i *)(x + 32)))};
    }
    static inline fvec cvt(const ivec &a) { return {_mm256_cvtepi32_ps(a.lo), _mm256_cvtepi32_ps(a.hi)}; }
    static inline fvec fzero() { return {_mm256_setzero_ps(), _mm256_setzero_ps()}; }
    static inline fvec fload(const uint8_t *p) { return {_mm256_loadu_ps((const float *)p), _mm256_loadu_ps((const float *)(p + 32))}; }
    static inline fvec fload_h(const uint8_t *p) {
        return {_mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)p)), _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(p + 16)))};
    }
    static inline fvec fmul(const fvec &a, const fvec &b) { return {_mm256_mul_ps(a.lo, b.lo), _mm256_mul_ps(a.hi, b.hi)}; }
    static inline fvec fadd(const fvec &a, const fvec &b) { return {_mm256_add_ps(a.lo, b.lo), _mm256_add_ps(a.hi, b.hi)}; }
    static inline fvec fpin(const fvec &a) { return {V::pin(a.lo), V::pin(a.hi)}; }
    static inline float fsum(const fvec &a) { return V::hsum(_mm256_add_ps(a.lo, a.hi)); } // int8_lane_sum's order
    static inline ivec xsum(const uint8_t *corr) { // -128 * xsum -> xsum (exact: a multiple of 128)
        const ivec c = iload(corr);
        return {_mm256_sub_epi32(_mm256_setzero_si256(), _mm256_srai_epi32(c.lo, 7)),
                _mm256_sub_epi32(_mm256_setzero_si256(), _mm256_srai_epi32(c.hi, 7))};
    }
    static inline void pack_group(int32_t dt, const uint8_t *b, int bb, int n, uint8_t *dst) { int8_x86_pack_group<false>(dt, b, bb, n, dst); }
};
#define INT8_NAME "avx2"
#define INT8_R 2
#define INT8_T 2
#include "kernels_int8.inc"

#define KQ_VNNI 0
#include "kernels_kquant_x86.inc"
#undef KQ_VNNI
#define KQ_NAME "avx2"
#define KQ_R 2
#define KQ_T 2
#define KQ_TILE_T 4 // most tokens read in place (more: rows unpacked once, then the gemm)
#include "kernels_kquant.inc"

} // namespace
} // namespace specula::cpu

#pragma GCC pop_options

namespace specula::cpu {
const KernelSet *kernels_avx2() {
    static const KernelSet ks = [] {
        KernelSet k = kernel_set;
        k.int8 = &int8_set;
        k.kq = &kq_set;
        return k;
    }();
    return &ks;
}
} // namespace specula::cpu

#else
namespace specula::cpu {
const KernelSet *kernels_avx2() { return nullptr; }
} // namespace specula::cpu
#endif
