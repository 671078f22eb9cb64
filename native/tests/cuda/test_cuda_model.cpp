/* The cuda forward pass against the cpu backend, through the ABI only: the same random small
 * models (model_fixture.hpp) loaded on both, per weight dtype (F32, F16, BF16, Q8_0, Q4_0) x
 * arch (llama, qwen2 with biases) x kv dtype, with GQA, rope NORM / NEOX, partial rope and
 * llama3 / linear scaling; and a k-quant mix (Q2_K..Q6_K, one per role) and a Q4_1 / Q5_0 / Q5_1
 * mix. Compared (max |cuda - cpu| relative to max |cpu logit| of a row,
 * printed): a prompt longer than one slice, single-token decoding, a tree with two roots written
 * at a logits_offset, LOGITS_LAST, early exits (hidden and logits, stop_at_exit and the commit
 * of such a tree), kv_commit of a tree path, kv_truncate. Then greedy generation of 24 tokens
 * for 20 prompts, identical on both backends; graphs on and off (SPECULA_CUDA_GRAPHS=0)
 * identical bit for bit; stacked and separate q/k/v, gate/up weights (SPECULA_CUDA_FUSE=0)
 * identical; decoding with graph captures while another thread copies on the default stream;
 * and bad input. ABI 0.8: qwen3 (q/k norms, head size apart from n_embd / n_head), gemma3 (local and
 * global layers with their own rope, sliding window, post-block norms, gelu, scaled embeddings, an
 * attention scale) and a windowed llama through the same paths; final_hidden rows; Medusa and Hydra
 * heads. Skips (exit 77) without a GPU. SPECULA_TEST_QUICK=1 runs
 * a reduced set (for compute-sanitizer). */
#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <thread>
#include <vector>

#include "check.h"
#include "model_fixture.hpp"

