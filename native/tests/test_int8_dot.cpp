/* The cpu backend's int8 products (native/cpu/int8_dot.hpp: Q8_0, Q4_0, Q4_1, Q5_0, Q5_1) against
 * their definition, written out here in plain integers and floats, block by block: the decoder
 * against the test's own integers and the independent reference dequantizer, on random blocks,
 * extreme f16 scales and mins, all-max and all-zero blocks; and every kernel set this CPU runs (scalar, avx2, avx512,
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
#include "quant_reference.hpp"
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
    std::vector<float> m;   // per block (0 without a min)
    bool extreme = false;   // holds blocks with extreme scales (the result may overflow)
};

void put_half(std::vector<uint8_t> &out, uint16_t h) {
    out.push_back((uint8_t)(h & 255));
    out.push_back((uint8_t)(h >> 8));
}

// A random row of dtype. With extremes, block b's kind cycles through: typical random integers and
// scales, any f16 scale, the largest scale with the most negative min, the smallest subnormal scale
// with a min of -0, every integer at its largest with scale 1 and min -1, an all-zero block.
Row random_row(Rng &r, int32_t dtype, int64_t K, bool extremes) {
    Row w;
    w.extreme = extremes;
    const int64_t nb = K / 32;
    const bool has_min = int8_has_min(dtype), five = dtype == SPEC_DTYPE_Q5_0 || dtype == SPEC_DTYPE_Q5_1;
    const int levels = dtype == SPEC_DTYPE_Q8_0 ? 256 : five ? 32 : 16;
    const int centre = dtype == SPEC_DTYPE_Q4_0 ? 8 : dtype == SPEC_DTYPE_Q5_0 ? 16 : 0;
    for (int64_t b = 0; b < nb; b++) {
        const int kind = extremes ? (int)(b % 6) : 0;
        uint16_t dh, mh = 0;
        switch (kind) {
        case 1: dh = (uint16_t)(r.below(0x7c00)), mh = (uint16_t)(r.below(0x7c00) | (r.below(2) << 15)); break;
        case 2: dh = 0x7bff, mh = 0xfbff; break; /* 65504, -65504 */
        case 3: dh = 0x0001, mh = 0x8000; break; /* 2^-24, -0 */
        case 4: dh = 0x3c00, mh = 0xbc00; break; /* 1, -1 */
        case 5: dh = 0, mh = 0; break;
        default: { // scales over a wide range, some zero
            const float d = r.below(10) == 0 ? 0.0f : (float)std::ldexp(0.5 + r.uniform(), -(int)r.below(12));
            dh = f32_to_f16(d), mh = f32_to_f16((float)(d * levels * (r.uniform() - 0.75)));
        }
        }
        if (!has_min) mh = 0;
        w.d.push_back(f16_to_f32(dh));
        w.m.push_back(has_min ? f16_to_f32(mh) : 0.0f);
        put_half(w.bytes, dh);
        if (has_min) put_half(w.bytes, mh);
        int vals[32]; // the stored unsigned values (Q8_0: the signed bytes)
        for (int e = 0; e < 32; e++) {
            if (kind == 4) vals[e] = dtype == SPEC_DTYPE_Q8_0 ? 127 : levels - 1;
            else if (kind == 5) vals[e] = 0;
            else if (dtype == SPEC_DTYPE_Q8_0) vals[e] = r.below(8) == 0 ? (r.below(2) ? 127 : -128) : (int)r.below(255) - 127;
            else vals[e] = r.below(8) == 0 ? (r.below(2) ? levels - 1 : 0) : (int)r.below(levels);
        }
        if (dtype == SPEC_DTYPE_Q8_0) {
            for (int e = 0; e < 32; e++) w.bytes.push_back((uint8_t)(int8_t)vals[e]);
        } else {
            if (five) {
                uint32_t qh = 0;
                for (int e = 0; e < 32; e++) qh |= (uint32_t)(vals[e] >> 4) << e;
                for (int i = 0; i < 4; i++) w.bytes.push_back((uint8_t)(qh >> (8 * i)));
            }
            for (int e = 0; e < 16; e++) w.bytes.push_back((uint8_t)((vals[e] & 15) | (vals[e + 16] & 15) << 4));
        }
        for (int e = 0; e < 32; e++) w.q.push_back(dtype == SPEC_DTYPE_Q8_0 ? vals[e] : vals[e] - centre);
    }
    return w;
}

