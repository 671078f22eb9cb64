// AVX-512 kernels (avx512f/bw/vl + fma + f16c), used when the CPU has them (see kernels.hpp).
#include "kernels.hpp"
#include "../core/quant_blocks.hpp" // before any #pragma GCC target: compiled for the baseline

#include "specula.h"

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>

#pragma GCC push_options
// GCC 12's avx512fintrin.h trips -Wuninitialized on its own _mm512_undefined_* helpers.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512dq,fma,f16c,avx2,bmi2")

namespace specula::cpu {
namespace {

static inline float f16_to_f32_fast(uint16_t h) { return g_f16_table[h]; }

struct V {
    static constexpr int W = 16;
    using v = __m512;
    static inline v zero() { return _mm512_setzero_ps(); }
    static inline v set1(float a) { return _mm512_set1_ps(a); }
    static inline v load(const float *p) { return _mm512_loadu_ps(p); }
    static inline void store(float *p, v a) { _mm512_storeu_ps(p, a); }
    static inline v load_f16(const uint16_t *p) { return _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)p)); }
    static inline v load_bf16(const uint16_t *p) {
        return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)p)), 16));
    }
    static inline v load_i8(const int8_t *p) { return _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)p))); }
    static inline v nib(__m128i b) { return _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(b)); }
    static inline v load_u4lo(const uint8_t *p) { return nib(_mm_and_si128(_mm_loadu_si128((const __m128i *)p), _mm_set1_epi8(15))); }
    static inline v load_u4hi(const uint8_t *p) {
        return nib(_mm_and_si128(_mm_srli_epi16(_mm_loadu_si128((const __m128i *)p), 4), _mm_set1_epi8(15)));
    }
    static inline v pin(v a) {
        __asm__("" : "+v"(a));
        return a;
    }
    static inline v add(v a, v b) { return _mm512_add_ps(a, b); }
    static inline v sub(v a, v b) { return _mm512_sub_ps(a, b); }
    static inline v mul(v a, v b) { return _mm512_mul_ps(a, b); }
    static inline v div(v a, v b) { return _mm512_div_ps(a, b); }
    static inline v max(v a, v b) { return _mm512_max_ps(a, b); }
    static inline v fma(v a, v b, v c) { return _mm512_fmadd_ps(a, b, c); }
    static inline float hsum(v a) {
        __m256 s = _mm256_add_ps(_mm512_castps512_ps256(a), _mm512_extractf32x8_ps(a, 1));
        __m128 q = _mm_add_ps(_mm256_castps256_ps128(s), _mm256_extractf128_ps(s, 1));
        q = _mm_add_ps(q, _mm_movehl_ps(q, q));
        q = _mm_add_ss(q, _mm_movehdup_ps(q));
        return _mm_cvtss_f32(q);
    }
    static inline float hmax(v a) { return _mm512_reduce_max_ps(a); }
    static inline v exp(v x) { // Cephes expf: |relative error| < 2e-7
        x = _mm512_min_ps(_mm512_max_ps(x, _mm512_set1_ps(-87.3f)), _mm512_set1_ps(88.3f));
        v fx = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
        v r = _mm512_fnmadd_ps(fx, _mm512_set1_ps(0.693359375f), x);
        r = _mm512_fnmadd_ps(fx, _mm512_set1_ps(-2.12194440e-4f), r);
        v y = _mm512_set1_ps(1.9875691500e-4f);
        y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(1.3981999507e-3f));
        y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(8.3334519073e-3f));
        y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(4.1665795894e-2f));
        y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(1.6666665459e-1f));
        y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(5.0000001201e-1f));
        y = _mm512_fmadd_ps(y, _mm512_mul_ps(r, r), _mm512_add_ps(r, _mm512_set1_ps(1.0f)));
        __m512i e = _mm512_slli_epi32(_mm512_add_epi32(_mm512_cvtps_epi32(fx), _mm512_set1_epi32(127)), 23);
        return _mm512_mul_ps(y, _mm512_castsi512_ps(e));
    }
    static inline void store_f16(uint16_t *p, v a) {
        _mm256_storeu_si256((__m256i *)p, _mm512_cvtps_ph(a, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
    }
    static inline void store_bf16(uint16_t *p, v a) {
        __m512i x = _mm512_castps_si512(a);
        __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(x, 16), _mm512_set1_epi32(1));
        __m512i r = _mm512_srli_epi32(_mm512_add_epi32(x, _mm512_add_epi32(lsb, _mm512_set1_epi32(0x7fff))), 16);
        // NaN stays a (quiet) NaN
        __mmask16 nan = _mm512_cmp_ps_mask(a, a, _CMP_UNORD_Q);
        r = _mm512_mask_mov_epi32(r, nan, _mm512_or_si512(_mm512_srli_epi32(x, 16), _mm512_set1_epi32(0x40)));
        _mm256_storeu_si256((__m256i *)p, _mm512_cvtepi32_epi16(r));
    }
};


#define KERNEL_NAME "avx512"
#define KERNEL_TMAX 4
#define GEMM_R 3
#define GEMM_T 8
#include "kernels_impl.inc"

} // namespace
} // namespace specula::cpu

#pragma GCC diagnostic pop
#pragma GCC pop_options

namespace specula::cpu {
const KernelSet *kernels_avx512() { return &kernel_set; }
} // namespace specula::cpu

#else
namespace specula::cpu {
const KernelSet *kernels_avx512() { return nullptr; }
} // namespace specula::cpu
#endif