namespace {

bool g_quick = false;

struct Contexts {
    spec_context *cpu = nullptr, *gpu = nullptr;
};

struct Both {
    TestModel tm;
    spec_model *cpu = nullptr, *gpu = nullptr;
    const spec_model_config &c() const { return tm.spec.cfg; }
};

Both load_both(const Contexts &cx, const ModelSpec &s) {
    Both b;
    b.tm = make_model(s);
    b.cpu = load_model(cx.cpu, b.tm);
    b.gpu = load_model(cx.gpu, b.tm);
    return b;
}

void destroy(Both &b) {
    if (b.cpu) spec_model_destroy(b.cpu);
    if (b.gpu) spec_model_destroy(b.gpu);
}

// Worst row of (gpu vs cpu) over equally shaped outputs of `width` floats per row.
double rows_err(const std::vector<float> &gpu, const std::vector<float> &cpu, int width) {
    if (gpu.size() != cpu.size() || gpu.empty()) return INFINITY;
    double worst = 0.0;
    for (size_t r = 0; r + width <= cpu.size(); r += width) worst = std::max(worst, row_err_f(&gpu[r], &cpu[r], width));
    return worst;
}

struct Tally {
    double worst = 0.0;
    void add(double e, const char *what) {
        if (!(e <= worst)) worst = e;
        if (!std::isfinite(e)) fprintf(stderr, "  %s: no comparable output\n", what);
    }
};

// A forward on the cuda model whose logits land at row `offset_rows` of a larger buffer.
std::vector<float> forward_at_offset(spec_context *ctx, spec_model *model, spec_kv *kv, const spec_model_config &c,
                                     const std::vector<int> &tokens, const int *parents, int offset_rows) {
    const int n = (int)tokens.size();
    spec_buffer *buf = alloc_buf(ctx, (uint64_t)(offset_rows + n) * c.n_vocab);
    std::vector<float> poison((size_t)offset_rows * c.n_vocab, 1234.5f), rows((size_t)n * c.n_vocab);
    if (offset_rows) CHECK_OK(spec_copy_h2d(buf, 0, poison.data(), poison.size() * 4));
    spec_forward_args a;
    std::memset(&a, 0, sizeof a);
    a.n_tokens = n;
    a.tokens = tokens.data();
    a.parents = parents;
    a.logits_mode = SPEC_LOGITS_ALL;
    a.logits = buf;
    a.logits_offset = (uint64_t)offset_rows * c.n_vocab * 4;
    CHECK_OK(spec_forward(model, kv, &a));
    std::vector<float> before(poison.size());
    if (offset_rows) {
        CHECK_OK(spec_copy_d2h(before.data(), buf, 0, before.size() * 4));
        CHECK(std::memcmp(before.data(), poison.data(), poison.size() * 4) == 0); // rows before the offset untouched
    }
    CHECK_OK(spec_copy_d2h(rows.data(), buf, a.logits_offset, rows.size() * 4));
    spec_buffer_free(buf);
    return rows;
}

// ------------------------------------------------------------------ 1. one model through every path

double scenario(const Contexts &cx, Both &b) {
    const spec_model_config &c = b.c();
    const int V = c.n_vocab, E = c.n_embd, L = c.n_layer;
    Tally t;
    spec_kv *kc = nullptr, *kg = nullptr;
    CHECK_OK(spec_kv_create(b.cpu, 400, &kc));
    CHECK_OK(spec_kv_create(b.gpu, 400, &kg));
    if (!kc || !kg) return INFINITY;
    Rng r(b.tm.spec.seed + 1000);
    auto both = [&](const std::vector<int> &toks, const int *parents, int mode, int exit_layer = 0, bool hidden = false,
                    bool exit_logits = false, bool stop = false) {
        Out oc = forward(cx.cpu, b.cpu, kc, c, toks, parents, NULL, mode, exit_layer, hidden, exit_logits, stop);
        Out og = forward(cx.gpu, b.gpu, kg, c, toks, parents, NULL, mode, exit_layer, hidden, exit_logits, stop);
        CHECK(oc.status == SPEC_OK && og.status == SPEC_OK);
        if (mode != SPEC_LOGITS_NONE) t.add(rows_err(og.logits, oc.logits, V), "logits");
        if (hidden) t.add(rows_err(og.exit_hidden, oc.exit_hidden, E), "exit hidden");
        if (exit_logits) t.add(rows_err(og.exit_logits, oc.exit_logits, V), "exit logits");
        return og;
    };
    auto commit = [&](int n, const int *path) {
        CHECK_OK(spec_kv_commit(kc, n, path));
        CHECK_OK(spec_kv_commit(kg, n, path));
    };

    // a prompt longer than one slice (128 rows)
    const int n_prompt = g_quick ? 140 : 200;
    std::vector<int> prompt = random_tokens(r, n_prompt, V);
    both(prompt, NULL, SPEC_LOGITS_ALL);
    commit_chain(kc, n_prompt);
    commit_chain(kg, n_prompt);
    // decoding, one token at a time
    for (int i = 0; i < 4; i++) {
        both(std::vector<int>{r.below(V)}, NULL, SPEC_LOGITS_LAST);
        commit_chain(kc, 1);
        commit_chain(kg, 1);
    }
    // a tree with two roots, written at a logits offset on cuda
    const std::vector<int> parents = {-1, 0, 0, 1, 2, 1, 3, -1, 7, 4, 4, 6};
    std::vector<int> tree = random_tokens(r, (int)parents.size(), V);
    Out tc = forward(cx.cpu, b.cpu, kc, c, tree, parents.data());
    std::vector<float> tg = forward_at_offset(cx.gpu, b.gpu, kg, c, tree, parents.data(), 12);
    t.add(rows_err(tg, tc.logits, V), "tree");
    // LAST of the same tree on cuda: the last row of ALL
    Out tl = forward(cx.gpu, b.gpu, kg, c, tree, parents.data(), NULL, SPEC_LOGITS_LAST);
    if (tl.status == SPEC_OK && tg.size() == parents.size() * V)
        t.add(row_err_f(tl.logits.data(), &tg[(parents.size() - 1) * V], V), "last vs all");
    forward_at_offset(cx.gpu, b.gpu, kg, c, tree, parents.data(), 0); // the tree pending again on cuda
    // commit the path to node 11, decode on
    const std::vector<int> path = path_to(parents, 11);
    commit((int)path.size(), path.data());
    for (int i = 0; i < 2; i++) {
        both(std::vector<int>{r.below(V)}, NULL, SPEC_LOGITS_ALL);
        commit_chain(kc, 1);
        commit_chain(kg, 1);
    }
    // early exits: mid-model, and at the last layer (where exit logits are the logits)
    std::vector<int> five = random_tokens(r, 5, V);
    both(five, NULL, SPEC_LOGITS_ALL, 1, true, true);
    Out at_end = both(five, NULL, SPEC_LOGITS_ALL, L, true, true);
    if (at_end.status == SPEC_OK) CHECK(std::memcmp(at_end.logits.data(), at_end.exit_logits.data(), at_end.logits.size() * 4) == 0);
    both(five, NULL, SPEC_LOGITS_LAST, L, false, true);
    both(five, NULL, SPEC_LOGITS_NONE, 1, true, true, true);
    // a stop-at-exit draft tree commits its first layers' KV; then a full step
    const int draft_par[3] = {-1, 0, 0};
    both(std::vector<int>{1, 2, 3}, draft_par, SPEC_LOGITS_NONE, 1, false, true, true);
    const int p02[2] = {0, 2};
    commit(2, p02);
    both(std::vector<int>{4, 5}, NULL, SPEC_LOGITS_ALL);
    // truncate, then continue from there
    CHECK_OK(spec_kv_truncate(kc, 100));
    CHECK_OK(spec_kv_truncate(kg, 100));
    both(random_tokens(r, 3, V), NULL, SPEC_LOGITS_ALL);
    spec_kv_destroy(kc);
    spec_kv_destroy(kg);
    return t.worst;
}

spec_model_config small_config(int arch) {
    spec_model_config c = base_config();
    if (arch == SPEC_ARCH_QWEN2) {
        c.arch = SPEC_ARCH_QWEN2;
        c.rope_style = SPEC_ROPE_NEOX;
        c.rope_theta = 1000000.0f;
        c.rope_scaling = SPEC_ROPE_SCALING_LINEAR;
        c.rope_factor = 2.0f;
    } else {
        c.rope_scaling = SPEC_ROPE_SCALING_LLAMA3;
        c.rope_factor = 8.0f;
        c.rope_low_freq_factor = 1.0f;
        c.rope_high_freq_factor = 4.0f;
        c.rope_orig_ctx = 64;
    }
    return c;
}

void test_parity(const Contexts &cx) {
    const int dtypes[5] = {SPEC_DTYPE_F32, SPEC_DTYPE_F16, SPEC_DTYPE_BF16, SPEC_DTYPE_Q8_0, SPEC_DTYPE_Q4_0};
    const char *dt_names[5] = {"f32", "f16", "bf16", "q8_0", "q4_0"};
    const int kv_dtypes[3] = {SPEC_DTYPE_F32, SPEC_DTYPE_F16, SPEC_DTYPE_BF16};
    const char *kv_names[3] = {"f32", "f16", "bf16"};
    int n = 0;
    for (int di = 0; di < 5; di++)
        for (int arch : {SPEC_ARCH_LLAMA, SPEC_ARCH_QWEN2})
            for (int ki = 0; ki < 3; ki++) {
                if (g_quick && !(ki == 1 && (di == 0 || di == 3))) continue;
                spec_model_config c = small_config(arch);
                c.kv_dtype = kv_dtypes[ki];
                if (ki == 2) c.rope_dims = 8; // partial rope
                char name[96];
                snprintf(name, sizeof name, "%s %s kv-%s%s", arch == SPEC_ARCH_QWEN2 ? "qwen2" : "llama", dt_names[di], kv_names[ki],
                         ki == 2 ? " rope 8/16" : "");
                const bool tied = (di + ki) % 2 == 1;
                Both b = load_both(cx, spec_all(name, c, dtypes[di], kv_dtypes[(di + ki) % 3], tied, 100 + n));
                // Q8_0 / Q4_0: the cpu backend quantizes activations per block of 32 to int8 (as
                // llama.cpp does; native/cpu/int8_dot.hpp) while cuda multiplies exact f32, so they
                // differ by that rounding (up to amax/254 per activation): on these small random models
                // the cpu's logits sit about 4e-2 of the row's largest from the exact ones (test_forward).
                const bool int8_cpu = dtypes[di] == SPEC_DTYPE_Q8_0 || dtypes[di] == SPEC_DTYPE_Q4_0;
                const double tol = int8_cpu ? 1e-1 : c.kv_dtype == SPEC_DTYPE_BF16 ? 5e-3 : 2e-3;
                const double e = b.cpu && b.gpu ? scenario(cx, b) : INFINITY;
                printf("  %-36s cuda vs cpu: max rel err %.2e (tol %.0e)\n", name, e, tol);
                CHECK(e <= tol);
                destroy(b);
                n++;
            }
    // wider heads (the 64-dim attention kernel), more rows per matmul, odd sizes
    if (!g_quick) {
        spec_model_config c = small_config(SPEC_ARCH_LLAMA);
        c.n_embd = 256;
        c.n_head = 8;
        c.n_head_kv = 2;
        c.head_dim = 64;
        c.n_ff = 512;
        c.n_vocab = 300;
        c.kv_dtype = SPEC_DTYPE_BF16;
        Both b = load_both(cx, spec_all("llama bf16 d64 gqa4", c, SPEC_DTYPE_BF16, SPEC_DTYPE_BF16, true, 200));
        double e = b.cpu && b.gpu ? scenario(cx, b) : INFINITY;
        printf("  %-36s cuda vs cpu: max rel err %.2e\n", "llama bf16 d64 gqa4", e);
        CHECK(e <= 5e-3);
        destroy(b);

        c = odd_sizes_config();
        ModelSpec odd = spec_all("odd sizes mixed f32/f16/bf16", c, SPEC_DTYPE_F16, SPEC_DTYPE_BF16, false, 201);
        odd.mat_dtype[SPEC_W_ATTN_Q] = SPEC_DTYPE_F32;
        odd.mat_dtype[SPEC_W_ATTN_V] = SPEC_DTYPE_BF16;
        odd.mat_dtype[SPEC_W_OUTPUT] = SPEC_DTYPE_BF16;
        b = load_both(cx, odd);
        e = b.cpu && b.gpu ? scenario(cx, b) : INFINITY;
        printf("  %-36s cuda vs cpu: max rel err %.2e\n", odd.name, e);
        CHECK(e <= 2e-3);
        destroy(b);
    }
}

// The GGML formats beyond Q8_0 / Q4_0 (ABI 0.7), as test_forward spreads them over the roles:
// k-quant super-blocks need rows of 256. The cpu backend may quantize these formats' activations
// to int8 as it does Q8_0 / Q4_0 (see above), hence the same tolerance.
void test_block_formats(const Contexts &cx) {
    spec_model_config c = base_config();
    c.n_embd = 256, c.head_dim = 64, c.n_ff = 512, c.n_vocab = 60, c.kv_dtype = SPEC_DTYPE_F16;
    ModelSpec k = spec_all("llama k-quants q2..q6", c, SPEC_DTYPE_Q4_K, SPEC_DTYPE_F32, false, 110);
    k.mat_dtype[SPEC_W_ATTN_Q] = SPEC_DTYPE_Q5_K;
    k.mat_dtype[SPEC_W_ATTN_K] = SPEC_DTYPE_Q3_K;
    k.mat_dtype[SPEC_W_ATTN_V] = SPEC_DTYPE_Q6_K;
    k.mat_dtype[SPEC_W_ATTN_OUT] = SPEC_DTYPE_Q2_K;
    k.mat_dtype[SPEC_W_FFN_UP] = SPEC_DTYPE_Q5_K;
    k.mat_dtype[SPEC_W_FFN_DOWN] = SPEC_DTYPE_Q6_K;
    k.mat_dtype[SPEC_W_OUTPUT] = SPEC_DTYPE_Q6_K;
    ModelSpec tied = spec_all("llama q6_k tied (embedding on cuda)", c, SPEC_DTYPE_Q6_K, SPEC_DTYPE_F32, true, 111);
    spec_model_config qc = small_config(SPEC_ARCH_QWEN2);
    qc.kv_dtype = SPEC_DTYPE_BF16;
    ModelSpec legacy = spec_all("qwen2 q4_1/q5_0/q5_1", qc, SPEC_DTYPE_Q4_1, SPEC_DTYPE_F32, false, 112);
    legacy.mat_dtype[SPEC_W_ATTN_K] = SPEC_DTYPE_Q5_0;
    legacy.mat_dtype[SPEC_W_ATTN_V] = SPEC_DTYPE_Q5_1;
    legacy.mat_dtype[SPEC_W_FFN_DOWN] = SPEC_DTYPE_Q5_0;
    legacy.mat_dtype[SPEC_W_OUTPUT] = SPEC_DTYPE_Q5_1;
    for (const ModelSpec *s : {&k, &tied, &legacy}) {
        if (g_quick && s != &k) continue;
        Both b = load_both(cx, *s);
        const double e = b.cpu && b.gpu ? scenario(cx, b) : INFINITY;
        printf("  %-36s cuda vs cpu: max rel err %.2e (tol %.0e)\n", s->name, e, 1e-1);
        CHECK(e <= 1e-1);
        destroy(b);
    }
}

// ------------------------------------------------------------------ 1b. ABI 0.8 architectures, final_hidden, heads

void test_architectures(const Contexts &cx) {
    spec_model_config q3 = base_config();
    q3.arch = SPEC_ARCH_QWEN3;
    q3.rope_style = SPEC_ROPE_NEOX;
    q3.head_dim = 24; // n_head * head_dim = 96, not n_embd
    q3.kv_dtype = SPEC_DTYPE_F16;
    spec_model_config win = small_config(SPEC_ARCH_LLAMA);
    win.sliding_window = 4; // far shorter than the prompt, the tree and a key tile
    spec_model_config g3 = base_config();
    g3.arch = SPEC_ARCH_GEMMA3;
    g3.rope_style = SPEC_ROPE_NEOX;
    g3.n_layer = 4;
    g3.head_dim = 32;
    g3.sliding_window = 5;
    g3.swa_pattern = 2; // layers 1 and 3 global
    g3.rope_theta = 1000000.0f;
    g3.rope_theta_local = 10000.0f;
    g3.rope_scaling = SPEC_ROPE_SCALING_LINEAR;
    g3.rope_factor = 8.0f;
    g3.attn_scale = 0.2f;
    g3.kv_dtype = SPEC_DTYPE_BF16;
    spec_model_config g3k = g3;
    g3k.n_embd = 256, g3k.n_ff = 512, g3k.head_dim = 64, g3k.attn_scale = 0.0f, g3k.kv_dtype = SPEC_DTYPE_F16;
    spec_model_config w64 = win;
    w64.sliding_window = 70; // across key tiles and attention splits
    ModelSpec specs[] = {
        spec_all("qwen3 q/k norms head_dim 24", q3, SPEC_DTYPE_F32, SPEC_DTYPE_F32, false, 300),
        spec_all("qwen3 bf16 tied", q3, SPEC_DTYPE_BF16, SPEC_DTYPE_BF16, true, 301),
        spec_all("llama sliding window 4", win, SPEC_DTYPE_F32, SPEC_DTYPE_F32, false, 302),
        spec_all("llama sliding window 70 f16", w64, SPEC_DTYPE_F16, SPEC_DTYPE_F16, true, 303),
        spec_all("gemma3 local/global f16 tied", g3, SPEC_DTYPE_F16, SPEC_DTYPE_F32, true, 304),
        spec_all("gemma3 q6_k tied", g3k, SPEC_DTYPE_Q6_K, SPEC_DTYPE_F32, true, 305),
    };
    for (const ModelSpec &sp : specs) {
        if (g_quick && sp.seed % 2) continue;
        // the cpu quantizes activations to int8 for the k-quants (see test_parity)
        const double tol = sp.mat_dtype[0] == SPEC_DTYPE_Q6_K ? 1e-1 : sp.cfg.kv_dtype == SPEC_DTYPE_BF16 ? 5e-3 : 2e-3;
        Both b = load_both(cx, sp);
        const double e = b.cpu && b.gpu ? scenario(cx, b) : INFINITY;
        printf("  %-36s cuda vs cpu: max rel err %.2e (tol %.0e)\n", sp.name, e, tol);
        CHECK(e <= tol);
        destroy(b);
    }
}

// A forward writing final_hidden (at a byte offset) and all logits; the rows come back.
struct Final {
    std::vector<float> hidden, logits;
};
Final forward_final(spec_context *ctx, spec_model *model, spec_kv *kv, const spec_model_config &c, const std::vector<int> &tokens,
                    const int *parents) {
    const int n = (int)tokens.size();
    Final f;
    spec_buffer *logits = alloc_buf(ctx, (uint64_t)n * c.n_vocab), *fin = alloc_buf(ctx, 4 + (uint64_t)n * c.n_embd);
    spec_forward_args a;
    std::memset(&a, 0, sizeof a);
    a.n_tokens = n;
    a.tokens = tokens.data();
    a.parents = parents;
    a.logits_mode = SPEC_LOGITS_ALL;
    a.logits = logits;
    a.final_hidden = fin;
    a.final_hidden_offset = 16;
    CHECK_OK(spec_forward(model, kv, &a));
    f.hidden.resize((size_t)n * c.n_embd);
    f.logits.resize((size_t)n * c.n_vocab);
    CHECK_OK(spec_copy_d2h(f.hidden.data(), fin, 16, f.hidden.size() * 4));
    CHECK_OK(spec_copy_d2h(f.logits.data(), logits, 0, f.logits.size() * 4));
    spec_buffer_free(logits);
    spec_buffer_free(fin);
    return f;
}

// Random head weights in the ABI's shapes (as test_heads.cpp makes them).
struct HeadWeights {
    spec_heads_config cfg;
    bool lm_head_proj = false;
    std::vector<Weight> w[SPEC_HW_ROLE_COUNT]; // [role][head * n_blocks + block] (PROJ roles: [head])
    int slot(int role, int h, int b) const { return role >= SPEC_HW_PROJ ? h : h * cfg.n_blocks + b; }
};

HeadWeights make_head_weights(Rng &r, const spec_heads_config &c, int E, int V, int dtype) {
    HeadWeights hw;
    hw.cfg = c;
    for (int role = 0; role < SPEC_HW_ROLE_COUNT; role++) {
        hw.w[role].resize((size_t)(role >= SPEC_HW_PROJ ? c.n_heads : c.n_heads * c.n_blocks));
        for (int h = 0; h < c.n_heads; h++)
            for (int b = 0; b < (role >= SPEC_HW_PROJ ? 1 : c.n_blocks); b++) {
                int64_t rows = 0, cols = 0;
                CHECK_OK(spec_head_weight_shape(&c, E, V, role, h, b, &rows, &cols));
                if (rows == 0) continue;
                const bool vec = rows == 1;
                hw.w[role][(size_t)hw.slot(role, h, b)] = make_weight(r, vec ? SPEC_DTYPE_F32 : dtype, rows, cols, vec ? 0.3 : std::sqrt(3.0 / (double)cols));
            }
    }
    return hw;
}

spec_heads *load_head_weights(spec_model *target, const HeadWeights &hw) {
    spec_heads *h = nullptr;
    CHECK_OK(spec_heads_create(target, &hw.cfg, &h));
    if (!h) return nullptr;
    for (int role = 0; role < SPEC_HW_ROLE_COUNT; role++)
        for (int i = 0; i < hw.cfg.n_heads; i++)
            for (int b = 0; b < (role >= SPEC_HW_PROJ ? 1 : hw.cfg.n_blocks); b++) {
                const Weight &w = hw.w[role][(size_t)hw.slot(role, i, b)];
                if (!w.rows || (role == SPEC_HW_PROJ && hw.lm_head_proj)) continue;
                CHECK_OK(spec_heads_set_weight(h, role, i, b, w.dtype, w.data(), w.size(), w.rows, w.cols));
            }
    CHECK_OK(spec_heads_finalize(h));
    return h;
}

// Head `head` over n rows on one backend: hidden uploaded at an offset, logits at an offset.
std::vector<float> run_head(spec_context *ctx, spec_heads *heads, const spec_model_config &c, int head, const std::vector<float> &hidden,
                            const std::vector<int> &tokens, int n) {
    spec_buffer *hb = alloc_buf(ctx, 8 + (uint64_t)c.n_embd), *lb = alloc_buf(ctx, 4 + (uint64_t)n * c.n_vocab);
    CHECK_OK(spec_copy_h2d(hb, 32, hidden.data(), hidden.size() * 4));
    spec_heads_forward_args a;
    std::memset(&a, 0, sizeof a);
    a.head = head;
    a.n_rows = n;
    a.hidden = hb;
    a.hidden_offset = 32;
    a.tokens = tokens.empty() ? nullptr : tokens.data();
    a.logits = lb;
    a.logits_offset = 16;
    std::vector<float> out((size_t)n * c.n_vocab);
    CHECK_OK(spec_heads_forward(heads, &a));
    CHECK_OK(spec_copy_d2h(out.data(), lb, 16, out.size() * 4));
    spec_buffer_free(hb);
    spec_buffer_free(lb);
    return out;
}

void test_final_hidden_and_heads(const Contexts &cx) {
    spec_model_config c = small_config(SPEC_ARCH_QWEN2);
    Both b = load_both(cx, spec_all("heads target qwen2 f16", c, SPEC_DTYPE_F16, SPEC_DTYPE_F32, false, 310));
    if (!b.cpu || !b.gpu) return;
    const int E = c.n_embd, V = c.n_vocab;
    spec_kv *kc = nullptr, *kg = nullptr;
    CHECK_OK(spec_kv_create(b.cpu, 300, &kc));
    CHECK_OK(spec_kv_create(b.gpu, 300, &kg));
    Rng r(311);
    // final_hidden over a prompt longer than one slice, then over a tree
    std::vector<int> prompt = random_tokens(r, 150, V);
    Final pc = forward_final(cx.cpu, b.cpu, kc, c, prompt, NULL), pg = forward_final(cx.gpu, b.gpu, kg, c, prompt, NULL);
    const double e_prompt = std::max(rows_err(pg.hidden, pc.hidden, E), rows_err(pg.logits, pc.logits, V));
    commit_chain(kc, 150);
    commit_chain(kg, 150);
    const std::vector<int> parents = {-1, 0, 0, 1, 3, 2};
    std::vector<int> tree = random_tokens(r, (int)parents.size(), V);
    Final tc = forward_final(cx.cpu, b.cpu, kc, c, tree, parents.data()), tg = forward_final(cx.gpu, b.gpu, kg, c, tree, parents.data());
    const double e_tree = std::max(rows_err(tg.hidden, tc.hidden, E), rows_err(tg.logits, tc.logits, V));
    printf("  final_hidden (prompt of 150, tree of 6): cuda vs cpu max rel err %.2e, %.2e\n", e_prompt, e_tree);
    CHECK(e_prompt <= 2e-3 && e_tree <= 2e-3);
    // heads over the cpu's final hidden row of tree node 4 (both backends get the same input)
    const std::vector<float> h(tc.hidden.begin() + 4 * E, tc.hidden.begin() + 5 * E);
    struct HeadCase {
        const char *name;
        int conditioned, n_blocks, proj_bias, dtype;
        bool lm_head;
    } cases[] = {{"medusa f16, 1 block", 0, 1, 0, SPEC_DTYPE_F16, false},
                 {"medusa bf16, 2 blocks, LM head", 0, 2, 0, SPEC_DTYPE_BF16, true},
                 {"hydra f32, 2 blocks, proj bias", 1, 2, 1, SPEC_DTYPE_F32, false},
                 {"hydra f16, 1 block, LM head", 1, 1, 0, SPEC_DTYPE_F16, true}};
    for (const HeadCase &hc : cases) {
        spec_heads_config cfg;
        std::memset(&cfg, 0, sizeof cfg);
        cfg.n_heads = 3;
        cfg.n_blocks = hc.n_blocks;
        cfg.conditioned = hc.conditioned;
        cfg.proj_bias = hc.proj_bias;
        HeadWeights hw = make_head_weights(r, cfg, E, V, hc.dtype);
        hw.lm_head_proj = hc.lm_head;
        spec_heads *hcpu = load_head_weights(b.cpu, hw), *hgpu = load_head_weights(b.gpu, hw);
        double worst = 0.0;
        for (int head = 0; head < cfg.n_heads && hcpu && hgpu; head++)
            for (int n : {1, 5, 64}) {
                std::vector<int> toks = hc.conditioned ? random_tokens(r, n * (head + 1), V) : std::vector<int>();
                const std::vector<float> lc = run_head(cx.cpu, hcpu, c, head, h, toks, n), lg = run_head(cx.gpu, hgpu, c, head, h, toks, n);
                worst = std::max(worst, rows_err(lg, lc, V));
            }
        printf("  heads %-32s cuda vs cpu: max rel err %.2e\n", hc.name, worst);
        CHECK(worst <= 2e-3);
        if (hcpu) spec_heads_destroy(hcpu);
        if (hgpu) spec_heads_destroy(hgpu);
    }
    spec_kv_destroy(kc);
    spec_kv_destroy(kg);
    destroy(b);
}

// ------------------------------------------------------------------ 2. greedy generation

const char *dtype_name_of(int dt) {
    static const char *names[5] = {"f32", "f16", "bf16", "q8_0", "q4_0"};
    return dt >= 0 && dt < 5 ? names[dt] : "?";
}

int argmax(const std::vector<float> &row) { return (int)(std::max_element(row.begin(), row.end()) - row.begin()); }

std::vector<int> greedy(spec_context *ctx, spec_model *model, const spec_model_config &c, const std::vector<int> &prompt, int steps) {
    std::vector<int> out;
    spec_kv *kv = nullptr;
    CHECK_OK(spec_kv_create(model, (int)prompt.size() + steps + 1, &kv));
    if (!kv) return out;
    Out o = forward(ctx, model, kv, c, prompt, NULL, NULL, SPEC_LOGITS_LAST);
    commit_chain(kv, (int)prompt.size());
    for (int s = 0; s < steps && o.status == SPEC_OK; s++) {
        out.push_back(argmax(o.logits));
        o = forward(ctx, model, kv, c, std::vector<int>{out.back()}, NULL, NULL, SPEC_LOGITS_LAST);
        commit_chain(kv, 1);
    }
    spec_kv_destroy(kv);
    return out;
}

void test_greedy(const Contexts &cx) {
    const int n_prompts = g_quick ? 3 : 20;
    // Not Q8_0 / Q4_0: the cpu backend quantizes their activations and cuda does not (see
    // test_parity), so near-tied logits of these random models may pick different tokens.
    for (int dt : {SPEC_DTYPE_BF16, SPEC_DTYPE_F16}) {
        spec_model_config c = small_config(SPEC_ARCH_LLAMA);
        c.n_embd = 128;
        c.n_head = 8;
        c.n_head_kv = 2;
        c.n_ff = 256;
        c.n_vocab = 256;
        c.kv_dtype = SPEC_DTYPE_F16;
        Both b = load_both(cx, spec_all("greedy", c, dt, SPEC_DTYPE_F32, false, 300 + dt));
        if (!b.cpu || !b.gpu) continue;
        Rng r(77 + dt);
        int same = 0;
        for (int p = 0; p < n_prompts; p++) {
            std::vector<int> prompt = random_tokens(r, 3 + r.below(40), c.n_vocab);
            std::vector<int> a = greedy(cx.cpu, b.cpu, c, prompt, 24), g = greedy(cx.gpu, b.gpu, c, prompt, 24);
            if (a == g && a.size() == 24) same++;
            else fprintf(stderr, "  greedy prompt %d (%s): cuda and cpu diverge\n", p, dtype_name_of(dt));
        }
        printf("  greedy %s: %d of %d prompts generate the same 24 tokens on cuda and cpu\n", dtype_name_of(dt), same, n_prompts);
        CHECK(same == n_prompts);
        destroy(b);
    }
}

// ------------------------------------------------------------------ 3. graphs on and off

std::vector<float> graph_run(const Contexts &cx, spec_model *model, const spec_model_config &c, uint64_t seed) {
    std::vector<float> all;
    spec_kv *kv = nullptr;
    CHECK_OK(spec_kv_create(model, 300, &kv));
    if (!kv) return all;
    Rng r(seed);
    auto take = [&](const Out &o) { all.insert(all.end(), o.logits.begin(), o.logits.end()); };
    take(forward(cx.gpu, model, kv, c, random_tokens(r, 150, c.n_vocab)));
    commit_chain(kv, 150);
    for (int i = 0; i < 3; i++) {
        take(forward(cx.gpu, model, kv, c, std::vector<int>{r.below(c.n_vocab)}, NULL, NULL, SPEC_LOGITS_LAST));
        commit_chain(kv, 1);
    }
    const std::vector<int> parents = {-1, 0, 0, 1, 2, 1, 3, -1, 7, 4, 4, 6};
    take(forward(cx.gpu, model, kv, c, random_tokens(r, 12, c.n_vocab), parents.data()));
    const std::vector<int> path = path_to(parents, 6);
    CHECK_OK(spec_kv_commit(kv, (int)path.size(), path.data()));
    Out ex = forward(cx.gpu, model, kv, c, random_tokens(r, 7, c.n_vocab), NULL, NULL, SPEC_LOGITS_ALL, 1, true, true);
    take(ex);
    all.insert(all.end(), ex.exit_hidden.begin(), ex.exit_hidden.end());
    all.insert(all.end(), ex.exit_logits.begin(), ex.exit_logits.end());
    take(forward(cx.gpu, model, kv, c, std::vector<int>{1}, NULL, NULL, SPEC_LOGITS_LAST));
    spec_kv_destroy(kv);
    return all;
}

void test_graphs(const Contexts &cx) {
    spec_model_config c = small_config(SPEC_ARCH_QWEN2);
    c.kv_dtype = SPEC_DTYPE_BF16;
    TestModel tm = make_model(spec_all("graphs", c, SPEC_DTYPE_Q8_0, SPEC_DTYPE_F16, false, 400));
    spec_model *with = load_model(cx.gpu, tm);
    setenv("SPECULA_CUDA_GRAPHS", "0", 1); // read at finalize
    spec_model *without = load_model(cx.gpu, tm);
    unsetenv("SPECULA_CUDA_GRAPHS");
    if (!with || !without) return;
    std::vector<float> a = graph_run(cx, with, c, 5), b = graph_run(cx, without, c, 5);
    // twice with graphs: replays of captured graphs give the same numbers as their first launch
    std::vector<float> a2 = graph_run(cx, with, c, 5);
    CHECK(!a.empty() && a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * 4) == 0);
    CHECK(a2.size() == a.size() && std::memcmp(a.data(), a2.data(), a.size() * 4) == 0);
    printf("  graphs on vs off (SPECULA_CUDA_GRAPHS=0): %zu floats, bit-identical\n", a.size());
    spec_model_destroy(with);
    spec_model_destroy(without);
}

