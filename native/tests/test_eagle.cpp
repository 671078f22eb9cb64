// EAGLE draft layers (ABI 0.9): a random layer built through the ABI against a double-precision reference of
// EAGLE-1's forward (x = fc [embd(t); f] + b, layer 0 without an input norm, rotate-halves RoPE, no output norm), the
// same rows as a chain, in pieces with commits and inside a tree, and every refusal.
#pragma GCC diagnostic ignored "-Wunused-function" // the fixture's model helpers this test does not need
#include "eagle_fixture.hpp"

namespace {

void test_forward_against_reference(spec_context *ctx, int dtype, double tol) {
    Rng r(11 + dtype);
    Layer L = make_layer(r, dtype);
    spec_model *m = load_layer(ctx, L);
    const int n = 12;
    std::vector<int> tokens = random_tokens(r, n, V);
    std::vector<std::vector<double>> feats(n, std::vector<double>(E));
    std::vector<float> fflat((size_t)n * E);
    for (int i = 0; i < n; i++)
        for (int e = 0; e < E; e++) fflat[(size_t)(i * E + e)] = (float)(feats[(size_t)i][(size_t)e] = r.sym(1.5));
    spec_buffer *features = alloc_buf(ctx, (uint64_t)n * E);
    CHECK_OK(spec_copy_h2d(features, 0, fflat.data(), fflat.size() * 4));
    std::vector<std::vector<double>> outs, logits;
    reference(L, tokens, feats, outs, logits);

    // at once
    spec_kv *kv = NULL;
    CHECK_OK(spec_kv_create(m, 64, &kv));
    Run all = eagle(ctx, m, kv, tokens, NULL, features, NULL);
    CHECK_OK(all.status);
    double worst = 0;
    for (int i = 0; i < n; i++) {
        worst = std::max(worst, row_err(&all.logits[(size_t)i * V], logits[(size_t)i].data(), V));
        worst = std::max(worst, row_err(&all.outs[(size_t)i * E], outs[(size_t)i].data(), E));
    }
    printf("eagle layer (%s) vs double reference: %.2e\n", dtype_name_for_test(dtype), worst);
    CHECK(worst < tol);

    // 5 rows committed, then a tree: a stray root (feature row 0) and the chain of the other rows under row 5
    CHECK_OK(spec_kv_truncate(kv, 0));
    std::vector<int> head(tokens.begin(), tokens.begin() + 5);
    CHECK_OK(eagle(ctx, m, kv, head, NULL, features, NULL).status);
    commit_chain(kv, 5);
    std::vector<int> tt = {tokens[5], (tokens[6] + 1) % V}, parents = {-1, -1}, rows = {5, 0};
    for (int i = 6; i < n; i++) {
        tt.push_back(tokens[(size_t)i]);
        parents.push_back(i == 6 ? 0 : (int)tt.size() - 2);
        rows.push_back(i);
    }
    Run tree = eagle(ctx, m, kv, tt, parents.data(), features, rows.data());
    CHECK_OK(tree.status);
    bool same = true;
    for (size_t j = 0; j < tt.size(); j++) {
        if (j == 1) continue;
        const int i = j == 0 ? 5 : (int)j + 4;
        same = same && std::memcmp(&tree.logits[j * V], &all.logits[(size_t)i * V], V * 4) == 0 &&
               std::memcmp(&tree.outs[j * E], &all.outs[(size_t)i * E], E * 4) == 0;
    }
    // bit-identical: a row's arithmetic depends on its own keys only, and not on who runs it (the 12-row call above
    // splits its products over the pool, the 5- and 8-row calls here run on the caller alone, EAGLE_CALLER_ROWS)
    CHECK(same);
    spec_kv_destroy(kv);
    spec_buffer_free(features);
    spec_model_destroy(m);
}

bool same_rows(const Run &a, int ia, const Run &b, int ib) {
    return std::memcmp(&a.logits[(size_t)ia * V], &b.logits[(size_t)ib * V], V * 4) == 0 &&
           std::memcmp(&a.outs[(size_t)ia * E], &b.outs[(size_t)ib * E], E * 4) == 0;
}

// ABI 0.10: a tree grown one depth per spec_eagle_forward_extend call gives bit for bit the rows of one call over the
// whole tree; commits and truncation after it keep exactly the accepted rows.
void test_extension(spec_context *ctx, int dtype) {
    Rng r(23 + dtype);
    Layer L = make_layer(r, dtype);
    spec_model *m = load_layer(ctx, L);
    const int n_feat = 16;
    std::vector<float> fflat((size_t)n_feat * E);
    for (float &v : fflat) v = (float)r.sym(1.5);
    spec_buffer *features = alloc_buf(ctx, (uint64_t)n_feat * E);
    CHECK_OK(spec_copy_h2d(features, 0, fflat.data(), fflat.size() * 4));
    std::vector<int> prefix = random_tokens(r, 4, V), tree = random_tokens(r, 7, V);
    // the tree: a0 a1 | b0 b1 (under a0) b2 (under a1) | c0 (under b2) c1 (under b0); feature rows as a drafter's
    const int parents[7] = {-1, -1, 0, 0, 1, 4, 2}, rows[7] = {4, 4, 5, 5, 6, 7, 8};
    auto with_prefix = [&](spec_kv *&kv) {
        CHECK_OK(spec_kv_create(m, 32, &kv));
        CHECK_OK(eagle(ctx, m, kv, prefix, NULL, features, NULL).status);
        commit_chain(kv, 4);
    };
    spec_kv *one = NULL, *grown = NULL;
    with_prefix(one);
    with_prefix(grown);
    Run whole = eagle(ctx, m, one, tree, parents, features, rows);
    CHECK_OK(whole.status);

    const int cuts[4] = {0, 2, 5, 7};
    bool same = true;
    for (int d = 0; d < 3; d++) {
        std::vector<int> t(tree.begin() + cuts[d], tree.begin() + cuts[d + 1]);
        Run part = eagle(ctx, m, grown, t, parents + cuts[d], features, rows + cuts[d], true);
        CHECK_OK(part.status);
        for (int j = 0; j < (int)t.size(); j++) same = same && same_rows(part, j, whole, cuts[d] + j);
        if (d == 0) { // refusals change nothing: the tree grows on afterwards as if they had not been made
            const int beyond[1] = {2}, self_parent[1] = {2};
            std::vector<int> one_token = {tree[2]};
            spec_eagle_forward_args ea{};
            spec_forward_args a;
            std::memset(&a, 0, sizeof a);
            a.n_tokens = 1;
            a.tokens = one_token.data();
            a.parents = beyond;
            ea.forward = &a;
            ea.features = features;
            CHECK_FAILS(ctx, spec_eagle_forward_extend(m, grown, &ea), SPEC_ERR_INVALID_ARGUMENT, "earlier pending token");
            a.parents = self_parent;
            CHECK_FAILS(ctx, spec_eagle_forward_extend(m, grown, &ea), SPEC_ERR_INVALID_ARGUMENT, "earlier pending token");
            std::vector<int> many = random_tokens(r, 27, V);
            a.n_tokens = 27;
            a.tokens = many.data();
            a.parents = NULL;
            CHECK_FAILS(ctx, spec_eagle_forward_extend(m, grown, &ea), SPEC_ERR_OUT_OF_RANGE, "after 2 pending");
        }
    }
    printf("eagle tree grown by extension (%s) equals one call: %s\n", dtype_name_for_test(dtype), same ? "bit for bit" : "NO");
    CHECK(same);

    // accept a1 b2 c0, then run two more rows: as in a cache that ran those three as a chain
    const int path[3] = {1, 4, 5};
    CHECK_OK(spec_kv_commit(grown, 3, path));
    int32_t len = 0;
    CHECK_OK(spec_kv_length(grown, &len));
    CHECK(len == 7);
    spec_kv *chain = NULL;
    with_prefix(chain);
    std::vector<int> accepted = {tree[1], tree[4], tree[5]};
    const int accepted_rows[3] = {4, 6, 7};
    CHECK_OK(eagle(ctx, m, chain, accepted, NULL, features, accepted_rows).status);
    commit_chain(chain, 3);
    std::vector<int> next = random_tokens(r, 2, V);
    const int next_rows[2] = {9, 10};
    Run after_commit = eagle(ctx, m, grown, next, NULL, features, next_rows);
    Run after_chain = eagle(ctx, m, chain, next, NULL, features, next_rows);
    CHECK_OK(after_commit.status);
    CHECK_OK(after_chain.status);
    CHECK(same_rows(after_commit, 0, after_chain, 0) && same_rows(after_commit, 1, after_chain, 1));

    // rejected: truncate back to the prefix and grow the tree again; it gives the first call's rows
    CHECK_OK(spec_kv_truncate(grown, 4));
    std::vector<int> depth1(tree.begin(), tree.begin() + 2);
    Run again = eagle(ctx, m, grown, depth1, parents, features, rows, true);
    CHECK_OK(again.status);
    CHECK(same_rows(again, 0, whole, 0) && same_rows(again, 1, whole, 1));
    // a plain call drops the pending tree (2 tokens pending, not 4), and extending goes on from its tokens
    CHECK_OK(eagle(ctx, m, grown, depth1, parents, features, rows).status);
    const int fourth[1] = {3};
    CHECK_FAILS(ctx, spec_kv_commit(grown, 1, fourth), SPEC_ERR_OUT_OF_RANGE, "not a pending token");
    Run deeper = eagle(ctx, m, grown, std::vector<int>(tree.begin() + 2, tree.begin() + 5), parents + 2, features, rows + 2, true);
    CHECK_OK(deeper.status);
    CHECK(same_rows(deeper, 0, whole, 2) && same_rows(deeper, 1, whole, 3) && same_rows(deeper, 2, whole, 4));
    spec_kv_destroy(one);
    spec_kv_destroy(grown);
    spec_kv_destroy(chain);
    spec_buffer_free(features);
    spec_model_destroy(m);
}

// ABI 0.11: spec_eagle_forward_extend_summarize gives the rows of spec_eagle_forward_extend and spec_logits_summarize's
// summaries of its logits, bit for bit; a bad k or logits mode is refused before anything runs.
void test_extension_summarized(spec_context *ctx) {
    Rng r(31);
    Layer L = make_layer(r, SPEC_DTYPE_F32);
    spec_model *m = load_layer(ctx, L);
    const int n_feat = 8;
    std::vector<float> fflat((size_t)n_feat * E);
    for (float &v : fflat) v = (float)r.sym(1.5);
    spec_buffer *features = alloc_buf(ctx, (uint64_t)n_feat * E);
    CHECK_OK(spec_copy_h2d(features, 0, fflat.data(), fflat.size() * 4));
    std::vector<int> prefix = random_tokens(r, 3, V), tree = random_tokens(r, 5, V);
    const int parents[5] = {-1, -1, 0, 1, 2}, rows[5] = {3, 3, 4, 5, 6}, cuts[4] = {0, 2, 4, 5};
    spec_kv *plain = NULL, *fused = NULL;
    for (spec_kv **kv : {&plain, &fused}) {
        CHECK_OK(spec_kv_create(m, 16, kv));
        CHECK_OK(eagle(ctx, m, *kv, prefix, NULL, features, NULL).status);
        commit_chain(*kv, 3);
    }
    spec_buffer *lg = alloc_buf(ctx, 2ull * V), *out = alloc_buf(ctx, 2ull * E);
    bool same = true;
    for (int d = 0; d < 3; d++) {
        const int n = cuts[d + 1] - cuts[d];
        std::vector<int> t(tree.begin() + cuts[d], tree.begin() + cuts[d + 1]);
        Run want = eagle(ctx, m, plain, t, parents + cuts[d], features, rows + cuts[d], true);
        CHECK_OK(want.status);
        spec_forward_args a;
        std::memset(&a, 0, sizeof a);
        a.n_tokens = n;
        a.tokens = t.data();
        a.parents = parents + cuts[d];
        a.logits_mode = SPEC_LOGITS_ALL;
        a.logits = lg;
        a.final_hidden = out;
        spec_eagle_forward_args ea{&a, features, 0, rows + cuts[d]};
        spec_logits_summary got[2], expect[2];
        if (d == 1) { // refusals leave the pending tree as it was
            CHECK_FAILS(ctx, spec_eagle_forward_extend_summarize(m, fused, &ea, 0, got), SPEC_ERR_INVALID_ARGUMENT, "k = 0");
            CHECK_FAILS(ctx, spec_eagle_forward_extend_summarize(m, fused, &ea, SPEC_SUMMARY_MAX_K + 1, got), SPEC_ERR_INVALID_ARGUMENT, "out of range");
            CHECK_FAILS(ctx, spec_eagle_forward_extend_summarize(m, fused, &ea, 4, NULL), SPEC_ERR_INVALID_ARGUMENT, "out is null");
            a.logits_mode = SPEC_LOGITS_LAST;
            CHECK_FAILS(ctx, spec_eagle_forward_extend_summarize(m, fused, &ea, 4, got), SPEC_ERR_INVALID_ARGUMENT, "SPEC_LOGITS_ALL");
            a.logits_mode = SPEC_LOGITS_ALL;
        }
        CHECK_OK(spec_eagle_forward_extend_summarize(m, fused, &ea, 4, got));
        std::vector<float> lf((size_t)n * V), of((size_t)n * E);
        CHECK_OK(spec_copy_d2h(lf.data(), lg, 0, lf.size() * 4));
        CHECK_OK(spec_copy_d2h(of.data(), out, 0, of.size() * 4));
        same = same && std::memcmp(lf.data(), want.logits.data(), lf.size() * 4) == 0 && std::memcmp(of.data(), want.outs.data(), of.size() * 4) == 0;
        CHECK_OK(spec_logits_summarize(ctx, lg, 0, n, V, V, 4, expect));
        for (int j = 0; j < n; j++) {
            for (int i = 0; i < 4; i++) same = same && got[j].top[i] == expect[j].top[i] && got[j].prob[i] == expect[j].prob[i];
            same = same && got[j].entropy == expect[j].entropy;
        }
    }
    printf("eagle extension with summaries equals extension then spec_logits_summarize: %s\n", same ? "bit for bit" : "NO");
    CHECK(same);
    spec_kv_destroy(plain);
    spec_kv_destroy(fused);
    spec_buffer_free(lg);
    spec_buffer_free(out);
    spec_buffer_free(features);
    spec_model_destroy(m);
}

void test_refusals(spec_context *ctx) {
    Rng r(5);
    Layer L = make_layer(r, SPEC_DTYPE_F32);
    spec_model *plain = NULL;
    CHECK_OK(spec_model_create(ctx, &L.c, &plain));
    CHECK_FAILS(ctx, spec_model_set_eagle_weight(plain, SPEC_EW_FC, L.fc.dtype, L.fc.data(), L.fc.size(), E, 2 * E), SPEC_ERR_INVALID_ARGUMENT,
                "not an EAGLE layer");
    CHECK_FAILS(NULL, spec_model_set_eagle(plain, NULL), SPEC_ERR_INVALID_ARGUMENT, "config is null");
    spec_eagle_config bad{2, 0};
    CHECK_FAILS(ctx, spec_model_set_eagle(plain, &bad), SPEC_ERR_INVALID_ARGUMENT, "fc_bias");
    spec_eagle_config nobias{0, 0};
    CHECK_OK(spec_model_set_eagle(plain, &nobias));
    CHECK_FAILS(ctx, spec_model_set_eagle_weight(plain, SPEC_EW_FC_BIAS, L.fc_b.dtype, L.fc_b.data(), L.fc_b.size(), 1, E),
                SPEC_ERR_INVALID_ARGUMENT, "no fc bias");
    CHECK_FAILS(ctx, spec_model_set_eagle_weight(plain, SPEC_EW_FC, L.fc.dtype, L.fc.data(), L.fc.size(), 2 * E, E), SPEC_ERR_INVALID_ARGUMENT,
                "expected [32 x 64]");
    CHECK_FAILS(ctx, spec_model_set_eagle_weight(plain, 7, L.fc.dtype, L.fc.data(), L.fc.size(), E, 2 * E), SPEC_ERR_INVALID_ARGUMENT,
                "unknown role");
    CHECK_FAILS(ctx, spec_model_set_eagle_weight(plain, SPEC_EW_FC, L.fc.dtype, L.fc.data(), L.fc.size() - 4, E, 2 * E),
                SPEC_ERR_INVALID_ARGUMENT, "bytes given");
    spec_model_destroy(plain);

    spec_model *nofc = load_layer(ctx, L, false, false);
    CHECK_FAILS(ctx, spec_model_finalize(nofc), SPEC_ERR_INVALID_ARGUMENT, "missing its fc weight");
    spec_model_destroy(nofc);

    spec_model *m = load_layer(ctx, L);
    CHECK_FAILS(ctx, spec_model_set_eagle(m, &nobias), SPEC_ERR_INVALID_ARGUMENT, "finalized");
    spec_kv *kv = NULL;
    CHECK_OK(spec_kv_create(m, 16, &kv));
    spec_buffer *features = alloc_buf(ctx, 4 * E);
    std::vector<int> t = {1, 2};
    spec_forward_args a;
    std::memset(&a, 0, sizeof a);
    a.n_tokens = 2;
    a.tokens = t.data();
    CHECK_FAILS(ctx, spec_forward(m, kv, &a), SPEC_ERR_INVALID_ARGUMENT, "spec_eagle_forward");
    spec_kv *kvs[1] = {kv};
    CHECK_FAILS(ctx, spec_forward_batch(m, 1, kvs, &a), SPEC_ERR_INVALID_ARGUMENT, "spec_eagle_forward");
    spec_eagle_forward_args ea{&a, features, 0, NULL};
    CHECK_OK(spec_eagle_forward(m, kv, &ea));
    int past[2] = {0, 4}, neg[2] = {-1, 0}, overlap[2] = {0, 2};
    ea.feature_rows = past;
    CHECK_FAILS(ctx, spec_eagle_forward(m, kv, &ea), SPEC_ERR_OUT_OF_RANGE, "runs past the features buffer");
    ea.feature_rows = neg;
    CHECK_FAILS(ctx, spec_eagle_forward(m, kv, &ea), SPEC_ERR_OUT_OF_RANGE, "negative");
    ea.features_offset = 2;
    ea.feature_rows = NULL;
    CHECK_FAILS(ctx, spec_eagle_forward(m, kv, &ea), SPEC_ERR_INVALID_ARGUMENT, "multiple of 4");
    ea.features_offset = 0;
    a.final_hidden = features;
    a.final_hidden_offset = 2 * E * 4;
    ea.feature_rows = overlap;
    CHECK_FAILS(ctx, spec_eagle_forward(m, kv, &ea), SPEC_ERR_INVALID_ARGUMENT, "overlaps");
    ea.features = NULL;
    CHECK_FAILS(ctx, spec_eagle_forward(m, kv, &ea), SPEC_ERR_INVALID_HANDLE, "features buffer");
    ea.forward = NULL;
    CHECK_FAILS(ctx, spec_eagle_forward(m, kv, &ea), SPEC_ERR_INVALID_ARGUMENT, "args->forward is null");
    spec_kv_destroy(kv);
    spec_buffer_free(features);
    spec_model_destroy(m);
}

} // namespace

int main() {
    spec_context *ctx = NULL;
    CHECK_OK(spec_context_create("cpu", 0, &ctx));
    spec_context_set_threads(ctx, 2);
    test_forward_against_reference(ctx, SPEC_DTYPE_F32, 1e-4);
    test_forward_against_reference(ctx, SPEC_DTYPE_F16, 1e-4);
    test_extension(ctx, SPEC_DTYPE_F32);
    test_extension(ctx, SPEC_DTYPE_F16);
    test_extension_summarized(ctx);
    test_refusals(ctx);
    spec_context_destroy(ctx);
    // the cuda backend: native/tests/cuda/test_cuda_eagle.cpp
    return check_finish("test_eagle");
}
