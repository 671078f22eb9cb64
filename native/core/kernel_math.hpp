// Per-element logic shared by the cpu twin and the cuda kernels of the speculative kernels
// (tree attention, verification, token recycling). Everything here is __host__ __device__, so
// the CI machine (no GPU) exercises it through the cpu backend and the tests.
//
// Verification must give IDENTICAL results on both backends, so every number a decision depends
// on is computed the same way, bit for bit:
//   - random numbers: Philox-4x32-10 (counter-based: a draw is a pure function of its name);
//   - probabilities: integers. exp() is our own (only IEEE +, *, floor and bit tricks, with
//     fused multiply-add ruled out: __fmul_rn/__fadd_rn on the device, -ffp-contract=off on the
//     host), and a token's weight is floor(exp(..) * 2^40) as a uint64. Sums of weights are
//     then exact in any order, so a block-parallel reduction and a sequential loop agree;
//   - ranking: a 64-bit composite key (logit's order key << 32 | ~id) totally orders tokens by
//     logit, ties by lower id, so argmax, top-k and the top-p cut have one answer.
#pragma once

#include "specula.h"

#include <cstdint>
#include <cstring>
#include <cmath>

#if defined(__CUDACC__)
#define SPEC_HD __host__ __device__ __forceinline__
#else
#define SPEC_HD inline
#endif
#if defined(__CUDA_ARCH__)
#define SPEC_UNROLL _Pragma("unroll")
#elif defined(__CUDACC__)
#define SPEC_UNROLL /* host side of a .cu file: nvcc's front end knows no GCC pragmas */
#else
#define SPEC_UNROLL _Pragma("GCC unroll 32")
#endif

namespace specula::km {

// ---------------------------------------------------------------- exact float arithmetic

SPEC_HD float fmul(float a, float b) {
#ifdef __CUDA_ARCH__
    return __fmul_rn(a, b);
#else
    return a * b;
#endif
}
SPEC_HD float fadd(float a, float b) {
#ifdef __CUDA_ARCH__
    return __fadd_rn(a, b);
#else
    return a + b;
#endif
}
SPEC_HD float fsub(float a, float b) {
#ifdef __CUDA_ARCH__
    return __fsub_rn(a, b);
#else
    return a - b;
#endif
}
SPEC_HD float fdiv(float a, float b) {
#ifdef __CUDA_ARCH__
    return __fdiv_rn(a, b);
#else
    return a / b;
#endif
}
SPEC_HD double dmul(double a, double b) {
#ifdef __CUDA_ARCH__
    return __dmul_rn(a, b);
#else
    return a * b;
#endif
}
SPEC_HD double ddiv(double a, double b) {
#ifdef __CUDA_ARCH__
    return __ddiv_rn(a, b);
#else
    return a / b;
#endif
}
SPEC_HD double u64_to_double(uint64_t v) {
#ifdef __CUDA_ARCH__
    return __ull2double_rn(v);
#else
    return (double)v;
#endif
}
SPEC_HD uint32_t float_bits(float f) {
#ifdef __CUDA_ARCH__
    return __float_as_uint(f);
#else
    uint32_t u;
    std::memcpy(&u, &f, 4);
    return u;
#endif
}
SPEC_HD float bits_float(uint32_t u) {
#ifdef __CUDA_ARCH__
    return __uint_as_float(u);
#else
    float f;
    std::memcpy(&f, &u, 4);
    return f;
#endif
}
// High 64 bits of a 64x64-bit product: maps a random r onto [0, n) as floor(r * n / 2^64).
SPEC_HD uint64_t mulhi64(uint64_t a, uint64_t b) {
#ifdef __CUDA_ARCH__
    return __umul64hi(a, b);
#else
    return (uint64_t)(((unsigned __int128)a * b) >> 64);
#endif
}

// ---------------------------------------------------------------- 16-bit floats

SPEC_HD float bf16_to_f32(uint16_t h) { return bits_float((uint32_t)h << 16); }

SPEC_HD float f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16, exp = (h >> 10) & 0x1f, mant = h & 0x3ff;
    if (exp == 0x1f) return bits_float(sign | 0x7f800000u | (mant << 13)); // inf / nan
    if (exp == 0) {
        if (mant == 0) return bits_float(sign);
        // subnormal: mant * 2^-24, exact in f32
        float v = fmul((float)mant, 5.9604644775390625e-8f);
        return sign ? -v : v;
    }
    return bits_float(sign | ((exp + 112) << 23) | (mant << 13));
}

