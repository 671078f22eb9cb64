/* Tree attention on the cpu backend against a plain double-precision reference, on random inputs
 * of several sizes (batch, tree size and shape, prefix, GQA, head_dim 64/128, f32/f16/bf16
 * caches). Outputs are poisoned first; every element is checked, and rows past each tree must
 * stay poisoned. The same with sliding windows (spec_tree_attention_windowed). Then bad input. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "check.h"
#include "../core/kernel_math.hpp"
#include "test_random.hpp"

namespace km = specula::km;


struct Shape {
    int B, H, Hkv, D, Tmax, max_ctx, dtype;
    std::vector<int32_t> prefix, tree;
};

/* Random inputs for a shape: q, caches (stored in dtype), trees with random parents. */
struct Inputs {
    Shape sh;
    std::vector<float> q, k, v; /* k, v as the values the cache holds (after rounding to dtype) */
    std::vector<uint16_t> k16, v16;
    std::vector<int32_t> parents;
    uint32_t poison_bits = 0x7fc0dead;
};

static Inputs make_inputs(const Shape &sh, uint64_t seed) {
    Inputs in;
    in.sh = sh;
    uint64_t s = seed;
    in.q.resize((size_t)sh.B * sh.Tmax * sh.H * sh.D);
    for (float &x : in.q) x = uniform(s) * 2.0f;
    size_t cache = (size_t)sh.B * sh.max_ctx * sh.Hkv * sh.D;
    in.k.resize(cache);
    in.v.resize(cache);
    in.k16.resize(cache);
    in.v16.resize(cache);
    for (size_t i = 0; i < cache; i++) {
        float a = uniform(s), b = uniform(s);
        if (sh.dtype == SPEC_DTYPE_F16) {
            in.k16[i] = km::f32_to_f16(a), in.v16[i] = km::f32_to_f16(b);
            a = km::f16_to_f32(in.k16[i]), b = km::f16_to_f32(in.v16[i]);
        } else if (sh.dtype == SPEC_DTYPE_BF16) {
            in.k16[i] = km::f32_to_bf16(a), in.v16[i] = km::f32_to_bf16(b);
            a = km::bf16_to_f32(in.k16[i]), b = km::bf16_to_f32(in.v16[i]);
        }
        in.k[i] = a, in.v[i] = b;
    }
    in.parents.assign((size_t)sh.B * sh.Tmax, -9); /* entries past T_b are ignored: garbage */
    for (int b = 0; b < sh.B; b++)
        for (int i = 0; i < sh.tree[b]; i++) {
            int64_t r = (int64_t)(splitmix64(s) % (uint64_t)(i + 1)) - 1; /* -1 (another root) .. i-1 */
            if (i > 0 && r < 0 && splitmix64(s) % 4) r = i - 1;             /* mostly chains and branches */
            in.parents[(size_t)b * sh.Tmax + i] = (int32_t)r;
        }
    return in;
}

/* The plain reference: softmax over the prefix and the ancestors-or-self, in double; with a window
 * (> 0), only the keys at positions > the query's - window (prefix slot j at position j, tree node i
 * at prefix + its depth). */
static std::vector<double> reference(const Inputs &in, int window = 0) {
    const Shape &sh = in.sh;
    const int G = sh.H / sh.Hkv;
    std::vector<double> out(in.q.size(), 0.0);
    const double scale = 1.0 / std::sqrt((double)sh.D);
    for (int b = 0; b < sh.B; b++)
        for (int t = 0; t < sh.tree[b]; t++)
            for (int h = 0; h < sh.H; h++) {
                const int P = sh.prefix[b], kvh = h / G;
                std::vector<int> keys;
                for (int j = 0; j < P; j++) keys.push_back(j);
                std::vector<int> anc;
                for (int a = t; a >= 0; a = in.parents[(size_t)b * sh.Tmax + a]) anc.push_back(a);
                std::sort(anc.begin(), anc.end());
                for (int a : anc) keys.push_back(P + a);
                if (window > 0) { /* the ancestors sorted are the path root..t: depth = index */
                    const int qpos = P + (int)anc.size() - 1;
                    std::vector<int> kept;
                    for (size_t j = 0; j < keys.size(); j++) {
                        const int kpos = (int)j < P ? keys[j] : P + (int)(j - (size_t)P);
                        if (kpos > qpos - window) kept.push_back(keys[j]);
                    }
                    keys = kept;
                }
                const float *q = &in.q[(((size_t)b * sh.Tmax + t) * sh.H + h) * sh.D];
                std::vector<double> sc(keys.size());
                double m = -1e300;
                for (size_t j = 0; j < keys.size(); j++) {
                    const float *k = &in.k[(((size_t)b * sh.max_ctx + keys[j]) * sh.Hkv + kvh) * sh.D];
                    double d = 0;
                    for (int x = 0; x < sh.D; x++) d += (double)q[x] * k[x];
                    sc[j] = d * scale;
                    m = std::max(m, sc[j]);
                }
                double l = 0;
                double *o = &out[(((size_t)b * sh.Tmax + t) * sh.H + h) * sh.D];
                for (size_t j = 0; j < keys.size(); j++) {
                    double p = std::exp(sc[j] - m);
                    l += p;
                    const float *v = &in.v[(((size_t)b * sh.max_ctx + keys[j]) * sh.Hkv + kvh) * sh.D];
                    for (int x = 0; x < sh.D; x++) o[x] += p * v[x];
                }
                for (int x = 0; x < sh.D; x++) o[x] /= l;
            }
    return out;
}