// ------------------------------------------------------------------ 4. stacked and separate weights

// Calls of at most 8 tokens (matmul's streaming regime, where a stacked product gives every row
// the same bits as the separate one): a prompt, decode steps, a tree and its commit, early exits.
std::vector<float> streaming_run(const Contexts &cx, spec_model *model, const spec_model_config &c, uint64_t seed) {
    std::vector<float> all;
    spec_kv *kv = nullptr;
    CHECK_OK(spec_kv_create(model, 100, &kv));
    if (!kv) return all;
    Rng r(seed);
    auto take = [&](const Out &o) {
        CHECK(o.status == SPEC_OK);
        all.insert(all.end(), o.logits.begin(), o.logits.end());
        all.insert(all.end(), o.exit_hidden.begin(), o.exit_hidden.end());
        all.insert(all.end(), o.exit_logits.begin(), o.exit_logits.end());
    };
    take(forward(cx.gpu, model, kv, c, random_tokens(r, 8, c.n_vocab)));
    commit_chain(kv, 8);
    for (int i = 0; i < 3; i++) {
        take(forward(cx.gpu, model, kv, c, std::vector<int>{r.below(c.n_vocab)}, NULL, NULL, SPEC_LOGITS_LAST));
        commit_chain(kv, 1);
    }
    const std::vector<int> parents = {-1, 0, 0, 1, 2, 1, 3, -1};
    take(forward(cx.gpu, model, kv, c, random_tokens(r, 8, c.n_vocab), parents.data()));
    const std::vector<int> path = path_to(parents, 6);
    CHECK_OK(spec_kv_commit(kv, (int)path.size(), path.data()));
    take(forward(cx.gpu, model, kv, c, random_tokens(r, 5, c.n_vocab), NULL, NULL, SPEC_LOGITS_ALL, 1, true, true));
    take(forward(cx.gpu, model, kv, c, std::vector<int>{1}, NULL, NULL, SPEC_LOGITS_LAST));
    spec_kv_destroy(kv);
    return all;
}

