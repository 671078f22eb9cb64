/* The shared per-element logic of the speculative kernels (native/core/kernel_math.hpp) and the
 * sequential row procedures built on it (native/core/sampling.hpp), against brute force:
 * Philox known answers, 16-bit float conversions, the token ranking, exp, the shaping of a
 * distribution by temperature / top-k / top-p into integer weights, and the inverse-CDF draw. */
#include <stdint.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

#include "check.h"
#include "../core/kernel_math.hpp"
#include "../core/sampling.hpp"
#include "test_random.hpp"

using namespace specula;


static void test_philox(void) {
    /* Random123's published known-answer vectors for Philox-4x32-10. */
    km::u32x4 a = km::philox4x32_10({0, 0, 0, 0}, 0, 0);
    CHECK(a.x == 0x6627e8d5u && a.y == 0xe169c58du && a.z == 0xbc57ac4cu && a.w == 0x9b00dbd8u);
    km::u32x4 b = km::philox4x32_10({0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu}, 0xffffffffu, 0xffffffffu);
    CHECK(b.x == 0x408f276du && b.y == 0x41c83b0eu && b.z == 0xa20bc7c6u && b.w == 0x6d5451fdu);
    /* Different names, different draws; the same name, the same draw. */
    CHECK(km::random64(1, 2, 3, 4) == km::random64(1, 2, 3, 4));
    CHECK(km::random64(1, 2, 3, 4) != km::random64(1, 2, 3, 5));
    CHECK(km::random64(1, 2, 3, 4) != km::random64(2, 2, 3, 4));
    CHECK(km::random64(1, 2, 3, 4) != km::random64(1, 3, 3, 4));
    double u = km::uniform01(~0ull);
    CHECK(u < 1.0 && u > 0.999999);
}

static void test_half_conversions(void) {
    /* Every f16 bit pattern decodes like the compiler's _Float16, and encoding round-trips. */
    int bad = 0;
    for (uint32_t h = 0; h < 65536; h++) {
        _Float16 ref;
        uint16_t bits = (uint16_t)h;
        memcpy(&ref, &bits, 2);
        float want = (float)ref, got = km::f16_to_f32(bits);
        if (std::isnan(want) ? !std::isnan(got) : memcmp(&want, &got, 4) != 0) bad++;
        if (!std::isnan(want) && km::f32_to_f16(got) != bits) bad++;
    }
    CHECK(bad == 0);
    /* Encoding rounds to nearest even like the compiler, over random and edge floats. */
    uint64_t s = 1;
    bad = 0;
    for (int i = 0; i < 200000; i++) {
        uint32_t u = (uint32_t)splitmix64(s);
        if (i % 2) u = (u & 0x8fffffffu) | 0x30000000u; /* many near the f16 range */
        float f;
        memcpy(&f, &u, 4);
        if (std::isnan(f)) continue;
        _Float16 ref = (_Float16)f;
        uint16_t want;
        memcpy(&want, &ref, 2);
        if (km::f32_to_f16(f) != want) bad++;
    }
    CHECK(bad == 0);
    /* bf16: the nearest of the two neighbours, ties to even. */
    bad = 0;
    for (int i = 0; i < 200000; i++) {
        uint32_t u = (uint32_t)splitmix64(s);
        float f;
        memcpy(&f, &u, 4);
        if (std::isnan(f) || (u & 0x7fffffffu) >= 0x7f7f0000u) continue; /* rounding to inf: checked below */
        uint16_t lo = (uint16_t)(u >> 16), hi = (uint16_t)(lo + 1);
        double dl = std::fabs((double)km::bf16_to_f32(lo) - f), dh = std::fabs((double)km::bf16_to_f32(hi) - f);
        uint16_t want = dl < dh ? lo : dh < dl ? hi : ((lo & 1) ? hi : lo);
        if ((u & 0xffff) == 0) want = lo;
        if (km::f32_to_bf16(f) != want) bad++;
    }
    CHECK(bad == 0);
    CHECK(km::f32_to_bf16(3.4028235e38f) == 0x7f80); /* past the largest bf16 plus half an ulp */
    CHECK(km::f32_to_bf16(-INFINITY) == 0xff80);
}

