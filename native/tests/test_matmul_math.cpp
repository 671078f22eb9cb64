/* The per-element arithmetic of the cuda matrix products (native/core/matmul_math.hpp), checked
 * on the host: dequantization against the cpu backend's own kernel (its scalar set, compiled into
 * this test: the library's copy is hidden), the hi/lo split of activations, and a host emulation
 * of the tensor-core path's arithmetic against a double-precision reference. */
#include <stdint.h>

#include <cfloat>
#include <cmath>
#include <vector>

#include "check.h"
#include "../core/matmul_math.hpp"
#include "../cpu/kernels_scalar.cpp"
#include "test_random.hpp"

using namespace specula;


/* A finite f16 scale: any sign, any exponent (subnormals too). */
static uint16_t random_scale_bits(uint64_t &s) {
    for (;;) {
        uint16_t h = (uint16_t)splitmix64(s);
        if (((h >> 10) & 0x1f) != 0x1f) return h;
    }
}

static std::vector<uint8_t> random_quant_row(uint64_t &s, int32_t dtype, int64_t cols) {
    const int bb = dtype == SPEC_DTYPE_Q8_0 ? mm::Q8_0_BLOCK_BYTES : mm::Q4_0_BLOCK_BYTES;
    std::vector<uint8_t> row((size_t)(cols / mm::QK * bb));
    for (size_t b = 0; b < row.size() / bb; b++) {
        uint8_t *blk = row.data() + b * bb;
        /* every few blocks a scale picked to hit f16's edges, otherwise a typical one */
        uint16_t d = b % 5 == 0 ? random_scale_bits(s) : km::f32_to_f16(uniform(s, -0.05f, 0.05f));
        blk[0] = (uint8_t)d;
        blk[1] = (uint8_t)(d >> 8);
        for (int i = 2; i < bb; i++) blk[i] = (uint8_t)splitmix64(s);
    }
    return row;
}

/* The kernels' dequantization: chunk by chunk, as matmul.cu reads a block. */
static void dequant_like_kernels(int32_t dtype, const uint8_t *row, int64_t cols, float *out) {
    const int bb = dtype == SPEC_DTYPE_Q8_0 ? mm::Q8_0_BLOCK_BYTES : mm::Q4_0_BLOCK_BYTES;
    for (int64_t b = 0; b < cols / mm::QK; b++) {
        const uint8_t *blk = row + b * bb, *qs = blk + 2;
        const float d = mm::block_scale(blk);
        for (int c = 0; c < 4; c++)
            for (int i = 0; i < mm::CHUNK; i++) {
                int q = dtype == SPEC_DTYPE_Q8_0 ? mm::q8_0_value(qs[mm::q8_0_chunk_byte(c) + i])
                                                 : mm::q4_0_value(qs[mm::q4_0_chunk_byte(c) + i], mm::q4_0_chunk_shift(c));
                out[b * mm::QK + c * mm::CHUNK + i] = mm::dequant(q, d);
            }
    }
}

static bool same_bits(float a, float b) { return km::float_bits(a) == km::float_bits(b); }