// SPECULA_CUDA_FUSE=0 (read at finalize) keeps every layer's q/k/v and gate/up weights separate.
// Up to 8 rows both must agree bit for bit; past that (the tensor-core path) matmul's split-k
// factor depends on the row count, so they agree to rounding: at these small shapes the split is
// bounded by k alike for both and they should still be identical, which is printed, not required.
void test_stacking(const Contexts &cx) {
    struct Case {
        const char *name;
        ModelSpec spec;
    };
    std::vector<Case> cases;
    cases.push_back({"llama q8_0", spec_all("stack q8_0", small_config(SPEC_ARCH_LLAMA), SPEC_DTYPE_Q8_0, SPEC_DTYPE_F32, false, 600)});
    spec_model_config qc = small_config(SPEC_ARCH_QWEN2);
    qc.kv_dtype = SPEC_DTYPE_BF16;
    cases.push_back({"qwen2 bf16 (biases)", spec_all("stack bf16", qc, SPEC_DTYPE_BF16, SPEC_DTYPE_F16, true, 601)});
    cases.push_back({"llama q4_0", spec_all("stack q4_0", small_config(SPEC_ARCH_LLAMA), SPEC_DTYPE_Q4_0, SPEC_DTYPE_BF16, false, 602)});
    // q, k, v of three dtypes (stay separate) next to gate, up of one (stacked)
    ModelSpec mixed = spec_all("stack mixed", small_config(SPEC_ARCH_LLAMA), SPEC_DTYPE_F16, SPEC_DTYPE_F32, false, 603);
    mixed.mat_dtype[SPEC_W_ATTN_Q] = SPEC_DTYPE_F32;
    mixed.mat_dtype[SPEC_W_ATTN_V] = SPEC_DTYPE_BF16;
    cases.push_back({"mixed q/k/v dtypes", mixed});
    for (const Case &k : cases) {
        TestModel tm = make_model(k.spec);
        const spec_model_config &c = tm.spec.cfg;
        spec_model *stacked = load_model(cx.gpu, tm);
        setenv("SPECULA_CUDA_FUSE", "0", 1);
        spec_model *separate = load_model(cx.gpu, tm);
        unsetenv("SPECULA_CUDA_FUSE");
        if (!stacked || !separate) return;
        std::vector<float> a = streaming_run(cx, stacked, c, 9), b = streaming_run(cx, separate, c, 9);
        CHECK(!a.empty() && a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * 4) == 0);
        std::vector<float> a2 = graph_run(cx, stacked, c, 10), b2 = graph_run(cx, separate, c, 10);
        const double e = rows_err(a2, b2, c.n_vocab);
        const bool same = a2.size() == b2.size() && std::memcmp(a2.data(), b2.data(), a2.size() * 4) == 0;
        printf("  %-22s stacked vs separate: up to 8 rows bit-identical (%zu floats); with 150-row slices max rel err %.1e%s\n",
               k.name, a.size(), e, same ? " (bit-identical)" : "");
        CHECK(e <= 1e-5);
        spec_model_destroy(stacked);
        spec_model_destroy(separate);
    }
}

