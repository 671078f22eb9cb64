// AVX-512 kernels (avx512f/bw/vl + fma + f16c), used when the CPU has them (see kernels.hpp).
#include "int8_dot.hpp"
#include "kernels.hpp"
#include "kquant_dot.hpp"
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
// 4 rows x 6 tokens: 24 accumulators, 4 weight vectors and one activation vector in the 32 registers,
// 6 activation and 4 weight loads per 24 fmas (3 x 8 needs 8 and 3: with F16 rows read in place, 4 x 6
// ran 16 tokens about 20% faster on Zen 5, the same at 8).
#define GEMM_R 4
#define GEMM_T 6
#include "kernels_impl.inc"

#include "kernels_int8_x86.inc"

// Int8 traits shared by both AVX-512 variants: 16 lanes are one register.
struct QI512 {
    using ivec = __m512i;
    using fvec = __m512;
    static inline ivec izero() { return _mm512_setzero_si512(); }
    static inline ivec iload(const uint8_t *p) { return _mm512_loadu_si512((const void *)p); }
    static inline fvec cvt(ivec a) { return _mm512_cvtepi32_ps(a); }
    static inline fvec fzero() { return _mm512_setzero_ps(); }
    static inline fvec fload(const uint8_t *p) { return _mm512_loadu_ps((const void *)p); }
    static inline fvec fload_h(const uint8_t *p) { return _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)p)); }
    static inline fvec fmul(fvec a, fvec b) { return _mm512_mul_ps(a, b); }
    static inline fvec fadd(fvec a, fvec b) { return _mm512_add_ps(a, b); }
    static inline fvec fpin(fvec a) { return V::pin(a); }
    static inline float fsum(fvec a) { return V::hsum(a); } // int8_lane_sum's order
    static inline ivec xsum(const uint8_t *corr) { // -128 * xsum -> xsum (exact: a multiple of 128)
        return _mm512_sub_epi32(_mm512_setzero_si512(), _mm512_srai_epi32(iload(corr), 7));
    }
};

// quantize_acts_row (int8_dot.hpp) a block of 32 at a time, the same bytes: the same amax (NaN lanes
// skipped as the scalar compare skips them), the same f32 multiply, rint as round-to-nearest-even, the
// same clamp (a NaN left unclamped) and truncating conversion, an exact integer sum.
void quantize_acts_512(const float *x, int64_t K, uint8_t *dst) {
    const int64_t nb = K / INT8_BLOCK, ng = int8_groups(K);
    __builtin_memset(dst, 0, (size_t)(ng * INT8_X_GROUP_BYTES));
    const __m512 hi = _mm512_set1_ps(127.0f), lo = _mm512_set1_ps(-127.0f);
    for (int64_t b = 0; b < nb; b++) {
        const float *xb = x + b * INT8_BLOCK;
        const __m512 x0 = _mm512_loadu_ps(xb), x1 = _mm512_loadu_ps(xb + 16);
        // vmaxps returns its second operand when either is NaN: a NaN |x| keeps the running maximum
        __m512 m = _mm512_max_ps(_mm512_abs_ps(x0), _mm512_setzero_ps());
        m = _mm512_max_ps(_mm512_abs_ps(x1), m);
        const float amax = _mm512_reduce_max_ps(m);
        const float id = amax > 0.0f ? 127.0f / amax : 0.0f;
        const float d = f16_to_f32(f32_to_f16(amax / 127.0f));
        __m512i q[2];
        for (int h = 0; h < 2; h++) {
            __m512 v = _mm512_roundscale_ps(_mm512_mul_ps(h ? x1 : x0, _mm512_set1_ps(id)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
            v = _mm512_mask_mov_ps(v, _mm512_cmp_ps_mask(v, hi, _CMP_GT_OQ), hi);
            v = _mm512_mask_mov_ps(v, _mm512_cmp_ps_mask(v, lo, _CMP_LT_OQ), lo);
            q[h] = _mm512_cvttps_epi32(v);
        }
        const int32_t sum = _mm512_reduce_add_epi32(_mm512_add_epi32(q[0], q[1]));
        alignas(16) uint8_t bytes[32];
        _mm_store_si128((__m128i *)bytes, _mm512_cvtepi32_epi8(q[0]));
        _mm_store_si128((__m128i *)(bytes + 16), _mm512_cvtepi32_epi8(q[1]));
        uint8_t *g = dst + (b / INT8_GROUP_BLOCKS) * INT8_X_GROUP_BYTES;
        const int j = (int)(b % INT8_GROUP_BLOCKS);
        for (int k = 0; k < 8; k++) __builtin_memcpy(g + 64 * k + 4 * j, bytes + 4 * k, 4);
        __builtin_memcpy(g + INT8_X_SCALE + 4 * j, &d, 4);
        const int32_t corr = -128 * sum;
        __builtin_memcpy(g + INT8_X_CORR + 4 * j, &corr, 4);
    }
}

// Without VNNI (Skylake-X): |w| times x with w's sign, vpmaddubsw then vpmaddwd (no saturation:
// |w|, |x| <= 127 and 2 * 127 * 127 < 32768).
namespace bw {
struct QI : QI512 {
    static constexpr bool OFFSET = false;
    struct wvec {
        __m512i a;
        __mmask64 neg;
    };
    static inline wvec wprep(const uint8_t *p) {
        const __m512i w = _mm512_loadu_si512((const void *)p);
        return {_mm512_abs_epi8(w), _mm512_movepi8_mask(w)};
    }
    static inline ivec dot(ivec acc, const wvec &w, const uint8_t *x) {
        const __m512i xv = _mm512_loadu_si512((const void *)x);
        const __m512i sx = _mm512_mask_sub_epi8(xv, w.neg, _mm512_setzero_si512(), xv);
        return _mm512_add_epi32(acc, _mm512_madd_epi16(_mm512_maddubs_epi16(w.a, sx), _mm512_set1_epi16(1)));
    }
    static inline void pack_group(int32_t dt, const uint8_t *b, int bb, int n, uint8_t *dst) { int8_x86_pack_group<false>(dt, b, bb, n, dst); }
};
#define INT8_NAME "avx512"
#define INT8_R 4
#define INT8_T 4
#include "kernels_int8.inc"

const Int8Set int8_set_quant = [] {
    Int8Set s = int8_set;
    s.quantize = quantize_acts_512;
    return s;
}();

#define KQ_VNNI 0
#include "kernels_kquant_x86_512.inc"
#undef KQ_VNNI
#define KQ_NAME "avx512"
#define KQ_R 2
#define KQ_T 4
#define KQ_TILE_T 8 // most tokens read in place (more: rows unpacked once, then the gemm)
#include "kernels_kquant.inc"
} // namespace bw

} // namespace
} // namespace specula::cpu