/* Runs the op on a context; out is poisoned first. kPlain: spec_tree_attention, else
 * spec_tree_attention_windowed with that window. */
static const int kPlain = INT32_MIN;
static spec_status run(spec_context *ctx, const Inputs &in, std::vector<float> &out, int window = kPlain) {
    const Shape &sh = in.sh;
    const size_t esz = sh.dtype == SPEC_DTYPE_F32 ? 4 : 2, cache = in.k.size() * esz, rows = in.q.size() * 4;
    spec_buffer *q = NULL, *k = NULL, *v = NULL, *o = NULL;
    spec_buffer_alloc(ctx, rows, &q);
    spec_buffer_alloc(ctx, cache, &k);
    spec_buffer_alloc(ctx, cache, &v);
    spec_buffer_alloc(ctx, rows, &o);
    spec_copy_h2d(q, 0, in.q.data(), rows);
    spec_copy_h2d(k, 0, sh.dtype == SPEC_DTYPE_F32 ? (const void *)in.k.data() : (const void *)in.k16.data(), cache);
    spec_copy_h2d(v, 0, sh.dtype == SPEC_DTYPE_F32 ? (const void *)in.v.data() : (const void *)in.v16.data(), cache);
    std::vector<uint32_t> poison(in.q.size(), in.poison_bits);
    spec_copy_h2d(o, 0, poison.data(), rows);
    spec_tree_attention_args a = {};
    a.batch = sh.B;
    a.n_head = sh.H;
    a.n_head_kv = sh.Hkv;
    a.head_dim = sh.D;
    a.max_tree_nodes = sh.Tmax;
    a.max_ctx = sh.max_ctx;
    a.kv_dtype = sh.dtype;
    a.scale = 0.0f;
    a.prefix_len = sh.prefix.data();
    a.tree_len = sh.tree.data();
    a.parents = in.parents.data();
    a.q = q, a.k_cache = k, a.v_cache = v, a.out = o;
    spec_status st = window == kPlain ? spec_tree_attention(ctx, &a) : spec_tree_attention_windowed(ctx, &a, window);
    out.resize(in.q.size());
    spec_copy_d2h(out.data(), o, 0, rows);
    spec_buffer_free(q);
    spec_buffer_free(k);
    spec_buffer_free(v);
    spec_buffer_free(o);
    return st;
}

/* Every element: valid rows within tolerance (atol relative to max |V| = 1), padding rows still
 * poisoned. Returns the number of bad elements and the worst error. */
static long compare(const Inputs &in, const std::vector<float> &got, const std::vector<double> &want, double tol, double *worst) {
    const Shape &sh = in.sh;
    long bad = 0;
    *worst = 0;
    for (int b = 0; b < sh.B; b++)
        for (int t = 0; t < sh.Tmax; t++)
            for (int h = 0; h < sh.H; h++)
                for (int x = 0; x < sh.D; x++) {
                    size_t i = (((size_t)b * sh.Tmax + t) * sh.H + h) * sh.D + x;
                    if (t >= sh.tree[b]) {
                        uint32_t bits;
                        memcpy(&bits, &got[i], 4);
                        bad += bits != in.poison_bits;
                        continue;
                    }
                    double e = std::fabs((double)got[i] - want[i]);
                    if (!(e <= tol)) bad++;
                    if (!(e <= *worst)) *worst = e;
                }
    return bad;
}