static void test_dequant_matches_cpu_backend(void) {
    cpu::init_tables();
    const cpu::KernelSet *kern = cpu::kernels_scalar();
    uint64_t s = 11;
    const int32_t dtypes[] = {SPEC_DTYPE_Q8_0, SPEC_DTYPE_Q4_0};
    for (int32_t dtype : dtypes) {
        for (int rep = 0; rep < 200; rep++) {
            const int64_t cols = 32 * (1 + (int64_t)(splitmix64(s) % 16));
            std::vector<uint8_t> row = random_quant_row(s, dtype, cols);
            std::vector<float> want((size_t)cols), chunked((size_t)cols);
            kern->dequant(dtype, row.data(), cols, want.data());
            dequant_like_kernels(dtype, row.data(), cols, chunked.data());
            const int bb = dtype == SPEC_DTYPE_Q8_0 ? mm::Q8_0_BLOCK_BYTES : mm::Q4_0_BLOCK_BYTES;
            int bad = 0;
            for (int64_t k = 0; k < cols; k++) {
                const uint8_t *blk = row.data() + (k / 32) * bb;
                const int j = (int)(k % 32);
                const int q = dtype == SPEC_DTYPE_Q8_0 ? mm::q8_0_element(blk + 2, j) : mm::q4_0_element(blk + 2, j);
                const float elementwise = mm::dequant(q, mm::block_scale(blk));
                /* the value is exactly q*d, computed in double */
                const double exact = (double)q * (double)cpu::f16_to_f32(cpu::load_u16(blk));
                /* compared as values: the cpu backend's Q4_0 computes nibble*d - 8d, which gives +0
                 * where q*d gives -0 (d < 0, q = 0); no sum can tell them apart but an all-zero one */
                if (want[k] != chunked[k] || want[k] != elementwise || (double)want[k] != exact) bad++;
            }
            CHECK(bad == 0);
        }
    }
    /* 16-bit floats: every bit pattern widens as the cpu backend widens it */
    int bad = 0;
    for (uint32_t h = 0; h < 65536; h++) {
        if (!same_bits(mm::half_to_float((uint16_t)h), cpu::f16_to_f32((uint16_t)h))) bad++;
        if (!same_bits(km::bf16_to_f32((uint16_t)h), cpu::bf16_to_f32((uint16_t)h))) bad++;
    }
    CHECK(bad == 0);
}

/* Relative error of hi + lo (scaled back) against x, in double. */
static double split_error(float x, float scale, bool bf16) {
    const float xs = km::fmul(x, scale);
    const mm::Split16 p = bf16 ? mm::split_bf16(xs) : mm::split_f16(xs);
    const double hi = bf16 ? km::bf16_to_f32(p.hi) : km::f16_to_f32(p.hi);
    const double lo = bf16 ? km::bf16_to_f32(p.lo) : km::f16_to_f32(p.lo);
    const double rec = (hi + lo) / (double)scale;
    return x == 0.0f ? std::fabs(rec) : std::fabs(rec - (double)x) / std::fabs((double)x);
}

static void test_split(void) {
    uint64_t s = 23;
    /* the scale is an exact power of two that puts the largest |x| in [2^14, 2^15) */
    const float probes[] = {1.0f, 3.0f, 65504.0f, 1e-30f, 1e30f, FLT_MAX, 0.1f, 7e-5f, 0x1.0p-112f, FLT_MIN, 1e-40f};
    for (float a : probes) {
        const float sc = mm::split_scale(a);
        const float as = km::fmul(a, sc);
        /* below 2^-112 the clamp keeps s a normal float: no overflow, less precision */
        CHECK(as < 32768.0f && (as >= 16384.0f || a < 0x1.0p-112f));
        CHECK(km::fmul(as, mm::inverse_scale(sc)) == a);
        CHECK(km::fmul(mm::inverse_scale(sc), sc) == 1.0f);
    }
    CHECK(mm::split_scale(0.0f) == 1.0f);
    CHECK(mm::split_scale(INFINITY) == 1.0f);
    CHECK(mm::split_scale(NAN) == 1.0f);

    /* single values of every magnitude a token can have: each is the largest of its token */
    double worst_f16 = 0, worst_bf16 = 0;
    for (int rep = 0; rep < 200000; rep++) {
        const int e = (int)(splitmix64(s) % 250) - 125;
        float x = std::ldexp(uniform(s, 1.0f, 2.0f), e);
        if (rep & 1) x = -x;
        if (rep % 1000 == 0) x = 0.0f;
        const float sc = mm::split_scale(std::fabs(x));
        worst_f16 = std::fmax(worst_f16, split_error(x, sc, false));
        worst_bf16 = std::fmax(worst_bf16, split_error(x, sc, true));
    }
    /* and tokens: elements down to 2^-22 of the token's largest keep the promise */
    for (int rep = 0; rep < 2000; rep++) {
        const float big = std::ldexp(1.0f, (int)(splitmix64(s) % 200) - 100) * uniform(s, 1.0f, 2.0f);
        const float sc = mm::split_scale(big);
        for (int i = 0; i < 64; i++) {
            float x = big * std::ldexp(uniform(s, 0.5f, 1.0f), -(int)(splitmix64(s) % 22));
            if (i & 1) x = -x;
            worst_f16 = std::fmax(worst_f16, split_error(x, sc, false));
            worst_bf16 = std::fmax(worst_bf16, split_error(x, sc, true));
        }
    }
    printf("split: worst relative error f16 %.3g (2^%.1f), bf16 %.3g (2^%.1f)\n", worst_f16, std::log2(worst_f16),
           worst_bf16, std::log2(worst_bf16));
    CHECK(worst_f16 <= 0x1.0p-17);
    CHECK(worst_bf16 <= 0x1.0p-17);
}

