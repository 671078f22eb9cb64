/* The cuda speculative kernels against their cpu twins, on fresh random inputs of several sizes,
 * checking every element: tree attention within the documented tolerance (1e-4 of max |V|) with
 * padding rows still poisoned; verification results and recycler matrices / drafts exactly
 * (both backends draw the same Philox numbers and compute the same integer probabilities); logits
 * summaries with identical ids and probabilities / entropy within 1e-5 relative.
 * Skips (exit 77) without a GPU. SPECULA_TEST_QUICK=1 keeps only the small cases (for
 * compute-sanitizer, which slows kernels down a hundredfold). */
#include <stdint.h>
#include <stdlib.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <vector>

#include "check.h"
#include "../../core/kernel_math.hpp"
#include "test_random.hpp"

namespace km = specula::km;

static uint64_t g_seed = 0x5eed;
static bool g_quick = false;

static spec_buffer *upload(spec_context *ctx, const void *data, size_t bytes) {
    spec_buffer *b = NULL;
    CHECK_OK(spec_buffer_alloc(ctx, bytes, &b));
    if (b) CHECK_OK(spec_copy_h2d(b, 0, data, bytes));
    return b;
}

static double seconds_since(std::chrono::steady_clock::time_point t0) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

/* ---------------------------------------------------------------- tree attention */

struct AttnCase {
    int B, H, Hkv, D, Tmax, dtype, prefix_max;
};

static void run_attention(spec_context *ctx, const spec_tree_attention_args &proto, const std::vector<float> &q,
                          const void *k, const void *v, size_t cache_bytes, std::vector<float> &out) {
    spec_tree_attention_args a = proto;
    const size_t rows = q.size() * 4;
    a.q = upload(ctx, q.data(), rows);
    a.k_cache = upload(ctx, k, cache_bytes);
    a.v_cache = upload(ctx, v, cache_bytes);
    std::vector<uint32_t> poison(q.size(), 0x7fc0dead);
    a.out = upload(ctx, poison.data(), rows);
    CHECK_OK(spec_tree_attention(ctx, &a));
    out.resize(q.size());
    CHECK_OK(spec_copy_d2h(out.data(), a.out, 0, rows));
    spec_buffer_free(a.q);
    spec_buffer_free(a.k_cache);
    spec_buffer_free(a.v_cache);
    spec_buffer_free(a.out);
}