// The decoder (int8_decode_block) against the test's own integers and scales, and those against
// the independent reference dequantizer (quant_reference.hpp): d*q (+ m) is every weight.
int check_decode(int32_t dtype, const Row &w) {
    int bad = 0;
    const int bb = int8_block_bytes(dtype);
    for (size_t b = 0; b < w.d.size(); b++) {
        const uint8_t *blk = w.bytes.data() + b * (size_t)bb;
        int8_t q[32];
        float d, m;
        int8_decode_block(dtype, blk, q, &d, &m);
        float ref[32];
        if (dtype != SPEC_DTYPE_Q8_0 && dtype != SPEC_DTYPE_Q4_0) quant_ref::dequant_block(dtype, blk, ref);
        for (int e = 0; e < 32; e++) {
            const int want = w.q[b * 32 + (size_t)e];
            bool ok = q[e] == want && std::memcmp(&d, &w.d[b], 4) == 0 && std::memcmp(&m, &w.m[b], 4) == 0;
            if (dtype != SPEC_DTYPE_Q8_0 && dtype != SPEC_DTYPE_Q4_0) {
                const float v = int8_has_min(dtype) ? quant_ref::r((double)want * d + m) : quant_ref::r((double)want * d);
                ok = ok && std::memcmp(&v, &ref[e], 4) == 0;
            }
            if (!ok && bad++ < 3)
                fprintf(stderr, "  decode dtype %d block %zu elem %d: q %d d %g m %g, want q %d d %g m %g\n", dtype, b, e, q[e], d, m, want,
                        w.d[b], w.m[b]);
        }
    }
    return bad;
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
float definition(int32_t dtype, const Row &w, const uint8_t *qx, int64_t K) {
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
        if (int8_has_min(dtype)) {
            int32_t xsum = 0;
            for (int e = 0; e < 32; e++) xsum += (int8_t)g[64 * (e / 4) + 4 * j + e % 4];
            volatile float m = w.m[(size_t)b] * dx;
            volatile float mterm = m * (float)xsum;
            lane[j] = lane[j] + mterm;
        }
    }
    return int8_lane_sum(lane);
}

