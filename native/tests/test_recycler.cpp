/* Token Recycling on the cpu backend: the matrix handle (create, fill, save, load), the update
 * (top-k of every node's row into the row of its token, last node wins) and the draft (BFS over
 * a template) against simple references, the paper's default template, and bad input. */
#include <stdint.h>
#include <stdlib.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

#include "check.h"
#include "test_random.hpp"


static std::vector<int32_t> save(spec_recycler *r) {
    int32_t v = 0, k = 0;
    spec_recycler_shape(r, &v, &k);
    std::vector<int32_t> m((size_t)v * k);
    CHECK_OK(spec_recycler_save(r, m.data(), m.size()));
    return m;
}

/* Reference top-k: sort ids by (logit desc, id asc), NaN as -inf. */
static std::vector<int32_t> ref_topk(const float *row, int V, int k) {
    std::vector<int32_t> ids(V);
    std::iota(ids.begin(), ids.end(), 0);
    auto key = [&](int i) { return std::isnan(row[i]) ? -INFINITY : row[i]; };
    std::stable_sort(ids.begin(), ids.end(), [&](int a, int b) { return key(a) > key(b); });
    ids.resize(k);
    return ids;
}

static void test_handle(spec_context *ctx) {
    spec_recycler *r = NULL;
    CHECK_OK(spec_recycler_create(ctx, 100, SPEC_RECYCLER_DEFAULT_K, &r));
    int32_t v = 0, k = 0;
    CHECK_OK(spec_recycler_shape(r, &v, &k));
    CHECK(v == 100 && k == 8);
    std::vector<int32_t> m = save(r);
    CHECK(std::all_of(m.begin(), m.end(), [](int32_t x) { return x == 0; }));
    CHECK_OK(spec_recycler_fill(r, SPEC_RECYCLER_FILL_SELF));
    m = save(r);
    CHECK(m[0] == 0 && m[8 * 37 + 5] == 37 && m[8 * 99 + 7] == 99);
    CHECK_OK(spec_recycler_fill(r, SPEC_RECYCLER_FILL_RANK));
    m = save(r);
    CHECK(m[8 * 37 + 5] == 5 && m[8 * 99 + 7] == 7);
    for (size_t i = 0; i < m.size(); i++) m[i] = (int32_t)((i * 31) % 100);
    CHECK_OK(spec_recycler_load(r, m.data(), m.size()));
    CHECK(save(r) == m);

    CHECK_FAILS(ctx, spec_recycler_fill(r, 3), SPEC_ERR_INVALID_ARGUMENT, "unknown fill 3");
    CHECK_FAILS(ctx, spec_recycler_save(r, m.data(), 799), SPEC_ERR_BUFFER_TOO_SMALL, "n_elements 799 must be n_vocab * k = 800");
    CHECK_FAILS(ctx, spec_recycler_save(r, NULL, 800), SPEC_ERR_INVALID_ARGUMENT, "dst is null");
    CHECK_FAILS(ctx, spec_recycler_load(r, m.data(), 801), SPEC_ERR_INVALID_ARGUMENT, "n_elements 801");
    std::vector<int32_t> bad = m;
    bad[8 * 42 + 3] = 100;
    CHECK_FAILS(ctx, spec_recycler_load(r, bad.data(), bad.size()), SPEC_ERR_OUT_OF_RANGE, "element 339 (row 42) = 100 is out of range");
    CHECK(save(r) == m); /* a refused load changes nothing */
    bad[8 * 42 + 3] = -1;
    CHECK_FAILS(ctx, spec_recycler_load(r, bad.data(), bad.size()), SPEC_ERR_OUT_OF_RANGE, "= -1 is out of range");
    CHECK_FAILS(NULL, spec_recycler_shape(NULL, &v, &k), SPEC_ERR_INVALID_HANDLE, "recycler is null");
    CHECK_FAILS(NULL, spec_recycler_shape(r, NULL, &k), SPEC_ERR_INVALID_ARGUMENT, "null");
    CHECK_OK(spec_recycler_destroy(r));
    CHECK_FAILS(NULL, spec_recycler_destroy(NULL), SPEC_ERR_INVALID_HANDLE, "recycler is null");

    spec_recycler *x = NULL;
    CHECK_FAILS(ctx, spec_recycler_create(ctx, 100, 33, &x), SPEC_ERR_INVALID_ARGUMENT, "k = 33 is out of range (1..32)");
    CHECK_FAILS(ctx, spec_recycler_create(ctx, 100, 0, &x), SPEC_ERR_INVALID_ARGUMENT, "k = 0");
    CHECK_FAILS(ctx, spec_recycler_create(ctx, 4, 8, &x), SPEC_ERR_INVALID_ARGUMENT, "k = 8 is more than the vocabulary (4)");
    CHECK_FAILS(ctx, spec_recycler_create(ctx, 0, 8, &x), SPEC_ERR_INVALID_ARGUMENT, "n_vocab = 0");
    CHECK_FAILS(ctx, spec_recycler_create(ctx, 100, 8, NULL), SPEC_ERR_INVALID_ARGUMENT, "out is null");
    CHECK_FAILS(NULL, spec_recycler_create(NULL, 100, 8, &x), SPEC_ERR_INVALID_HANDLE, "context is null");
    CHECK(x == NULL);
}

