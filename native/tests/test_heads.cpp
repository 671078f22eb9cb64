/* Draft heads (ABI 0.8) on the cpu backend: final_hidden rows against the LM head's logits, Medusa and
 * Hydra head forwards against a double-precision reference written here, and bad input. */
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <vector>

#include "check.h"
#include "model_fixture.hpp"

namespace {

struct Heads {
    spec_heads_config cfg;
    bool lm_head_proj = false; // no P given: the heads use the target's LM head
    std::vector<Weight> w[SPEC_HW_ROLE_COUNT]; // [role][head * n_blocks + block] (PROJ roles: [head])
    int slot(int role, int h, int b) const { return role >= SPEC_HW_PROJ ? h : h * cfg.n_blocks + b; }
    const Weight *get(int role, int h, int b) const {
        const Weight &x = w[role][(size_t)slot(role, h, b)];
        return x.rows ? &x : nullptr;
    }
};

Heads make_heads(Rng &r, const spec_heads_config &c, int E, int V, int dtype) {
    Heads hs;
    hs.cfg = c;
    for (int role = 0; role < SPEC_HW_ROLE_COUNT; role++) {
        const int n = role >= SPEC_HW_PROJ ? c.n_heads : c.n_heads * c.n_blocks;
        hs.w[role].resize((size_t)n);
        for (int h = 0; h < c.n_heads; h++)
            for (int b = 0; b < (role >= SPEC_HW_PROJ ? 1 : c.n_blocks); b++) {
                int64_t rows = 0, cols = 0;
                CHECK_OK(spec_head_weight_shape(&c, E, V, role, h, b, &rows, &cols));
                if (rows == 0) continue;
                const bool vec = rows == 1;
                hs.w[role][(size_t)hs.slot(role, h, b)] = make_weight(r, vec ? SPEC_DTYPE_F32 : dtype, rows, cols,
                                                                      vec ? 0.3 : std::sqrt(3.0 / (double)cols));
            }
    }
    return hs;
}

spec_heads *load_heads(spec_model *target, const Heads &hs) {
    spec_heads *h = nullptr;
    CHECK_OK(spec_heads_create(target, &hs.cfg, &h));
    if (!h) return nullptr;
    for (int role = 0; role < SPEC_HW_ROLE_COUNT; role++)
        for (int i = 0; i < hs.cfg.n_heads; i++)
            for (int b = 0; b < (role >= SPEC_HW_PROJ ? 1 : hs.cfg.n_blocks); b++)
                if (const Weight *w = hs.get(role, i, b))
                    if (!(role == SPEC_HW_PROJ && hs.lm_head_proj))
                        CHECK_OK(spec_heads_set_weight(h, role, i, b, w->dtype, w->data(), w->size(), w->rows, w->cols));
    CHECK_OK(spec_heads_finalize(h));
    return h;
}

std::vector<double> matvec(const Weight &w, const std::vector<double> &x) {
    std::vector<double> y((size_t)w.rows, 0.0);
    for (int64_t r = 0; r < w.rows; r++)
        for (int64_t k = 0; k < w.cols; k++) y[(size_t)r] += w.dense[(size_t)(r * w.cols + k)] * x[(size_t)k];
    return y;
}

// The reference head forward of specula.h's definition, in double.
std::vector<double> reference(const Heads &hs, const TestModel &m, int head, const std::vector<double> &hidden, const int *tokens) {
    const int E = m.spec.cfg.n_embd;
    std::vector<double> x = hidden;
    if (hs.cfg.conditioned) {
        const Weight &embd = m.get(SPEC_W_TOKEN_EMBD);
        for (int t = 0; t <= head; t++)
            for (int i = 0; i < E; i++) x.push_back(embd.dense[(size_t)tokens[t] * E + i]);
    }
    for (int b = 0; b < hs.cfg.n_blocks; b++) {
        std::vector<double> y = matvec(*hs.get(SPEC_HW_BLOCK, head, b), x);
        const Weight *bias = hs.get(SPEC_HW_BLOCK_BIAS, head, b);
        for (int i = 0; i < E; i++) {
            const double v = y[(size_t)i] + bias->dense[(size_t)i];
            y[(size_t)i] = v / (1.0 + std::exp(-v));
        }
        std::vector<double> res = x;
        if (const Weight *R = hs.get(SPEC_HW_BLOCK_RES, head, b)) {
            res = matvec(*R, x);
            const Weight *rb = hs.get(SPEC_HW_BLOCK_RES_BIAS, head, b);
            for (int i = 0; i < E; i++) res[(size_t)i] += rb->dense[(size_t)i];
        }
        x.assign((size_t)E, 0.0);
        for (int i = 0; i < E; i++) x[(size_t)i] = res[(size_t)i] + y[(size_t)i];
    }
    std::vector<double> logits = matvec(hs.lm_head_proj ? m.get(SPEC_W_OUTPUT) : *hs.get(SPEC_HW_PROJ, head, 0), x);
    if (const Weight *pb = hs.get(SPEC_HW_PROJ_BIAS, head, 0))
        for (size_t i = 0; i < logits.size(); i++) logits[i] += pb->dense[i];
    return logits;
}

// final_hidden: for a tree, each row is what the LM head reads: logits row = OUTPUT . final row; the
// logits are the same with and without it; a bad buffer or offset is refused.
void test_final_hidden(spec_context *ctx) {
    spec_model_config c = base_config();
    TestModel m = make_model(spec_all("fh", c, SPEC_DTYPE_F32, SPEC_DTYPE_F32, true, 71));
    spec_model *model = load_model(ctx, m);
    spec_kv *kv = nullptr;
    CHECK_OK(spec_kv_create(model, 64, &kv));
    Rng r(5);
    std::vector<int> prompt = random_tokens(r, 7, c.n_vocab);
    forward(ctx, model, kv, c, prompt, nullptr, nullptr, SPEC_LOGITS_NONE);
    commit_chain(kv, 7);
    std::vector<int> tokens = random_tokens(r, 5, c.n_vocab), parents = {-1, 0, 0, 1, 3};
    Out plain = forward(ctx, model, kv, c, tokens, parents.data());
    const int n = 5, E = c.n_embd, V = c.n_vocab;
    spec_buffer *logits = alloc_buf(ctx, (uint64_t)n * V), *fin = alloc_buf(ctx, 3 + (uint64_t)n * E);
    spec_forward_args a;
    std::memset(&a, 0, sizeof a);
    a.n_tokens = n;
    a.tokens = tokens.data();
    a.parents = parents.data();
    a.logits_mode = SPEC_LOGITS_ALL;
    a.logits = logits;
    a.final_hidden = fin;
    a.final_hidden_offset = 12;
    CHECK_OK(spec_forward(model, kv, &a));
    std::vector<float> lg((size_t)n * V), fh((size_t)n * E);
    CHECK_OK(spec_copy_d2h(lg.data(), logits, 0, lg.size() * 4));
    CHECK_OK(spec_copy_d2h(fh.data(), fin, 12, fh.size() * 4));
    CHECK(std::memcmp(lg.data(), plain.logits.data(), lg.size() * 4) == 0);
    const Weight &out = m.get(SPEC_W_OUTPUT);
    double worst = 0;
    for (int i = 0; i < n; i++) {
        std::vector<double> h(fh.begin() + (long)i * E, fh.begin() + (long)(i + 1) * E);
        std::vector<double> ref = matvec(out, h);
        worst = std::max(worst, row_err(lg.data() + (size_t)i * V, ref.data(), V));
    }
    CHECK(worst < 1e-4);
    // LOGITS_NONE still writes final_hidden, the same rows
    std::vector<float> fh2((size_t)n * E);
    a.logits_mode = SPEC_LOGITS_NONE;
    a.logits = nullptr;
    CHECK_OK(spec_forward(model, kv, &a));
    CHECK_OK(spec_copy_d2h(fh2.data(), fin, 12, fh2.size() * 4));
    CHECK(row_err_f(fh2.data(), fh.data(), (int)fh.size()) == 0.0);
    CHECK(path_to(parents, 4) == std::vector<int>({0, 1, 3, 4})); // the node the heads would read after accepting it
    a.final_hidden_offset = 16;
    CHECK_FAILS(ctx, spec_forward(model, kv, &a), SPEC_ERR_BUFFER_TOO_SMALL, "final_hidden buffer");
    a.final_hidden_offset = 2;
    CHECK_FAILS(ctx, spec_forward(model, kv, &a), SPEC_ERR_BUFFER_TOO_SMALL, "final_hidden buffer");
    a.final_hidden = nullptr;
    a.final_hidden_offset = 4;
    CHECK_FAILS(ctx, spec_forward(model, kv, &a), SPEC_ERR_INVALID_ARGUMENT, "final_hidden_offset without final_hidden");
    a.final_hidden = fin;
    a.final_hidden_offset = 0;
    a.exit_layer = 1;
    a.stop_at_exit = 1;
    CHECK_FAILS(ctx, spec_forward(model, kv, &a), SPEC_ERR_INVALID_ARGUMENT, "no final_hidden");
    spec_buffer_free(logits);
    spec_buffer_free(fin);
    spec_kv_destroy(kv);
    spec_model_destroy(model);
}

void test_heads_forward(spec_context *ctx, int conditioned, int n_blocks, int proj_bias, int dtype, int model_dtype,
                        bool lm_head_proj = false) {
    spec_model_config c = base_config();
    TestModel m = make_model(spec_all("heads", c, model_dtype, SPEC_DTYPE_F32, false, 90 + conditioned));
    spec_model *model = load_model(ctx, m);
    Rng r(11 + (uint64_t)n_blocks);
    spec_heads_config hc = {3, n_blocks, conditioned, proj_bias};
    Heads hs = make_heads(r, hc, c.n_embd, c.n_vocab, dtype);
    hs.lm_head_proj = lm_head_proj;
    spec_heads *heads = load_heads(model, hs);
    const int E = c.n_embd, V = c.n_vocab, rows = 6;
    std::vector<float> h((size_t)E);
    for (auto &v : h) v = (float)r.sym(1.5);
    spec_buffer *hidden = alloc_buf(ctx, 1 + (uint64_t)E), *logits = alloc_buf(ctx, 1 + (uint64_t)rows * V);
    CHECK_OK(spec_copy_h2d(hidden, 4, h.data(), h.size() * 4));
    double worst = 0;
    for (int head = 0; head < hc.n_heads; head++) {
        std::vector<int> tokens = random_tokens(r, rows * (head + 1), V);
        spec_heads_forward_args a;
        std::memset(&a, 0, sizeof a);
        a.head = head;
        a.n_rows = rows;
        a.hidden = hidden;
        a.hidden_offset = 4;
        a.tokens = conditioned ? tokens.data() : nullptr;
        a.logits = logits;
        a.logits_offset = 4;
        CHECK_OK(spec_heads_forward(heads, &a));
        std::vector<float> out((size_t)rows * V);
        CHECK_OK(spec_copy_d2h(out.data(), logits, 4, out.size() * 4));
        std::vector<double> hd(h.begin(), h.end());
        for (int j = 0; j < rows; j++) {
            std::vector<double> ref = reference(hs, m, head, hd, tokens.data() + j * (head + 1));
            worst = std::max(worst, row_err(out.data() + (size_t)j * V, ref.data(), V));
        }
    }
    // f16/bf16 weights: the reference uses the same rounded values, so only summation order differs
    if (!(worst < 1e-4)) fprintf(stderr, "  heads conditioned=%d blocks=%d dtype=%d: worst %g\n", conditioned, n_blocks, dtype, worst);
    CHECK(worst < 1e-4);
    spec_heads_forward_args a;
    std::memset(&a, 0, sizeof a);
    a.head = 3;
    a.n_rows = 1;
    a.hidden = hidden;
    a.logits = logits;
    CHECK_FAILS(ctx, spec_heads_forward(heads, &a), SPEC_ERR_OUT_OF_RANGE, "head 3 is out of range");
    a.head = 0;
    a.n_rows = rows + 1;
    std::vector<int> toks((size_t)(rows + 1), 1);
    a.tokens = conditioned ? toks.data() : nullptr;
    CHECK_FAILS(ctx, spec_heads_forward(heads, &a), SPEC_ERR_BUFFER_TOO_SMALL, "logits buffer");
    a.n_rows = 1;
    a.hidden_offset = 8;
    CHECK_FAILS(ctx, spec_heads_forward(heads, &a), SPEC_ERR_BUFFER_TOO_SMALL, "hidden buffer");
    a.hidden_offset = 0;
    if (conditioned) {
        a.tokens = nullptr;
        CHECK_FAILS(ctx, spec_heads_forward(heads, &a), SPEC_ERR_INVALID_ARGUMENT, "need tokens");
        toks[0] = V;
        a.tokens = toks.data();
        CHECK_FAILS(ctx, spec_heads_forward(heads, &a), SPEC_ERR_OUT_OF_RANGE, "out of range (vocabulary");
    } else {
        a.tokens = toks.data();
        CHECK_FAILS(ctx, spec_heads_forward(heads, &a), SPEC_ERR_INVALID_ARGUMENT, "take no tokens");
    }
    spec_buffer_free(hidden);
    spec_buffer_free(logits);
    CHECK_OK(spec_heads_destroy(heads));
    spec_model_destroy(model);
}

void test_bad_heads(spec_context *ctx) {
    spec_model_config c = base_config();
    TestModel m = make_model(spec_all("bad", c, SPEC_DTYPE_F32, SPEC_DTYPE_F32, true, 3));
    spec_model *model = load_model(ctx, m);
    spec_heads *h = nullptr;
    spec_heads_config bad = {0, 1, 0, 0};
    CHECK_FAILS(ctx, spec_heads_create(model, &bad, &h), SPEC_ERR_INVALID_ARGUMENT, "n_heads 0");
    bad = {2, 0, 1, 0};
    CHECK_FAILS(ctx, spec_heads_create(model, &bad, &h), SPEC_ERR_INVALID_ARGUMENT, "at least one block");
    spec_heads_config hc = {2, 1, 1, 1};
    int64_t rows = 0, cols = 0;
    CHECK_OK(spec_head_weight_shape(&hc, 64, 50, SPEC_HW_BLOCK, 1, 0, &rows, &cols));
    CHECK(rows == 64 && cols == 64 * 3);
    CHECK_OK(spec_head_weight_shape(&hc, 64, 50, SPEC_HW_PROJ_BIAS, 1, 0, &rows, &cols));
    CHECK(rows == 1 && cols == 50);
    spec_heads_config medusa = {2, 1, 0, 0};
    CHECK_OK(spec_head_weight_shape(&medusa, 64, 50, SPEC_HW_BLOCK_RES, 1, 0, &rows, &cols));
    CHECK(rows == 0);
    CHECK_FAILS(NULL, spec_head_weight_shape(&hc, 64, 50, SPEC_HW_BLOCK, 2, 0, &rows, &cols), SPEC_ERR_OUT_OF_RANGE, "head 2");
    CHECK_OK(spec_heads_create(model, &hc, &h));
    std::vector<float> w((size_t)64 * 192, 0.01f);
    CHECK_FAILS(ctx, spec_heads_set_weight(h, SPEC_HW_BLOCK, 1, 0, SPEC_DTYPE_F32, w.data(), 64 * 128 * 4, 64, 128),
                SPEC_ERR_INVALID_ARGUMENT, "expected [64 x 192]");
    CHECK_FAILS(ctx, spec_heads_set_weight(h, SPEC_HW_BLOCK, 1, 0, SPEC_DTYPE_Q8_0, w.data(), 64 * 192, 64, 192), SPEC_ERR_UNSUPPORTED,
                "F32, F16 or BF16");
    CHECK_FAILS(ctx, spec_heads_set_weight(h, SPEC_HW_BLOCK, 1, 0, SPEC_DTYPE_F32, w.data(), 4, 64, 192), SPEC_ERR_INVALID_ARGUMENT,
                "bytes given");
    CHECK_OK(spec_heads_set_weight(h, SPEC_HW_BLOCK, 1, 0, SPEC_DTYPE_F32, w.data(), 64 * 192 * 4, 64, 192));
    CHECK_FAILS(ctx, spec_heads_finalize(h), SPEC_ERR_INVALID_ARGUMENT, "missing weight BLOCK of head 0 block 0");
    spec_heads_forward_args a;
    std::memset(&a, 0, sizeof a);
    CHECK_FAILS(ctx, spec_heads_forward(h, &a), SPEC_ERR_INVALID_ARGUMENT, "not finalized");
    CHECK_OK(spec_heads_destroy(h));
    CHECK_FAILS(NULL, spec_heads_destroy(nullptr), SPEC_ERR_INVALID_HANDLE, "heads is null");
    spec_model_destroy(model);
}

} // namespace