// Round-to-nearest-even conversions, for tests and for filling caches on the host.
SPEC_HD uint16_t f32_to_bf16(float f) {
    uint32_t u = float_bits(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40); // quiet nan
    u += 0x7fffu + ((u >> 16) & 1);
    return (uint16_t)(u >> 16);
}

SPEC_HD uint16_t f32_to_f16(float f) {
    uint32_t u = float_bits(f), sign = (u >> 16) & 0x8000, a = u & 0x7fffffffu;
    if (a > 0x7f800000u) return (uint16_t)(sign | 0x7e00);         // nan
    if (a >= 0x477ff000u) return (uint16_t)(sign | 0x7c00);        // rounds to inf
    if (a < 0x38800000u) {                                         // subnormal or zero in f16
        if (a < 0x33000000u) return (uint16_t)sign;                // below half the smallest subnormal
        uint32_t e = a >> 23, m = (a & 0x7fffff) | 0x800000;
        uint32_t shift = 126 - e;                                  // 14..24 for these exponents
        uint32_t q = m >> shift, rem = m & ((1u << shift) - 1), half = 1u << (shift - 1);
        if (rem > half || (rem == half && (q & 1))) q++;
        return (uint16_t)(sign | q);
    }
    uint32_t r = a + 0xfffu + ((a >> 13) & 1) - (112u << 23);      // rebias, round to nearest even
    return (uint16_t)(sign | (r >> 13));
}

// ---------------------------------------------------------------- Philox-4x32-10 (Random123)

struct u32x4 {
    uint32_t x, y, z, w;
};

SPEC_HD u32x4 philox4x32_10(u32x4 c, uint32_t k0, uint32_t k1) {
    for (int round = 0; round < 10; round++) {
        uint64_t p0 = (uint64_t)0xD2511F53u * c.x, p1 = (uint64_t)0xCD9E8D57u * c.z;
        uint32_t hi0 = (uint32_t)(p0 >> 32), lo0 = (uint32_t)p0, hi1 = (uint32_t)(p1 >> 32), lo1 = (uint32_t)p1;
        c = u32x4{hi1 ^ c.y ^ k0, lo1, hi0 ^ c.w ^ k1, lo0};
        k0 += 0x9E3779B9u;
        k1 += 0xBB67AE85u;
    }
    return c;
}

// Draw names used by verification: child ordinal j at a node, or the bonus draw.
constexpr uint32_t DRAW_BONUS = 0xFFFFFFFFu;

// 64 random bits named by (seed, step, node, draw): the same on every backend.
SPEC_HD uint64_t random64(uint64_t seed, uint64_t step, uint32_t node, uint32_t draw) {
    u32x4 r = philox4x32_10(u32x4{node, draw, (uint32_t)step, (uint32_t)(step >> 32)}, (uint32_t)seed,
                            (uint32_t)(seed >> 32));
    return (uint64_t)r.x << 32 | r.y;
}

// A uniform double in [0, 1) with 53 random bits (exact: no rounding anywhere).
SPEC_HD double uniform01(uint64_t r) { return (double)(r >> 11) * 0x1.0p-53; }

// ---------------------------------------------------------------- ranking tokens

// Monotone map of a float to uint32 (larger float, larger key). NaN ranks as -inf; -0 as +0.
SPEC_HD uint32_t order_key(float v) {
    uint32_t u = float_bits(v);
    if ((u & 0x7fffffffu) > 0x7f800000u) u = 0xff800000u; // nan -> -inf
    if (u == 0x80000000u) u = 0;                          // -0 -> +0
    return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}

// The total order of tokens: by logit, ties by the LOWER id. Larger composite ranks first.
// Never 0 for an id below 2^31, so 0 serves as "none".
SPEC_HD uint64_t composite(float logit, uint32_t id) { return (uint64_t)order_key(logit) << 32 | (0xFFFFFFFFu - id); }
SPEC_HD uint32_t composite_id(uint64_t c) { return 0xFFFFFFFFu - (uint32_t)c; }