static const Shape kShapes[] = {
    /* B  H  Hkv  D  Tmax  ctx   dtype               prefix                tree */
    {1, 1, 1, 64, 1, 1, SPEC_DTYPE_F32, {0}, {1}},
    {1, 4, 1, 64, 8, 40, SPEC_DTYPE_F16, {17}, {8}},
    {2, 8, 2, 128, 16, 300, SPEC_DTYPE_BF16, {250, 3}, {16, 9}},
    {3, 6, 3, 64, 33, 700, SPEC_DTYPE_BF16, {600, 0, 77}, {33, 1, 20}},
    {2, 4, 4, 128, 64, 1200, SPEC_DTYPE_F16, {1100, 513}, {64, 40}},
    {1, 32, 8, 128, 128, 400, SPEC_DTYPE_BF16, {250}, {128}},
};

static void test_against_reference(spec_context *ctx) {
    int i = 0;
    for (const Shape &sh : kShapes) {
        Inputs in = make_inputs(sh, 100 + i++);
        std::vector<float> out;
        CHECK_OK(run(ctx, in, out));
        double worst;
        long bad = compare(in, out, reference(in), 1e-5, &worst); /* |V| <= 1 */
        printf("B=%d H=%d/%d D=%d T<=%d %s: max error %.2e\n", sh.B, sh.H, sh.Hkv, sh.D, sh.Tmax,
               sh.dtype == SPEC_DTYPE_F32 ? "f32" : sh.dtype == SPEC_DTYPE_F16 ? "f16" : "bf16", worst);
        CHECK(bad == 0);
    }
}

/* spec_tree_attention_windowed (ABI 0.9) against the reference with windows from 1 (each token sees
 * only itself) to past every position (the plain call's bits), on the shapes above. */
static void test_windowed_against_reference(spec_context *ctx) {
    int i = 0;
    for (const Shape &sh : kShapes) {
        Inputs in = make_inputs(sh, 300 + i++);
        std::vector<float> plain;
        CHECK_OK(run(ctx, in, plain));
        double worst_all = 0;
        for (int window : {1, 2, 7, 64, 300, 1 << 20}) {
            std::vector<float> out;
            CHECK_OK(run(ctx, in, out, window));
            double worst;
            long bad = compare(in, out, reference(in, window), 1e-5, &worst);
            worst_all = std::max(worst_all, worst);
            CHECK(bad == 0);
            if (window >= sh.max_ctx) CHECK(memcmp(out.data(), plain.data(), out.size() * 4) == 0);
        }
        std::vector<float> zero; /* window 0: no window */
        CHECK_OK(run(ctx, in, zero, 0));
        CHECK(memcmp(zero.data(), plain.data(), zero.size() * 4) == 0);
        printf("windowed B=%d H=%d/%d D=%d T<=%d: max error %.2e over windows 1..2^20\n", sh.B, sh.H, sh.Hkv, sh.D, sh.Tmax, worst_all);
    }
    /* a window that matters: token 0 of a 17-token prefix with window 4 differs from the plain call */
    Inputs in = make_inputs(kShapes[1], 9);
    std::vector<float> plain, win;
    CHECK_OK(run(ctx, in, plain));
    CHECK_OK(run(ctx, in, win, 4));
    CHECK(memcmp(plain.data(), win.data(), 64 * 4) != 0);
    CHECK_FAILS(ctx, run(ctx, in, win, -3), SPEC_ERR_INVALID_ARGUMENT, "sliding_window -3 is negative");
}

