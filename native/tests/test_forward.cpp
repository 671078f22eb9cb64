/* The cpu forward pass through the ABI: small random models checked against a plain
 * double-precision reference written here, tree attention against chains, commits, prompt
 * slicing, logits modes, early exit, thread-count independence and bad input.
 * SPECULA_CPU_ISA caps the kernel level per model, so the reference checks run for every
 * kernel set this CPU has (avx512, avx2, scalar). */
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "check.h"
#include "model_fixture.hpp"
#include "../cpu/int8_dot.hpp"
#include "../cpu/kquant_dot.hpp"

namespace {

// ------------------------------------------------------------------ the reference (double)

double round_kv(double v, int dt) {
    if (dt == SPEC_DTYPE_F16) return h2f(f2h((float)v));
    if (dt == SPEC_DTYPE_BF16) return bf2f(f2bf((float)v));
    return (float)v;
}

struct Reference {
    const TestModel &m;
    const spec_model_config &c;
    std::vector<std::vector<std::vector<double>>> K, V; // [layer][position index][n_head_kv*head_dim]
    std::vector<int> P; // the position of each index

    explicit Reference(const TestModel &tm) : m(tm), c(tm.spec.cfg), K(c.n_layer), V(c.n_layer) {}

    // The activations a product multiplies: for Q8_0 / Q4_0 / Q4_1 / Q5_0 / Q5_1 weights the cpu backend quantizes
    // them per block of 32 (int8_dot.hpp), so the reference multiplies the same quantized values.
    // The k-quants likewise per super-block of 256 (kquant_dot.hpp, llama.cpp's q8_K).
    static std::vector<double> product_input(const Weight &w, const std::vector<double> &x) {
        using namespace specula::cpu;
        if (kq_is_kquant(w.dtype)) {
            std::vector<float> xf(x.begin(), x.end());
            std::vector<uint8_t> q((size_t)(w.cols / KQ_BLOCK * KQ_X_BYTES));
            kq_quantize_row(xf.data(), w.cols, q.data());
            std::vector<double> out(x.size());
            for (int64_t k = 0; k < w.cols; k++) {
                const uint8_t *b = q.data() + (k / KQ_BLOCK) * KQ_X_BYTES;
                float d;
                std::memcpy(&d, b + KQ_X_D, 4);
                out[(size_t)k] = (double)(int8_t)b[k % KQ_BLOCK] * d;
            }
            return out;
        }
        if (!int8_is_block32(w.dtype)) return x;
        std::vector<float> xf(x.begin(), x.end());
        std::vector<uint8_t> q((size_t)(int8_groups(w.cols) * INT8_X_GROUP_BYTES));
        quantize_acts_row(xf.data(), w.cols, q.data());
        std::vector<double> out(x.size());
        for (int64_t k = 0; k < w.cols; k++) {
            const uint8_t *g = q.data() + (k / INT8_GROUP) * INT8_X_GROUP_BYTES;
            const int j = (int)(k % INT8_GROUP / INT8_BLOCK), e = (int)(k % INT8_BLOCK);
            float d;
            std::memcpy(&d, g + INT8_X_SCALE + 4 * j, 4);
            out[(size_t)k] = (double)(int8_t)g[64 * (e / 4) + 4 * j + e % 4] * d;
        }
        return out;
    }
    static std::vector<double> matvec(const Weight &w, const std::vector<double> &x_in) {
        const std::vector<double> x = product_input(w, x_in);
        std::vector<double> y((size_t)w.rows, 0.0);
        for (int64_t r = 0; r < w.rows; r++) {
            double s = 0.0;
            for (int64_t k = 0; k < w.cols; k++) s += w.dense[(size_t)(r * w.cols + k)] * x[(size_t)k];
            y[(size_t)r] = s;
        }
        return y;
    }
    std::vector<double> norm(const std::vector<double> &x, const Weight &w) const {
        double ss = 0.0;
        for (double v : x) ss += v * v;
        const double s = 1.0 / std::sqrt(ss / (double)x.size() + (double)c.rms_eps);
        std::vector<double> y(x.size());
        for (size_t i = 0; i < x.size(); i++) y[i] = x[i] * s * w.dense[i];
        return y;
    }
    // Each head of x (head_dim apart) normalized with the one head-sized weight (qwen3, gemma3).
    void head_norm(std::vector<double> &x, int n_heads, const Weight &w) const {
        for (int h = 0; h < n_heads; h++) {
            std::vector<double> one(x.begin() + (long)h * c.head_dim, x.begin() + (long)(h + 1) * c.head_dim);
            one = norm(one, w);
            std::copy(one.begin(), one.end(), x.begin() + (long)h * c.head_dim);
        }
    }
    bool local(int l) const { return c.sliding_window > 0 && (c.swa_pattern <= 0 || (l + 1) % c.swa_pattern != 0); }
    double freq(int i, bool local_layer = false) const {
        if (local_layer && c.rope_theta_local > 0) return std::pow((double)c.rope_theta_local, -2.0 * i / (c.rope_dims ? c.rope_dims : c.head_dim));
        const int rd = c.rope_dims ? c.rope_dims : c.head_dim;
        double theta = std::pow((double)c.rope_theta, -2.0 * i / rd);
        if (c.rope_scaling == SPEC_ROPE_SCALING_LLAMA3) {
            const double wavelen = 2.0 * M_PI / theta;
            const double lo = c.rope_orig_ctx / (double)c.rope_low_freq_factor, hi = c.rope_orig_ctx / (double)c.rope_high_freq_factor;
            if (wavelen < hi) {
            } else if (wavelen > lo) {
                theta = theta / c.rope_factor;
            } else {
                const double sm = (c.rope_orig_ctx / wavelen - c.rope_low_freq_factor) / ((double)c.rope_high_freq_factor - c.rope_low_freq_factor);
                theta = (1 - sm) * theta / c.rope_factor + sm * theta;
            }
        }
        return theta;
    }
    void rope(std::vector<double> &x, int n_heads, int pos, bool local_layer = false) const {
        const int rd = c.rope_dims ? c.rope_dims : c.head_dim;
        const bool unscaled = local_layer && c.rope_theta_local > 0;
        const double p = c.rope_scaling == SPEC_ROPE_SCALING_LINEAR && !unscaled ? pos / (double)c.rope_factor : pos;
        for (int h = 0; h < n_heads; h++)
            for (int i = 0; i < rd / 2; i++) {
                const double ang = p * freq(i, local_layer);
                const size_t a = (size_t)h * c.head_dim + (c.rope_style == SPEC_ROPE_NEOX ? i : 2 * i);
                const size_t b = c.rope_style == SPEC_ROPE_NEOX ? a + rd / 2 : a + 1;
                const double x0 = x[a], x1 = x[b];
                x[a] = x0 * std::cos(ang) - x1 * std::sin(ang);
                x[b] = x0 * std::sin(ang) + x1 * std::cos(ang);
            }
    }
    std::vector<double> head(const std::vector<double> &x) const {
        return matvec(m.get(SPEC_W_OUTPUT), norm(x, m.get(SPEC_W_OUTPUT_NORM)));
    }
    // One more token of the chain; hidden (optional) gets the residual after each layer.
    std::vector<double> step(int token, int pos, std::vector<std::vector<double>> *hidden = nullptr) {
        const int E = c.n_embd, D = c.head_dim, G = c.n_head / c.n_head_kv;
        const Weight &emb = m.get(SPEC_W_TOKEN_EMBD);
        std::vector<double> x(emb.dense.begin() + (long)token * E, emb.dense.begin() + (long)(token + 1) * E);
        const bool gemma = c.arch == SPEC_ARCH_GEMMA3;
        if (gemma)
            for (auto &e : x) e *= std::sqrt((double)E);
        const double scale = c.attn_scale > 0 ? c.attn_scale : 1.0 / std::sqrt((double)D);
        P.push_back(pos);
        if (hidden) hidden->clear();
        for (int l = 0; l < c.n_layer; l++) {
            std::vector<double> n = norm(x, m.get(SPEC_W_ATTN_NORM, l));
            std::vector<double> q = matvec(m.get(SPEC_W_ATTN_Q, l), n), k = matvec(m.get(SPEC_W_ATTN_K, l), n),
                                v = matvec(m.get(SPEC_W_ATTN_V, l), n);
            if (c.arch == SPEC_ARCH_QWEN2) {
                for (size_t i = 0; i < q.size(); i++) q[i] += m.get(SPEC_W_ATTN_Q_BIAS, l).dense[i];
                for (size_t i = 0; i < k.size(); i++) k[i] += m.get(SPEC_W_ATTN_K_BIAS, l).dense[i];
                for (size_t i = 0; i < v.size(); i++) v[i] += m.get(SPEC_W_ATTN_V_BIAS, l).dense[i];
            }
            if (c.arch == SPEC_ARCH_QWEN3 || gemma) {
                head_norm(q, c.n_head, m.get(SPEC_W_ATTN_Q_NORM, l));
                head_norm(k, c.n_head_kv, m.get(SPEC_W_ATTN_K_NORM, l));
            }
            rope(q, c.n_head, pos, local(l));
            rope(k, c.n_head_kv, pos, local(l));
            for (auto &e : k) e = round_kv(e, c.kv_dtype);
            for (auto &e : v) e = round_kv(e, c.kv_dtype);
            K[l].push_back(k);
            V[l].push_back(v);
            std::vector<double> att((size_t)c.n_head * D, 0.0);
            const size_t T = K[l].size();
            for (int h = 0; h < c.n_head; h++) {
                const int g = h / G;
                std::vector<double> s(T);
                double mx = -1e300;
                std::vector<bool> seen(T, true);
                for (size_t t = 0; t < T; t++) {
                    seen[t] = !local(l) || P[t] > pos - c.sliding_window;
                    double d = 0.0;
                    for (int i = 0; i < D; i++) d += q[(size_t)h * D + i] * K[l][t][(size_t)g * D + i];
                    s[t] = d * scale;
                    if (seen[t]) mx = std::max(mx, s[t]);
                }
                double sum = 0.0;
                for (size_t t = 0; t < T; t++) sum += (s[t] = seen[t] ? std::exp(s[t] - mx) : 0.0);
                for (size_t t = 0; t < T; t++)
                    for (int i = 0; i < D; i++) att[(size_t)h * D + i] += s[t] / sum * V[l][t][(size_t)g * D + i];
            }
            std::vector<double> o = matvec(m.get(SPEC_W_ATTN_OUT, l), att);
            if (gemma) o = norm(o, m.get(SPEC_W_ATTN_POST_NORM, l));
            for (int i = 0; i < E; i++) x[i] += o[i];
            n = norm(x, m.get(SPEC_W_FFN_NORM, l));
            std::vector<double> gt = matvec(m.get(SPEC_W_FFN_GATE, l), n), up = matvec(m.get(SPEC_W_FFN_UP, l), n);
            for (size_t i = 0; i < gt.size(); i++) {
                const double a = gt[i];
                gt[i] = (gemma ? 0.5 * a * (1.0 + std::tanh(std::sqrt(2.0 / M_PI) * (a + 0.044715 * a * a * a)))
                               : a / (1.0 + std::exp(-a))) * up[i];
            }
            std::vector<double> d = matvec(m.get(SPEC_W_FFN_DOWN, l), gt);
            if (gemma) d = norm(d, m.get(SPEC_W_FFN_POST_NORM, l));
            for (int i = 0; i < E; i++) x[i] += d[i];
            if (hidden) hidden->push_back(x);
        }
        return head(x);
    }
};

// ------------------------------------------------------------------ 1. chains against the reference

void check_against_reference(spec_context *ctx, const ModelSpec &s, int n_prompt, int n_decode, int pos0, double tol) {
    TestModel tm = make_model(s);
    const spec_model_config &c = tm.spec.cfg;
    spec_model *model = load_model(ctx, tm);
    if (!model) return;
    spec_kv *kv = NULL;
    CHECK_OK(spec_kv_create(model, n_prompt + n_decode + 4, &kv));
    Rng r(s.seed + 7);
    std::vector<int> toks = random_tokens(r, n_prompt + n_decode, c.n_vocab);
    std::vector<int> pos(toks.size());
    for (size_t i = 0; i < pos.size(); i++) pos[i] = pos0 + (int)i;

    std::vector<float> got; // all rows
    std::vector<int> prompt(toks.begin(), toks.begin() + n_prompt);
    Out o = forward(ctx, model, kv, c, prompt, NULL, pos0 ? pos.data() : NULL);
    CHECK(o.status == SPEC_OK);
    got = o.logits;
    commit_chain(kv, n_prompt);
    for (int i = n_prompt; i < n_prompt + n_decode; i++) {
        Out d = forward(ctx, model, kv, c, std::vector<int>{toks[i]}, NULL, pos0 ? &pos[i] : NULL);
        CHECK(d.status == SPEC_OK);
        got.insert(got.end(), d.logits.begin(), d.logits.end());
        commit_chain(kv, 1);
    }
    Reference ref(tm);
    double worst = 0.0;
    for (size_t i = 0; i < toks.size(); i++) {
        std::vector<double> want = ref.step(toks[i], pos[i]);
        if (got.size() >= (i + 1) * c.n_vocab) worst = std::max(worst, row_err(&got[i * c.n_vocab], want.data(), c.n_vocab));
    }
    if (!(worst <= tol)) fprintf(stderr, "  %s: error %.3g exceeds %.3g\n", s.name, worst, tol);
    CHECK(worst <= tol);
    printf("  %-34s max rel err %.2e (tol %.0e)\n", s.name, worst, tol);
    spec_kv_destroy(kv);
    spec_model_destroy(model);
}

spec_model_config kquant_config() {
    spec_model_config c = base_config();
    c.n_embd = 256;
    c.n_head = 4;
    c.n_head_kv = 2;
    c.head_dim = 64;
    c.n_ff = 512;
    c.n_vocab = 60;
    return c;
}

// Every k-quant type on some role, as a llama.cpp Q4_K_M-like mix would spread them.
ModelSpec kquant_mix(const char *name, spec_model_config c, uint64_t seed) {
    ModelSpec s = spec_all(name, c, SPEC_DTYPE_Q4_K, SPEC_DTYPE_F32, false, seed);
    s.mat_dtype[SPEC_W_ATTN_Q] = SPEC_DTYPE_Q5_K;
    s.mat_dtype[SPEC_W_ATTN_K] = SPEC_DTYPE_Q3_K;
    s.mat_dtype[SPEC_W_ATTN_V] = SPEC_DTYPE_Q6_K;
    s.mat_dtype[SPEC_W_ATTN_OUT] = SPEC_DTYPE_Q2_K;
    s.mat_dtype[SPEC_W_FFN_UP] = SPEC_DTYPE_Q5_K;
    s.mat_dtype[SPEC_W_FFN_DOWN] = SPEC_DTYPE_Q6_K;
    s.mat_dtype[SPEC_W_OUTPUT] = SPEC_DTYPE_Q6_K;
    return s;
}

void test_reference(spec_context *ctx) {
    spec_model_config c = base_config();
    check_against_reference(ctx, spec_all("llama f32", c, SPEC_DTYPE_F32, SPEC_DTYPE_F32, false, 1), 7, 3, 0, 1e-4);

    c = base_config();
    c.kv_dtype = SPEC_DTYPE_F16;
    check_against_reference(ctx, spec_all("llama f16 tied kv-f16", c, SPEC_DTYPE_F16, SPEC_DTYPE_F16, true, 2), 6, 3, 0, 1e-3);

    c = base_config();
    c.rope_scaling = SPEC_ROPE_SCALING_LLAMA3;
    c.rope_factor = 8.0f;
    c.rope_low_freq_factor = 1.0f;
    c.rope_high_freq_factor = 4.0f;
    c.rope_orig_ctx = 64;
    check_against_reference(ctx, spec_all("llama bf16 llama3-rope pos 300", c, SPEC_DTYPE_BF16, SPEC_DTYPE_BF16, false, 3), 5, 3, 300, 1e-4);

    c = base_config();
    c.arch = SPEC_ARCH_QWEN2;
    c.rope_style = SPEC_ROPE_NEOX;
    c.rope_scaling = SPEC_ROPE_SCALING_LINEAR;
    c.rope_factor = 2.0f;
    c.rope_theta = 1000000.0f;
    check_against_reference(ctx, spec_all("qwen2 q8_0 biases neox linear", c, SPEC_DTYPE_Q8_0, SPEC_DTYPE_F32, false, 4), 9, 3, 0, 1e-4);

    c = base_config();
    c.rope_style = SPEC_ROPE_NEOX;
    c.rope_dims = 8;
    c.kv_dtype = SPEC_DTYPE_BF16;
    check_against_reference(ctx, spec_all("llama q4_0 partial-rope kv-bf16", c, SPEC_DTYPE_Q4_0, SPEC_DTYPE_F32, true, 5), 8, 2, 0, 5e-3);

    // Sizes that fit no vector width, one kv head for all query heads, mixed dtypes.
    c = odd_sizes_config();
    ModelSpec odd = spec_all("odd sizes mixed f32/f16/bf16", c, SPEC_DTYPE_F16, SPEC_DTYPE_BF16, false, 6);
    odd.mat_dtype[SPEC_W_ATTN_Q] = SPEC_DTYPE_F32;
    odd.mat_dtype[SPEC_W_ATTN_V] = SPEC_DTYPE_BF16;
    odd.mat_dtype[SPEC_W_FFN_DOWN] = SPEC_DTYPE_F32;
    odd.mat_dtype[SPEC_W_OUTPUT] = SPEC_DTYPE_BF16;
    check_against_reference(ctx, odd, 11, 3, 0, 1e-3);

    // Mixed quantized and plain, larger, qwen2.
    c = base_config();
    c.arch = SPEC_ARCH_QWEN2;
    c.rope_style = SPEC_ROPE_NEOX;
    c.n_embd = 96;
    c.n_head = 6;
    c.n_head_kv = 2;
    c.n_ff = 160;
    c.n_vocab = 71;
    ModelSpec mix = spec_all("qwen2 mixed q8/q4/f16", c, SPEC_DTYPE_Q8_0, SPEC_DTYPE_F16, false, 8);
    mix.mat_dtype[SPEC_W_TOKEN_EMBD] = SPEC_DTYPE_Q4_0;
    mix.mat_dtype[SPEC_W_ATTN_K] = SPEC_DTYPE_F16;
    mix.mat_dtype[SPEC_W_FFN_UP] = SPEC_DTYPE_Q4_0;
    mix.mat_dtype[SPEC_W_OUTPUT] = SPEC_DTYPE_F32;
    check_against_reference(ctx, mix, 13, 2, 0, 1e-4);

    // Realistic widths (SmolLM-135M's), where the many-token path splits rows and k into blocks.
    c = base_config();
    c.n_embd = 576;
    c.n_head = 9;
    c.n_head_kv = 3;
    c.head_dim = 64;
    c.n_ff = 1536;
    c.n_vocab = 1000;
    c.n_layer = 1;
    c.kv_dtype = SPEC_DTYPE_F16;
    // Q8_0 at widths like these quantizes thousands of activations per token: where the forward's
    // f32 value and the reference's double one round to neighbouring integers, that activation
    // moves by a whole step (amax/127) and the difference grows through the layers, hence the wider
    // tolerances below (multiplying x by 1 + 1e-6 in the reference alone moves these errors as much).
    // test_int8_dot checks the products themselves bit for bit.
    check_against_reference(ctx, spec_all("smollm widths q8_0", c, SPEC_DTYPE_Q8_0, SPEC_DTYPE_F32, true, 10), 10, 2, 0, 2e-2);

    // The other GGML formats (ABI 0.7), one per role: k-quant super-blocks need rows of 256.
    c = kquant_config();
    check_against_reference(ctx, kquant_mix("llama k-quants q2..q6", c, 11), 9, 3, 0, 1e-3);
    c.arch = SPEC_ARCH_QWEN2;
    c.rope_style = SPEC_ROPE_NEOX;
    ModelSpec legacy = spec_all("qwen2 q4_1/q5_0/q5_1", c, SPEC_DTYPE_Q4_1, SPEC_DTYPE_F32, false, 12);
    legacy.mat_dtype[SPEC_W_ATTN_K] = SPEC_DTYPE_Q5_0;
    legacy.mat_dtype[SPEC_W_ATTN_V] = SPEC_DTYPE_Q5_1;
    legacy.mat_dtype[SPEC_W_FFN_DOWN] = SPEC_DTYPE_Q5_0;
    legacy.mat_dtype[SPEC_W_OUTPUT] = SPEC_DTYPE_Q5_1;
    // Every matrix quantized, so every product's activations are quantized to int8 (int8_dot.hpp):
    // where the forward's f32 activation and the reference's double one round to neighbouring
    // integers, the difference grows through the layers (seed-dependent: other seeds give 1e-7),
    // hence the tolerance of the smollm q8_0 case (most seeds and kernel caps give 1e-7 here);
    // test_int8_dot checks the products bit for bit.
    check_against_reference(ctx, legacy, 9, 3, 0, 2e-2);

    // ABI 0.8: qwen3's q/k norms with a head size unrelated to n_embd / n_head; a sliding window over
    // every layer; gemma3's local and global layers, post-block norms, gelu, scaled embeddings.
    c = base_config();
    c.arch = SPEC_ARCH_QWEN3;
    c.rope_style = SPEC_ROPE_NEOX;
    c.head_dim = 24;
    check_against_reference(ctx, spec_all("qwen3 q/k norms head_dim 24", c, SPEC_DTYPE_F32, SPEC_DTYPE_F32, false, 31), 9, 3, 0, 1e-4);
    c = base_config();
    c.sliding_window = 4;
    check_against_reference(ctx, spec_all("llama sliding window 4", c, SPEC_DTYPE_F32, SPEC_DTYPE_F32, false, 32), 9, 4, 0, 1e-4);
    c = base_config();
    c.arch = SPEC_ARCH_GEMMA3;
    c.rope_style = SPEC_ROPE_NEOX;
    c.n_layer = 4;
    c.head_dim = 32;
    c.sliding_window = 5;
    c.swa_pattern = 2; // layers 1 and 3 global
    c.rope_theta = 1000000.0f;
    c.rope_theta_local = 10000.0f;
    c.rope_scaling = SPEC_ROPE_SCALING_LINEAR;
    c.rope_factor = 8.0f;
    c.attn_scale = 0.2f;
    check_against_reference(ctx, spec_all("gemma3 local/global, f16", c, SPEC_DTYPE_F16, SPEC_DTYPE_F32, true, 33), 10, 4, 3, 1e-4);
    c.attn_scale = 0.0f;
    check_against_reference(ctx, kquant_mix("gemma3 k-quants", [&] {
        spec_model_config k = c;
        k.n_embd = 256;
        k.n_ff = 512;
        k.head_dim = 64; // q = 256: k-quant rows for attn_out
        return k;
    }(), 34), 9, 3, 0, 1e-3);

    // A prompt longer than one internal slice (512) and than one token block.
    c = base_config();
    c.n_layer = 1;
    check_against_reference(ctx, spec_all("long prompt q8_0 (600 tokens)", c, SPEC_DTYPE_Q8_0, SPEC_DTYPE_F32, false, 9), 600, 2, 0, 1e-1);
}

// ------------------------------------------------------------------ 2-5. trees, commits, slicing, modes

struct Fixture {
    spec_context *ctx;
    TestModel tm;
    spec_model *model;
    const spec_model_config &c() const { return tm.spec.cfg; }
};

void test_tree(Fixture &f, double tol) {
    const spec_model_config &c = f.c();
    Rng r(11);
    std::vector<int> prefix = random_tokens(r, 5, c.n_vocab);
    // a tree of 12 nodes with several branches and two roots
    std::vector<int> parents = {-1, 0, 0, 1, 2, 1, 3, -1, 7, 4, 4, 6};
    std::vector<int> tokens = random_tokens(r, (int)parents.size(), c.n_vocab);

    spec_kv *kv = NULL, *kv2 = NULL;
    CHECK_OK(spec_kv_create(f.model, 64, &kv));
    CHECK_OK(spec_kv_create(f.model, 64, &kv2));
    CHECK(forward(f.ctx, f.model, kv, c, prefix).status == SPEC_OK);
    commit_chain(kv, 5);
    CHECK(forward(f.ctx, f.model, kv2, c, prefix).status == SPEC_OK);
    commit_chain(kv2, 5);

    Out tree = forward(f.ctx, f.model, kv, c, tokens, parents.data());
    CHECK(tree.status == SPEC_OK);
    double worst = 0.0;
    for (size_t i = 0; i < parents.size(); i++) {
        std::vector<int> path = path_to(parents, (int)i), ptoks;
        for (int p : path) ptoks.push_back(tokens[p]);
        Out chain = forward(f.ctx, f.model, kv2, c, ptoks); // pending only: the next forward drops it
        if (chain.status != SPEC_OK || tree.logits.empty()) continue;
        worst = std::max(worst, row_err_f(&tree.logits[i * c.n_vocab], &chain.logits[(path.size() - 1) * c.n_vocab], c.n_vocab));
    }
    printf("  tree vs chains (%s): max rel err %.2e\n", f.tm.spec.name, worst);
    CHECK(worst <= tol);

    // 3. commit the path to node 11 (0,1,3,6,11), then one more token == the whole chain at once
    std::vector<int> path = path_to(parents, 11);
    CHECK_OK(spec_kv_commit(kv, (int)path.size(), path.data()));
    int32_t len = 0;
    CHECK_OK(spec_kv_length(kv, &len));
    CHECK(len == 5 + (int)path.size());
    const int extra = r.below(c.n_vocab);
    Out next = forward(f.ctx, f.model, kv, c, std::vector<int>{extra});
    std::vector<int> whole = prefix;
    for (int p : path) whole.push_back(tokens[p]);
    whole.push_back(extra);
    CHECK_OK(spec_kv_truncate(kv2, 0));
    Out full = forward(f.ctx, f.model, kv2, c, whole);
    if (next.status == SPEC_OK && full.status == SPEC_OK) {
        const double e = row_err_f(next.logits.data(), &full.logits[(whole.size() - 1) * c.n_vocab], c.n_vocab);
        printf("  commit tree path + 1 token vs chain: rel err %.2e\n", e);
        CHECK(e <= tol);
    }
    // the path of the second root alone (7, 8) also commits
    CHECK(forward(f.ctx, f.model, kv, c, tokens, parents.data()).status == SPEC_OK);
    const int p78[2] = {7, 8};
    CHECK_OK(spec_kv_commit(kv, 2, p78));
    spec_kv_destroy(kv);
    spec_kv_destroy(kv2);
}

void test_prompt_vs_steps(Fixture &f) {
    const spec_model_config &c = f.c();
    Rng r(12);
    std::vector<int> toks = random_tokens(r, 9, c.n_vocab);
    spec_kv *a = NULL, *b = NULL;
    CHECK_OK(spec_kv_create(f.model, 16, &a));
    CHECK_OK(spec_kv_create(f.model, 16, &b));
    Out all = forward(f.ctx, f.model, a, c, toks);
    double worst = 0.0;
    bool identical = true;
    for (size_t i = 0; i < toks.size(); i++) {
        Out one = forward(f.ctx, f.model, b, c, std::vector<int>{toks[i]});
        commit_chain(b, 1);
        if (one.status != SPEC_OK || all.status != SPEC_OK) continue;
        worst = std::max(worst, row_err_f(&all.logits[i * c.n_vocab], one.logits.data(), c.n_vocab));
        identical = identical && std::memcmp(&all.logits[i * c.n_vocab], one.logits.data(), c.n_vocab * 4) == 0;
    }
    printf("  prompt at once vs token by token: max rel err %.2e%s\n", worst, identical ? " (bit-identical)" : "");
    CHECK(worst <= 1e-5);
    spec_kv_destroy(a);
    spec_kv_destroy(b);
}

void test_modes_and_exit(Fixture &f) {
    const spec_model_config &c = f.c();
    const int L = c.n_layer;
    Rng r(13);
    std::vector<int> toks = random_tokens(r, 6, c.n_vocab);
    spec_kv *kv = NULL;
    CHECK_OK(spec_kv_create(f.model, 16, &kv));
    Out all = forward(f.ctx, f.model, kv, c, toks);
    Out last = forward(f.ctx, f.model, kv, c, toks, NULL, NULL, SPEC_LOGITS_LAST);
    if (all.status == SPEC_OK && last.status == SPEC_OK)
        CHECK(std::memcmp(last.logits.data(), &all.logits[5 * c.n_vocab], c.n_vocab * 4) == 0);

    // exit at the last layer: exit logits are the logits
    Out ex = forward(f.ctx, f.model, kv, c, toks, NULL, NULL, SPEC_LOGITS_ALL, L, true, true);
    if (ex.status == SPEC_OK && all.status == SPEC_OK) {
        CHECK(std::memcmp(ex.logits.data(), all.logits.data(), all.logits.size() * 4) == 0);
        CHECK(std::memcmp(ex.exit_logits.data(), all.logits.data(), all.logits.size() * 4) == 0);
    }
    // ... and with LAST, the row of the last token
    Out exl = forward(f.ctx, f.model, kv, c, toks, NULL, NULL, SPEC_LOGITS_LAST, L, false, true);
    if (exl.status == SPEC_OK && all.status == SPEC_OK)
        CHECK(std::memcmp(exl.logits.data(), &all.logits[5 * c.n_vocab], c.n_vocab * 4) == 0);

    // an early exit: hidden and logits against the reference after layer 1
    Out mid = forward(f.ctx, f.model, kv, c, toks, NULL, NULL, SPEC_LOGITS_ALL, 1, true, true);
    Reference ref(f.tm);
    double eh = 0.0, el = 0.0;
    for (size_t i = 0; i < toks.size() && mid.status == SPEC_OK; i++) {
        std::vector<std::vector<double>> hidden;
        std::vector<double> lg = ref.step(toks[i], (int)i, &hidden);
        eh = std::max(eh, row_err(&mid.exit_hidden[i * c.n_embd], hidden[0].data(), c.n_embd));
        el = std::max(el, row_err(&mid.exit_logits[i * c.n_vocab], ref.head(hidden[0]).data(), c.n_vocab));
        (void)lg;
    }
    printf("  exit after layer 1 vs reference: hidden %.2e, logits %.2e\n", eh, el);
    CHECK(eh <= 1e-4 && el <= 1e-4);
    if (mid.status == SPEC_OK && all.status == SPEC_OK) CHECK(std::memcmp(mid.logits.data(), all.logits.data(), all.logits.size() * 4) == 0);

    // stop at the exit: the same exit outputs, from fewer layers
    Out stop = forward(f.ctx, f.model, kv, c, toks, NULL, NULL, SPEC_LOGITS_NONE, 1, true, true, true);
    CHECK(stop.status == SPEC_OK);
    if (stop.status == SPEC_OK && mid.status == SPEC_OK) {
        CHECK(std::memcmp(stop.exit_hidden.data(), mid.exit_hidden.data(), mid.exit_hidden.size() * 4) == 0);
        CHECK(std::memcmp(stop.exit_logits.data(), mid.exit_logits.data(), mid.exit_logits.size() * 4) == 0);
    }
    // a stop-at-exit tree commits like any other (its first layer's KV is what later drafts read)
    const int par[3] = {-1, 0, 0};
    Out draft = forward(f.ctx, f.model, kv, c, std::vector<int>{1, 2, 3}, par, NULL, SPEC_LOGITS_NONE, 1, false, true, true);
    CHECK(draft.status == SPEC_OK);
    const int p02[2] = {0, 2};
    CHECK_OK(spec_kv_commit(kv, 2, p02));
    spec_kv_destroy(kv);
}

// ------------------------------------------------------------------ 6. thread counts

void test_threads(spec_context *ctx, const ModelSpec &s) {
    const spec_model_config &c = s.cfg;
    TestModel tm = make_model(s);
    spec_model *model = load_model(ctx, tm);
    if (!model) return;
    Rng r(22);
    std::vector<int> toks = random_tokens(r, 20, c.n_vocab);
    const int par[5] = {-1, 0, 0, 1, 1};
    std::vector<int> tree = random_tokens(r, 5, c.n_vocab);
    std::vector<float> base;
    for (int nt : {1, 2, 3, 0}) {
        CHECK_OK(spec_context_set_threads(ctx, nt));
        spec_kv *kv = NULL;
        CHECK_OK(spec_kv_create(model, 32, &kv));
        Out a = forward(ctx, model, kv, c, toks);
        commit_chain(kv, 20);
        Out b = forward(ctx, model, kv, c, tree, par);
        Out d = forward(ctx, model, kv, c, std::vector<int>{5});
        std::vector<float> all = a.logits;
        all.insert(all.end(), b.logits.begin(), b.logits.end());
        all.insert(all.end(), d.logits.begin(), d.logits.end());
        if (base.empty()) base = all;
        else CHECK(all.size() == base.size() && std::memcmp(all.data(), base.data(), base.size() * 4) == 0);
        spec_kv_destroy(kv);
    }
    printf("  %s: threads 1, 2, 3, all: identical logits\n", s.name);
    CHECK_OK(spec_context_set_threads(ctx, 0));
    spec_model_destroy(model);
}

// ------------------------------------------------------------------ 6b. batch composition (int8 path)

// A token's logits must not depend on how many tokens share its call, on its index among them, or
// on what the others are: the lossless checks rest on it. Q8_0 and Q4_0 weights (the int8 path,
// whose activations are quantized per token) at widths with several padded int8 groups; the
// token under test sits at the front, in the middle or at the end of batches of 1 to 21 siblings.
// The k-quants (their own int8 path, per super-block of 256) likewise, every k-quant type in one mix.
// F16 / BF16 (f32 activations; few tokens through tile(), more through gemm_plain() over rows read in
// place, in token groups split evenly) at widths that end in a partial vector.
enum class Composition { Int8, Kquants, Plain };
void test_batch_composition(spec_context *ctx, Composition what) {
    const bool kquants = what == Composition::Kquants;
    spec_model_config c = base_config();
    c.n_embd = 544;  // one full group of 512 and a padded one
    c.n_head = 8;
    c.n_head_kv = 2;
    c.head_dim = 68;
    c.n_ff = 1056;
    c.n_vocab = 200;
    c.n_layer = 2;
    c.kv_dtype = SPEC_DTYPE_F16;
    if (kquants) { // rows of whole super-blocks; one layer (this runs for every kernel set, sanitized too)
        c.n_embd = 512;
        c.head_dim = 64;
        c.n_ff = 512;
        c.n_layer = 1;
    }
    if (what == Composition::Plain) { // K % 16 = 4 (n_embd) and 8 (n_ff)
        c.n_embd = 420;
        c.n_head = 6;
        c.head_dim = 70;
        c.n_ff = 1000;
    }
    ModelSpec s = kquants ? kquant_mix("batch composition k-quants", c, 53)
                          : spec_all("batch composition q8_0/q4_0/q4_1/q5_0/q5_1", c, SPEC_DTYPE_Q8_0, SPEC_DTYPE_F32, false, 51);
    if (what == Composition::Plain) {
        s = spec_all("batch composition f16/bf16", c, SPEC_DTYPE_F16, SPEC_DTYPE_F32, false, 54);
        s.mat_dtype[SPEC_W_FFN_UP] = SPEC_DTYPE_BF16;
        s.mat_dtype[SPEC_W_ATTN_K] = SPEC_DTYPE_BF16;
    } else if (!kquants) { // every block-of-32 format on the int8 path
        s.mat_dtype[SPEC_W_FFN_UP] = SPEC_DTYPE_Q4_0;
        s.mat_dtype[SPEC_W_ATTN_V] = SPEC_DTYPE_Q4_0;
        s.mat_dtype[SPEC_W_ATTN_K] = SPEC_DTYPE_Q4_1;
        s.mat_dtype[SPEC_W_FFN_GATE] = SPEC_DTYPE_Q5_0;
        s.mat_dtype[SPEC_W_ATTN_OUT] = SPEC_DTYPE_Q5_1;
    }
    TestModel tm = make_model(s);
    spec_model *model = load_model(ctx, tm);
    if (!model) return;
    Rng r(52);
    const std::vector<int> prefix = random_tokens(r, 6, c.n_vocab);
    const int probe = 17;
    std::vector<float> base;
    int calls = 0, differing = 0;
    for (int nt : {1, 2}) {
        CHECK_OK(spec_context_set_threads(ctx, nt));
        spec_kv *kv = NULL;
        CHECK_OK(spec_kv_create(model, 64, &kv));
        CHECK(forward(ctx, model, kv, c, prefix).status == SPEC_OK);
        commit_chain(kv, (int)prefix.size());
        for (int n : {1, 2, 3, 4, 5, 8, 9, 13, 16, 21}) {
            for (int where : {0, n / 2, n - 1}) {
                std::vector<int> toks = random_tokens(r, n, c.n_vocab);
                toks[(size_t)where] = probe;
                std::vector<int> parents((size_t)n, -1); // all siblings after the prefix
                Out o = forward(ctx, model, kv, c, toks, parents.data());
                if (o.status != SPEC_OK) continue;
                const float *row = &o.logits[(size_t)where * c.n_vocab];
                if (base.empty()) base.assign(row, row + c.n_vocab);
                else differing += std::memcmp(row, base.data(), base.size() * 4) != 0;
                calls++;
            }
        }
        spec_kv_destroy(kv);
    }
    CHECK(differing == 0);
    printf("  batch composition (%s, 1-21 tokens, 3 places, 1-2 threads): %d calls, %d differ\n",
           kquants ? "q2_k..q6_k" : what == Composition::Plain ? "f16/bf16" : "q8_0/q4_0/q4_1/q5_0/q5_1", calls, differing);
    CHECK_OK(spec_context_set_threads(ctx, 0));
    spec_model_destroy(model);
}

// ------------------------------------------------------------------ 7. bad input

void test_errors(spec_context *ctx) {
    spec_model_config c = base_config();
    TestModel tm = make_model(spec_all("errors", c, SPEC_DTYPE_F32, SPEC_DTYPE_F32, false, 31));

    // a weight of the wrong shape; a kv cache (so a forward) before finalize; a missing weight
    spec_model *m = NULL;
    CHECK_OK(spec_model_create(ctx, &c, &m));
    const Weight &wq = tm.get(SPEC_W_ATTN_Q, 0);
    CHECK_FAILS(ctx, spec_model_set_weight(m, SPEC_W_ATTN_Q, 0, SPEC_DTYPE_F32, wq.data(), wq.size(), wq.cols, wq.rows - 1),
                SPEC_ERR_INVALID_ARGUMENT, "expected [64 x 64]");
    // the GGML formats of ABI 0.7: a k-quant row of 64 elements, a truncated Q4_1 matrix, an unknown dtype
    CHECK_FAILS(ctx, spec_model_set_weight(m, SPEC_W_ATTN_Q, 0, SPEC_DTYPE_Q4_K, wq.data(), 64 * 144, wq.rows, wq.cols),
                SPEC_ERR_INVALID_ARGUMENT, "not a multiple of 256");
    CHECK_FAILS(ctx, spec_model_set_weight(m, SPEC_W_ATTN_Q, 0, SPEC_DTYPE_Q4_1, wq.data(), 64 * 40 - 1, wq.rows, wq.cols),
                SPEC_ERR_INVALID_ARGUMENT, "Q4_1 [64 x 64] needs 2560");
    CHECK_FAILS(ctx, spec_model_set_weight(m, SPEC_W_ATTN_Q, 0, 99, wq.data(), wq.size(), wq.rows, wq.cols),
                SPEC_ERR_INVALID_ARGUMENT, "unknown");
    spec_kv *kv = NULL;
    CHECK_FAILS(ctx, spec_kv_create(m, 16, &kv), SPEC_ERR_INVALID_ARGUMENT, "not finalized");
    CHECK_FAILS(ctx, spec_model_finalize(m), SPEC_ERR_INVALID_ARGUMENT, "missing weight");
    spec_model_destroy(m);

    spec_model *model = load_model(ctx, tm);
    if (!model) return;
    CHECK_OK(spec_kv_create(model, 8, &kv));
    spec_buffer *logits = alloc_buf(ctx, 16 * c.n_vocab);
    int toks[9] = {1, 2, 3, 4, 5, 6, 7, 8, 9};
    spec_forward_args a;
    std::memset(&a, 0, sizeof a);
    a.tokens = toks;
    a.logits_mode = SPEC_LOGITS_ALL;
    a.logits = logits;

    const int bad_parent[3] = {-1, 0, 2};
    a.n_tokens = 3;
    a.parents = bad_parent;
    CHECK_FAILS(ctx, spec_forward(model, kv, &a), SPEC_ERR_INVALID_ARGUMENT, "parent[2] = 2");
    a.parents = NULL;

    toks[1] = c.n_vocab;
    CHECK_FAILS(ctx, spec_forward(model, kv, &a), SPEC_ERR_OUT_OF_RANGE, "token[1] = 50 is out of range");
    toks[1] = 2;

    a.n_tokens = 9;
    CHECK_FAILS(ctx, spec_forward(model, kv, &a), SPEC_ERR_OUT_OF_RANGE, "do not fit");
    a.n_tokens = 8;
    CHECK_OK(spec_forward(model, kv, &a));
    commit_chain(kv, 5);
    a.n_tokens = 4;
    CHECK_FAILS(ctx, spec_forward(model, kv, &a), SPEC_ERR_OUT_OF_RANGE, "5 committed of capacity 8");

    // a commit that is not a root-to-node chain
    const int tree_par[3] = {-1, 0, 0};
    a.n_tokens = 3;
    a.parents = tree_par;
    CHECK_OK(spec_forward(model, kv, &a));
    const int not_chain[2] = {1, 2};
    CHECK_FAILS(ctx, spec_kv_commit(kv, 2, not_chain), SPEC_ERR_INVALID_ARGUMENT, "not a root-to-node chain");
    const int siblings[3] = {0, 1, 2};
    CHECK_FAILS(ctx, spec_kv_commit(kv, 3, siblings), SPEC_ERR_INVALID_ARGUMENT, "not a root-to-node chain");

    // logits with stop_at_exit; a small logits buffer
    a.exit_layer = 1;
    a.stop_at_exit = 1;
    CHECK_FAILS(ctx, spec_forward(model, kv, &a), SPEC_ERR_INVALID_ARGUMENT, "stop_at_exit");
    a.exit_layer = 0;
    a.stop_at_exit = 0;
    spec_buffer *tiny = alloc_buf(ctx, 4);
    a.logits = tiny;
    CHECK_FAILS(ctx, spec_forward(model, kv, &a), SPEC_ERR_BUFFER_TOO_SMALL, "logits buffer");

    spec_buffer_free(tiny);
    spec_buffer_free(logits);
    spec_kv_destroy(kv);
    spec_model_destroy(model);
}

} // namespace