static void test_tree_attention(spec_context *cpu, spec_context *gpu) {
    const AttnCase cases[] = {
        {1, 1, 1, 64, 1, SPEC_DTYPE_F32, 0},        {2, 8, 2, 128, 16, SPEC_DTYPE_BF16, 300},
        {3, 12, 4, 64, 33, SPEC_DTYPE_F16, 2000},   {1, 32, 8, 128, 64, SPEC_DTYPE_BF16, 4096}, /* the goal shape */
        {4, 16, 16, 128, 128, SPEC_DTYPE_F16, 900}, {5, 8, 1, 64, 7, SPEC_DTYPE_F32, 9000},
    };
    for (const AttnCase &c : cases) {
        uint64_t s = splitmix64(g_seed);
        if (g_quick && (long)c.B * c.H * c.Tmax * (c.prefix_max + c.Tmax) > 2000000) continue;
        std::vector<int32_t> prefix(c.B), tree(c.B), parents((size_t)c.B * c.Tmax, -5);
        int max_ctx = 1;
        for (int b = 0; b < c.B; b++) {
            prefix[b] = b == 0 ? c.prefix_max : (int)(splitmix64(s) % (uint64_t)(c.prefix_max + 1));
            tree[b] = b == 0 ? c.Tmax : 1 + (int)(splitmix64(s) % (uint64_t)c.Tmax);
            max_ctx = std::max(max_ctx, prefix[b] + tree[b]);
            for (int i = 0; i < tree[b]; i++)
                parents[(size_t)b * c.Tmax + i] = i == 0 ? -1 : (int)(splitmix64(s) % (uint64_t)(i + 1)) - 1;
        }
        const size_t nq = (size_t)c.B * c.Tmax * c.H * c.D, ncache = (size_t)c.B * max_ctx * c.Hkv * c.D;
        std::vector<float> q(nq), kf(ncache), vf(ncache);
        std::vector<uint16_t> k16(ncache), v16(ncache);
        for (float &x : q) x = uniform(s) * 2.0f;
        for (size_t i = 0; i < ncache; i++) {
            kf[i] = uniform(s);
            vf[i] = uniform(s);
            k16[i] = c.dtype == SPEC_DTYPE_F16 ? km::f32_to_f16(kf[i]) : km::f32_to_bf16(kf[i]);
            v16[i] = c.dtype == SPEC_DTYPE_F16 ? km::f32_to_f16(vf[i]) : km::f32_to_bf16(vf[i]);
        }
        const bool f32 = c.dtype == SPEC_DTYPE_F32;
        const void *k = f32 ? (const void *)kf.data() : k16.data(), *v = f32 ? (const void *)vf.data() : v16.data();
        spec_tree_attention_args a = {};
        a.batch = c.B, a.n_head = c.H, a.n_head_kv = c.Hkv, a.head_dim = c.D, a.max_tree_nodes = c.Tmax, a.max_ctx = max_ctx;
        a.kv_dtype = c.dtype, a.scale = 0.0f, a.prefix_len = prefix.data(), a.tree_len = tree.data(), a.parents = parents.data();
        std::vector<float> want, got;
        auto t0 = std::chrono::steady_clock::now();
        run_attention(cpu, a, q, k, v, ncache * (f32 ? 4 : 2), want);
        double t_cpu = seconds_since(t0);
        run_attention(gpu, a, q, k, v, ncache * (f32 ? 4 : 2), got);
        long bad = 0;
        double worst = 0;
        for (size_t i = 0; i < nq; i++) {
            const int t = (int)(i / ((size_t)c.H * c.D) % c.Tmax), b = (int)(i / ((size_t)c.Tmax * c.H * c.D));
            uint32_t gb, wb;
            memcpy(&gb, &got[i], 4);
            memcpy(&wb, &want[i], 4);
            if (t >= tree[b]) { /* padding rows: untouched by both */
                bad += gb != 0x7fc0dead || wb != 0x7fc0dead;
                continue;
            }
            double e = std::fabs((double)got[i] - want[i]);
            if (!(e <= 1e-4)) bad++;
            if (!(e <= worst)) worst = e;
        }
        printf("tree attention B=%d H=%d/%d D=%d T=%d prefix<=%d %s: max |cuda - cpu| %.2e (cpu %.2fs)\n", c.B, c.H, c.Hkv, c.D,
               c.Tmax, c.prefix_max, f32 ? "f32" : c.dtype == SPEC_DTYPE_F16 ? "f16" : "bf16", worst, t_cpu);
        CHECK(bad == 0);
    }
}

/* ---------------------------------------------------------------- verification */

struct VerifyCase {
    int B, N, V;
    bool with_q;
};