// A sorted (descending) list of the K best composites: the per-thread state of top-k. Fully
// unrolled so that the cuda kernels keep it in registers.
template <int K>
struct TopList {
    uint64_t c[K];
    SPEC_HD void clear() {
SPEC_UNROLL
        for (int j = 0; j < K; j++) c[j] = 0;
    }
    SPEC_HD void push(uint64_t x) {
        if (x <= c[K - 1]) return;
        c[K - 1] = x;
SPEC_UNROLL
        for (int j = K - 1; j > 0; j--) {
            uint64_t hi = c[j - 1] > c[j] ? c[j - 1] : c[j], lo = c[j - 1] > c[j] ? c[j] : c[j - 1];
            c[j - 1] = hi;
            c[j] = lo;
        }
    }
    // Drops the head (after it won a merge round).
    SPEC_HD void pop() {
SPEC_UNROLL
        for (int j = 0; j < K - 1; j++) c[j] = c[j + 1];
        c[K - 1] = 0;
    }
};

// ---------------------------------------------------------------- logits summaries
// spec_logits_summarize: a row's top-k by the composite order above, then softmax at temperature 1
// in double. The pieces both backends share, so that they differ only in summation order and exp.

// exp(x - max) in double, a logit's unnormalized softmax weight; z gets x - max. The maximum itself
// weighs 1 (so +inf logits share the mass instead of making inf - inf), NaN weighs 0.
SPEC_HD double summary_weight(float x, float max_logit, double &z) {
    z = 0.0;
    if (x == max_logit) return 1.0;
    if (!(x < max_logit)) return 0.0; // NaN, or a NaN maximum (a row of only NaN)
    z = (double)x - (double)max_logit;
    return exp(z);
}

// Adds a logit to the row's sums: S = sum e and W = sum e z, for H = log S - W / S.
SPEC_HD void summary_accumulate(float x, float max_logit, double &sum, double &weighted) {
    double z;
    const double e = summary_weight(x, max_logit, z);
    if (e > 0.0) { // underflowed terms, -inf logits included, must not add 0 * -inf
        sum += e;
        weighted += e * z;
    }
}

// Writes a row's summary from its k best composites (0 = none: a row shorter than k), their logits
// (top_logit[0] is the row's maximum) and the sums over the row.
SPEC_HD void summary_write(const uint64_t *top, const float *top_logit, int k, double sum, double weighted,
                           spec_logits_summary &out) {
    for (int j = 0; j < SPEC_SUMMARY_MAX_K; j++) {
        out.top[j] = j < k && top[j] ? (int32_t)composite_id(top[j]) : -1;
        out.prob[j] = 0.0f;
    }
    out.reserved = 0;
    if (!(sum > 0.0)) { // every logit NaN: the point mass at top[0], as verification has it
        out.prob[0] = 1.0f;
        out.entropy = 0.0f;
        return;
    }
    for (int j = 0; j < k; j++) {
        double z;
        if (top[j]) out.prob[j] = (float)(summary_weight(top_logit[j], top_logit[0], z) / sum);
    }
    const double h = log(sum) - weighted / sum;
    out.entropy = h > 0.0 ? (float)h : 0.0f;
}

// ---------------------------------------------------------------- integer probabilities

constexpr int WEIGHT_SHIFT = 40; // a weight is floor(e * 2^40), e in [0, 1]; 2^22 tokens still fit in 62 bits
constexpr uint64_t WEIGHT_ONE = (uint64_t)1 << WEIGHT_SHIFT;

// 2^t for t <= 0 from IEEE +, * and floor only, so host and device agree bit for bit.
// (Taylor series of 2^f on [0, 1) to degree 8: relative error below 1.1e-7.)
SPEC_HD float exp2_nonpos(float t) {
    if (!(t > -64.0f)) return 0.0f; // also nan; weights below 2^-64 are 0 anyway
    float n = floorf(t);
    float f = fsub(t, n);
    const float c1 = 0.693147180559945f, c2 = 0.240226506959101f, c3 = 0.0555041086648216f,
                c4 = 0.00961812910762848f, c5 = 0.00133335581464284f, c6 = 0.000154035303933816f,
                c7 = 1.52527338040598e-05f, c8 = 1.32154867901443e-06f;
    float p = fadd(fmul(f, c8), c7);
    p = fadd(fmul(f, p), c6);
    p = fadd(fmul(f, p), c5);
    p = fadd(fmul(f, p), c4);
    p = fadd(fmul(f, p), c3);
    p = fadd(fmul(f, p), c2);
    p = fadd(fmul(f, p), c1);
    p = fadd(fmul(f, p), 1.0f);
    int e = (int)n; // -64..0
    return fmul(p, bits_float((uint32_t)(e + 127) << 23));
}