/* ---------------------------------------------------------------- the tensor-core path, emulated */

struct Matrix {
    int32_t dtype;
    int64_t rows, cols;
    std::vector<uint8_t> bytes;
    int64_t row_bytes() const { return (int64_t)bytes.size() / rows; }
};

static Matrix random_matrix(uint64_t &s, int32_t dtype, int64_t rows, int64_t cols) {
    Matrix m{dtype, rows, cols, {}};
    for (int64_t r = 0; r < rows; r++) {
        std::vector<uint8_t> row;
        if (dtype == SPEC_DTYPE_Q8_0 || dtype == SPEC_DTYPE_Q4_0) {
            row.resize((size_t)(cols / 32 * (dtype == SPEC_DTYPE_Q8_0 ? 34 : 18)));
            const int bb = dtype == SPEC_DTYPE_Q8_0 ? 34 : 18;
            for (size_t b = 0; b < row.size() / bb; b++) {
                uint16_t d = km::f32_to_f16(uniform(s, -0.02f, 0.02f));
                row[b * bb] = (uint8_t)d;
                row[b * bb + 1] = (uint8_t)(d >> 8);
                for (int i = 2; i < bb; i++) row[b * bb + i] = (uint8_t)splitmix64(s);
            }
        } else {
            row.resize((size_t)cols * 2);
            for (int64_t k = 0; k < cols; k++) {
                float w = uniform(s, -1.0f, 1.0f);
                uint16_t h = dtype == SPEC_DTYPE_F16 ? km::f32_to_f16(w) : km::f32_to_bf16(w);
                row[2 * k] = (uint8_t)h;
                row[2 * k + 1] = (uint8_t)(h >> 8);
            }
        }
        m.bytes.insert(m.bytes.end(), row.begin(), row.end());
    }
    return m;
}

/* Element k of row r, as the integer or 16-bit value mma multiplies, and the block's scale
 * (1 for 16-bit floats). */
static float mma_operand(const Matrix &m, int64_t r, int64_t k, float *scale) {
    const uint8_t *row = m.bytes.data() + r * m.row_bytes();
    if (m.dtype == SPEC_DTYPE_Q8_0 || m.dtype == SPEC_DTYPE_Q4_0) {
        const int bb = m.dtype == SPEC_DTYPE_Q8_0 ? 34 : 18;
        const uint8_t *blk = row + (k / 32) * bb;
        *scale = mm::block_scale(blk);
        return (float)(m.dtype == SPEC_DTYPE_Q8_0 ? mm::q8_0_element(blk + 2, (int)(k % 32))
                                                   : mm::q4_0_element(blk + 2, (int)(k % 32)));
    }
    *scale = 1.0f;
    const uint16_t h = (uint16_t)(row[2 * k] | row[2 * k + 1] << 8);
    return m.dtype == SPEC_DTYPE_F16 ? km::f16_to_f32(h) : km::bf16_to_f32(h);
}

/* One output the way the tensor-core kernel computes it: the token split into scaled 16-bit
 * parts; per 32-wide k tile the hi then lo products of each 16-wide step summed in f32, straight
 * into the accumulator for 16-bit weights, through a block partial and add_scaled_block for
 * quantized ones; then finish_output. (Tensor cores add inside an mma in their own order; any
 * order obeys the same error bound.) */