static void test_verify(spec_context *cpu, spec_context *gpu) {
    const VerifyCase cases[] = {
        {1, 1, 1000, false}, {8, 16, 1000, true}, {32, 32, 32000, false}, {16, 81, 32000, true}, {4, 81, 151936, false}, {2, 128, 151936, true},
    };
    for (const VerifyCase &c : cases) {
        uint64_t s = splitmix64(g_seed);
        if (g_quick && (long)c.B * c.N * c.V > 20000000) continue;
        const size_t rows = (size_t)c.B * c.N;
        std::vector<float> logits(rows * c.V), q;
        std::vector<int32_t> n_nodes(c.B), tokens(rows), parents(rows);
        std::vector<spec_sampling_params> params(c.B);
        /* Peaky rows: a few favourites per row, so that drafts that name them get accepted and
         * walks go deep; plus ties and the odd nan. */
        std::vector<int32_t> fav(rows * 3);
        for (size_t r = 0; r < rows; r++) {
            float *row = &logits[r * c.V];
            for (int v = 0; v < c.V; v++) row[v] = uniform(s) * 2.0f;
            for (int f = 0; f < 3; f++) {
                fav[r * 3 + f] = (int32_t)(splitmix64(s) % (uint64_t)c.V);
                row[fav[r * 3 + f]] = 9.0f - f; /* ranks 0..2 */
            }
            if (r % 7 == 3) row[fav[r * 3 + 1]] = row[fav[r * 3]]; /* an argmax tie */
            if (r % 11 == 5) row[(r * 13) % c.V] = NAN;
        }
        if (c.with_q) {
            q.resize(rows * c.V);
            for (size_t r = 0; r < rows; r++) {
                double z = 0;
                for (int v = 0; v < c.V; v++) z += q[r * c.V + v] = 0.1f + (float)((splitmix64(s) >> 40) * 0x1.0p-24);
                for (int f = 0; f < 3; f++) q[r * c.V + fav[r * 3 + f]] += (float)(z * 0.3);
                z *= 1.9;
                for (int v = 0; v < c.V; v++) q[r * c.V + v] = (float)(q[r * c.V + v] / z);
            }
        }
        for (int b = 0; b < c.B; b++) {
            n_nodes[b] = b == 0 ? c.N : 1 + (int)(splitmix64(s) % (uint64_t)c.N);
            for (int i = 0; i < c.N; i++) {
                const size_t r = (size_t)b * c.N + i;
                parents[r] = i == 0 ? -1 : (int)(splitmix64(s) % (uint64_t)std::min(i, 4)) + std::max(0, i - 4);
                tokens[r] = i == 0 ? 0 : fav[(size_t)b * c.N * 3 + (size_t)parents[r] * 3 + splitmix64(s) % 3];
                if (splitmix64(s) % 5 == 0) tokens[r] = (int32_t)(splitmix64(s) % (uint64_t)c.V);
            }
            const int kind = (int)(splitmix64(s) % 6);
            spec_sampling_params p = {splitmix64(s), 0.0f, 1.0f, 0, 0};
            if (kind >= 1) p.temperature = 0.5f + (float)(splitmix64(s) % 100) * 0.01f;
            if (kind == 2 || kind == 4) p.top_k = 1 + (int)(splitmix64(s) % 50);
            if (kind == 3 || kind == 4) p.top_p = 0.5f + (float)(splitmix64(s) % 50) * 0.01f;
            if (kind == 5) p.top_k = c.V + 3; /* off */
            params[b] = p;
        }
        spec_verify_args a = {};
        a.batch = c.B, a.max_tree_nodes = c.N, a.n_vocab = c.V, a.n_nodes = n_nodes.data(), a.tokens = tokens.data();
        a.parents = parents.data(), a.params = params.data(), a.step = splitmix64(s);
        std::vector<spec_verify_result> want(c.B), got(c.B);
        double t_cpu = 0;
        for (int pass = 0; pass < 2; pass++) {
            spec_context *ctx = pass ? gpu : cpu;
            a.logits = upload(ctx, logits.data(), logits.size() * 4);
            a.draft_probs = c.with_q ? upload(ctx, q.data(), q.size() * 4) : NULL;
            a.results = pass ? got.data() : want.data();
            memset(a.results, 0x5a, c.B * sizeof(spec_verify_result));
            auto t0 = std::chrono::steady_clock::now();
            CHECK_OK(spec_verify(ctx, &a));
            if (!pass) t_cpu = seconds_since(t0);
            spec_buffer_free(a.logits);
            if (a.draft_probs) spec_buffer_free(a.draft_probs);
        }
        int differ = 0, accepted = 0;
        for (int b = 0; b < c.B; b++) {
            if (memcmp(&want[b], &got[b], sizeof(spec_verify_result)) != 0) {
                if (differ++ < 3)
                    fprintf(stderr, "  sequence %d (T %.2f k %d p %.2f): cpu n=%d bonus=%d, cuda n=%d bonus=%d\n", b,
                            (double)params[b].temperature, params[b].top_k, (double)params[b].top_p, want[b].n_accepted,
                            want[b].bonus_token, got[b].n_accepted, got[b].bonus_token);
            }
            accepted += want[b].n_accepted;
        }
        printf("verify B=%d nodes<=%d V=%d %s: %d of %d sequences differ, %d tokens accepted (cpu %.2fs)\n", c.B, c.N, c.V,
               c.with_q ? "draft probs" : "deterministic", differ, c.B, accepted, t_cpu);
        CHECK(differ == 0);
    }
}