static void test_ranking(void) {
    const float v[] = {-INFINITY, -3.5f, -1e-30f, -0.0f, 0.0f, 1e-30f, 2.0f, 7.25f, INFINITY};
    for (size_t i = 1; i < sizeof v / sizeof *v; i++) CHECK(km::order_key(v[i - 1]) <= km::order_key(v[i]));
    CHECK(km::order_key(-0.0f) == km::order_key(0.0f));
    CHECK(km::order_key(NAN) == km::order_key(-INFINITY));
    /* Equal logits: the lower id ranks first. */
    CHECK(km::composite(1.0f, 3) > km::composite(1.0f, 4));
    CHECK(km::composite(1.5f, 9) > km::composite(1.0f, 0));
    CHECK(km::composite_id(km::composite(-2.0f, 123456)) == 123456u);
    CHECK(km::composite(NAN, 0) != 0);
    /* The row's argmax (two passes) against the largest composite, on rows of few distinct values
     * (ties), NaN, infinities and signed zeros. */
    const float pool[] = {NAN, -INFINITY, INFINITY, -0.0f, 0.0f, 1.0f, -1.0f, 3.0f};
    uint64_t s = 11;
    for (int trial = 0; trial < 400; trial++) {
        const int n = 1 + (int)(splitmix64(s) % 70);
        const int distinct = 1 + trial % 8;
        std::vector<float> row((size_t)n);
        for (float &x : row) x = pool[splitmix64(s) % (uint64_t)distinct];
        uint64_t want = 0;
        for (int i = 0; i < n; i++) want = std::max(want, km::composite(row[(size_t)i], (uint32_t)i));
        CHECK(seq::row_argmax(row.data(), n) == want);
    }
}

static void test_exp(void) {
    double worst = 0;
    for (int i = 0; i <= 200000; i++) {
        float t = -63.9f * (float)i / 200000.0f;
        double want = std::exp2((double)t), got = km::exp2_nonpos(t);
        worst = std::max(worst, std::fabs(got - want) / want);
    }
    printf("exp2_nonpos: worst relative error %.3g\n", worst);
    CHECK(worst < 3e-7);
    CHECK(km::exp2_nonpos(0.0f) == 1.0f);
    CHECK(km::exp2_nonpos(-100.0f) == 0.0f);
    CHECK(km::exp2_nonpos(NAN) == 0.0f);
    CHECK(km::token_weight(3.0f, 3.0f, 1.0f) == km::WEIGHT_ONE);
    CHECK(km::token_weight(-INFINITY, 3.0f, 1.0f) == 0);
    CHECK(km::token_weight(NAN, 3.0f, 1.0f) == 0);
}

/* Brute force shaping: rank by (logit desc, id asc); top-k = first k; top-p = shortest prefix of
 * the top-k whose weight sum reaches ceil(top_p * W_k). Same integer weights as the library. */
static std::vector<uint64_t> brute_shape(const std::vector<float> &row, float temp, int top_k, float top_p) {
    const int V = (int)row.size();
    std::vector<int> order(V);
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(), [&](int a, int b) {
        return km::order_key(row[a]) > km::order_key(row[b]); /* stable: ties keep the lower id first */
    });
    const float mx = row[order[0]], inv = km::fdiv(1.0f, temp);
    int keep = top_k > 0 && top_k < V ? top_k : V;
    if (top_p < 1.0f) {
        uint64_t wk = 0;
        for (int j = 0; j < keep; j++) wk += km::token_weight(row[order[j]], mx, inv);
        if (wk > 0) {
            uint64_t target = km::top_p_target(top_p, wk), run = 0;
            for (int j = 0; j < keep; j++) {
                run += km::token_weight(row[order[j]], mx, inv);
                if (run >= target) {
                    keep = j + 1;
                    break;
                }
            }
        }
    }
    std::vector<uint64_t> w(V, 0);
    for (int j = 0; j < keep; j++) w[order[j]] = km::token_weight(row[order[j]], mx, inv);
    return w;
}