static float emulate_mma_output(const Matrix &m, int64_t r, const float *x, float previous, bool accumulate) {
    const bool bf16 = m.dtype == SPEC_DTYPE_BF16, quant = m.dtype == SPEC_DTYPE_Q8_0 || m.dtype == SPEC_DTYPE_Q4_0;
    float absmax = 0.0f;
    for (int64_t k = 0; k < m.cols; k++) absmax = std::fmax(absmax, std::fabs(x[k]));
    const float sc = mm::split_scale(absmax);
    float acc = 0.0f;
    for (int64_t k0 = 0; k0 < m.cols; k0 += 32) {
        float partial = 0.0f, d = 1.0f;
        float &target = quant ? partial : acc;
        for (int64_t h = k0; h < k0 + 32 && h < m.cols; h += 16)
            for (int part = 0; part < 2; part++)
                for (int64_t k = h; k < h + 16 && k < m.cols; k++) {
                    const mm::Split16 p = bf16 ? mm::split_bf16(km::fmul(x[k], sc)) : mm::split_f16(km::fmul(x[k], sc));
                    const uint16_t bits = part ? p.lo : p.hi;
                    const float xv = bf16 ? km::bf16_to_f32(bits) : km::f16_to_f32(bits);
                    target = km::fadd(target, km::fmul(mma_operand(m, r, k, &d), xv)); /* the product is exact */
                }
        if (quant) acc = mm::add_scaled_block(acc, d, partial);
    }
    return mm::finish_output(acc, mm::inverse_scale(sc), accumulate, previous);
}

static void test_tensor_core_emulation(void) {
    uint64_t s = 37;
    const int32_t dtypes[] = {SPEC_DTYPE_F16, SPEC_DTYPE_BF16, SPEC_DTYPE_Q8_0, SPEC_DTYPE_Q4_0};
    const int64_t shapes[][2] = {{24, 96}, {16, 2048}, {8, 5632}};
    /* Rigorous bound on |y - exact| / sum_k |w_k x_k|: 2^-17 for the split, plus f32 rounding of
     * every addition on the way (at most K/32 + 64 of them in a quantized chain, K in a 16-bit
     * one), each below 2^-24. The split alone can cost 2^-17 when one product dominates the sum
     * (the outlier token); the cuda test (tests/cuda/test_cuda_matmul.cu) allows 2^-16 on the
     * tensor-core path, so the observed error must also stay below that. */
    double worst_seen = 0;
    for (int32_t dtype : dtypes)
        for (const auto &shape : shapes) {
            const int64_t rows = shape[0], cols = shape[1];
            Matrix m = random_matrix(s, dtype, rows, cols);
            const bool quant = dtype == SPEC_DTYPE_Q8_0 || dtype == SPEC_DTYPE_Q4_0;
            const double bound = 0x1.0p-17 + (double)(quant ? cols / 32 + 64 : cols + 32) * 0x1.0p-24;
            for (int t = 0; t < 6; t++) {
                /* tokens of very different sizes, one with a single outlier */
                const float mag = std::ldexp(1.0f, 12 * t - 30);
                std::vector<float> x((size_t)cols);
                for (auto &v : x) v = uniform(s, -mag, mag);
                if (t == 3) x[(size_t)cols / 2] = 1000.0f * mag;
                for (int64_t r = 0; r < rows; r++) {
                    double exact = 0, magnitude = 0;
                    for (int64_t k = 0; k < cols; k++) {
                        float d;
                        const double w = (double)mma_operand(m, r, k, &d) * d;
                        exact += w * x[(size_t)k];
                        magnitude += std::fabs(w * x[(size_t)k]);
                    }
                    const float prev = uniform(s, -1.0f, 1.0f) * (float)(magnitude / std::sqrt((double)cols));
                    const bool accumulate = (r & 1) != 0;
                    const float y = emulate_mma_output(m, r, x.data(), prev, accumulate);
                    const double want = exact + (accumulate ? prev : 0.0);
                    /* accumulating adds one more rounding of the result's size */
                    const double err = std::fabs((double)y - want) - (accumulate ? std::fabs(want) * 0x1.0p-24 : 0.0);
                    const double ratio = magnitude > 0 ? err / magnitude : std::fabs((double)y - want);
                    if (ratio > worst_seen) worst_seen = ratio;
                    CHECK(ratio <= bound);
                }
            }
        }
    printf("tensor-core emulation: worst |err| / sum|w x| = %.3g\n", worst_seen);
    CHECK(worst_seen <= 0x1.0p-16);
}

int main(void) {
    test_dequant_matches_cpu_backend();
    test_split();
    test_tensor_core_emulation();
    (void)error_mentions; /* check.h's ABI helper: this test calls no ABI */
    return check_finish("test_matmul_math");
}