/* ---------------------------------------------------------------- token recycling */

static void test_recycling(spec_context *cpu, spec_context *gpu) {
    const struct {
        int B, N, V, k;
    } cases[] = {{1, 81, 1000, 8}, {32, 81, 32000, 8}, {4, 81, 151936, 32}, {9, 20, 5000, 5}, {3, 128, 20000, 16}};
    int32_t tp[SPEC_RECYCLER_DEFAULT_TEMPLATE_NODES], tr[SPEC_RECYCLER_DEFAULT_TEMPLATE_NODES], nt = 0;
    CHECK_OK(spec_recycler_default_template(tp, tr, SPEC_RECYCLER_DEFAULT_TEMPLATE_NODES, &nt));
    for (auto &c : cases) {
        uint64_t s = splitmix64(g_seed);
        if (g_quick && (long)c.B * c.N * c.V > 20000000) continue;
        const size_t rows = (size_t)c.B * c.N;
        std::vector<float> logits(rows * c.V);
        for (size_t i = 0; i < logits.size(); i++) logits[i] = (float)(splitmix64(s) % 4096) * 0.01f; /* ties */
        logits[5] = NAN;
        std::vector<int32_t> n_nodes(c.B), tokens(rows);
        for (int b = 0; b < c.B; b++) n_nodes[b] = b == 0 ? c.N : 1 + (int)(splitmix64(s) % (uint64_t)c.N);
        for (auto &t : tokens) t = (int32_t)(splitmix64(s) % (uint64_t)std::min(c.V, 400)); /* many repeats: last wins */
        std::vector<int32_t> roots(c.B);
        for (auto &r : roots) r = tokens[splitmix64(s) % rows];
        /* Template: the default one when k allows, else a random one. */
        std::vector<int32_t> par(tp, tp + nt), rank(tr, tr + nt);
        if (c.k < 8)
            for (int i = 1; i < nt; i++) rank[i] = (int32_t)(splitmix64(s) % (uint64_t)c.k);
        std::vector<int32_t> m[2], draft[2];
        for (int pass = 0; pass < 2; pass++) {
            spec_context *ctx = pass ? gpu : cpu;
            spec_recycler *r = NULL;
            CHECK_OK(spec_recycler_create(ctx, c.V, c.k, &r));
            CHECK_OK(spec_recycler_fill(r, SPEC_RECYCLER_FILL_RANK));
            spec_buffer *lg = upload(ctx, logits.data(), logits.size() * 4);
            spec_recycler_update_args u = {c.B, c.N, n_nodes.data(), tokens.data(), lg};
            CHECK_OK(spec_recycler_update(r, &u));
            CHECK_OK(spec_recycler_update(r, &u)); /* a second step with the same claims */
            m[pass].resize((size_t)c.V * c.k);
            CHECK_OK(spec_recycler_save(r, m[pass].data(), m[pass].size()));
            draft[pass].assign((size_t)c.B * nt, -1);
            spec_recycler_draft_args d = {c.B, nt, par.data(), rank.data(), roots.data(), draft[pass].data(), NULL};
            CHECK_OK(spec_recycler_draft(r, &d));
            spec_buffer_free(lg);
            CHECK_OK(spec_recycler_destroy(r));
        }
        long diff = 0;
        for (size_t i = 0; i < m[0].size(); i++) diff += m[0][i] != m[1][i];
        long ddiff = 0;
        for (size_t i = 0; i < draft[0].size(); i++) ddiff += draft[0][i] != draft[1][i];
        printf("recycler B=%d nodes<=%d V=%d k=%d: %ld matrix and %ld draft elements differ\n", c.B, c.N, c.V, c.k, diff, ddiff);
        CHECK(diff == 0 && ddiff == 0);
    }
}

/* ---------------------------------------------------------------- logits summaries */

static bool near_rel(double got, double want) { return std::fabs(got - want) <= 1e-5 * std::max(1e-6, std::fabs(want)) + 1e-12; }