// ------------------------------------------------------------------ 5. concurrency with the default stream

// One thread decodes on a fresh model (so its graphs are captured during the run, at buckets 1 to
// 16) while another copies to and from a buffer of the same context in a loop, on the legacy
// default stream. Capturing a blocking stream would make those copies (or the capture) fail; the
// model's stream is non-blocking, ordered with the default stream by events. Both must succeed,
// and the decoded logits must equal a rerun of the same steps once the graphs exist.
void test_concurrent_copies(const Contexts &cx) {
    spec_model_config c = small_config(SPEC_ARCH_LLAMA);
    c.kv_dtype = SPEC_DTYPE_F16;
    TestModel tm = make_model(spec_all("concurrent", c, SPEC_DTYPE_BF16, SPEC_DTYPE_F32, false, 700));
    spec_model *model = load_model(cx.gpu, tm);
    if (!model) return;
    const int n_floats = 1 << 16;
    spec_buffer *buf = alloc_buf(cx.gpu, n_floats);
    if (!buf) return;

    auto decode = [&]() {
        std::vector<float> all;
        spec_kv *kv = nullptr;
        if (spec_kv_create(model, 400, &kv) != SPEC_OK) return all;
        Rng r(31);
        for (int step = 0; step < 60; step++) {
            const int n = 1 << (step % 5); // trees of 1, 2, 4, 8, 16 tokens: five graph buckets
            std::vector<int> parents(n);
            for (int i = 0; i < n; i++) parents[i] = i - 1;
            Out o = forward(cx.gpu, model, kv, c, random_tokens(r, n, c.n_vocab), parents.data(), NULL,
                            step % 2 ? SPEC_LOGITS_ALL : SPEC_LOGITS_LAST);
            if (o.status != SPEC_OK) {
                all.clear();
                break;
            }
            all.insert(all.end(), o.logits.begin(), o.logits.end());
            const int keep[1] = {0};
            if (spec_kv_commit(kv, 1, keep) != SPEC_OK) {
                all.clear();
                break;
            }
        }
        spec_kv_destroy(kv);
        return all;
    };

    std::atomic<bool> started{false}, stop{false};
    std::atomic<int> copies{0}, copy_failures{0};
    std::thread copier([&]() {
        std::vector<float> out(n_floats), back(n_floats);
        for (uint32_t round = 0; !stop.load(); round++) {
            for (int i = 0; i < n_floats; i++) out[i] = (float)(round * 7 + i);
            const bool ok = spec_copy_h2d(buf, 0, out.data(), (uint64_t)n_floats * 4) == SPEC_OK &&
                            spec_copy_d2h(back.data(), buf, 0, (uint64_t)n_floats * 4) == SPEC_OK &&
                            std::memcmp(out.data(), back.data(), (size_t)n_floats * 4) == 0;
            if (!ok) copy_failures++;
            copies++;
            started.store(true);
        }
    });
    while (!started.load()) std::this_thread::yield();
    std::vector<float> during = decode();
    stop.store(true);
    copier.join();
    std::vector<float> after = decode(); // graphs replayed, nothing else running
    printf("  decoding while copying: %d copy round trips alongside %zu logits, %d failed\n", copies.load(), during.size(),
           copy_failures.load());
    CHECK(copy_failures.load() == 0 && copies.load() > 0);
    CHECK(!during.empty() && during.size() == after.size() && std::memcmp(during.data(), after.data(), during.size() * 4) == 0);
    spec_buffer_free(buf);
    spec_model_destroy(model);
}