int main(void) {
    spec_context *ctx = NULL;
    CHECK_OK(spec_context_create("cpu", 0, &ctx));
    if (!ctx) return check_finish("test_forward");

    const char *isas[] = {"avx512-vnni", "avx512", "avx2", "scalar"};
    for (const char *isa : isas) {
        setenv("SPECULA_CPU_ISA", isa, 1); // read when a model is finalized; caps, never raises
        printf("kernels capped at %s:\n", isa);
        test_reference(ctx);

        spec_model_config c = base_config();
        c.n_layer = 3;
        Fixture f{ctx, make_model(spec_all("tree f32", c, SPEC_DTYPE_F32, SPEC_DTYPE_F32, false, 41)), NULL};
        f.model = load_model(ctx, f.tm);
        test_tree(f, 1e-4);
        test_prompt_vs_steps(f);
        test_modes_and_exit(f);
        spec_model_destroy(f.model);

        c.kv_dtype = SPEC_DTYPE_F16;
        Fixture g{ctx, make_model(spec_all("tree q8_0 kv-f16", c, SPEC_DTYPE_Q8_0, SPEC_DTYPE_F16, true, 42)), NULL};
        g.model = load_model(ctx, g.tm);
        test_tree(g, 0.0); // bit-identical
        test_prompt_vs_steps(g);
        spec_model_destroy(g.model);

        Fixture k{ctx, make_model(kquant_mix("tree k-quants", kquant_config(), 43)), NULL};
        k.model = load_model(ctx, k.tm);
        test_tree(k, 1e-3);
        test_prompt_vs_steps(k);
        spec_model_destroy(k.model);

        // ABI 0.8: a sliding window shorter than the prefix plus the tree, on gemma3's local layers
        // (and not on its global ones); the tree's logits stay bit-identical to its chains'.
        spec_model_config gc = base_config();
        gc.arch = SPEC_ARCH_GEMMA3;
        gc.rope_style = SPEC_ROPE_NEOX;
        gc.n_layer = 3;
        gc.sliding_window = 3;
        gc.swa_pattern = 2;
        gc.rope_theta_local = 10000.0f;
        gc.rope_theta = 1000000.0f;
        gc.kv_dtype = SPEC_DTYPE_F16;
        Fixture w{ctx, make_model(spec_all("tree gemma3 window 3 q8_0", gc, SPEC_DTYPE_Q8_0, SPEC_DTYPE_F32, true, 44)), NULL};
        w.model = load_model(ctx, w.tm);
        test_tree(w, 0.0);
        test_prompt_vs_steps(w);
        spec_model_destroy(w.model);
        test_batch_composition(ctx, Composition::Int8);
        test_batch_composition(ctx, Composition::Kquants);
        test_batch_composition(ctx, Composition::Plain);
    }
    unsetenv("SPECULA_CPU_ISA");
    spec_model_config c = base_config();
    c.n_embd = 128;
    c.n_head = 8;
    c.n_head_kv = 4;
    c.n_ff = 352;
    c.n_vocab = 300;
    ModelSpec s = spec_all("threads", c, SPEC_DTYPE_Q8_0, SPEC_DTYPE_F32, false, 21);
    s.mat_dtype[SPEC_W_ATTN_Q] = SPEC_DTYPE_F16;
    s.mat_dtype[SPEC_W_FFN_DOWN] = SPEC_DTYPE_Q4_0;
    test_threads(ctx, s);
    c = kquant_config();
    c.n_vocab = 300;
    ModelSpec k = kquant_mix("threads k-quants", c, 23);
    k.mat_dtype[SPEC_W_FFN_GATE] = SPEC_DTYPE_Q5_1; // a legacy fallback beside them
    test_threads(ctx, k);
    c = base_config();
    c.arch = SPEC_ARCH_QWEN3;
    c.rope_style = SPEC_ROPE_NEOX;
    c.head_dim = 24;
    c.n_vocab = 300;
    c.sliding_window = 6;
    test_threads(ctx, spec_all("threads qwen3 window 6", c, SPEC_DTYPE_Q8_0, SPEC_DTYPE_F32, false, 24));
    test_errors(ctx);
    spec_context_destroy(ctx);
    return check_finish("test_forward");
}