static void test_shaping(void) {
    uint64_t s = 7;
    const int sizes[] = {1, 2, 7, 33, 300, 5000};
    const float temps[] = {1.0f, 0.6f, 1.7f};
    const int topks[] = {0, 1, 3, 40};
    const float topps[] = {1.0f, 0.9f, 0.5f, 0.999f};
    int cases = 0, bad = 0;
    for (int V : sizes)
        for (int tie_mode = 0; tie_mode < 3; tie_mode++) {
            std::vector<float> row(V);
            for (int i = 0; i < V; i++) {
                row[i] = uniform(s, -6.0f, 6.0f);
                if (tie_mode == 1) row[i] = std::round(row[i]);           /* heavy ties */
                if (tie_mode == 2 && i % 5 == 0) row[i] = i % 10 ? -INFINITY : NAN;
            }
            for (float t : temps)
                for (int k : topks)
                    for (float p : topps) {
                        spec_sampling_params prm = {0, t, p, k, 0};
                        std::vector<uint64_t> w(V);
                        seq::Shaped sh = seq::shape_row(row.data(), V, prm, w.data());
                        std::vector<uint64_t> want = brute_shape(row, t, k, p);
                        uint64_t total = 0;
                        for (int i = 0; i < V; i++) total += want[i];
                        if (total == 0) continue; /* all nan: covered below */
                        cases++;
                        if (w != want || sh.total != total) bad++;
                    }
        }
    printf("shaping: %d cases\n", cases);
    CHECK(bad == 0);
    /* The weights are the softmax: compare to a double softmax at temperature 0.8. */
    std::vector<float> row = {2.0f, 1.5f, 0.3f, -0.5f, 1.0f, -2.0f, 0.8f, 0.0f};
    spec_sampling_params prm = {0, 0.8f, 1.0f, 0, 0};
    std::vector<uint64_t> w(row.size());
    seq::Shaped sh = seq::shape_row(row.data(), (int)row.size(), prm, w.data());
    double z = 0;
    for (float x : row) z += std::exp((x - 2.0) / 0.8);
    for (size_t i = 0; i < row.size(); i++) CHECK(std::fabs((double)w[i] / sh.total - std::exp((row[i] - 2.0) / 0.8) / z) < 1e-6);
    /* All nan: the point mass at token 0 (every nan ranks as -inf, the lowest id first). */
    std::vector<float> nans(5, NAN);
    sh = seq::shape_row(nans.data(), 5, prm, w.data());
    CHECK(sh.total == km::WEIGHT_ONE && w[0] == km::WEIGHT_ONE);
}

static void test_draw(void) {
    /* The inverse CDF in lane order: brute force over the same order, across lane boundaries. */
    uint64_t s = 11;
    int bad = 0;
    for (int V : {1, 5, 1024, 1500, 4099}) {
        std::vector<uint64_t> w(V);
        for (int i = 0; i < V; i++) w[i] = (splitmix64(s) % 4 == 0) ? 0 : splitmix64(s) % 1000000;
        w[V - 1] += 1;
        uint64_t total = 0;
        for (uint64_t x : w) total += x;
        std::vector<int> order;
        for (int lane = 0; lane < km::SAMPLE_LANES; lane++)
            for (int i = lane; i < V; i += km::SAMPLE_LANES) order.push_back(i);
        for (int trial = 0; trial < 300; trial++) {
            uint64_t r = splitmix64(s), u = km::mulhi64(r, total), run = 0;
            int want = -1;
            for (int i : order) {
                run += w[i];
                if (u < run) {
                    want = i;
                    break;
                }
            }
            int got = seq::sample_weights(w.data(), V, total, r);
            if (got != want || w[got] == 0) bad++;
        }
    }
    CHECK(bad == 0);
    /* The residual: max(p - q, 0) in weight units. */
    std::vector<uint64_t> w = {100, 0, 50, 10};
    std::vector<float> q = {0.25f, 0.5f, 0.25f, 0.0f};
    uint64_t total = seq::residual(w.data(), 4, q.data(), 160);
    CHECK(w[0] == 60 && w[1] == 0 && w[2] == 10 && w[3] == 10 && total == 80);
    /* A total past the weights' sum: a draw beyond them finds no token (-1, as the cuda kernel's
     * block_sample returns), and verify's check names the sequence that drew none. */
    CHECK(seq::sample_weights(w.data(), 4, 1000, ~0ull) == -1);
    CHECK(seq::sample_weights(w.data(), 4, 80, ~0ull) == 3);
    spec_verify_result res[3];
    memset(res, 0, sizeof res);
    res[0].bonus_token = 4;
    res[1].bonus_token = 0;
    res[2].bonus_token = 7;
    CHECK(seq::first_without_bonus(res, 3) == -1);
    res[1].bonus_token = -1;
    res[2].bonus_token = -1;
    CHECK(seq::first_without_bonus(res, 3) == 1);
    CHECK(seq::first_without_bonus(res, 1) == -1);
}

int main(void) {
    CHECK_FAILS(NULL, spec_verify(NULL, NULL), SPEC_ERR_INVALID_HANDLE, "context is null");
    test_philox();
    test_half_conversions();
    test_ranking();
    test_exp();
    test_shaping();
    test_draw();
    return check_finish("test_kernel_math");
}
