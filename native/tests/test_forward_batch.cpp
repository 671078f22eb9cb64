/* spec_forward_batch on the cpu backend: several sequences in one forward, each over its own KV
 * cache, give bit for bit the logits, exit hidden states and exit logits that the same sequences
 * give alone through spec_forward (batch_fixture.hpp's scenarios, compared with memcmp), at thread
 * counts 1 to 3 and for every kernel set; spec_kv_commit_batch and spec_kv_truncate_batch keep the
 * caches in step with per-cache calls; and bad input is refused with a message naming the
 * sequence, changing nothing. */
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "batch_fixture.hpp"

namespace {

void test_model(spec_context *ctx, const ModelSpec &s, bool allow_long) {
    TestModel tm = make_model(s);
    spec_model *model = load_model(ctx, tm);
    if (!model) return;
    long rows = 0;
    int scenarios = 0;
    for (int nt : {1, 2, 3}) {
        CHECK_OK(spec_context_set_threads(ctx, nt));
        for (int B : {1, 2, 3, 5}) {
            rows += run_scenario(ctx, model, s.cfg, B, 5, s.seed * 131 + (uint64_t)(B * 7 + nt), allow_long && B >= 2);
            scenarios++;
        }
    }
    CHECK_OK(spec_context_set_threads(ctx, 0));
    printf("  %s: %d scenarios (1-5 sequences, threads 1-3), %ld rows: batch == solo bit for bit\n", s.name, scenarios, rows);
    spec_model_destroy(model);
}

// ------------------------------------------------------------------ bad input

void test_errors(spec_context *ctx) {
    spec_model_config c = base_config();
    TestModel tm = make_model(spec_all("errors", c, SPEC_DTYPE_F32, SPEC_DTYPE_F32, false, 61));
    spec_model *model = load_model(ctx, tm), *other = load_model(ctx, tm);
    if (!model || !other) return;
    spec_kv *kv[3] = {NULL, NULL, NULL}, *foreign = NULL;
    for (auto &k : kv) CHECK_OK(spec_kv_create(model, 16, &k));
    CHECK_OK(spec_kv_create(other, 16, &foreign));
    spec_buffer *logits = alloc_buf(ctx, 3 * 4 * c.n_vocab);
    int toks[4] = {1, 2, 3, 4};
    const int tree[3] = {-1, 0, 0};
    spec_forward_args a[3];
    std::memset(a, 0, sizeof a);
    for (int i = 0; i < 3; i++) {
        a[i].n_tokens = 3;
        a[i].tokens = toks;
        a[i].parents = tree;
        a[i].logits_mode = SPEC_LOGITS_ALL;
        a[i].logits = logits;
        a[i].logits_offset = (uint64_t)i * 3 * c.n_vocab * 4;
    }
    CHECK_OK(spec_forward_batch(model, 3, kv, a)); // every cache now holds a pending tree

    CHECK_FAILS(ctx, spec_forward_batch(model, 0, kv, a), SPEC_ERR_INVALID_ARGUMENT, "n_seq 0 is out of range");
    CHECK_FAILS(ctx, spec_forward_batch(model, SPEC_MAX_FORWARD_SEQUENCES + 1, kv, a), SPEC_ERR_INVALID_ARGUMENT, "out of range");
    CHECK_FAILS(ctx, spec_forward_batch(model, 3, NULL, a), SPEC_ERR_INVALID_ARGUMENT, "must not be null");
    CHECK_FAILS(ctx, spec_forward_batch(model, 3, kv, NULL), SPEC_ERR_INVALID_ARGUMENT, "must not be null");
    CHECK_FAILS(NULL, spec_forward_batch(NULL, 3, kv, a), SPEC_ERR_INVALID_HANDLE, "model is null");
    spec_kv *twice[3] = {kv[0], kv[1], kv[0]};
    CHECK_FAILS(ctx, spec_forward_batch(model, 3, twice, a), SPEC_ERR_INVALID_ARGUMENT, "sequences 0 and 2 name the same kv cache");
    spec_kv *mixed[3] = {kv[0], foreign, kv[2]};
    CHECK_FAILS(ctx, spec_forward_batch(model, 3, mixed, a), SPEC_ERR_INVALID_ARGUMENT, "sequence 1: kv cache belongs to another model");
    spec_kv *with_null[3] = {kv[0], kv[1], NULL};
    CHECK_FAILS(ctx, spec_forward_batch(model, 3, with_null, a), SPEC_ERR_INVALID_HANDLE, "sequence 2: kv cache is null");
    const int bad_tree[3] = {-1, 0, 2};
    a[2].parents = bad_tree;
    CHECK_FAILS(ctx, spec_forward_batch(model, 3, kv, a), SPEC_ERR_INVALID_ARGUMENT, "sequence 2: parent[2] = 2");
    a[2].parents = tree;
    a[1].logits_offset = 3 * 4 * c.n_vocab * 4 - 4; // past the end for 3 rows
    CHECK_FAILS(ctx, spec_forward_batch(model, 3, kv, a), SPEC_ERR_BUFFER_TOO_SMALL, "sequence 1: logits buffer");
    a[1].logits_offset = 3 * c.n_vocab * 4;
    a[0].n_tokens = 17;
    CHECK_FAILS(ctx, spec_forward_batch(model, 3, kv, a), SPEC_ERR_OUT_OF_RANGE, "sequence 0: 17 tokens do not fit");
    a[0].n_tokens = 3;

    // none of the refused calls touched a cache: the trees of the first call are still pending
    const int32_t paths0[2] = {0, 2}, paths1[1] = {0}, bad[2] = {1, 2};
    const int32_t *paths[3] = {paths0, paths1, bad};
    int32_t n_path[3] = {2, 1, 2};
    CHECK_FAILS(ctx, spec_kv_commit_batch(3, kv, n_path, paths), SPEC_ERR_INVALID_ARGUMENT, "sequence 2: path[0] = 1 has parent 0");
    CHECK_FAILS(ctx, spec_kv_commit_batch(3, twice, n_path, paths), SPEC_ERR_INVALID_ARGUMENT, "same kv cache");
    // with no sequence there is no context to record on: the thread's last error says it
    CHECK_FAILS(NULL, spec_kv_commit_batch(0, kv, n_path, paths), SPEC_ERR_INVALID_ARGUMENT, "n_seq 0");
    CHECK_FAILS(ctx, spec_kv_commit_batch(3, kv, NULL, paths), SPEC_ERR_INVALID_ARGUMENT, "must not be null");
    n_path[2] = 4;
    CHECK_FAILS(ctx, spec_kv_commit_batch(3, kv, n_path, paths), SPEC_ERR_OUT_OF_RANGE, "sequence 2: path length 4");
    for (auto &k : kv) {
        int32_t len = -1;
        CHECK_OK(spec_kv_length(k, &len));
        CHECK(len == 0); // the refused commits changed nothing, not even sequence 0's valid path
    }
    n_path[2] = 0;
    CHECK_OK(spec_kv_commit_batch(3, kv, n_path, paths));
    int32_t len[3];
    for (int i = 0; i < 3; i++) CHECK_OK(spec_kv_length(kv[i], &len[i]));
    CHECK(len[0] == 2 && len[1] == 1 && len[2] == 0);

    int32_t to[3] = {1, 2, 0};
    CHECK_FAILS(ctx, spec_kv_truncate_batch(3, kv, to), SPEC_ERR_OUT_OF_RANGE, "sequence 1: length 2 is out of range");
    CHECK_FAILS(ctx, spec_kv_truncate_batch(3, kv, NULL), SPEC_ERR_INVALID_ARGUMENT, "must not be null");
    to[1] = 0;
    CHECK_OK(spec_kv_truncate_batch(3, kv, to));
    for (int i = 0; i < 3; i++) CHECK_OK(spec_kv_length(kv[i], &len[i]));
    CHECK(len[0] == 1 && len[1] == 0 && len[2] == 0);

    spec_buffer_free(logits);
    for (auto &k : kv) spec_kv_destroy(k);
    spec_kv_destroy(foreign);
    spec_model_destroy(other);
    spec_model_destroy(model);
    printf("  bad input: refused with the sequence named, caches unchanged\n");
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

} // namespace

int main(void) {
    spec_context *ctx = NULL;
    CHECK_OK(spec_context_create("cpu", 0, &ctx));
    if (!ctx) return check_finish("test_forward_batch");

    spec_model_config c = base_config();
    c.n_layer = 3;
    test_model(ctx, spec_all("f32", c, SPEC_DTYPE_F32, SPEC_DTYPE_F32, false, 71), true);
    spec_model_config q = c;
    q.arch = SPEC_ARCH_QWEN2;
    q.rope_style = SPEC_ROPE_NEOX;
    q.kv_dtype = SPEC_DTYPE_F16;
    test_model(ctx, spec_all("qwen2 f16, kv f16", q, SPEC_DTYPE_F16, SPEC_DTYPE_F16, true, 72), false);
    ModelSpec mix = spec_all("q8_0 + q4_0 + f16", c, SPEC_DTYPE_Q8_0, SPEC_DTYPE_F32, false, 73);
    mix.mat_dtype[SPEC_W_FFN_UP] = SPEC_DTYPE_Q4_0;
    mix.mat_dtype[SPEC_W_ATTN_V] = SPEC_DTYPE_Q4_0;
    mix.mat_dtype[SPEC_W_ATTN_Q] = SPEC_DTYPE_F16;
    mix.cfg.kv_dtype = SPEC_DTYPE_BF16;
    test_model(ctx, mix, true);
    ModelSpec k = spec_all("k-quants", kquant_config(), SPEC_DTYPE_Q4_K, SPEC_DTYPE_F32, false, 74);
    k.mat_dtype[SPEC_W_ATTN_K] = SPEC_DTYPE_Q6_K;
    k.mat_dtype[SPEC_W_FFN_DOWN] = SPEC_DTYPE_Q5_K;
    k.mat_dtype[SPEC_W_OUTPUT] = SPEC_DTYPE_Q8_0;
    test_model(ctx, k, false);
    // the smaller kernel sets, on the int8 mix (their own tile and gemm paths)
    for (const char *isa : {"avx2", "scalar"}) {
        setenv("SPECULA_CPU_ISA", isa, 1);
        ModelSpec m2 = mix;
        m2.name = isa[0] == 'a' ? "q8_0 mix, kernels capped at avx2" : "q8_0 mix, kernels capped at scalar";
        test_model(ctx, m2, false);
    }
    unsetenv("SPECULA_CPU_ISA");
    test_errors(ctx);
    spec_context_destroy(ctx);
    return check_finish("test_forward_batch");
}