// ------------------------------------------------------------------ 6. bad input, memory plan

void test_errors(const Contexts &cx) {
    spec_model_config c = base_config();
    TestModel tm = make_model(spec_all("errors", c, SPEC_DTYPE_F16, SPEC_DTYPE_F32, false, 500));
    spec_model *a = load_model(cx.gpu, tm), *b = load_model(cx.gpu, tm);
    if (!a || !b) return;
    spec_kv *kv = nullptr;
    CHECK_OK(spec_kv_create(b, 300, &kv));
    spec_buffer *logits = alloc_buf(cx.gpu, 300 * (uint64_t)c.n_vocab);
    std::vector<int> toks(200, 1);
    spec_forward_args f;
    std::memset(&f, 0, sizeof f);
    f.n_tokens = 3;
    f.tokens = toks.data();
    f.logits_mode = SPEC_LOGITS_ALL;
    f.logits = logits;
    CHECK_FAILS(cx.gpu, spec_forward(a, kv, &f), SPEC_ERR_INVALID_ARGUMENT, "belongs to another model");
    toks[1] = c.n_vocab;
    CHECK_FAILS(cx.gpu, spec_forward(b, kv, &f), SPEC_ERR_OUT_OF_RANGE, "out of range");
    toks[1] = 1;
    // 200 roots: token 128's key set does not fit the kernel's window
    std::vector<int> roots(200, -1);
    f.n_tokens = 200;
    f.parents = roots.data();
    CHECK_FAILS(cx.gpu, spec_forward(b, kv, &f), SPEC_ERR_UNSUPPORTED, "ancestors");
    // ... while 100 roots fit
    f.n_tokens = 100;
    CHECK_OK(spec_forward(b, kv, &f));
    spec_buffer_free(logits);
    spec_kv_destroy(kv);

    // the plan's figures against what the device lost
    spec_memory_request req;
    std::memset(&req, 0, sizeof req);
    uint64_t given = 0;
    for (int role = 0; role < SPEC_W_ROLE_COUNT; role++)
        for (const Weight &w : tm.w[role]) given += w.size();
    req.weight_bytes = given;
    req.kv_capacity = 4096;
    req.n_sequences = 1;
    spec_memory_plan plan;
    CHECK_OK(spec_memory_plan_compute("cuda", &c, &req, &plan));
    spec_device_info before, after;
    CHECK_OK(spec_device_query(cx.gpu, &before));
    spec_model *m = load_model(cx.gpu, tm);
    spec_kv *big = nullptr;
    CHECK_OK(spec_kv_create(m, 4096, &big));
    CHECK_OK(spec_device_query(cx.gpu, &after));
    printf("  memory plan: weights %llu + scratch %llu + kv %llu bytes; the device lost %lld\n", (unsigned long long)plan.weights,
           (unsigned long long)plan.model_scratch, (unsigned long long)plan.kv_caches,
           (long long)(before.free_memory - after.free_memory));
    spec_kv_destroy(big);
    spec_model_destroy(m);
    spec_model_destroy(a);
    spec_model_destroy(b);

    // The plan of a k-quant mix against what the device lost: its weights are the bytes given
    // (finalize fails rather than exceed the planned allocation), whatever their dtype.
    spec_model_config kc = base_config();
    kc.n_embd = 256, kc.head_dim = 64, kc.n_ff = 512;
    ModelSpec ks = spec_all("k-quant plan", kc, SPEC_DTYPE_Q4_K, SPEC_DTYPE_F32, false, 501);
    ks.mat_dtype[SPEC_W_FFN_DOWN] = SPEC_DTYPE_Q6_K;
    ks.mat_dtype[SPEC_W_ATTN_V] = SPEC_DTYPE_Q3_K;
    TestModel ktm = make_model(ks);
    given = 0;
    for (int role = 0; role < SPEC_W_ROLE_COUNT; role++)
        for (const Weight &w : ktm.w[role]) given += w.size();
    req.weight_bytes = given;
    CHECK_OK(spec_memory_plan_compute("cuda", &kc, &req, &plan));
    CHECK_OK(spec_device_query(cx.gpu, &before));
    spec_model *km = load_model(cx.gpu, ktm);
    CHECK(km != NULL);
    CHECK_OK(spec_device_query(cx.gpu, &after));
    printf("  k-quant memory plan: weights %llu (given %llu) + scratch %llu bytes; the device lost %lld\n",
           (unsigned long long)plan.weights, (unsigned long long)given, (unsigned long long)plan.model_scratch,
           (long long)(before.free_memory - after.free_memory));
    if (km) spec_model_destroy(km);
}

} // namespace

