// A small random EAGLE draft layer (ABI 0.9) for the native tests: its weights, its loading through the ABI on any
// context, a double-precision reference of EAGLE-1's forward (x = fc [embd(t); f] + b, layer 0 without an input norm,
// rotate-halves RoPE, no output norm) and one forward call's outputs. test_eagle.cpp checks the cpu backend against the
// reference; native/tests/cuda/test_cuda_eagle.cpp checks cuda against the cpu.
#pragma once

#include "model_fixture.hpp"

namespace {

constexpr int E = 32, V = 50, H = 4, HKV = 2, D = 8, F = 48;

struct Layer {
    spec_model_config c{};
    Weight embd, out, fc, fc_b, wq, wk, wv, wo, ffn_norm, gate, up, down;
    Weight attn_norm, out_norm; // given only where load_layer is asked for norms
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
    Rng nr(977); // apart from r, so that the caller's later draws do not move
    L.attn_norm = make_weight(nr, SPEC_DTYPE_F32, 1, E, 0.2, 1.0);
    L.out_norm = make_weight(nr, SPEC_DTYPE_F32, 1, E, 0.2, 1.0);
    return L;
}

const char *dtype_name_for_test(int dtype) { return dtype == SPEC_DTYPE_F32 ? "F32" : dtype == SPEC_DTYPE_F16 ? "F16" : "Q8_0"; }

// norms: give layer 0 an attention norm and the layer an output norm (EAGLE-1 has neither; the reference does not
// know them). fc_bias: FC has its bias.
spec_model *load_layer(spec_context *ctx, const Layer &L, bool finalize = true, bool with_fc = true, bool norms = false,
                       bool fc_bias = true) {
    spec_model *m = NULL;
    CHECK_OK(spec_model_create(ctx, &L.c, &m));
    spec_eagle_config ec{fc_bias ? 1 : 0, 0};
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
    if (norms) {
        set(SPEC_W_ATTN_NORM, L.attn_norm);
        set(SPEC_W_OUTPUT_NORM, L.out_norm);
    }
    if (with_fc) CHECK_OK(spec_model_set_eagle_weight(m, SPEC_EW_FC, L.fc.dtype, L.fc.data(), L.fc.size(), L.fc.rows, L.fc.cols));
    if (fc_bias) CHECK_OK(spec_model_set_eagle_weight(m, SPEC_EW_FC_BIAS, L.fc_b.dtype, L.fc_b.data(), L.fc_b.size(), 1, E));
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

} // namespace