int main() {
    spec_context *ctx = nullptr;
    CHECK_OK(spec_context_create("cpu", 0, &ctx));
    test_final_hidden(ctx);
    test_heads_forward(ctx, 0, 1, 0, SPEC_DTYPE_F32, SPEC_DTYPE_F32);       // Medusa
    test_heads_forward(ctx, 0, 2, 0, SPEC_DTYPE_F16, SPEC_DTYPE_F32);       // Medusa, two blocks, f16
    test_heads_forward(ctx, 0, 0, 1, SPEC_DTYPE_BF16, SPEC_DTYPE_F32);      // projection only
    test_heads_forward(ctx, 1, 1, 1, SPEC_DTYPE_F32, SPEC_DTYPE_Q8_0);      // Hydra over a Q8_0 embedding
    test_heads_forward(ctx, 1, 3, 1, SPEC_DTYPE_F16, SPEC_DTYPE_F32);       // Hydra, three blocks
    test_heads_forward(ctx, 1, 1, 1, SPEC_DTYPE_F16, SPEC_DTYPE_F32, true); // Hydra on the target's LM head
    test_heads_forward(ctx, 0, 1, 0, SPEC_DTYPE_F32, SPEC_DTYPE_F16, true); // Medusa on an f16 LM head
    test_bad_heads(ctx);
    spec_context_destroy(ctx);
    return check_finish("test_heads");
}
