// EAGLE draft layers on the cuda backend (ABI 0.9-0.11) against the cpu backend, through the ABI only: the same random
// layer (eagle_fixture.hpp) loaded on both contexts, per FC/layer dtype (F32, F16, BF16), with and without layer 0's
// attention norm and the output norm, with and without the FC bias. Compared (max |cuda - cpu| relative to the row's
// largest |cpu| value, the tolerances of test_cuda_model's parity): features -> logits and final_hidden of a chain, of a
// call longer than one 128-row slice, and of a tree after a committed prefix; a tree grown one depth per
// spec_eagle_forward_extend call against one call over the whole tree (cuda against cuda, and against the cpu's
// extension); spec_eagle_forward_extend_summarize against spec_logits_summarize of its own logits (equal) and of the
// cpu's; commit of an accepted path and truncation. Then a layer handed the same embedding and LM head memory as a cuda
// target reads the target's device copies: the same bits as a layer with its own, also after the target is destroyed;
// and spec_model_memory of a cuda layer equals its spec_memory_plan_weights. Skips (exit 77) without a GPU.
#pragma GCC diagnostic ignored "-Wunused-function" // the fixture's model helpers this test does not need
#include "eagle_fixture.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <vector>

namespace {

struct Contexts {
    spec_context *cpu = nullptr, *gpu = nullptr;
};

// Worst row of (gpu vs cpu) over equally shaped outputs of `width` floats per row.
double rows_err(const std::vector<float> &gpu, const std::vector<float> &cpu, int width) {
    if (gpu.size() != cpu.size() || gpu.empty()) return INFINITY;
    double worst = 0.0;
    for (size_t r = 0; r + width <= cpu.size(); r += width) worst = std::max(worst, row_err_f(&gpu[r], &cpu[r], width));
    return worst;
}

double runs_err(const Run &gpu, const Run &cpu) {
    if (gpu.status != SPEC_OK || cpu.status != SPEC_OK) return INFINITY;
    return std::max(rows_err(gpu.logits, cpu.logits, V), rows_err(gpu.outs, cpu.outs, E));
}

// Rows [i0, i0 + n) of a run, as a run of their own.
Run rows_of(const Run &r, int i0, int n) {
    Run o;
    o.status = r.status;
    o.logits.assign(r.logits.begin() + (size_t)i0 * V, r.logits.begin() + (size_t)(i0 + n) * V);
    o.outs.assign(r.outs.begin() + (size_t)i0 * E, r.outs.begin() + (size_t)(i0 + n) * E);
    return o;
}

spec_buffer *upload(spec_context *ctx, const std::vector<float> &v) {
    spec_buffer *b = alloc_buf(ctx, v.size());
    CHECK_OK(spec_copy_h2d(b, 0, v.data(), v.size() * 4));
    return b;
}

struct Variant {
    int dtype;
    bool norms, fc_bias;
    const char *name;
};

// One layer on both contexts through every call; returns the worst cuda-vs-cpu error.
double compare_layer(const Contexts &cx, const Variant &vt, int seed) {
    Rng r(seed);
    Layer L = make_layer(r, vt.dtype);
    spec_model *mc = load_layer(cx.cpu, L, true, true, vt.norms, vt.fc_bias);
    spec_model *mg = load_layer(cx.gpu, L, true, true, vt.norms, vt.fc_bias);
    const int n_feat = 160;
    std::vector<float> fflat((size_t)n_feat * E);
    for (float &v : fflat) v = (float)r.sym(1.5);
    spec_buffer *fc_ = upload(cx.cpu, fflat), *fg = upload(cx.gpu, fflat);
    double worst = 0.0, self = 0.0;
    bool summaries_equal = true, ids_agree = true;

    // a chain of 12 rows at once
    std::vector<int> chain = random_tokens(r, 12, V);
    spec_kv *kc = NULL, *kg = NULL;
    CHECK_OK(spec_kv_create(mc, 256, &kc));
    CHECK_OK(spec_kv_create(mg, 256, &kg));
    worst = std::max(worst, runs_err(eagle(cx.gpu, mg, kg, chain, NULL, fg, NULL), eagle(cx.cpu, mc, kc, chain, NULL, fc_, NULL)));

    // 150 rows: two slices on cuda, each with its rows' feature addresses
    CHECK_OK(spec_kv_truncate(kc, 0));
    CHECK_OK(spec_kv_truncate(kg, 0));
    std::vector<int> longer = random_tokens(r, 150, V);
    worst = std::max(worst, runs_err(eagle(cx.gpu, mg, kg, longer, NULL, fg, NULL), eagle(cx.cpu, mc, kc, longer, NULL, fc_, NULL)));

    // a prefix of 4 committed, then a tree grown by extension against one call over the whole tree
    std::vector<int> prefix = random_tokens(r, 4, V), tree = random_tokens(r, 7, V);
    const int parents[7] = {-1, -1, 0, 0, 1, 4, 2}, rows[7] = {4, 4, 5, 5, 6, 7, 8}, cuts[4] = {0, 2, 5, 7};
    spec_kv *whole_g = NULL;
    CHECK_OK(spec_kv_create(mg, 64, &whole_g));
    for (spec_kv *kv : {kc, kg, whole_g}) {
        const bool gpu = kv != kc;
        CHECK_OK(spec_kv_truncate(kv, 0));
        CHECK_OK(eagle(gpu ? cx.gpu : cx.cpu, gpu ? mg : mc, kv, prefix, NULL, gpu ? fg : fc_, NULL).status);
        commit_chain(kv, 4);
    }
    const Run whole = eagle(cx.gpu, mg, whole_g, tree, parents, fg, rows);
    CHECK_OK(whole.status);
    const Run whole_cpu_check = [&] { // the cpu's whole tree on a fresh cache, for the one-call comparison
        spec_kv *kv = NULL;
        CHECK_OK(spec_kv_create(mc, 64, &kv));
        CHECK_OK(eagle(cx.cpu, mc, kv, prefix, NULL, fc_, NULL).status);
        commit_chain(kv, 4);
        Run w = eagle(cx.cpu, mc, kv, tree, parents, fc_, rows);
        spec_kv_destroy(kv);
        return w;
    }();
    worst = std::max(worst, runs_err(whole, whole_cpu_check));
    spec_buffer *lg = alloc_buf(cx.gpu, 3ull * V), *og = alloc_buf(cx.gpu, 3ull * E);
    for (int d = 0; d < 3; d++) {
        const int n = cuts[d + 1] - cuts[d];
        std::vector<int> t(tree.begin() + cuts[d], tree.begin() + cuts[d + 1]);
        const Run part_cpu = eagle(cx.cpu, mc, kc, t, parents + cuts[d], fc_, rows + cuts[d], true);
        // the cuda extension through the summarizing call: its logits, hidden rows and summaries
        spec_forward_args a;
        std::memset(&a, 0, sizeof a);
        a.n_tokens = n;
        a.tokens = t.data();
        a.parents = parents + cuts[d];
        a.logits_mode = SPEC_LOGITS_ALL;
        a.logits = lg;
        a.final_hidden = og;
        spec_eagle_forward_args ea{&a, fg, 0, rows + cuts[d]};
        spec_logits_summary got[3], again[3], cpu_sum[3];
        Run part;
        part.status = spec_eagle_forward_extend_summarize(mg, kg, &ea, 4, got);
        CHECK_OK(part.status);
        part.logits.resize((size_t)n * V);
        part.outs.resize((size_t)n * E);
        CHECK_OK(spec_copy_d2h(part.logits.data(), lg, 0, part.logits.size() * 4));
        CHECK_OK(spec_copy_d2h(part.outs.data(), og, 0, part.outs.size() * 4));
        worst = std::max(worst, runs_err(part, part_cpu));
        self = std::max(self, runs_err(part, rows_of(whole, cuts[d], n)));
        CHECK_OK(spec_logits_summarize(cx.gpu, lg, 0, n, V, V, 4, again));
        spec_buffer *lc = upload(cx.cpu, part_cpu.logits);
        CHECK_OK(spec_logits_summarize(cx.cpu, lc, 0, n, V, V, 4, cpu_sum));
        spec_buffer_free(lc);
        for (int j = 0; j < n; j++) {
            for (int i = 0; i < 4; i++) {
                summaries_equal = summaries_equal && got[j].top[i] == again[j].top[i] && got[j].prob[i] == again[j].prob[i];
                ids_agree = ids_agree && std::fabs(got[j].prob[i] - cpu_sum[j].prob[i]) <= 1e-2;
            }
            summaries_equal = summaries_equal && got[j].entropy == again[j].entropy;
            ids_agree = ids_agree && got[j].top[0] == cpu_sum[j].top[0];
        }
    }
    // accept a1 b2 c0 on both, then two more rows
    const int path[3] = {1, 4, 5};
    CHECK_OK(spec_kv_commit(kc, 3, path));
    CHECK_OK(spec_kv_commit(kg, 3, path));
    std::vector<int> next = random_tokens(r, 2, V);
    const int next_rows[2] = {9, 10};
    worst = std::max(worst, runs_err(eagle(cx.gpu, mg, kg, next, NULL, fg, next_rows), eagle(cx.cpu, mc, kc, next, NULL, fc_, next_rows)));
    // rejected: truncate back to the prefix and grow again
    CHECK_OK(spec_kv_truncate(kc, 4));
    CHECK_OK(spec_kv_truncate(kg, 4));
    std::vector<int> depth1(tree.begin(), tree.begin() + 2);
    const Run again_g = eagle(cx.gpu, mg, kg, depth1, parents, fg, rows, true);
    worst = std::max(worst, runs_err(again_g, eagle(cx.cpu, mc, kc, depth1, parents, fc_, rows, true)));
    self = std::max(self, runs_err(again_g, rows_of(whole, 0, 2)));

    const double tol = 2e-3; // test_cuda_model's for f32 caches: both backends multiply these dtypes exactly
    printf("  %-28s cuda vs cpu: max rel err %.2e (tol %.0e); extension vs one call on cuda %.2e (tol 1e-5); summaries %s, "
           "top ids and probabilities %s the cpu's\n",
           vt.name, worst, tol, self, summaries_equal ? "equal" : "DIFFER", ids_agree ? "match" : "do NOT match");
    CHECK(worst <= tol);
    CHECK(self <= 1e-5);
    CHECK(summaries_equal);
    CHECK(ids_agree);
    spec_buffer_free(lg);
    spec_buffer_free(og);
    spec_kv_destroy(kc);
    spec_kv_destroy(kg);
    spec_kv_destroy(whole_g);
    spec_buffer_free(fc_);
    spec_buffer_free(fg);
    spec_model_destroy(mc);
    spec_model_destroy(mg);
    return worst;
}

void test_parity(const Contexts &cx) {
    const Variant variants[] = {
        {SPEC_DTYPE_F32, false, true, "f32 (EAGLE-1: no norms)"},
        {SPEC_DTYPE_F16, false, true, "f16 (EAGLE-1: no norms)"},
        {SPEC_DTYPE_F16, true, false, "f16 norms, no fc bias"},
        {SPEC_DTYPE_BF16, false, true, "bf16 (EAGLE-1: no norms)"},
    };
    int seed = 41;
    for (const Variant &v : variants) compare_layer(cx, v, seed++);
}

// A plain cuda model over the layer's own weights (its norms given), whose embedding and LM head memory the layer gets.
spec_model *target_of(spec_context *ctx, const Layer &L) {
    spec_model *m = NULL;
    CHECK_OK(spec_model_create(ctx, &L.c, &m));
    auto set = [&](int role, const Weight &w) { CHECK_OK(spec_model_set_weight(m, role, 0, w.dtype, w.data(), w.size(), w.rows, w.cols)); };
    set(SPEC_W_TOKEN_EMBD, L.embd);
    set(SPEC_W_OUTPUT, L.out);
    set(SPEC_W_OUTPUT_NORM, L.out_norm);
    set(SPEC_W_ATTN_NORM, L.attn_norm);
    set(SPEC_W_ATTN_Q, L.wq);
    set(SPEC_W_ATTN_K, L.wk);
    set(SPEC_W_ATTN_V, L.wv);
    set(SPEC_W_ATTN_OUT, L.wo);
    set(SPEC_W_FFN_NORM, L.ffn_norm);
    set(SPEC_W_FFN_GATE, L.gate);
    set(SPEC_W_FFN_UP, L.up);
    set(SPEC_W_FFN_DOWN, L.down);
    CHECK_OK(spec_model_finalize(m));
    return m;
}

// A layer given a cuda target's embedding and LM head memory reads the target's device copies: the same bits as a
// layer that uploaded its own (on a context without the target), before and after the target goes.
void test_shared_target_matrices(const Contexts &cx) {
    Rng r(77);
    Layer L = make_layer(r, SPEC_DTYPE_F16);
    std::vector<float> fflat((size_t)8 * E);
    for (float &v : fflat) v = (float)r.sym(1.5);
    std::vector<int> tokens = random_tokens(r, 8, V);
    auto run = [&](spec_model *m) {
        spec_buffer *f = upload(cx.gpu, fflat);
        spec_kv *kv = NULL;
        CHECK_OK(spec_kv_create(m, 16, &kv));
        Run out = eagle(cx.gpu, m, kv, tokens, NULL, f, NULL);
        spec_kv_destroy(kv);
        spec_buffer_free(f);
        return out;
    };
    spec_model *own = load_layer(cx.gpu, L); // no target holds this memory yet: its own copies
    const Run want = run(own);
    spec_model_destroy(own);
    spec_model *target = target_of(cx.gpu, L);
    spec_model *layer = load_layer(cx.gpu, L);
    const Run shared = run(layer);
    spec_model_destroy(target);
    const Run after_target = run(layer); // the target's allocation lives on while the layer reads it
    const bool same = want.status == SPEC_OK && shared.status == SPEC_OK && after_target.status == SPEC_OK &&
                      std::memcmp(want.logits.data(), shared.logits.data(), want.logits.size() * 4) == 0 &&
                      std::memcmp(want.outs.data(), shared.outs.data(), want.outs.size() * 4) == 0 &&
                      std::memcmp(want.logits.data(), after_target.logits.data(), want.logits.size() * 4) == 0;
    printf("  a layer reading its target's embedding and LM head on the device: %s\n", same ? "the same bits as its own copies" : "DIFFERENT");
    CHECK(same);
    spec_model_destroy(layer);
}

// spec_model_memory of a finalized cuda layer is what spec_memory_plan_weights said of its weights.
void test_memory(const Contexts &cx) {
    Rng r(88);
    Layer L = make_layer(r, SPEC_DTYPE_F16);
    for (bool bias : {false, true}) {
        spec_model *m = load_layer(cx.gpu, L, true, true, false, bias);
        std::vector<spec_weight_plan> plan = {
            {SPEC_W_TOKEN_EMBD, 0, -1, L.embd.dtype}, {SPEC_W_OUTPUT, 0, -1, L.out.dtype}, {SPEC_W_ATTN_Q, 0, -1, L.wq.dtype},
            {SPEC_W_ATTN_K, 0, -1, L.wk.dtype},       {SPEC_W_ATTN_V, 0, -1, L.wv.dtype},  {SPEC_W_ATTN_OUT, 0, -1, L.wo.dtype},
            {SPEC_W_FFN_NORM, 0, -1, L.ffn_norm.dtype}, {SPEC_W_FFN_GATE, 0, -1, L.gate.dtype}, {SPEC_W_FFN_UP, 0, -1, L.up.dtype},
            {SPEC_W_FFN_DOWN, 0, -1, L.down.dtype},   {0, 0, SPEC_EW_FC, L.fc.dtype}};
        if (bias) plan.push_back({0, 0, SPEC_EW_FC_BIAS, L.fc_b.dtype});
        spec_weights_memory planned{}, held{};
        CHECK_OK(spec_memory_plan_weights("cuda", &L.c, 1, (int32_t)plan.size(), plan.data(), &planned));
        CHECK_OK(spec_model_memory(m, &held));
        printf("  cuda layer%s: planned %llu, held %llu bytes beyond spec_memory_plan\n", bias ? " with an fc bias" : "",
               (unsigned long long)planned.total, (unsigned long long)held.total);
        CHECK(planned.total > 0 && planned.total == held.total && planned.eagle_scratch == held.eagle_scratch && held.prepacked == 0);
        spec_model_destroy(m);
    }
}

} // namespace

int main(void) {
    int32_t n_dev = 0;
    if (spec_device_count("cuda", &n_dev) != SPEC_OK || n_dev < 1) {
        printf("test_cuda_eagle: no CUDA device, skipped\n");
        return 77;
    }
    Contexts cx;
    CHECK_OK(spec_context_create("cpu", 0, &cx.cpu));
    CHECK_OK(spec_context_create("cuda", 0, &cx.gpu));
    if (!cx.cpu || !cx.gpu) return check_finish("test_cuda_eagle");
    printf("EAGLE layers, cuda vs cpu:\n");
    test_parity(cx);
    printf("shared embedding and LM head:\n");
    test_shared_target_matrices(cx);
    printf("memory:\n");
    test_memory(cx);
    spec_context_destroy(cx.cpu);
    spec_context_destroy(cx.gpu);
    return check_finish("test_cuda_eagle");
}
