/* The cpu backend's k-quant int8 products (native/cpu/kquant_dot.hpp), block by block:
 *   - the activation quantizer: llama.cpp's q8_K (the first largest |x| becomes -127, every q within
 *     half a step of x / d, the sums of 16);
 *   - the definition's unpacking of each super-block (Q2_K..Q6_K) against the independent scalar
 *     reference (quant_reference.hpp): d*sc*u - dmin*cr (or d*sc*(u - offset)) is every weight;
 *   - every kernel set this CPU runs (scalar, avx2, avx512, avx512 with VNNI): its packed rows are
 *     the definition's bytes, and its in-place tile (every token count) and its gemm (every token
 *     count and row offset) give exactly the definition's bits, on random blocks, blocks with
 *     extreme f16 scales, all-ones and all-zero blocks, against activations with an all-zero
 *     super-block and a lone outlier;
 *   - and the result is close to the exact product with the unquantized activations.
 * Links the library's objects to reach the kernel sets directly. */
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <vector>

#include "check.h"
#include "quant_reference.hpp"
#include "test_random.hpp"
#include "../cpu/kernels.hpp"
#include "../cpu/kquant_dot.hpp"
#include "specula.h"

using namespace specula::cpu;

namespace {

const int32_t kTypes[] = {SPEC_DTYPE_Q4_K, SPEC_DTYPE_Q6_K, SPEC_DTYPE_Q5_K, SPEC_DTYPE_Q3_K, SPEC_DTYPE_Q2_K};

void put_half(uint8_t *p, uint16_t h) {
    p[0] = (uint8_t)h;
    p[1] = (uint8_t)(h >> 8);
}

// Super-block b of a test row: kind cycles through random bytes with a typical scale (most
// blocks), any finite f16 scale, the extremes (largest, smallest subnormal), all ones, all zeros.
void fill_block(uint64_t &s, int32_t dtype, int b, bool extremes, uint8_t *blk) {
    const int bb = quant_ref::bytes(dtype);
    int d_at, min_at;
    quant_ref::scale_offsets(dtype, &d_at, &min_at);
    const int kind = extremes ? b % 8 : 0;
    for (int i = 0; i < bb; i++) blk[i] = kind == 5 ? 0 : kind == 4 ? 0xFF : (uint8_t)splitmix64(s);
    if (kind == 5) return;
    uint16_t d, m;
    switch (kind) {
    case 1: d = f32_to_f16((float)std::ldexp(1.0 + unit(s), -(int)(splitmix64(s) % 20))), m = f32_to_f16(-(float)unit(s)); break;
    case 2: d = 0x7bff, m = 0xfbff; break; /* 65504, -65504 */
    case 3: d = 0x0001, m = 0x8000; break; /* 2^-24, -0 */
    case 4: d = 0x3c00, m = 0xbc00; break;
    default: d = f32_to_f16((float)(0.01 * unit(s))), m = f32_to_f16((float)(0.05 * (2 * unit(s) - 1))); break;
    }
    put_half(blk + d_at, d);
    if (min_at >= 0) put_half(blk + min_at, m);
}

int16_t i16(const uint8_t *p, int i) {
    int16_t v;
    std::memcpy(&v, p + 2 * i, 2);
    return v;
}
float f32(const uint8_t *p) {
    float v;
    std::memcpy(&v, p, 4);
    return v;
}

// The unpacked block's weights against the reference decoder, bit for bit.
int check_unpack(int32_t dtype, const uint8_t *blk) {
    uint8_t u[KQ_W_BYTES];
    kq_unpack_generic(dtype, blk, u);
    float ref[256];
    quant_ref::dequant_block(dtype, blk, ref);
    const double d = f32(u + KQ_W_D), dmin = f32(u + KQ_W_DMIN);
    const int offset = dtype == SPEC_DTYPE_Q6_K ? 32 : dtype == SPEC_DTYPE_Q3_K ? 4 : 0;
    int bad = 0;
    for (int e = 0; e < 256; e++) {
        const int s = e / 16, sc = i16(u + KQ_W_SC, s), cr = i16(u + KQ_W_CR, s);
        if (offset) {
            if (cr != offset * sc) bad++;
        }
        const double w = kq_has_min(dtype) ? d * sc * u[e] - dmin * cr : d * sc * (u[e] - offset);
        const float wf = (float)w;
        if (std::memcmp(&wf, &ref[e], 4) != 0 && !(std::isnan(wf) && std::isnan(ref[e]))) bad++;
    }
    return bad;
}

// The definition (kquant_dot.hpp), from the unpacked weights and the quantized activations.
float definition(const uint8_t *w, const uint8_t *qx, int64_t nsb, bool min) {
    float F[8] = {};
    for (int64_t b = 0; b < nsb; b++) {
        const uint8_t *wb = w + b * KQ_W_BYTES, *xb = qx + b * KQ_X_BYTES;
        const int8_t *xq = (const int8_t *)xb;
        const float d = f32(wb + KQ_W_D), dmin = f32(wb + KQ_W_DMIN), dx = f32(xb + KQ_X_D);
        for (int l = 0; l < 8; l++) {
            int64_t a = 0;
            for (int k = 0; k < 8; k++)
                for (int i = 0; i < 4; i++) {
                    const int e = 32 * k + 4 * l + i;
                    a += (int64_t)i16(wb + KQ_W_SC, e / 16) * wb[e] * xq[e];
                }
            const int64_t c = (int64_t)i16(wb + KQ_W_CR, 2 * l) * i16(xb + KQ_X_BSUM, 2 * l) +
                              (int64_t)i16(wb + KQ_W_CR, 2 * l + 1) * i16(xb + KQ_X_BSUM, 2 * l + 1);
            CHECK(std::llabs(a) < (1ll << 31) && std::llabs(c) < (1ll << 31));
            volatile float ddx = d * dx; // volatile: every step rounded on its own, never fused
            if (!min) {
                volatile float term = ddx * (float)(int32_t)(a - c);
                F[l] = F[l] + term;
            } else {
                volatile float dmx = dmin * dx;
                volatile float term = ddx * (float)(int32_t)a, mterm = dmx * (float)(int32_t)c;
                F[l] = F[l] + term;
                F[l] = F[l] - mterm;
            }
        }
    }
    return kq_lane_sum(F);
}

std::vector<float> random_acts(uint64_t &s, int64_t K) {
    std::vector<float> x((size_t)K);
    const double amp = std::ldexp(1.0, (int)(splitmix64(s) % 10) - 4);
    for (auto &v : x) v = (float)(amp * (2.0 * unit(s) - 1.0));
    if (K >= 512) { // an all-zero super-block and one with a lone large value (negative: the scale's sign)
        for (int e = 0; e < 256; e++) {
            x[(size_t)e] = 0.0f;
            if (e == 77) x[(size_t)(256 + e)] = (float)(-amp * 1000);
        }
    }
    return x;
}

// llama.cpp's q8_K, checked by its properties.
void check_quantizer(uint64_t &s) {
    int bad = 0;
    for (int rep = 0; rep < 50; rep++) {
        std::vector<float> x = random_acts(s, 1024);
        uint8_t q[4 * KQ_X_BYTES];
        kq_quantize_row(x.data(), 1024, q);
        for (int b = 0; b < 4; b++) {
            const uint8_t *qb = q + b * KQ_X_BYTES;
            const float *xb = x.data() + b * 256;
            const float d = f32(qb + KQ_X_D);
            int first = -1;
            float amax = 0;
            for (int e = 0; e < 256; e++)
                if (std::fabs(xb[e]) > amax) amax = std::fabs(xb[e]), first = e;
            for (int j = 0; j < 16; j++) {
                int sum = 0;
                for (int e = 0; e < 16; e++) sum += (int8_t)qb[16 * j + e];
                if (sum != i16(qb + KQ_X_BSUM, j)) bad++;
            }
            if (first < 0) {
                if (d != 0.0f) bad++;
                for (int e = 0; e < 256; e++) bad += qb[e] != 0;
                continue;
            }
            if ((int8_t)qb[first] != -127) bad++;
            if ((d > 0) == (xb[first] > 0)) bad++; // d = -max/127
            for (int e = 0; e < 256; e++) {
                const int8_t v = (int8_t)qb[e];
                if (v < -127 || std::fabs((double)xb[e] - (double)d * v) > std::fabs((double)d) * 0.5000001) bad++;
            }
        }
    }
    CHECK(bad == 0);
}

void check_set(const KernelSet *ks) {
    const KqSet &q = *ks->kq;
    uint64_t s = 1234;
    int checked = 0, mismatched = 0, pack_bad = 0;
    double worst = 0.0;
    for (int32_t dtype : kTypes) {
        const int bb = quant_ref::bytes(dtype);
        const bool min = kq_has_min(dtype);
        for (int64_t K : {256, 512, 2048, 5632}) {
            const int64_t nsb = K / 256;
            const int n_rows = 5, n_tok = 9;
            for (int extremes = 0; extremes < 2; extremes++) {
                std::vector<std::vector<uint8_t>> rows((size_t)n_rows, std::vector<uint8_t>((size_t)(nsb * bb)));
                std::vector<uint8_t> packed((size_t)(n_rows * nsb * KQ_W_BYTES)), want_packed(packed.size());
                for (int r = 0; r < n_rows; r++) {
                    for (int64_t b = 0; b < nsb; b++) fill_block(s, dtype, (int)(b + r), extremes, rows[(size_t)r].data() + b * bb);
                    q.pack(dtype, rows[(size_t)r].data(), K, packed.data() + r * nsb * KQ_W_BYTES, nullptr, 0);
                    for (int64_t b = 0; b < nsb; b++)
                        kq_unpack_generic(dtype, rows[(size_t)r].data() + b * bb, want_packed.data() + (r * nsb + b) * KQ_W_BYTES);
                }
                if (std::memcmp(packed.data(), want_packed.data(), packed.size()) != 0 && pack_bad++ < 3)
                    fprintf(stderr, "  %s pack dtype %d K %lld: bytes differ from the definition's unpacking\n", q.name, dtype, (long long)K);
                const int64_t xs = nsb * KQ_X_BYTES;
                std::vector<std::vector<float>> xv;
                std::vector<uint8_t> qx((size_t)(n_tok * xs));
                for (int t = 0; t < n_tok; t++) {
                    xv.push_back(random_acts(s, K));
                    kq_quantize_row(xv.back().data(), K, qx.data() + t * xs);
                }
                auto want = [&](int r, int t) { return definition(want_packed.data() + r * nsb * KQ_W_BYTES, qx.data() + t * xs, nsb, min); };
                auto compare = [&](const char *what, int T, int r, int t, float got) {
                    const float w = want(r, t);
                    checked++;
                    if (std::memcmp(&w, &got, 4) != 0 && !(std::isnan(w) && std::isnan(got)) && mismatched++ < 5)
                        fprintf(stderr, "  %s %s dtype %d K %lld T %d row %d tok %d: %.9g, want %.9g\n", q.name, what, dtype, (long long)K, T, r,
                                t, got, w);
                };
                CHECK(q.tile_tokens <= n_tok);
                for (int T = 1; T <= q.tile_tokens; T++)
                    for (int r = 0; r < n_rows; r++) {
                        const int t0 = std::min(T - 1, n_tok - T); // tokens at varying offsets
                        float out[16];
                        q.tile(dtype, rows[(size_t)r].data(), K, qx.data() + t0 * xs, xs, T, out, nullptr, 0);
                        for (int t = 0; t < T; t++) compare("tile", T, r, t0 + t, out[t]);
                    }
                for (int T = 1; T <= q.tokens; T++)
                    for (int t0 = 0; t0 + T <= n_tok; t0 += 2)
                        for (int r0 = 0; r0 < n_rows; r0 += 2) {
                            const uint8_t *rp[16];
                            for (int i = 0; i < q.rows; i++) rp[i] = packed.data() + std::min(r0 + i, n_rows - 1) * nsb * KQ_W_BYTES;
                            float out[64];
                            q.gemm(dtype, rp, nsb, qx.data() + t0 * xs, xs, T, out);
                            for (int t = 0; t < T; t++)
                                for (int i = 0; i < q.rows; i++) compare("gemm", T, std::min(r0 + i, n_rows - 1), t0 + t, out[t * q.rows + i]);
                        }
                if (extremes) continue;
                // close to the exact product with f32 activations: each x moves by at most amax(its 256) / 254
                for (int r = 0; r < n_rows; r++)
                    for (int t = 0; t < n_tok; t++) {
                        double exact = 0, mag = 0;
                        for (int64_t b = 0; b < nsb; b++) {
                            float wdq[256];
                            quant_ref::dequant_block(dtype, rows[(size_t)r].data() + b * bb, wdq);
                            double amax = 0;
                            for (int e = 0; e < 256; e++) amax = std::max(amax, (double)std::fabs(xv[(size_t)t][(size_t)(b * 256 + e)]));
                            for (int e = 0; e < 256; e++) {
                                exact += (double)wdq[e] * xv[(size_t)t][(size_t)(b * 256 + e)];
                                mag += std::fabs((double)wdq[e]) * amax;
                            }
                        }
                        if (mag > 0) worst = std::max(worst, std::fabs(want(r, t) - exact) / mag);
                    }
            }
        }
    }
    CHECK(pack_bad == 0);
    CHECK(mismatched == 0);
    CHECK(worst < 4.5e-3);
    printf("  %-12s %d products bit-identical to the definition; |error| vs f32 activations <= %.2e of sum |w| amax\n", q.name, checked,
           worst);
}

} // namespace

int main(void) {
    (void)error_mentions; // check.h's, for the ABI tests
    init_tables();
    uint64_t s = 99;
    check_quantizer(s);
    int unpack_bad = 0;
    for (int32_t dtype : kTypes) {
        std::vector<uint8_t> blk((size_t)quant_ref::bytes(dtype));
        for (int b = 0; b < 400; b++) {
            fill_block(s, dtype, b, true, blk.data());
            unpack_bad += check_unpack(dtype, blk.data());
        }
    }
    CHECK(unpack_bad == 0);
    const KernelSet *sets[] = {kernels_scalar(), kernels_avx2(), kernels_avx512(), kernels_avx512_vnni()};
    const char *needs[] = {nullptr, "avx2", "avx512bw", "avx512vnni"};
    __builtin_cpu_init();
    for (int i = 0; i < 4; i++) {
        if (!sets[i] || !sets[i]->kq) continue;
        bool ok = true;
        if (i == 1) ok = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
        if (i == 2) ok = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq");
        if (i == 3) ok = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vnni");
        if (!ok) {
            printf("  %-12s not run: this CPU lacks %s\n", sets[i]->kq->name, needs[i]);
            continue;
        }
        check_set(sets[i]);
    }
    return check_finish("test_kquant_dot");
}