static void test_logits_summary(spec_context *cpu, spec_context *gpu) {
    const struct {
        int rows, stride, limit;
        bool ties;
    } cases[] = {{1, 50, 50, true}, {7, 1000, 997, true}, {33, 32000, 32000, false}, {4, 151936, 151665, false},
                 {128, 32768, 32000, true}, {2, 300, 3, false}};
    for (auto &c : cases) {
        uint64_t s = splitmix64(g_seed);
        if (g_quick && (long)c.rows * c.stride > 2000000) continue;
        std::vector<float> logits((size_t)c.rows * c.stride + 1);
        for (float &x : logits) x = c.ties ? (float)(splitmix64(s) % 64) * 0.25f : uniform(s) * 8.0f;
        logits[1 + 3] = NAN;
        logits[1 + c.stride - 1] = INFINITY; /* past limit in some cases: must not count there */
        if (c.rows > 1)
            for (int i = 0; i < c.stride; i++) logits[1 + (size_t)c.stride + i] = NAN; /* a row of only NaN */
        std::vector<spec_logits_summary> got[2];
        int differ = 0;
        for (int k = 1; k <= SPEC_SUMMARY_MAX_K; k++) {
            for (int pass = 0; pass < 2; pass++) {
                spec_context *ctx = pass ? gpu : cpu;
                spec_buffer *b = upload(ctx, logits.data(), logits.size() * 4);
                got[pass].assign(c.rows, spec_logits_summary{});
                CHECK_OK(spec_logits_summarize(ctx, b, 4, c.rows, c.stride, c.limit, k, got[pass].data()));
                spec_buffer_free(b);
            }
            for (int r = 0; r < c.rows; r++) {
                const spec_logits_summary &w = got[0][r], &g = got[1][r];
                bool ok = g.reserved == 0 && near_rel(g.entropy, w.entropy);
                for (int j = 0; j < SPEC_SUMMARY_MAX_K; j++) ok = ok && g.top[j] == w.top[j] && near_rel(g.prob[j], w.prob[j]);
                if (!ok && differ++ < 3)
                    fprintf(stderr, "  row %d k %d: cpu top %d p %.8g H %.8g, cuda top %d p %.8g H %.8g\n", r, k, w.top[0],
                            (double)w.prob[0], (double)w.entropy, g.top[0], (double)g.prob[0], (double)g.entropy);
            }
        }
        printf("logits summary rows=%d stride=%d limit=%d%s: %d rows differ\n", c.rows, c.stride, c.limit, c.ties ? " (ties)" : "",
               differ);
        CHECK(differ == 0);
    }
    /* Validation runs before any launch on cuda too. */
    spec_buffer *b = NULL;
    CHECK_OK(spec_buffer_alloc(gpu, 64, &b));
    spec_logits_summary out;
    CHECK_FAILS(gpu, spec_logits_summarize(gpu, b, 0, 1, 17, 17, 2, &out), SPEC_ERR_OUT_OF_RANGE, "the logits buffer holds 64");
    spec_buffer_free(b);
}

int main(void) {
    int32_t n = 0;
    if (spec_device_count("cuda", &n) != SPEC_OK || n == 0) {
        char msg[256] = "";
        spec_last_error(NULL, msg, sizeof msg, NULL);
        printf("SKIP test_cuda_kernels: cuda unavailable (%s)\n", msg);
        return 77;
    }
    const char *quick = getenv("SPECULA_TEST_QUICK");
    g_quick = quick && *quick && strcmp(quick, "0") != 0;
    spec_context *cpu = NULL, *gpu = NULL;
    CHECK_OK(spec_context_create("cpu", 0, &cpu));
    CHECK_OK(spec_context_create("cuda", 0, &gpu));
    if (!cpu || !gpu) return check_finish("test_cuda_kernels");
    test_tree_attention(cpu, gpu);
    test_verify(cpu, gpu);
    test_recycling(cpu, gpu);
    test_logits_summary(cpu, gpu);
    /* Validation runs before any launch on cuda too. */
    spec_verify_args bad = {};
    CHECK_FAILS(gpu, spec_verify(gpu, &bad), SPEC_ERR_INVALID_ARGUMENT, "n_vocab = 0");
    spec_context_destroy(cpu);
    spec_context_destroy(gpu);
    return check_finish("test_cuda_kernels");
}