static void test_default_template(void) {
    int32_t par[SPEC_RECYCLER_DEFAULT_TEMPLATE_NODES], rank[SPEC_RECYCLER_DEFAULT_TEMPLATE_NODES], n = 0;
    CHECK_OK(spec_recycler_default_template(par, rank, SPEC_RECYCLER_DEFAULT_TEMPLATE_NODES, &n));
    CHECK(n == 81);
    /* 80 drafts over depth 6, up to 8 children per node, topological, breadth-first. */
    int depth[81] = {0}, children[81] = {0}, per_depth[8] = {0};
    CHECK(par[0] == -1);
    for (int i = 1; i < n; i++) {
        CHECK(par[i] >= 0 && par[i] < i && rank[i] >= 0 && rank[i] < 8);
        depth[i] = depth[par[i]] + 1;
        children[par[i]]++;
        per_depth[depth[i]]++;
        CHECK(depth[i] >= depth[i - 1]);
    }
    CHECK(*std::max_element(depth, depth + n) == 6);
    CHECK(*std::max_element(children, children + n) == 8);
    CHECK(per_depth[1] == 8); /* the root takes all 8 candidates */
    for (int d = 2; d <= 6; d++) CHECK(per_depth[d] > 0 && per_depth[d] <= per_depth[d - 1] * 8);
    /* Children of one parent come in rank order, from rank 0 without gaps. */
    for (int i = 1; i < n; i++) {
        int prev = -1;
        for (int j = 1; j < i; j++) if (par[j] == par[i]) prev = rank[j];
        CHECK(rank[i] == prev + 1);
    }
    CHECK_FAILS(NULL, spec_recycler_default_template(par, rank, 80, &n), SPEC_ERR_BUFFER_TOO_SMALL, "capacity 80, the template has 81 nodes");
    CHECK(n == 81);
    CHECK_FAILS(NULL, spec_recycler_default_template(NULL, rank, 81, NULL), SPEC_ERR_INVALID_ARGUMENT, "null");
}

