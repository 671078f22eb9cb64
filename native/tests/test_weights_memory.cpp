// What a backend makes of a model's weights (ABI 0.11): spec_memory_plan_weights, from the weights' roles and dtypes
// alone, states the bytes that finalize and the forwards then hold by the backend's own accounting (spec_model_memory):
// the cpu backend's Q8_0 matrices prepacked for the int8 kernels, and an EAGLE layer's fc input rows. And its refusals.
#pragma GCC diagnostic ignored "-Wunused-function" // the fixture's model helpers this test does not need
#include "model_fixture.hpp"

#include <cstdlib>

namespace {

// The plan of the weights load_model hands over for m (a tied OUTPUT is TOKEN_EMBD's dtype, as its memory is).
spec_weights_memory plan_of(const TestModel &m, const char *backend = "cpu") {
    std::vector<spec_weight_plan> plan;
    for (int role = 0; role < SPEC_W_ROLE_COUNT; role++) {
        if (!fixture_has_role(m.spec.cfg, role)) continue;
        const int n = is_global_role(role) ? 1 : m.spec.cfg.n_layer;
        for (int l = 0; l < n; l++) plan.push_back(spec_weight_plan{role, l, -1, m.get(role, l).dtype});
    }
    spec_weights_memory out{};
    CHECK_OK(spec_memory_plan_weights(backend, &m.spec.cfg, 0, (int32_t)plan.size(), plan.data(), &out));
    return out;
}

spec_weights_memory held(spec_model *model) {
    spec_weights_memory out{};
    CHECK_OK(spec_model_memory(model, &out));
    return out;
}

void check_model(spec_context *ctx, const ModelSpec &s, bool expect_prepacked) {
    TestModel m = make_model(s);
    spec_weights_memory planned = plan_of(m);
    spec_model *model = load_model(ctx, m);
    spec_weights_memory got = held(model);
    printf("%s: planned %llu prepacked bytes, finalize mapped %llu\n", s.name, (unsigned long long)planned.prepacked,
           (unsigned long long)got.prepacked);
    CHECK(planned.prepacked == got.prepacked);
    CHECK((planned.prepacked > 0) == expect_prepacked);
    CHECK(planned.prepacked % (2u << 20) == 0);
    CHECK(planned.eagle_scratch == 0 && got.eagle_scratch == 0);
    CHECK(planned.total == planned.prepacked && got.total == got.prepacked);
    spec_model_destroy(model);
}

void test_models(spec_context *ctx) {
    spec_model_config c = base_config();
    check_model(ctx, spec_all("q8_0", c, SPEC_DTYPE_Q8_0, SPEC_DTYPE_F32, false, 1), true);
    check_model(ctx, spec_all("q8_0 tied", c, SPEC_DTYPE_Q8_0, SPEC_DTYPE_F32, true, 2), true);
    check_model(ctx, spec_all("f32", c, SPEC_DTYPE_F32, SPEC_DTYPE_F32, false, 3), false);
    // only some matrices Q8_0 (the LM head and the feed-forward up), more than one 2 MiB page of them
    spec_model_config big = c;
    big.n_vocab = 5000;
    big.n_embd = 256;
    big.n_ff = 512;
    big.head_dim = 64;
    ModelSpec mixed = spec_all("mixed", big, SPEC_DTYPE_F16, SPEC_DTYPE_F32, false, 4);
    mixed.mat_dtype[SPEC_W_OUTPUT] = SPEC_DTYPE_Q8_0;
    mixed.mat_dtype[SPEC_W_FFN_UP] = SPEC_DTYPE_Q8_0;
    check_model(ctx, mixed, true);
    // SPECULA_CPU_PREPACK=0 turns the prepacking off: the plan says so too
    setenv("SPECULA_CPU_PREPACK", "0", 1);
    check_model(ctx, spec_all("q8_0, prepacking off", c, SPEC_DTYPE_Q8_0, SPEC_DTYPE_F32, false, 5), false);
    unsetenv("SPECULA_CPU_PREPACK");
}

// An EAGLE layer whose matrices, fc and LM head are Q8_0: planned as spec_model_memory then reports it, the fc input
// scratch growing with the forwards to exactly the plan's one slice, never past it.
void test_eagle_layer(spec_context *ctx) {
    spec_model_config c = base_config();
    c.n_layer = 1;
    Rng r(9);
    const int E = c.n_embd, V = c.n_vocab;
    struct Given {
        int role, eagle_role;
        Weight w;
    };
    auto mat = [&](int role) {
        int64_t rows = 0, cols = 0;
        CHECK_OK(spec_weight_shape(&c, role, 0, &rows, &cols));
        const bool vector = is_vector_role(role);
        return Given{role, -1, make_weight(r, vector ? SPEC_DTYPE_F32 : role == SPEC_W_TOKEN_EMBD ? SPEC_DTYPE_F32 : SPEC_DTYPE_Q8_0, rows, cols,
                                           vector ? 0.2 : 0.3, vector ? 1.0 : 0.0)};
    };
    std::vector<Given> given;
    for (int role : {SPEC_W_TOKEN_EMBD, SPEC_W_OUTPUT, SPEC_W_ATTN_Q, SPEC_W_ATTN_K, SPEC_W_ATTN_V, SPEC_W_ATTN_OUT, SPEC_W_FFN_NORM,
                     SPEC_W_FFN_GATE, SPEC_W_FFN_UP, SPEC_W_FFN_DOWN})
        given.push_back(mat(role));
    given.push_back(Given{0, SPEC_EW_FC, make_weight(r, SPEC_DTYPE_Q8_0, E, 2 * E, 0.3)});
    given.push_back(Given{0, SPEC_EW_FC_BIAS, make_weight(r, SPEC_DTYPE_F32, 1, E, 0.2)});

    std::vector<spec_weight_plan> plan;
    for (const Given &g : given) plan.push_back(spec_weight_plan{g.role, 0, g.eagle_role, g.w.dtype});
    spec_weights_memory planned{};
    CHECK_OK(spec_memory_plan_weights("cpu", &c, 1, (int32_t)plan.size(), plan.data(), &planned));

    spec_model *m = NULL;
    CHECK_OK(spec_model_create(ctx, &c, &m));
    spec_eagle_config ec{1, 0};
    CHECK_OK(spec_model_set_eagle(m, &ec));
    for (const Given &g : given) {
        if (g.eagle_role >= 0) CHECK_OK(spec_model_set_eagle_weight(m, g.eagle_role, g.w.dtype, g.w.data(), g.w.size(), g.w.rows, g.w.cols));
        else CHECK_OK(spec_model_set_weight(m, g.role, 0, g.w.dtype, g.w.data(), g.w.size(), g.w.rows, g.w.cols));
    }
    CHECK_OK(spec_model_finalize(m));
    spec_weights_memory got = held(m);
    printf("eagle layer: planned %llu prepacked + %llu fc scratch bytes; holds %llu prepacked\n", (unsigned long long)planned.prepacked,
           (unsigned long long)planned.eagle_scratch, (unsigned long long)got.prepacked);
    CHECK(planned.prepacked > 0 && planned.prepacked == got.prepacked);
    CHECK(planned.eagle_scratch == (uint64_t)512 * 2 * E * sizeof(float)); // one slice of rows [embd; feature]
    CHECK(planned.total == planned.prepacked + planned.eagle_scratch);
    CHECK(got.eagle_scratch == 0); // nothing run yet

    // 300 rows, then 600 (two slices, the first of 512): the scratch grows to the plan exactly
    spec_kv *kv = NULL;
    CHECK_OK(spec_kv_create(m, 700, &kv));
    spec_buffer *features = alloc_buf(ctx, (uint64_t)600 * E);
    std::vector<float> f((size_t)600 * E);
    for (float &x : f) x = (float)r.sym(1.0);
    CHECK_OK(spec_copy_h2d(features, 0, f.data(), f.size() * 4));
    spec_buffer *logits = alloc_buf(ctx, (uint64_t)V);
    for (int n : {300, 600}) {
        std::vector<int> tokens = random_tokens(r, n, V);
        spec_forward_args a;
        std::memset(&a, 0, sizeof a);
        a.n_tokens = n;
        a.tokens = tokens.data();
        a.logits_mode = SPEC_LOGITS_LAST;
        a.logits = logits;
        spec_eagle_forward_args ea{&a, features, 0, NULL};
        CHECK_OK(spec_eagle_forward(m, kv, &ea));
        CHECK_OK(spec_kv_truncate(kv, 0));
        got = held(m);
        printf("eagle layer after %d rows: fc scratch %llu bytes\n", n, (unsigned long long)got.eagle_scratch);
        CHECK(got.eagle_scratch == (uint64_t)std::min(n, 512) * 2 * E * sizeof(float));
    }
    CHECK(got.eagle_scratch == planned.eagle_scratch);
    CHECK(got.prepacked == planned.prepacked);
    spec_buffer_free(logits);
    spec_buffer_free(features);
    spec_kv_destroy(kv);
    spec_model_destroy(m);
}

void test_refusals(spec_context *ctx) {
    spec_model_config c = base_config();
    spec_weights_memory out{};
    spec_weight_plan fc{0, 0, SPEC_EW_FC, SPEC_DTYPE_Q8_0};
    spec_weight_plan q{SPEC_W_ATTN_Q, 0, -1, SPEC_DTYPE_Q8_0};
    CHECK_FAILS(NULL, spec_memory_plan_weights("tpu", &c, 0, 1, &q, &out), SPEC_ERR_INVALID_ARGUMENT, "unknown backend 'tpu'");
    CHECK_FAILS(NULL, spec_memory_plan_weights("cpu", &c, 0, 1, &q, NULL), SPEC_ERR_INVALID_ARGUMENT, "must not be null");
    CHECK_FAILS(NULL, spec_memory_plan_weights("cpu", &c, 0, 1, NULL, &out), SPEC_ERR_INVALID_ARGUMENT, "weights is null");
    CHECK_FAILS(NULL, spec_memory_plan_weights("cpu", &c, 0, -1, &q, &out), SPEC_ERR_INVALID_ARGUMENT, "n_weights -1");
    CHECK_FAILS(NULL, spec_memory_plan_weights("cpu", &c, 2, 1, &q, &out), SPEC_ERR_INVALID_ARGUMENT, "eagle must be 0 or 1");
    CHECK_FAILS(NULL, spec_memory_plan_weights("cpu", &c, 0, 1, &fc, &out), SPEC_ERR_INVALID_ARGUMENT, "not an EAGLE layer");
    spec_weight_plan bad_role{SPEC_W_ROLE_COUNT, 0, -1, SPEC_DTYPE_F32};
    CHECK_FAILS(NULL, spec_memory_plan_weights("cpu", &c, 0, 1, &bad_role, &out), SPEC_ERR_INVALID_ARGUMENT, "unknown weight role");
    spec_weight_plan bad_layer{SPEC_W_ATTN_Q, 7, -1, SPEC_DTYPE_F32};
    CHECK_FAILS(NULL, spec_memory_plan_weights("cpu", &c, 0, 1, &bad_layer, &out), SPEC_ERR_OUT_OF_RANGE, "layer 7");
    spec_weight_plan bad_dtype{SPEC_W_ATTN_Q, 0, -1, 99};
    CHECK_FAILS(NULL, spec_memory_plan_weights("cpu", &c, 0, 1, &bad_dtype, &out), SPEC_ERR_INVALID_ARGUMENT, "dtype 99");
    spec_weight_plan bad_eagle{0, 0, 5, SPEC_DTYPE_F32};
    CHECK_FAILS(NULL, spec_memory_plan_weights("cpu", &c, 1, 1, &bad_eagle, &out), SPEC_ERR_INVALID_ARGUMENT, "unknown EAGLE role 5");
    spec_model_config bad = c;
    bad.n_head = 0;
    CHECK(spec_memory_plan_weights("cpu", &bad, 0, 1, &q, &out) != SPEC_OK);
    // nothing handed over: nothing made
    CHECK_OK(spec_memory_plan_weights("cpu", &c, 0, 0, NULL, &out));
    CHECK(out.total == 0);
    // the cuda plan of an EAGLE layer needs no device: its input rows' allocation (one slice of 128 rows of
    // [embd; feature] f32, their feature addresses, the fc product's scratch) and the room FC and its bias take beyond
    // their bytes (a 256-byte aligned piece each, the bias as f32); nothing prepacked, nothing for a plain model
    char compiled[64] = {0};
    CHECK_OK(spec_backends_compiled(compiled, sizeof compiled));
    if (strstr(compiled, "cuda")) {
        const uint64_t E = (uint64_t)c.n_embd;
        spec_weight_plan fc_and_bias[2] = {fc, spec_weight_plan{0, 0, SPEC_EW_FC_BIAS, SPEC_DTYPE_F16}};
        spec_weights_memory no_bias{}, with_bias{}, plain{};
        CHECK_OK(spec_memory_plan_weights("cuda", &c, 1, 1, &fc, &no_bias));
        CHECK_OK(spec_memory_plan_weights("cuda", &c, 1, 2, fc_and_bias, &with_bias));
        CHECK_OK(spec_memory_plan_weights("cuda", &c, 0, 1, &q, &plain));
        printf("cuda eagle layer plan: %llu bytes beyond spec_memory_plan (with an fc bias %llu)\n", (unsigned long long)no_bias.total,
               (unsigned long long)with_bias.total);
        CHECK(no_bias.prepacked == 0 && no_bias.total == no_bias.eagle_scratch);
        CHECK(no_bias.eagle_scratch >= 128 * 2 * E * 4 + 128 * 8 + 256);
        CHECK(with_bias.eagle_scratch == no_bias.eagle_scratch + 256 + 4 * E);
        CHECK(plain.total == 0);
    }

    spec_model *m = NULL;
    CHECK_OK(spec_model_create(ctx, &c, &m));
    CHECK_FAILS(ctx, spec_model_memory(m, &out), SPEC_ERR_INVALID_ARGUMENT, "not finalized");
    CHECK_FAILS(NULL, spec_model_memory(NULL, &out), SPEC_ERR_INVALID_HANDLE, "spec_model_memory");
    spec_model_destroy(m);
}

} // namespace

int main() {
    spec_context *ctx = NULL;
    CHECK_OK(spec_context_create("cpu", 0, &ctx));
    test_models(ctx);
    test_eagle_layer(ctx);
    test_refusals(ctx);
    spec_context_destroy(ctx);
    return check_finish("test_weights_memory");
}