static void test_bad_input(spec_context *ctx) {
    Shape sh = {2, 4, 2, 64, 4, 20, SPEC_DTYPE_F16, {10, 3}, {4, 2}};
    Inputs in = make_inputs(sh, 5);
    std::vector<float> out;
    CHECK_OK(run(ctx, in, out));
    spec_buffer *q = NULL, *kv = NULL, *o = NULL, *small = NULL;
    CHECK_OK(spec_buffer_alloc(ctx, in.q.size() * 4, &q));
    CHECK_OK(spec_buffer_alloc(ctx, in.k.size() * 2, &kv));
    CHECK_OK(spec_buffer_alloc(ctx, in.q.size() * 4, &o));
    CHECK_OK(spec_buffer_alloc(ctx, 16, &small));
    std::vector<int32_t> parents = {-1, 0, 1, 1, -1, 0, 5, 5}, prefix = sh.prefix, tree = sh.tree;
    spec_tree_attention_args a = {};
    a.batch = 2, a.n_head = 4, a.n_head_kv = 2, a.head_dim = 64, a.max_tree_nodes = 4, a.max_ctx = 20, a.kv_dtype = SPEC_DTYPE_F16;
    a.prefix_len = prefix.data(), a.tree_len = tree.data(), a.parents = parents.data();
    a.q = q, a.k_cache = kv, a.v_cache = kv, a.out = o;
    CHECK_OK(spec_tree_attention(ctx, &a));
    spec_tree_attention_args x = a;
    x.head_dim = 96;
    CHECK_FAILS(ctx, spec_tree_attention(ctx, &x), SPEC_ERR_UNSUPPORTED, "head_dim 96 is not supported");
    x = a;
    x.n_head = 5;
    CHECK_FAILS(ctx, spec_tree_attention(ctx, &x), SPEC_ERR_INVALID_ARGUMENT, "n_head 5 is not a multiple of n_head_kv 2");
    x = a;
    x.max_tree_nodes = 129;
    CHECK_FAILS(ctx, spec_tree_attention(ctx, &x), SPEC_ERR_INVALID_ARGUMENT, "max_tree_nodes = 129");
    x = a;
    x.kv_dtype = SPEC_DTYPE_Q8_0;
    CHECK_FAILS(ctx, spec_tree_attention(ctx, &x), SPEC_ERR_INVALID_ARGUMENT, "kv_dtype 3 must be F32, F16 or BF16");
    x = a;
    x.scale = -1.0f;
    CHECK_FAILS(ctx, spec_tree_attention(ctx, &x), SPEC_ERR_INVALID_ARGUMENT, "scale -1");
    x = a;
    x.parents = NULL;
    CHECK_FAILS(ctx, spec_tree_attention(ctx, &x), SPEC_ERR_INVALID_ARGUMENT, "parents is null");
    parents[4 + 1] = 1; /* sequence 1, node 1: its own parent */
    CHECK_FAILS(ctx, spec_tree_attention(ctx, &a), SPEC_ERR_INVALID_ARGUMENT, "sequence 1: parents[1] = 1 must be -1 or an earlier node");
    parents[4 + 1] = -2;
    CHECK_FAILS(ctx, spec_tree_attention(ctx, &a), SPEC_ERR_INVALID_ARGUMENT, "parents[1] = -2");
    parents[4 + 1] = 0;
    CHECK_OK(spec_tree_attention(ctx, &a)); /* parents[4 + 2..3] = 5 lie past T_1 = 2: ignored */
    tree[0] = 5;
    CHECK_FAILS(ctx, spec_tree_attention(ctx, &a), SPEC_ERR_INVALID_ARGUMENT, "sequence 0: tree_len = 5 is out of range (1..4 = max_tree_nodes)");
    tree[0] = 0;
    CHECK_FAILS(ctx, spec_tree_attention(ctx, &a), SPEC_ERR_INVALID_ARGUMENT, "tree_len = 0");
    tree[0] = 4;
    prefix[1] = 19;
    CHECK_FAILS(ctx, spec_tree_attention(ctx, &a), SPEC_ERR_OUT_OF_RANGE, "sequence 1: prefix 19 + tree 2 tokens do not fit max_ctx 20");
    prefix[1] = -1;
    CHECK_FAILS(ctx, spec_tree_attention(ctx, &a), SPEC_ERR_INVALID_ARGUMENT, "prefix_len = -1 is negative");
    prefix[1] = 3;
    x = a;
    x.k_cache = small;
    CHECK_FAILS(ctx, spec_tree_attention(ctx, &x), SPEC_ERR_BUFFER_TOO_SMALL, "k_cache buffer holds 16 bytes, needs 10240");
    x = a;
    x.kv_dtype = SPEC_DTYPE_F32;
    CHECK_FAILS(ctx, spec_tree_attention(ctx, &x), SPEC_ERR_BUFFER_TOO_SMALL, "k_cache buffer holds 10240 bytes, needs 20480");
    x = a;
    x.out = q;
    CHECK_FAILS(ctx, spec_tree_attention(ctx, &x), SPEC_ERR_INVALID_ARGUMENT, "out must not be the q");
    x = a;
    x.out = NULL;
    CHECK_FAILS(ctx, spec_tree_attention(ctx, &x), SPEC_ERR_INVALID_HANDLE, "out buffer is null");
    CHECK_FAILS(NULL, spec_tree_attention(NULL, &a), SPEC_ERR_INVALID_HANDLE, "context is null");
    CHECK_FAILS(ctx, spec_tree_attention(ctx, NULL), SPEC_ERR_INVALID_ARGUMENT, "args is null");
    spec_buffer_free(q);
    spec_buffer_free(kv);
    spec_buffer_free(o);
    spec_buffer_free(small);
}

int main(void) {
    spec_context *ctx = NULL;
    CHECK_OK(spec_context_create("cpu", 0, &ctx));
    test_against_reference(ctx);
    test_windowed_against_reference(ctx);
    test_bad_input(ctx);
    spec_context_destroy(ctx);
    return check_finish("test_tree_attention");
}