static void test_update_and_draft(spec_context *ctx) {
    const int V = 300, K = 8, B = 3, N = 12;
    uint64_t s = 3;
    spec_recycler *r = NULL;
    CHECK_OK(spec_recycler_create(ctx, V, K, &r));
    CHECK_OK(spec_recycler_fill(r, SPEC_RECYCLER_FILL_SELF));
    std::vector<int32_t> ref = save(r);
    std::vector<float> logits((size_t)B * N * V);
    for (float &x : logits) x = (float)(splitmix64(s) % 50) * 0.25f; /* ties */
    logits[7] = NAN;
    logits[V + 3] = INFINITY;
    std::vector<int32_t> n_nodes = {N, 5, 9}, tokens((size_t)B * N);
    for (auto &t : tokens) t = (int32_t)(splitmix64(s) % 20); /* repeated tokens: last wins */
    spec_buffer *lg = NULL;
    CHECK_OK(spec_buffer_alloc(ctx, logits.size() * 4, &lg));
    CHECK_OK(spec_copy_h2d(lg, 0, logits.data(), logits.size() * 4));
    spec_recycler_update_args u = {B, N, n_nodes.data(), tokens.data(), lg};
    CHECK_OK(spec_recycler_update(r, &u));
    for (int b = 0; b < B; b++)
        for (int i = 0; i < n_nodes[b]; i++) {
            std::vector<int32_t> top = ref_topk(&logits[((size_t)b * N + i) * V], V, K);
            std::copy(top.begin(), top.end(), &ref[(size_t)tokens[(size_t)b * N + i] * K]);
        }
    CHECK(save(r) == ref);

    /* Draft: the default template over the updated matrix, three roots. */
    int32_t tp[81], tr[81], n = 0;
    CHECK_OK(spec_recycler_default_template(tp, tr, 81, &n));
    std::vector<int32_t> roots = {tokens[0], 299, tokens[N + 2]}, out((size_t)B * n, -7), outp((size_t)B * n, -7);
    spec_recycler_draft_args d = {B, n, tp, tr, roots.data(), out.data(), outp.data()};
    CHECK_OK(spec_recycler_draft(r, &d));
    int bad = 0;
    for (int b = 0; b < B; b++) {
        std::vector<int32_t> t(n);
        t[0] = roots[b];
        for (int i = 1; i < n; i++) t[i] = ref[(size_t)t[tp[i]] * K + tr[i]];
        for (int i = 0; i < n; i++) bad += out[(size_t)b * n + i] != t[i] || outp[(size_t)b * n + i] != tp[i];
    }
    CHECK(bad == 0);
    d.parents = NULL; /* optional */
    CHECK_OK(spec_recycler_draft(r, &d));

    /* Bad input: the update's node arrays, the draft's template and roots. */
    tokens[4] = V;
    CHECK_FAILS(ctx, spec_recycler_update(r, &u), SPEC_ERR_OUT_OF_RANGE, "sequence 0: token[4] = 300 is out of range (vocabulary 300)");
    tokens[4] = 0;
    n_nodes[2] = 13;
    CHECK_FAILS(ctx, spec_recycler_update(r, &u), SPEC_ERR_INVALID_ARGUMENT, "sequence 2: n_nodes = 13 is out of range");
    n_nodes[2] = 9;
    spec_recycler_update_args ux = u;
    ux.batch = SPEC_KERNEL_MAX_BATCH + 1;
    CHECK_FAILS(ctx, spec_recycler_update(r, &ux), SPEC_ERR_INVALID_ARGUMENT, "batch = 1025");
    ux = u;
    ux.max_tree_nodes = 200;
    CHECK_FAILS(ctx, spec_recycler_update(r, &ux), SPEC_ERR_INVALID_ARGUMENT, "max_tree_nodes = 200");
    spec_buffer *small = NULL;
    CHECK_OK(spec_buffer_alloc(ctx, 100, &small));
    ux = u;
    ux.logits = small;
    CHECK_FAILS(ctx, spec_recycler_update(r, &ux), SPEC_ERR_BUFFER_TOO_SMALL, "logits buffer holds 100 bytes");
    CHECK_FAILS(ctx, spec_recycler_update(r, NULL), SPEC_ERR_INVALID_ARGUMENT, "args is null");
    CHECK(save(r) == ref); /* refused updates change nothing */

    spec_recycler_draft_args dx = d;
    tr[5] = K;
    CHECK_FAILS(ctx, spec_recycler_draft(r, &dx), SPEC_ERR_INVALID_ARGUMENT, "template ranks[5] = 8 is out of range (0..7, k = 8)");
    tr[5] = 0;
    tp[9] = 9;
    CHECK_FAILS(ctx, spec_recycler_draft(r, &dx), SPEC_ERR_INVALID_ARGUMENT, "template parents[9] = 9 must be an earlier node");
    tp[9] = 1;
    tp[0] = 3;
    CHECK_FAILS(ctx, spec_recycler_draft(r, &dx), SPEC_ERR_INVALID_ARGUMENT, "template parents[0] = 3 must be -1");
    tp[0] = -1;
    roots[1] = -5;
    CHECK_FAILS(ctx, spec_recycler_draft(r, &dx), SPEC_ERR_OUT_OF_RANGE, "root token[1] = -5 is out of range");
    roots[1] = 1;
    dx.n_template = 129;
    CHECK_FAILS(ctx, spec_recycler_draft(r, &dx), SPEC_ERR_INVALID_ARGUMENT, "n_template = 129");
    dx = d;
    dx.tokens = NULL;
    CHECK_FAILS(ctx, spec_recycler_draft(r, &dx), SPEC_ERR_INVALID_ARGUMENT, "tokens is null");
    CHECK_OK(spec_recycler_draft(r, &d));

    spec_buffer_free(small);
    spec_buffer_free(lg);
    CHECK_OK(spec_recycler_destroy(r));
    CHECK_FAILS(NULL, spec_recycler_draft(NULL, &d), SPEC_ERR_INVALID_HANDLE, "recycler is null");
    uint64_t junk[8] = {0};
    CHECK_FAILS(NULL, spec_recycler_update((spec_recycler *)junk, &u), SPEC_ERR_INVALID_HANDLE, "recycler is not live");
}

int main(void) {
    spec_context *ctx = NULL;
    CHECK_OK(spec_context_create("cpu", 0, &ctx));
    test_handle(ctx);
    test_default_template();
    test_update_and_draft(ctx);
    spec_context_destroy(ctx);
    return check_finish("test_recycler");
}