// VNNI: vpdpbusd multiplies unsigned by signed bytes, so weights are stored as w + 128 and each
// sum starts at the activations' -128 * sum(x) (int8_dot.hpp).
#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,fma,f16c,avx2,bmi2")
namespace specula::cpu {
namespace {
// 16 Q8_0 or Q4_0 blocks (BB bytes apart) in int8_gemm's layout: w[i] lane j = dword i of block j,
// as unsigned w + 128; dw = the 16 scales. Block j and j + 8 share a register, then two 8x8 dword
// transposes (one per 256-bit half) run side by side.
static inline __m256i block32(int32_t dtype, const uint8_t *blk) { // as int8_x86_block, Q4_0 without the -8
    if (dtype == SPEC_DTYPE_Q8_0) return _mm256_loadu_si256((const __m256i *)(blk + 2));
    const __m128i q = _mm_loadu_si128((const __m128i *)(blk + 2)), m = _mm_set1_epi8(15);
    return _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(q, 4), m), _mm_and_si128(q, m));
}
template <int DT>
static inline void quant_group(const uint8_t *blk, __m512i *w, __m512 &dw) {
    constexpr int BB = DT == SPEC_DTYPE_Q8_0 ? 34 : 18;
    // Q8_0: w ^ 0x80 = w + 128; Q4_0: nibble - 8 + 128 = nibble + 120
    const __m512i flip = _mm512_set1_epi8((char)0x80), q4_offset = _mm512_set1_epi8(120);
    const __m512i starts = _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15), _mm512_set1_epi32(BB));
    const __m512i lo_lanes = _mm512_setr_epi64(0, 1, 8, 9, 4, 5, 12, 13), hi_lanes = _mm512_setr_epi64(2, 3, 10, 11, 6, 7, 14, 15);
    __m512i z[8];
    for (int j = 0; j < 8; j++) {
        const __m256i lo = block32(DT, blk + j * BB), hi = block32(DT, blk + (j + 8) * BB);
        z[j] = _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1);
    }
    __m512i t8[8], u[8];
    for (int j = 0; j < 4; j++) {
        t8[2 * j] = _mm512_unpacklo_epi32(z[2 * j], z[2 * j + 1]);
        t8[2 * j + 1] = _mm512_unpackhi_epi32(z[2 * j], z[2 * j + 1]);
    }
    for (int h = 0; h < 2; h++) { // t8[4h..4h+3] -> u[4h..4h+3]
        u[4 * h + 0] = _mm512_unpacklo_epi64(t8[4 * h + 0], t8[4 * h + 2]);
        u[4 * h + 1] = _mm512_unpackhi_epi64(t8[4 * h + 0], t8[4 * h + 2]);
        u[4 * h + 2] = _mm512_unpacklo_epi64(t8[4 * h + 1], t8[4 * h + 3]);
        u[4 * h + 3] = _mm512_unpackhi_epi64(t8[4 * h + 1], t8[4 * h + 3]);
    }
    for (int i = 0; i < 4; i++) {
        w[i] = _mm512_permutex2var_epi64(u[i], lo_lanes, u[i + 4]);
        w[i + 4] = _mm512_permutex2var_epi64(u[i], hi_lanes, u[i + 4]);
    }
    for (int i = 0; i < 8; i++) w[i] = DT == SPEC_DTYPE_Q8_0 ? _mm512_xor_si512(w[i], flip) : _mm512_add_epi8(w[i], q4_offset);
    dw = _mm512_cvtph_ps(_mm512_cvtepi32_epi16(_mm512_i32gather_epi32(starts, (const void *)blk, 1)));
}

