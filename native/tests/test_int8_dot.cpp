/* The cpu backend's int8 products (native/cpu/int8_dot.hpp) against their definition, written
 * out here in plain integers and floats: every kernel set this CPU runs (scalar, avx2, avx512,
 * avx512 with VNNI) must give exactly those bits, for every token count per call, every place of a
 * row among the rows of a call, and row lengths with padded groups. Links the library's objects
 * to reach the kernel sets directly. */
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <algorithm>
#include <vector>

#include "check.h"
#include "test_random.hpp"
#include "../cpu/int8_dot.hpp"
#include "../cpu/kernels.hpp"
#include "specula.h"

using namespace specula::cpu;

namespace {

struct Rng {
    uint64_t s;
    explicit Rng(uint64_t seed) : s(seed) {}
    double uniform() { return unit(s); }
    int below(int n) { return (int)(splitmix64(s) % (uint64_t)n); }
};

struct Row {
    std::vector<uint8_t> bytes;
    std::vector<int> q;     // the integers
    std::vector<float> d;   // per block
};

Row random_row(Rng &r, int32_t dtype, int64_t K) {
    Row w;
    const int64_t nb = K / 32;
    for (int64_t b = 0; b < nb; b++) {
        // scales over a wide range, some zero; values including the extremes
        const float d = r.below(10) == 0 ? 0.0f : (float)std::ldexp(0.5 + r.uniform(), -(int)r.below(12));
        const uint16_t h = f32_to_f16(d);
        w.d.push_back(f16_to_f32(h));
        w.bytes.push_back((uint8_t)(h & 255));
        w.bytes.push_back((uint8_t)(h >> 8));
        if (dtype == SPEC_DTYPE_Q8_0) {
            for (int e = 0; e < 32; e++) {
                const int v = r.below(8) == 0 ? (r.below(2) ? 127 : -128) : (int)r.below(255) - 127;
                w.q.push_back(v);
                w.bytes.push_back((uint8_t)(int8_t)v);
            }
        } else {
            uint8_t qs[16];
            int vals[32];
            for (int e = 0; e < 32; e++) vals[e] = (int)r.below(16);
            for (int e = 0; e < 16; e++) qs[e] = (uint8_t)(vals[e] | vals[e + 16] << 4);
            for (int e = 0; e < 32; e++) w.q.push_back(vals[e] - 8);
            w.bytes.insert(w.bytes.end(), qs, qs + 16);
        }
    }
    return w;
}

std::vector<float> random_acts(Rng &r, int64_t K) {
    std::vector<float> x((size_t)K);
    const double amp = std::ldexp(1.0, (int)r.below(10) - 4);
    for (auto &v : x) v = (float)(amp * (2.0 * r.uniform() - 1.0));
    if (K >= 64) // an all-zero block and a block with one large value
        for (int e = 0; e < 32; e++) {
            x[(size_t)e] = 0.0f;
            x[(size_t)(32 + e)] = e == 5 ? (float)(amp * 1000) : x[(size_t)(32 + e)];
        }
    return x;
}

// The definition (int8_dot.hpp), from the row's integers and the quantized activations.
float definition(const Row &w, const uint8_t *qx, int64_t K) {
    float lane[16] = {};
    for (int64_t b = 0; b < K / 32; b++) {
        const uint8_t *g = qx + (b / 16) * INT8_X_GROUP_BYTES;
        const int j = (int)(b % 16);
        int32_t isum = 0;
        for (int e = 0; e < 32; e++) isum += w.q[(size_t)(b * 32 + e)] * (int8_t)g[64 * (e / 4) + 4 * j + e % 4];
        float dx;
        std::memcpy(&dx, g + INT8_X_SCALE + 4 * j, 4);
        volatile float d = w.d[(size_t)b] * dx; // volatile: two roundings, never fused
        volatile float term = d * (float)isum;
        lane[j] = lane[j] + term;
    }
    return int8_lane_sum(lane);
}

void check_set(const KernelSet *ks) {
    const Int8Set &q = *ks->int8;
    Rng r(77);
    int checked = 0, mismatched = 0;
    double worst = 0.0;
    for (int32_t dtype : {SPEC_DTYPE_Q8_0, SPEC_DTYPE_Q4_0}) {
        CHECK(q.has(dtype));
        for (int64_t K : {32, 64, 480, 512, 544, 1024, 2080, 5632}) {
            const int n_rows = 7, n_tok = 17;
            std::vector<Row> rows;
            const int64_t ng = int8_groups(K), wbytes = ng * INT8_W_GROUP_BYTES, xstride = ng * INT8_X_GROUP_BYTES;
            std::vector<uint8_t> packed((size_t)(n_rows * wbytes));
            for (int i = 0; i < n_rows; i++) {
                rows.push_back(random_row(r, dtype, K));
                q.pack(dtype, rows.back().bytes.data(), K, packed.data() + i * wbytes, nullptr, 0);
            }
            std::vector<std::vector<float>> xs;
            std::vector<uint8_t> qx((size_t)(n_tok * xstride));
            for (int t = 0; t < n_tok; t++) {
                xs.push_back(random_acts(r, K));
                quantize_acts_row(xs.back().data(), K, qx.data() + t * xstride);
            }
            // the in-place reader (decode), where the set has one for this dtype
            for (int T = 1; q.tile && T <= q.tile_tokens; T++)
                for (int row = 0; row < n_rows; row++) {
                    float out[16];
                    if (!q.tile(dtype, rows[(size_t)row].bytes.data(), K, qx.data(), xstride, T, out, nullptr, 0)) break;
                    for (int t = 0; t < T; t++) {
                        const float want = definition(rows[(size_t)row], qx.data() + t * xstride, K);
                        checked++;
                        if (std::memcmp(&want, &out[t], 4) != 0 && mismatched++ < 5)
                            fprintf(stderr, "  %s tile dtype %d K %lld T %d row %d tok %d: %.9g, want %.9g\n", q.name, dtype, (long long)K, T,
                                    row, t, out[t], want);
                    }
                }
            // every token count and row offset the set takes
            for (int T = 1; T <= q.tokens; T++)
                for (int t0 = 0; t0 + T <= n_tok; t0 += 2)
                    for (int r0 = 0; r0 < n_rows; r0 += 3) {
                        const uint8_t *rp[16];
                        for (int i = 0; i < q.rows; i++) rp[i] = packed.data() + std::min(r0 + i, n_rows - 1) * wbytes;
                        float out[64];
                        q.gemm(rp, ng, qx.data() + t0 * xstride, xstride, T, out);
                        for (int t = 0; t < T; t++)
                            for (int i = 0; i < q.rows; i++) {
                                const int row = std::min(r0 + i, n_rows - 1);
                                const float want = definition(rows[(size_t)row], qx.data() + (t0 + t) * xstride, K);
                                checked++;
                                if (std::memcmp(&want, &out[t * q.rows + i], 4) != 0) {
                                    if (mismatched++ < 5)
                                        fprintf(stderr, "  %s dtype %d K %lld T %d row %d tok %d: %.9g, want %.9g\n", q.name, dtype,
                                                (long long)K, T, row, t0 + t, out[t * q.rows + i], want);
                                }
                                // and close to the exact product of the unquantized activations
                                // (each x within amax(its block) / 254 plus the f16 rounding of the scale)
                                const std::vector<float> &x = xs[(size_t)(t0 + t)];
                                double exact = 0.0, mag = 0.0;
                                for (int64_t k = 0; k < K; k++) {
                                    const double wk = (double)rows[(size_t)row].q[(size_t)k] * rows[(size_t)row].d[(size_t)(k / 32)];
                                    double amax = 0.0;
                                    for (int64_t e = k / 32 * 32; e < k / 32 * 32 + 32; e++) amax = std::max(amax, (double)std::fabs(x[(size_t)e]));
                                    exact += wk * x[(size_t)k];
                                    mag += std::fabs(wk) * amax;
                                }
                                if (mag > 0) worst = std::max(worst, std::fabs(want - exact) / mag);
                            }
                    }
        }
    }
    CHECK(mismatched == 0);
    // Quantizing x to 8 bits (and its scale to f16) moves each x by at most about
    // amax(block) * (1/254 + 2^-11).
    CHECK(worst < 4.5e-3);
    printf("  %-12s %d products bit-identical to the definition; |error| vs f32 activations <= %.2e of sum |w| amax\n", q.name, checked, worst);
}

} // namespace

int main(void) {
    (void)error_mentions; // check.h's, for the ABI tests
    init_tables();
    const KernelSet *sets[] = {kernels_scalar(), kernels_avx2(), kernels_avx512(), kernels_avx512_vnni()};
    const char *needs[] = {nullptr, "avx2", "avx512bw", "avx512vnni"};
    __builtin_cpu_init();
    for (int i = 0; i < 4; i++) {
        if (!sets[i] || !sets[i]->int8) continue;
        bool ok = true;
        if (i == 1) ok = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
        if (i == 2) ok = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq");
        if (i == 3) ok = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vnni");
        if (!ok) {
            printf("  %-12s not run: this CPU lacks %s\n", sets[i]->int8->name, needs[i]);
            continue;
        }
        check_set(sets[i]);
    }
    return check_finish("test_int8_dot");
}