// The unnormalized weight of a token: floor(exp((logit - max) / temperature) * 2^40).
// inv_temp = fdiv(1, temperature); max is the row's largest logit (ranked by order_key).
SPEC_HD uint64_t token_weight(float logit, float max_logit, float inv_temp) {
    if (logit == max_logit) return WEIGHT_ONE; // also +inf == +inf
    float z = fmul(fsub(logit, max_logit), inv_temp);
    float e = exp2_nonpos(fmul(z, 1.44269504088896f));
    return (uint64_t)fmul(e, 1099511627776.0f); // * 2^40 is exact; the cast truncates
}

// floor(q * W) for the residual max(p - q, 0) in weight units. q outside [0, 1] (or nan) clamps.
SPEC_HD uint64_t draft_weight(float q, uint64_t total) {
    if (!(q > 0.0f)) return 0;
    if (q >= 1.0f) return total;
    return (uint64_t)dmul((double)q, u64_to_double(total));
}

// Accept child token x with probability min(1, p(x) / q(x)) where p(x) = w / total.
SPEC_HD bool accept_draft(uint64_t r, uint64_t w, uint64_t total, float q) {
    if (w == 0) return false;
    if (!(q > 0.0f)) return true; // a token the drafter gave no mass: ratio is infinite
    double ratio = ddiv(u64_to_double(w), dmul(u64_to_double(total), (double)q));
    return uniform01(r) < ratio;
}

// The integer target of the top-p cut: ceil(top_p * total), kept within [1, total].
SPEC_HD uint64_t top_p_target(float top_p, uint64_t total) {
    double t = ceil(dmul((double)top_p, u64_to_double(total)));
    if (!(t >= 1.0)) return 1;
    if (t >= u64_to_double(total)) return total;
    uint64_t v = (uint64_t)t;
    return v < 1 ? 1 : (v > total ? total : v);
}

// ---------------------------------------------------------------- radix select
// Finds the pivot: the first token, in ranking order, at which a running integer statistic
// (1 per token for top-k, its weight for top-p) reaches a target. Eight passes of 8-bit digits
// over the 64-bit composite, from the top, over the tokens whose statistic is not 0 (the others
// can never be the pivot); a pass may stop early when its bin holds one token.

constexpr int RADIX_BINS = 256;
constexpr int RADIX_PASSES = 8;

SPEC_HD uint32_t radix_digit(uint64_t c, int pass) { return (uint32_t)(c >> (56 - 8 * pass)) & 255u; }
SPEC_HD bool radix_match(uint64_t c, uint64_t prefix, int pass) {
    return pass == 0 || (c >> (64 - 8 * pass)) == (prefix >> (64 - 8 * pass));
}
// Scans bins from the top; returns the bin where acc + stat reaches target and leaves in acc the
// statistic of everything ranked above that bin.
SPEC_HD int radix_choose(const uint64_t *stat, uint64_t &acc, uint64_t target) {
    for (int bin = RADIX_BINS - 1; bin > 0; bin--) {
        if (acc + stat[bin] >= target) return bin;
        acc += stat[bin];
    }
    return 0;
}

// ---------------------------------------------------------------- sampling

// Lanes of the canonical inverse-CDF order: token i belongs to lane i % SAMPLE_LANES; the order
// is lane by lane, ids ascending within a lane. (The cuda kernel runs one thread per lane.)
constexpr int SAMPLE_LANES = 1024;

// ---------------------------------------------------------------- trees

constexpr int MASK_WORDS = 4; // 128 nodes / 32 bits

// Bit j of node i's row: node j is i itself or one of its ancestors. parents is topological.
SPEC_HD void tree_mask_row(const int32_t *parents, int i, uint32_t *words) {
    for (int w = 0; w < MASK_WORDS; w++) words[w] = 0;
    for (int j = i; j >= 0; j = parents[j]) words[j >> 5] |= 1u << (j & 31);
}
SPEC_HD bool mask_bit(const uint32_t *words, int j) { return (words[j >> 5] >> (j & 31)) & 1u; }

} // namespace specula::km