namespace vnni {
struct QI : QI512 {
    static constexpr bool OFFSET = true;
    using wvec = __m512i;
    static inline wvec wprep(const uint8_t *p) { return _mm512_loadu_si512((const void *)p); }
    static inline ivec dot(ivec acc, wvec w, const uint8_t *x) {
        return _mm512_dpbusd_epi32(acc, w, _mm512_loadu_si512((const void *)x));
    }
    static inline void pack_group(int32_t dt, const uint8_t *b, int bb, int n, uint8_t *dst) {
        if (n < INT8_GROUP_BLOCKS || (dt != SPEC_DTYPE_Q8_0 && dt != SPEC_DTYPE_Q4_0)) return int8_x86_pack_group<true>(dt, b, bb, n, dst);
        __m512i w[8];
        __m512 dw;
        if (dt == SPEC_DTYPE_Q8_0) quant_group<SPEC_DTYPE_Q8_0>(b, w, dw);
        else quant_group<SPEC_DTYPE_Q4_0>(b, w, dw);
        for (int i = 0; i < 8; i++) _mm512_storeu_si512((void *)(dst + 64 * i), w[i]);
        _mm512_storeu_ps((void *)(dst + INT8_W_SCALE), dw);
        _mm512_storeu_ps((void *)(dst + INT8_W_MIN), _mm512_setzero_ps()); // no min
    }
};
#define INT8_NAME "avx512-vnni"
#define INT8_R 4
#define INT8_T 4
#include "kernels_int8.inc"

#define KQ_VNNI 1
#include "kernels_kquant_x86_512.inc"
#undef KQ_VNNI
#define KQ_NAME "avx512-vnni"
#define KQ_R 2
#define KQ_T 4
#define KQ_TILE_T 8 // most tokens read in place (more: rows unpacked once, then the gemm)
#include "kernels_kquant.inc"

// Few tokens without packing: a Q8_0 / Q4_0 row read in place, each group of 16 blocks transposed in
// registers into int8_gemm's layout (block j and j + 8 share a register, then two 8x8 dword
// transposes), then per token the same vpdpbusd steps and float steps as int8_gemm_impl.
template <int DT, int T>
void tile_impl(const uint8_t *row, int64_t K, const uint8_t *qx, int64_t qxs, float *out, const uint8_t *pf,
                    int64_t pf_bytes) {
    constexpr int BB = DT == SPEC_DTYPE_Q8_0 ? 34 : 18;
    const int64_t nb = K / INT8_BLOCK, ng = int8_groups(K);
    const int64_t pf_step = pf ? (pf_bytes + ng - 1) / ng : 0;
    alignas(64) uint8_t tail[16 * BB];
    __m512 F[T];
    for (int t = 0; t < T; t++) F[t] = _mm512_setzero_ps();
    for (int64_t g = 0; g < ng; g++) {
        if (pf_step) {
            for (int64_t o = 0; o < pf_step; o += 64) __builtin_prefetch(pf + o, 0, 2);
            pf += pf_step;
        }
        const uint8_t *blk = row + g * INT8_GROUP_BLOCKS * BB;
        const int64_t n = nb - g * INT8_GROUP_BLOCKS;
        if (n < INT8_GROUP_BLOCKS) { // the last group, zero-padded (x is 0 there, and so is each scale)
            __builtin_memset(tail, 0, sizeof tail);
            __builtin_memcpy(tail, blk, (size_t)(n * BB));
            blk = tail;
        }
        __m512i w[8];
        __m512 dw;
        quant_group<DT>(blk, w, dw);
        for (int t = 0; t < T; t++) {
            const uint8_t *xg = qx + t * qxs + g * INT8_X_GROUP_BYTES;
            __m512i I = _mm512_loadu_si512((const void *)(xg + INT8_X_CORR));
            for (int i = 0; i < 8; i++) I = _mm512_dpbusd_epi32(I, w[i], _mm512_loadu_si512((const void *)(xg + 64 * i)));
            const __m512 d = _mm512_mul_ps(dw, _mm512_loadu_ps((const void *)(xg + INT8_X_SCALE)));
            F[t] = _mm512_add_ps(F[t], V::pin(_mm512_mul_ps(d, _mm512_cvtepi32_ps(I))));
        }
    }
    for (int t = 0; t < T; t++) out[t] = V::hsum(F[t]);
}

template <int DT>
bool tile_dt(const uint8_t *row, int64_t K, const uint8_t *qx, int64_t qxs, int T, float *out, const uint8_t *pf, int64_t pf_bytes) {
    switch (T) {
    case 1: tile_impl<DT, 1>(row, K, qx, qxs, out, pf, pf_bytes); break;
    case 2: tile_impl<DT, 2>(row, K, qx, qxs, out, pf, pf_bytes); break;
    case 3: tile_impl<DT, 3>(row, K, qx, qxs, out, pf, pf_bytes); break;
    case 4: tile_impl<DT, 4>(row, K, qx, qxs, out, pf, pf_bytes); break;
    case 5: tile_impl<DT, 5>(row, K, qx, qxs, out, pf, pf_bytes); break;
    case 6: tile_impl<DT, 6>(row, K, qx, qxs, out, pf, pf_bytes); break;
    case 7: tile_impl<DT, 7>(row, K, qx, qxs, out, pf, pf_bytes); break;
    case 8: tile_impl<DT, 8>(row, K, qx, qxs, out, pf, pf_bytes); break;
    case 9: tile_impl<DT, 9>(row, K, qx, qxs, out, pf, pf_bytes); break;
    case 10: tile_impl<DT, 10>(row, K, qx, qxs, out, pf, pf_bytes); break;
    case 11: tile_impl<DT, 11>(row, K, qx, qxs, out, pf, pf_bytes); break;
    case 12: tile_impl<DT, 12>(row, K, qx, qxs, out, pf, pf_bytes); break;
    case 13: tile_impl<DT, 13>(row, K, qx, qxs, out, pf, pf_bytes); break;
    case 14: tile_impl<DT, 14>(row, K, qx, qxs, out, pf, pf_bytes); break;
    case 15: tile_impl<DT, 15>(row, K, qx, qxs, out, pf, pf_bytes); break;
    case 16: tile_impl<DT, 16>(row, K, qx, qxs, out, pf, pf_bytes); break;
    default: return false;
    }
    return true;
}

bool tile(int32_t dtype, const uint8_t *row, int64_t K, const uint8_t *qx, int64_t qxs, int T, float *out, const uint8_t *pf,
          int64_t pf_bytes) {
    if (dtype == SPEC_DTYPE_Q8_0) return tile_dt<SPEC_DTYPE_Q8_0>(row, K, qx, qxs, T, out, pf, pf_bytes);
    if (dtype == SPEC_DTYPE_Q4_0) return tile_dt<SPEC_DTYPE_Q4_0>(row, K, qx, qxs, T, out, pf, pf_bytes);
    return false;
}

const Int8Set int8_set_tiled = [] {
    Int8Set s = int8_set;
    s.tile_tokens = 4; // more: packing once, then int8_gemm's 4 x 4 register blocks, is cheaper
    s.tile = tile;
    s.quantize = quantize_acts_512;
    return s;
}();
} // namespace vnni
} // namespace
} // namespace specula::cpu
#pragma GCC pop_options

#pragma GCC diagnostic pop
#pragma GCC pop_options

namespace specula::cpu {
const KernelSet *kernels_avx512() {
    static const KernelSet ks = [] {
        KernelSet k = kernel_set;
        k.int8 = &bw::int8_set_quant;
        k.kq = &bw::kq_set;
        return k;
    }();
    return &ks;
}
const KernelSet *kernels_avx512_vnni() {
    static const KernelSet ks = [] {
        KernelSet k = kernel_set;
        k.name = "avx512-vnni";
        k.int8 = &vnni::int8_set_tiled;
        k.kq = &vnni::kq_set;
        return k;
    }();
    return &ks;
}
} // namespace specula::cpu

#else
namespace specula::cpu {
const KernelSet *kernels_avx512() { return nullptr; }
const KernelSet *kernels_avx512_vnni() { return nullptr; }
} // namespace specula::cpu
#endif
