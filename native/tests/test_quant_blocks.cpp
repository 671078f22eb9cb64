/* The GGML block formats beyond Q8_0 / Q4_0 (native/core/quant_blocks.hpp), block by block:
 *   - the shared decoders (whole block, one element, model_math's dequant_element) against an
 *     independent scalar reference (quant_reference.hpp) on random blocks, blocks with extreme
 *     f16 scales (subnormal, the largest, both signs) and all-zero blocks, bit for bit;
 *   - every cpu kernel set this CPU runs (scalar, AVX2, AVX-512): dequant equals the reference,
 *     and the few-token tile equals the many-token gemm over the dequantized rows, bit for bit,
 *     for every token count, so a token's logits do not depend on its batch.
 * It calls the kernel sets directly, so it links the library's objects (internal symbols). */
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <vector>

#include "check.h"
#include "../core/internal.hpp"
#include "../core/model_math.hpp"
#include "../core/quant_blocks.hpp"
#include "../cpu/kernels.hpp"
#include "quant_reference.hpp"
#include "test_random.hpp"

using namespace specula;

namespace {

const int32_t kTypes[] = {SPEC_DTYPE_Q4_1, SPEC_DTYPE_Q5_0, SPEC_DTYPE_Q5_1, SPEC_DTYPE_Q2_K,
                          SPEC_DTYPE_Q3_K, SPEC_DTYPE_Q4_K, SPEC_DTYPE_Q5_K, SPEC_DTYPE_Q6_K};

bool same_bits(float a, float b) { return km::float_bits(a) == km::float_bits(b); }

void put_half(uint8_t *p, uint16_t h) {
    p[0] = (uint8_t)h;
    p[1] = (uint8_t)(h >> 8);
}

uint16_t finite_half(uint64_t &s) {
    for (;;) {
        const uint16_t h = (uint16_t)splitmix64(s);
        if (((h >> 10) & 31) != 31) return h;
    }
}

// Block b of a test row: kind cycles through random bytes with a typical scale, any finite f16
// scale, the extremes (largest, smallest subnormal, negative zero), all ones, all zeros.
void fill_block(uint64_t &s, int32_t dtype, int b, uint8_t *blk) {
    const int bb = quant_ref::bytes(dtype);
    int d_at, min_at;
    quant_ref::scale_offsets(dtype, &d_at, &min_at);
    const int kind = b % 6;
    for (int i = 0; i < bb; i++) blk[i] = kind == 5 ? 0 : kind == 4 ? 0xFF : (uint8_t)splitmix64(s);
    if (kind == 5) return;
    uint16_t d, m;
    switch (kind) {
    case 0: d = km::f32_to_f16(uniform(s, 0.0f, 0.01f)), m = km::f32_to_f16(uniform(s, -0.05f, 0.05f)); break;
    case 1: d = finite_half(s), m = finite_half(s); break;
    case 2: d = 0x7bff, m = 0xfbff; break; /* 65504, -65504 */
    case 3: d = 0x0001, m = 0x8000; break; /* 2^-24, -0 */
    default: d = 0x3c00, m = 0xbc00; break;
    }
    put_half(blk + d_at, d);
    if (min_at >= 0) put_half(blk + min_at, m);
}

std::vector<uint8_t> random_row(uint64_t &s, int32_t dtype, int64_t cols) {
    const int be = quant_ref::elems(dtype), bb = quant_ref::bytes(dtype);
    std::vector<uint8_t> row((size_t)(cols / be * bb));
    for (int64_t b = 0; b < cols / be; b++) fill_block(s, dtype, (int)b, row.data() + b * bb);
    return row;
}

void test_decoders_against_reference() {
    uint64_t s = 11;
    for (int32_t dt : kTypes) {
        const int be = qb::block_elems(dt), bb = qb::block_bytes(dt);
        CHECK(be == quant_ref::elems(dt) && bb == quant_ref::bytes(dt));
        CHECK(dtype_row_bytes(dt, 4096) == (uint64_t)(4096 / be * bb));
        CHECK(dtype_row_bytes(dt, be == 256 ? 4096 + 32 : 4096 + 16) == 0);
        int bad = 0, checked = 0, zeros_ok = 1;
        for (int b = 0; b < 600; b++) {
            uint8_t blk[256];
            float want[256], got[256];
            fill_block(s, dt, b, blk);
            quant_ref::dequant_block(dt, blk, want);
            qb::decode_block(dt, blk, got);
            for (int j = 0; j < be; j++) {
                const float e = qb::block_element(dt, blk, j);
                const float m = mm::dequant_element(dt, blk, j);
                checked++;
                if (!same_bits(got[j], want[j]) || !same_bits(e, want[j]) || !same_bits(m, want[j])) {
                    if (bad++ < 3)
                        fprintf(stderr, "  %s block %d element %d: reference %a, block %a, element %a, dequant_element %a\n",
                                dtype_name(dt), b, j, want[j], got[j], e, m);
                }
                if (b % 6 == 5 && got[j] != 0.0f) zeros_ok = 0;
            }
        }
        CHECK(bad == 0);
        CHECK(zeros_ok);
        printf("  %-5s %d elements decoded as the reference (block, element, dequant_element)\n", dtype_name(dt), checked);
    }
}

struct Set {
    const char *name;
    const cpu::KernelSet *k;
};

std::vector<Set> kernel_sets() {
    cpu::init_tables();
    std::vector<Set> sets{{"scalar", cpu::kernels_scalar()}};
#if defined(__x86_64__) && defined(__GNUC__)
    __builtin_cpu_init();
    const bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c");
    if (avx2 && cpu::kernels_avx2()) sets.push_back({"avx2", cpu::kernels_avx2()});
    if (avx2 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl") &&
        __builtin_cpu_supports("avx512dq") && cpu::kernels_avx512())
        sets.push_back({"avx512", cpu::kernels_avx512()});
#endif
    return sets;
}

void test_kernels() {
    uint64_t s = 23;
    const int64_t K = 768; // three super-blocks, 24 legacy blocks
    for (const Set &set : kernel_sets()) {
        const cpu::KernelSet &k = *set.k;
        for (int32_t dt : kTypes) {
            const int be = qb::block_elems(dt);
            // Four rows with sane scales only (kind 0) for the products: extreme ones overflow them.
            std::vector<std::vector<uint8_t>> rows(4);
            std::vector<std::vector<float>> deq(4, std::vector<float>((size_t)K));
            int deq_bad = 0;
            for (int r = 0; r < 4; r++) {
                rows[r] = random_row(s, dt, K);
                const int bb = qb::block_bytes(dt);
                for (int64_t b = 0; b < K / be; b++)
                    if (b % 6 != 0 && b % 6 != 5) fill_block(s, dt, 0, rows[r].data() + b * bb); // kind 0
                k.dequant(dt, rows[r].data(), K, deq[r].data());
                std::vector<float> want((size_t)K);
                for (int64_t b = 0; b < K / be; b++) quant_ref::dequant_block(dt, rows[r].data() + b * bb, want.data() + b * be);
                for (int64_t i = 0; i < K; i++) {
                    if (!same_bits(deq[r][i], want[i]) && deq_bad < 3) fprintf(stderr, "  row %d element %lld: %a vs %a\n", r, (long long)i, deq[r][i], want[i]);
                    deq_bad += !same_bits(deq[r][i], want[i]);
                }
            }
            { // every kind of block (extreme scales too) through the kernel set's dequant
                const std::vector<uint8_t> all = random_row(s, dt, K);
                std::vector<float> got((size_t)K), want((size_t)K);
                k.dequant(dt, all.data(), K, got.data());
                const int bb = qb::block_bytes(dt);
                for (int64_t b = 0; b < K / be; b++) quant_ref::dequant_block(dt, all.data() + b * bb, want.data() + b * be);
                for (int64_t i = 0; i < K; i++) {
                    if (!same_bits(got[i], want[i]) && deq_bad < 3)
                        fprintf(stderr, "  %s %s element %lld (block kind %lld): kernel %a, reference %a\n", set.name, dtype_name(dt),
                                (long long)i, (long long)(i / be % 6), got[i], want[i]);
                    deq_bad += !same_bits(got[i], want[i]);
                }
            }
            if (deq_bad) fprintf(stderr, "  %s %s: %d dequantized elements differ from the reference\n", set.name, dtype_name(dt), deq_bad);
            CHECK(deq_bad == 0);
            const int T = k.gemm_t;
            std::vector<float> X((size_t)(T * K));
            for (float &x : X) x = uniform(s);
            // gemm over the dequantized rows (gemm_r of them: repeat the last), all T tokens, k in two blocks
            std::vector<const float *> rp;
            for (int r = 0; r < k.gemm_r; r++) rp.push_back(deq[r < 4 ? r : 3].data());
            std::vector<float> acc((size_t)k.gemm_r * T * k.lanes), ref((size_t)T * k.gemm_r);
            const int64_t mid = K / 2 / k.lanes * k.lanes;
            k.gemm(rp.data(), 0, mid, K, X.data(), K, T, acc.data(), ref.data());
            k.gemm(rp.data(), mid, K, K, X.data(), K, T, acc.data(), ref.data());
            int tile_bad = 0;
            const uint8_t *rr[4] = {rows[0].data(), rows[1].data(), rows[2].data(), rows[3].data()};
            for (int t0 = 0; t0 < T; t0 += k.tmax) {
                const int n = T - t0 < k.tmax ? T - t0 : k.tmax;
                for (int tn = 1; tn <= n; tn++) { // every token count the tile takes
                    float out[4 * 8];
                    k.tile(dt, rr, K, X.data() + t0 * K, K, tn, out, rows[0].data(), 64);
                    for (int t = 0; t < tn; t++)
                        for (int r = 0; r < (k.gemm_r < 4 ? k.gemm_r : 4); r++)
                            tile_bad += !same_bits(out[t * 4 + r], ref[(t0 + t) * k.gemm_r + r]);
                }
            }
            if (tile_bad) fprintf(stderr, "  %s %s: %d tile outputs differ from gemm\n", set.name, dtype_name(dt), tile_bad);
            CHECK(tile_bad == 0);
            printf("  %-6s %-5s dequant = reference, tile = gemm bit for bit\n", set.name, dtype_name(dt));
        }
    }
}

} // namespace

int main() {
    (void)error_mentions;
    test_decoders_against_reference();
    test_kernels();
    return check_finish("test_quant_blocks");
}