int main(void) {
    int32_t n_dev = 0;
    if (spec_device_count("cuda", &n_dev) != SPEC_OK || n_dev < 1) {
        printf("test_cuda_model: no CUDA device, skipped\n");
        return 77;
    }
    const char *q = getenv("SPECULA_TEST_QUICK");
    g_quick = q && strcmp(q, "0") != 0;
    Contexts cx;
    CHECK_OK(spec_context_create("cpu", 0, &cx.cpu));
    CHECK_OK(spec_context_create("cuda", 0, &cx.gpu));
    if (!cx.cpu || !cx.gpu) return check_finish("test_cuda_model");
    printf("parity per dtype, arch and kv dtype:\n");
    test_parity(cx);
    printf("GGML block formats (k-quants, Q4_1, Q5_0, Q5_1):\n");
    test_block_formats(cx);
    printf("qwen3, gemma3, sliding windows:\n");
    test_architectures(cx);
    printf("final_hidden and draft heads:\n");
    test_final_hidden_and_heads(cx);
    printf("greedy generation:\n");
    test_greedy(cx);
    printf("graphs:\n");
    test_graphs(cx);
    printf("stacked weights:\n");
    test_stacking(cx);
    printf("concurrency:\n");
    test_concurrent_copies(cx);
    printf("errors and memory:\n");
    test_errors(cx);
    spec_context_destroy(cx.cpu);
    spec_context_destroy(cx.gpu);
    return check_finish("test_cuda_model");
}
