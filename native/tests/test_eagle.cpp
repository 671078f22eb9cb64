// EAGLE draft layers (ABI 0.9): a random layer built through the ABI against a double-precision reference of
// EAGLE-1's forward (x = fc [embd(t); f] + b, layer 0 without an input norm, rotate-halves RoPE, no output norm), the
// same rows as a chain, in pieces with commits and inside a tree, and every refusal.
#pragma GCC diagnostic ignored "-Wunused-function" // the fixture's model helpers this test does not need
#include "model_fixture.hpp"

namespace {

constexpr int E = 32, V = 50, H = 4, HKV = 2, D = 8, F = 48;

struct Layer {
    spec_model_config c{};
    Weight embd, out, fc, fc_b, wq, wk, wv, wo, ffn_norm, gate, up, down;
};

Layer make_layer(Rng &r, int dtype) {
    Layer L;
    L.c.arch = SPEC_ARCH_LLAMA;
    L.c.n_vocab = V;
    L.c.n_embd = E;
    L.c.n_layer = 1;
    L.c.n_head = H;
    L.c.n_head_kv = HKV;
    L.c.head_dim = D;
    L.c.n_ff = F;
    L.c.n_ctx_train = 256;
    L.c.rms_eps = 1e-5f;
    L.c.rope_theta = 10000.0f;
    L.c.rope_style = SPEC_ROPE_NEOX;
    L.c.kv_dtype = SPEC_DTYPE_F32;
    L.embd = make_weight(r, SPEC_DTYPE_F32, V, E, 1.0);
    L.out = make_weight(r, SPEC_DTYPE_F32, V, E, 0.5);
    L.fc = make_weight(r, dtype, E, 2 * E, 0.3);
    L.fc_b = make_weight(r, SPEC_DTYPE_F32, 1, E, 0.2);
    L.wq = make_weight(r, dtype, H * D, E, 0.3);
    L.wk = make_weight(r, dtype, HKV * D, E, 0.3);
    L.wv = make_weight(r, dtype, HKV * D, E, 0.3);
    L.wo = make_weight(r, dtype, E, H * D, 0.3);
    L.ffn_norm = make_weight(r, SPEC_DTYPE_F32, 1, E, 0.2, 1.0);
    L.gate = make_weight(r, dtype, F, E, 0.3);
    L.up = make_weight(r, dtype, F, E, 0.3);
    L.down = make_weight(r, dtype, E, F, 0.3);
    return L;
}

const char *dtype_name_for_test(int dtype) { return dtype == SPEC_DTYPE_F32 ? "F32" : dtype == SPEC_DTYPE_F16 ? "F16" : "Q8_0"; }

spec_model *load_layer(spec_context *ctx, const Layer &L, bool finalize = true, bool with_fc = true) {
    spec_model *m = NULL;
    CHECK_OK(spec_model_create(ctx, &L.c, &m));
    spec_eagle_config ec{1, 0};
    CHECK_OK(spec_model_set_eagle(m, &ec));
    auto set = [&](int role, const Weight &w) { CHECK_OK(spec_model_set_weight(m, role, 0, w.dtype, w.data(), w.size(), w.rows, w.cols)); };
    set(SPEC_W_TOKEN_EMBD, L.embd);
    set(SPEC_W_OUTPUT, L.out);
    set(SPEC_W_ATTN_Q, L.wq);
    set(SPEC_W_ATTN_K, L.wk);
    set(SPEC_W_ATTN_V, L.wv);
    set(SPEC_W_ATTN_OUT, L.wo);
    set(SPEC_W_FFN_NORM, L.ffn_norm);
    set(SPEC_W_FFN_GATE, L.gate);
    set(SPEC_W_FFN_UP, L.up);
    set(SPEC_W_FFN_DOWN, L.down);
    if (with_fc) CHECK_OK(spec_model_set_eagle_weight(m, SPEC_EW_FC, L.fc.dtype, L.fc.data(), L.fc.size(), L.fc.rows, L.fc.cols));
    CHECK_OK(spec_model_set_eagle_weight(m, SPEC_EW_FC_BIAS, L.fc_b.dtype, L.fc_b.data(), L.fc_b.size(), 1, E));
    if (finalize) CHECK_OK(spec_model_finalize(m));
    return m;
}

std::vector<double> matvec(const Weight &w, const std::vector<double> &x) {
    std::vector<double> y((size_t)w.rows, 0.0);
    for (int64_t r = 0; r < w.rows; r++)
        for (int64_t c = 0; c < w.cols; c++) y[(size_t)r] += w.dense[(size_t)(r * w.cols + c)] * x[(size_t)c];
    return y;
}

// The reference: a causal chain of rows (token t[i], feature f[i]) at positions 0..n-1; each row's output and logits.
void reference(const Layer &L, const std::vector<int> &tokens, const std::vector<std::vector<double>> &feats,
               std::vector<std::vector<double>> &outs, std::vector<std::vector<double>> &logits) {
    const int n = (int)tokens.size();
    std::vector<std::vector<double>> xs(n), ks(n), vs(n), qs(n);
    auto rope = [&](std::vector<double> &v, int heads, int pos) {
        for (int h = 0; h < heads; h++)
            for (int i = 0; i < D / 2; i++) {
                const double ang = pos * std::pow(10000.0, -2.0 * i / D);
                double &a = v[(size_t)(h * D + i)], &b = v[(size_t)(h * D + i + D / 2)];
                const double a0 = a, b0 = b;
                a = a0 * std::cos(ang) - b0 * std::sin(ang);
                b = b0 * std::cos(ang) + a0 * std::sin(ang);
            }
    };
    for (int i = 0; i < n; i++) {
        std::vector<double> cat(2 * E);
        for (int e = 0; e < E; e++) cat[(size_t)e] = L.embd.dense[(size_t)(tokens[(size_t)i] * E + e)];
        for (int e = 0; e < E; e++) cat[(size_t)(E + e)] = feats[(size_t)i][(size_t)e];
        xs[(size_t)i] = matvec(L.fc, cat);
        for (int e = 0; e < E; e++) xs[(size_t)i][(size_t)e] += L.fc_b.dense[(size_t)e];
        qs[(size_t)i] = matvec(L.wq, xs[(size_t)i]); // no input norm on layer 0
        ks[(size_t)i] = matvec(L.wk, xs[(size_t)i]);
        vs[(size_t)i] = matvec(L.wv, xs[(size_t)i]);
        rope(qs[(size_t)i], H, i);
        rope(ks[(size_t)i], HKV, i);
    }
    outs.assign(n, {});
    logits.assign(n, {});
    for (int i = 0; i < n; i++) {
        std::vector<double> att((size_t)H * D, 0.0);
        for (int h = 0; h < H; h++) {
            const int g = h / (H / HKV);
            std::vector<double> s((size_t)i + 1);
            double mx = -1e300, sum = 0;
            for (int j = 0; j <= i; j++) {
                double d = 0;
                for (int k = 0; k < D; k++) d += qs[(size_t)i][(size_t)(h * D + k)] * ks[(size_t)j][(size_t)(g * D + k)];
                s[(size_t)j] = d / std::sqrt((double)D);
                mx = std::max(mx, s[(size_t)j]);
            }
            for (auto &v : s) sum += (v = std::exp(v - mx));
            for (int j = 0; j <= i; j++)
                for (int k = 0; k < D; k++) att[(size_t)(h * D + k)] += s[(size_t)j] / sum * vs[(size_t)j][(size_t)(g * D + k)];
        }
        std::vector<double> h = xs[(size_t)i], o = matvec(L.wo, att);
        for (int e = 0; e < E; e++) h[(size_t)e] += o[(size_t)e];
        double ms = 0;
        for (double v : h) ms += v * v;
        const double inv = 1.0 / std::sqrt(ms / E + 1e-5);
        std::vector<double> nrm(E);
        for (int e = 0; e < E; e++) nrm[(size_t)e] = h[(size_t)e] * inv * L.ffn_norm.dense[(size_t)e];
        std::vector<double> g = matvec(L.gate, nrm), u = matvec(L.up, nrm), gu(F);
        for (int k = 0; k < F; k++) gu[(size_t)k] = g[(size_t)k] / (1 + std::exp(-g[(size_t)k])) * u[(size_t)k];
        std::vector<double> dn = matvec(L.down, gu);
        for (int e = 0; e < E; e++) h[(size_t)e] += dn[(size_t)e];
        outs[(size_t)i] = h;
        logits[(size_t)i] = matvec(L.out, h); // no output norm
    }
}

struct Run {
    std::vector<float> logits, outs;
    spec_status status;
};

Run eagle(spec_context *ctx, spec_model *m, spec_kv *kv, const std::vector<int> &tokens, const int *parents, spec_buffer *features,
          const int *rows, bool extend = false) {
    const int n = (int)tokens.size();
    spec_buffer *lg = alloc_buf(ctx, (uint64_t)n * V), *out = alloc_buf(ctx, (uint64_t)n * E);
    spec_forward_args a;
    std::memset(&a, 0, sizeof a);
    a.n_tokens = n;
    a.tokens = tokens.data();
    a.parents = parents;
    a.logits_mode = SPEC_LOGITS_ALL;
    a.logits = lg;
    a.final_hidden = out;
    spec_eagle_forward_args ea{&a, features, 0, rows};
    Run r;
    r.status = extend ? spec_eagle_forward_extend(m, kv, &ea) : spec_eagle_forward(m, kv, &ea);
    r.logits.resize((size_t)n * V);
    r.outs.resize((size_t)n * E);
    if (r.status == SPEC_OK) {
        CHECK_OK(spec_copy_d2h(r.logits.data(), lg, 0, r.logits.size() * 4));
        CHECK_OK(spec_copy_d2h(r.outs.data(), out, 0, r.outs.size() * 4));
    }
    spec_buffer_free(lg);
    spec_buffer_free(out);
    return r;
}

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
    // the cuda backend refuses EAGLE layers with a message (where there is one to ask)
    spec_context *cuda = NULL;
    if (spec_context_create("cuda", 0, &cuda) == SPEC_OK) {
        Rng r(3);
        Layer L = make_layer(r, SPEC_DTYPE_F32);
        spec_model *m = NULL;
        CHECK_OK(spec_model_create(cuda, &L.c, &m));
        spec_eagle_config ec{1, 0};
        CHECK_FAILS(cuda, spec_model_set_eagle(m, &ec), SPEC_ERR_UNSUPPORTED, "cpu only");
        spec_model_destroy(m);
        spec_context_destroy(cuda);
    }
    return check_finish("test_eagle");
}