void check_set(const KernelSet *ks) {
    const Int8Set &q = *ks->int8;
    Rng r(77);
    int checked = 0, mismatched = 0, decode_bad = 0;
    double worst = 0.0;
    for (int32_t dtype : {SPEC_DTYPE_Q8_0, SPEC_DTYPE_Q4_0, SPEC_DTYPE_Q4_1, SPEC_DTYPE_Q5_0, SPEC_DTYPE_Q5_1}) {
        CHECK(q.has(dtype));
        for (int64_t K : {32, 64, 480, 512, 544, 1024, 2080, 5632}) {
            const int n_rows = 7, n_tok = 17;
            std::vector<Row> rows;
            const int64_t ng = int8_groups(K), wbytes = ng * INT8_W_GROUP_BYTES, xstride = ng * INT8_X_GROUP_BYTES;
            std::vector<uint8_t> packed((size_t)(n_rows * wbytes));
            for (int i = 0; i < n_rows; i++) {
                rows.push_back(random_row(r, dtype, K, i % 3 == 2));
                decode_bad += check_decode(dtype, rows.back());
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
                        const float want = definition(dtype, rows[(size_t)row], qx.data() + t * xstride, K);
                        checked++;
                        if (std::memcmp(&want, &out[t], 4) != 0 && mismatched++ < 5)
                            fprintf(stderr, "  %s tile dtype %d K %lld T %d row %d tok %d: %.9g, want %.9g\n", q.name, dtype, (long long)K, T,
                                    row, t, out[t], want);
                    }
                }
            // Q8_0 rows prepacked once (the layout the cpu backend keeps for the whole run), where the set has it
            if (dtype == SPEC_DTYPE_Q8_0 && q.prepack && q.gemm_pre) {
                const int64_t pbytes = ng * INT8_P_GROUP_BYTES;
                std::vector<uint8_t> pre((size_t)(n_rows * pbytes));
                for (int i = 0; i < n_rows; i++) q.prepack(rows[(size_t)i].bytes.data(), K, pre.data() + i * pbytes);
                for (int T = 1; T <= q.tokens; T++)
                    for (int t0 = 0; t0 + T <= n_tok; t0 += 3)
                        for (int r0 = 0; r0 < n_rows; r0 += 2) {
                            const uint8_t *rp[16];
                            for (int i = 0; i < q.rows; i++) rp[i] = pre.data() + std::min(r0 + i, n_rows - 1) * pbytes;
                            float out[64];
                            q.gemm_pre(rp, ng, qx.data() + t0 * xstride, xstride, T, out, T % 2 ? rp : nullptr, 0, pbytes); // with and without the prefetch
                            for (int t = 0; t < T; t++)
                                for (int i = 0; i < q.rows; i++) {
                                    const int row = std::min(r0 + i, n_rows - 1);
                                    const float want = definition(dtype, rows[(size_t)row], qx.data() + (t0 + t) * xstride, K);
                                    checked++;
                                    if (std::memcmp(&want, &out[t * q.rows + i], 4) != 0 && mismatched++ < 5)
                                        fprintf(stderr, "  %s prepacked K %lld T %d row %d tok %d: %.9g, want %.9g\n", q.name, (long long)K, T, row,
                                                t0 + t, out[t * q.rows + i], want);
                                }
                        }
            }
            // every token count and row offset the set takes
            for (int T = 1; T <= q.tokens; T++)
                for (int t0 = 0; t0 + T <= n_tok; t0 += 2)
                    for (int r0 = 0; r0 < n_rows; r0 += 3) {
                        const uint8_t *rp[16];
                        for (int i = 0; i < q.rows; i++) rp[i] = packed.data() + std::min(r0 + i, n_rows - 1) * wbytes;
                        float out[64];
                        q.gemm(dtype, rp, ng, qx.data() + t0 * xstride, xstride, T, out);
                        for (int t = 0; t < T; t++)
                            for (int i = 0; i < q.rows; i++) {
                                const int row = std::min(r0 + i, n_rows - 1);
                                const float want = definition(dtype, rows[(size_t)row], qx.data() + (t0 + t) * xstride, K);
                                checked++;
                                if (std::memcmp(&want, &out[t * q.rows + i], 4) != 0) {
                                    if (mismatched++ < 5)
                                        fprintf(stderr, "  %s dtype %d K %lld T %d row %d tok %d: %.9g, want %.9g\n", q.name, dtype,
                                                (long long)K, T, row, t0 + t, out[t * q.rows + i], want);
                                }
                                // and close to the exact product of the unquantized activations
                                // (each x within amax(its block) / 254 plus the f16 rounding of the scale)
                                if (rows[(size_t)row].extreme) continue; // its products may overflow f32
                                const std::vector<float> &x = xs[(size_t)(t0 + t)];
                                double exact = 0.0, mag = 0.0;
                                for (int64_t k = 0; k < K; k++) {
                                    const double dq = (double)rows[(size_t)row].q[(size_t)k] * rows[(size_t)row].d[(size_t)(k / 32)];
                                    const double mk = rows[(size_t)row].m[(size_t)(k / 32)];
                                    double amax = 0.0;
                                    for (int64_t e = k / 32 * 32; e < k / 32 * 32 + 32; e++) amax = std::max(amax, (double)std::fabs(x[(size_t)e]));
                                    exact += (dq + mk) * x[(size_t)k];
                                    mag += (std::fabs(dq) + std::fabs(mk)) * amax;
                                }
                                if (mag > 0) worst = std::max(worst, std::fabs(want - exact) / mag);
                            }
                    }
        }
    }
    // the set's own activation quantizer, where it has one: the same bytes as quantize_acts_row
    int quant_rows = 0, quant_bad = 0;
    for (int64_t K : {32, 64, 480, 512, 544, 2080, 5632})
        for (int kind = 0; kind < 6; kind++) {
            if (!q.quantize) break;
            std::vector<float> x = random_acts(r, K);
            for (int64_t k = 0; k < K; k++) {
                float &v = x[(size_t)k];
                if (kind == 1) v = (k % 3 == 0) ? -0.0f : 0.0f; // zero blocks, negative zeros
                if (kind == 2) v = (float)((int)(k % 255) - 127) + 0.5f; // many ties at x * 127/amax
                if (kind == 3) v = (k % 32 == 7) ? 127.0f : (float)((int)(k % 254) - 127) * 0.5f; // exact halves
                if (kind == 4) v *= 1e-40f; // subnormal activations
                if (kind == 5) v *= 1e30f; // large (the block maximum stays finite: up to about 3e34)
            }
            const int64_t stride = int8_groups(K) * INT8_X_GROUP_BYTES;
            std::vector<uint8_t> want((size_t)stride, 0xAB), got((size_t)stride, 0xCD);
            quantize_acts_row(x.data(), K, want.data());
            q.quantize(x.data(), K, got.data());
            quant_rows++;
            if (want != got && quant_bad++ < 5) fprintf(stderr, "  %s quantize K %lld kind %d: bytes differ\n", q.name, (long long)K, kind);
        }
    CHECK(quant_bad == 0);
    if (q.quantize) printf("  %-12s %d activation rows quantized byte-identical to quantize_acts_row\n", q.name, quant_rows);
    CHECK(mismatched == 0);
    CHECK(decode_bad == 0);
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
