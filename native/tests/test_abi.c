/* The ABI's contract on the cpu backend: versions, contexts, buffers and copies, and a clear
 * status plus message for every kind of bad argument. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"

static void test_versions(void) {
    uint32_t v = 0;
    CHECK_OK(spec_abi_version(&v));
    CHECK(v == ((uint32_t)SPEC_ABI_VERSION_MAJOR << 16 | SPEC_ABI_VERSION_MINOR));
    CHECK_FAILS(NULL, spec_abi_version(NULL), SPEC_ERR_INVALID_ARGUMENT, "out is null");

    char buf[64];
    CHECK_OK(spec_library_version(buf, sizeof buf));
    CHECK(strlen(buf) > 0);
    CHECK_FAILS(NULL, spec_library_version(buf, 2), SPEC_ERR_BUFFER_TOO_SMALL, "capacity is 2");
    CHECK_FAILS(NULL, spec_library_version(NULL, 8), SPEC_ERR_INVALID_ARGUMENT, "null");
    CHECK_OK(spec_backends_compiled(buf, sizeof buf));
    CHECK(strncmp(buf, "cpu", 3) == 0);
}

static void test_contexts(void) {
    int32_t n = -1;
    CHECK_OK(spec_device_count("cpu", &n));
    CHECK(n == 1);
    CHECK_FAILS(NULL, spec_device_count("tpu", &n), SPEC_ERR_INVALID_ARGUMENT, "unknown backend 'tpu'");
    CHECK_FAILS(NULL, spec_device_count(NULL, &n), SPEC_ERR_INVALID_ARGUMENT, "unknown backend");

    spec_context *ctx = NULL;
    CHECK_FAILS(NULL, spec_context_create("cpu", 1, &ctx), SPEC_ERR_OUT_OF_RANGE, "device index 1 is out of range");
    CHECK(ctx == NULL);
    CHECK_FAILS(NULL, spec_context_create("cpu", -1, &ctx), SPEC_ERR_OUT_OF_RANGE, "device index -1");
    CHECK_FAILS(NULL, spec_context_create("metal", 0, &ctx), SPEC_ERR_INVALID_ARGUMENT, "unknown backend 'metal'");
    CHECK_FAILS(NULL, spec_context_create("cpu", 0, NULL), SPEC_ERR_INVALID_ARGUMENT, "out is null");
    CHECK_OK(spec_context_create("cpu", 0, &ctx));
    CHECK(ctx != NULL);
    CHECK_OK(spec_context_noop(ctx));
    CHECK_FAILS(NULL, spec_context_noop(NULL), SPEC_ERR_INVALID_HANDLE, "context is null");

    spec_device_info info;
    CHECK_OK(spec_device_query(ctx, &info));
    CHECK(strcmp(info.backend, "cpu") == 0);
    CHECK(info.total_memory > 0 && info.free_memory <= info.total_memory);
    CHECK(info.multiprocessors >= 1);
    CHECK_FAILS(ctx, spec_device_query(ctx, NULL), SPEC_ERR_INVALID_ARGUMENT, "out is null");
    CHECK_FAILS(NULL, spec_device_query(NULL, &info), SPEC_ERR_INVALID_HANDLE, "context is null");
    CHECK_FAILS(ctx, spec_context_set_threads(ctx, -3), SPEC_ERR_INVALID_ARGUMENT, "thread count -3");

    /* A context's own last error is kept apart from the thread's. */
    char msg[256];
    CHECK_OK(spec_last_error(ctx, msg, sizeof msg, NULL));
    CHECK(strstr(msg, "thread count -3") != NULL);
    uint64_t len = 0;
    CHECK_OK(spec_last_error(ctx, msg, 4, &len));
    CHECK(strlen(msg) == 3 && len > 3);

    CHECK_OK(spec_context_destroy(ctx));
    CHECK_FAILS(NULL, spec_context_destroy(NULL), SPEC_ERR_INVALID_HANDLE, "context is null");
    /* A foreign pointer is not a context. */
    uint64_t junk[8] = {0};
    CHECK_FAILS(NULL, spec_context_noop((spec_context *)junk), SPEC_ERR_INVALID_HANDLE, "not live");
}

static void test_buffers(void) {
    spec_context *ctx = NULL;
    CHECK_OK(spec_context_create("cpu", 0, &ctx));
    spec_buffer *a = NULL, *b = NULL;
    CHECK_FAILS(ctx, spec_buffer_alloc(ctx, 0, &a), SPEC_ERR_INVALID_ARGUMENT, "size is zero");
    CHECK_FAILS(ctx, spec_buffer_alloc(ctx, 1ull << 60, &a), SPEC_ERR_OUT_OF_MEMORY, "bytes");
    CHECK_FAILS(NULL, spec_buffer_alloc(NULL, 16, &a), SPEC_ERR_INVALID_HANDLE, "context is null");
    CHECK_OK(spec_buffer_alloc(ctx, 4096, &a));
    CHECK_OK(spec_buffer_alloc(ctx, 4096, &b));
    uint64_t size = 0;
    CHECK_OK(spec_buffer_size(a, &size));
    CHECK(size == 4096);

    unsigned char src[4096], dst[4096];
    for (int i = 0; i < 4096; i++) src[i] = (unsigned char)(i * 7 + 3);
    memset(dst, 0xAB, sizeof dst);
    CHECK_OK(spec_copy_h2d(a, 0, src, sizeof src));
    CHECK_OK(spec_copy_d2d(b, 100, a, 0, 3000));
    CHECK_OK(spec_copy_d2h(dst, b, 100, 3000));
    CHECK(memcmp(dst, src, 3000) == 0);
    CHECK(dst[3000] == 0xAB); /* nothing past the requested range */

    CHECK_FAILS(ctx, spec_copy_h2d(a, 4000, src, 97), SPEC_ERR_OUT_OF_RANGE, "past the buffer's end (size 4096)");
    CHECK_FAILS(ctx, spec_copy_h2d(a, UINT64_MAX, src, 2), SPEC_ERR_OUT_OF_RANGE, "past the buffer's end");
    CHECK_FAILS(ctx, spec_copy_h2d(a, 0, src, 0), SPEC_ERR_INVALID_ARGUMENT, "byte count is zero");
    CHECK_FAILS(ctx, spec_copy_h2d(a, 0, NULL, 8), SPEC_ERR_INVALID_ARGUMENT, "source pointer is null");
    CHECK_FAILS(ctx, spec_copy_d2h(dst, a, 4096, 1), SPEC_ERR_OUT_OF_RANGE, "past the buffer's end");
    CHECK_FAILS(ctx, spec_copy_d2h(NULL, a, 0, 1), SPEC_ERR_INVALID_ARGUMENT, "destination pointer is null");
    CHECK_FAILS(ctx, spec_copy_d2d(b, 1, a, 0, 4096), SPEC_ERR_OUT_OF_RANGE, "destination");
    CHECK_FAILS(ctx, spec_copy_d2d(b, 0, a, 1, 4096), SPEC_ERR_OUT_OF_RANGE, "source");
    CHECK_FAILS(NULL, spec_copy_d2d(b, 0, NULL, 0, 4), SPEC_ERR_INVALID_HANDLE, "source buffer is null");
    CHECK_FAILS(NULL, spec_copy_h2d(NULL, 0, src, 4), SPEC_ERR_INVALID_HANDLE, "destination buffer is null");

    spec_context *other = NULL;
    spec_buffer *c = NULL;
    CHECK_OK(spec_context_create("cpu", 0, &other));
    CHECK_OK(spec_buffer_alloc(other, 64, &c));
    CHECK_FAILS(ctx, spec_copy_d2d(a, 0, c, 0, 8), SPEC_ERR_INVALID_ARGUMENT, "different contexts");
    CHECK_OK(spec_buffer_free(c));
    CHECK_OK(spec_context_destroy(other));

    CHECK_OK(spec_buffer_free(a));
    CHECK_OK(spec_buffer_free(b));
    CHECK_FAILS(NULL, spec_buffer_free(NULL), SPEC_ERR_INVALID_HANDLE, "buffer is null");
    CHECK_FAILS(NULL, spec_buffer_size(NULL, &size), SPEC_ERR_INVALID_HANDLE, "buffer is null");
    CHECK_OK(spec_context_destroy(ctx));
}

static void test_cuda_without_gpu_is_a_status(void) {
    /* Whatever this machine has, asking for cuda answers with a status, never a crash. */
    int32_t n = -1;
    spec_status st = spec_device_count("cuda", &n);
    char compiled[64];
    CHECK_OK(spec_backends_compiled(compiled, sizeof compiled));
    if (!strstr(compiled, "cuda")) {
        CHECK(st == SPEC_ERR_INVALID_ARGUMENT);
        return;
    }
    if (st != SPEC_OK) {
        CHECK(st == SPEC_ERR_BACKEND_UNAVAILABLE);
        char msg[256];
        CHECK_OK(spec_last_error(NULL, msg, sizeof msg, NULL));
        printf("cuda unavailable here: %s\n", msg);
        spec_context *ctx = NULL;
        CHECK(spec_context_create("cuda", 0, &ctx) == SPEC_ERR_BACKEND_UNAVAILABLE);
        CHECK(ctx == NULL);
    } else {
        CHECK(n >= 1);
    }
}

static spec_model_config small_config(void) {
    spec_model_config c;
    memset(&c, 0, sizeof c);
    c.arch = SPEC_ARCH_LLAMA;
    c.n_vocab = 1000;
    c.n_embd = 64;
    c.n_layer = 2;
    c.n_head = 4;
    c.n_head_kv = 2;
    c.head_dim = 16;
    c.n_ff = 128;
    c.n_ctx_train = 256;
    c.rms_eps = 1e-5f;
    c.rope_theta = 10000.0f;
    c.kv_dtype = SPEC_DTYPE_F16;
    return c;
}

/* The plan is arithmetic: it must be available for every compiled backend, with or without a device. */
static void test_memory_plan(void) {
    spec_model_config c = small_config();
    spec_memory_request r = {1u << 20, 256, 2, 64, 8};
    spec_memory_plan p;
    char compiled[64];
    CHECK_OK(spec_backends_compiled(compiled, sizeof compiled));
    const char *backends[] = {"cpu", "cuda"};
    for (int i = 0; i < 2; i++) {
        if (!strstr(compiled, backends[i])) continue;
        CHECK_OK(spec_memory_plan_compute(backends[i], &c, &r, &p));
        /* 2 sequences x 2 layers x (K, V) x 256 positions x 2 kv heads x 16 dims x 2 bytes; on cpu
         * also each slot's position (an int32 per slot, for the sliding window) */
        if (i == 0) CHECK(p.kv_caches == 2ull * 2 * 2 * 256 * 2 * 16 * 2 + 2ull * 256 * 4);
        else CHECK(p.kv_caches == 2ull * 2 * 2 * 256 * 2 * 16 * 2);
        CHECK(p.recycler >= 1000ull * 8 * 4);
        CHECK(p.kernel_scratch > 0);
        CHECK(p.total == p.weights + p.kv_caches + p.model_scratch + p.kernel_scratch + p.recycler);
        if (i == 0) CHECK(p.weights == 0); /* cpu reads the caller's mapping */
        else CHECK(p.weights >= r.weight_bytes);
        /* more of anything never needs less */
        spec_memory_plan q;
        spec_memory_request bigger = r;
        bigger.n_sequences = 4;
        bigger.max_tree_nodes = 128;
        bigger.kv_capacity = 512;
        CHECK_OK(spec_memory_plan_compute(backends[i], &c, &bigger, &q));
        CHECK(q.kv_caches == 4 * p.kv_caches);
        CHECK(q.kernel_scratch >= p.kernel_scratch && q.total > p.total);
        spec_memory_request none = r;
        none.max_tree_nodes = 0;
        none.recycler_k = 0;
        CHECK_OK(spec_memory_plan_compute(backends[i], &c, &none, &q));
        CHECK(q.kernel_scratch == 0 && q.recycler == 0);
    }
    CHECK_FAILS(NULL, spec_memory_plan_compute("tpu", &c, &r, &p), SPEC_ERR_INVALID_ARGUMENT, "unknown backend 'tpu'");
    CHECK_FAILS(NULL, spec_memory_plan_compute("cpu", NULL, &r, &p), SPEC_ERR_INVALID_ARGUMENT, "must not be null");
    spec_memory_request bad = r;
    bad.n_sequences = 0;
    CHECK_FAILS(NULL, spec_memory_plan_compute("cpu", &c, &bad, &p), SPEC_ERR_INVALID_ARGUMENT, "n_sequences 0");
    bad = r;
    bad.max_tree_nodes = SPEC_MAX_TREE_NODES + 1;
    CHECK_FAILS(NULL, spec_memory_plan_compute("cpu", &c, &bad, &p), SPEC_ERR_INVALID_ARGUMENT, "max_tree_nodes 129");
    bad = r;
    bad.recycler_k = 33;
    CHECK_FAILS(NULL, spec_memory_plan_compute("cpu", &c, &bad, &p), SPEC_ERR_INVALID_ARGUMENT, "recycler_k 33");
    spec_model_config broken = c;
    broken.n_head_kv = 3;
    CHECK_FAILS(NULL, spec_memory_plan_compute("cpu", &broken, &r, &p), SPEC_ERR_INVALID_ARGUMENT, "not a multiple");

    spec_context *ctx = NULL;
    CHECK_OK(spec_context_create("cpu", 0, &ctx));
    CHECK_OK(spec_context_reserve(ctx, 4, 64, 1000, 8));
    CHECK_FAILS(ctx, spec_context_reserve(ctx, 0, 64, 1000, 8), SPEC_ERR_INVALID_ARGUMENT, "batch 0");
    CHECK_FAILS(ctx, spec_context_reserve(ctx, 1, 200, 1000, 8), SPEC_ERR_INVALID_ARGUMENT, "max_tree_nodes 200");
    CHECK_OK(spec_context_destroy(ctx));
    CHECK_FAILS(NULL, spec_context_reserve(NULL, 1, 1, 1, 0), SPEC_ERR_INVALID_HANDLE, "context is null");
}

/* The shape rule, written out here independently of the core: every role under a config whose
 * dimensions all differ, so that a swapped dimension shows. */
static void test_weight_shape(void) {
    spec_model_config c = small_config(); /* vocab 1000, embd 64, q 4 x 16, kv 2 x 16, ff 128 */
    c.arch = SPEC_ARCH_QWEN2;
    c.head_dim = 24; /* q = 96, kv = 48: neither equals n_embd */
    const int64_t V = 1000, E = 64, Q = 96, KV = 48, F = 128;
    const struct { int32_t role; int64_t rows, cols; } want[] = {
        {SPEC_W_TOKEN_EMBD, V, E},  {SPEC_W_OUTPUT_NORM, 1, E}, {SPEC_W_OUTPUT, V, E},
        {SPEC_W_ATTN_NORM, 1, E},   {SPEC_W_ATTN_Q, Q, E},      {SPEC_W_ATTN_K, KV, E},
        {SPEC_W_ATTN_V, KV, E},     {SPEC_W_ATTN_OUT, E, Q},    {SPEC_W_ATTN_Q_BIAS, 1, Q},
        {SPEC_W_ATTN_K_BIAS, 1, KV}, {SPEC_W_ATTN_V_BIAS, 1, KV}, {SPEC_W_FFN_NORM, 1, E},
        {SPEC_W_FFN_GATE, F, E},    {SPEC_W_FFN_UP, F, E},      {SPEC_W_FFN_DOWN, E, F},
        {SPEC_W_ATTN_Q_NORM, 1, 24}, {SPEC_W_ATTN_K_NORM, 1, 24}, {SPEC_W_ATTN_POST_NORM, 1, E},
        {SPEC_W_FFN_POST_NORM, 1, E}};
    CHECK(sizeof want / sizeof want[0] == SPEC_W_ROLE_COUNT);
    for (int i = 0; i < SPEC_W_ROLE_COUNT; i++) {
        for (int32_t layer = 0; layer < c.n_layer; layer++) {
            int64_t rows = -1, cols = -1;
            CHECK_OK(spec_weight_shape(&c, want[i].role, layer, &rows, &cols));
            CHECK(rows == want[i].rows && cols == want[i].cols);
        }
    }
    /* layer means nothing to the global roles; the per-layer ones need it in range */
    int64_t rows = -1, cols = -1;
    CHECK_OK(spec_weight_shape(&c, SPEC_W_OUTPUT, 99, &rows, &cols));
    CHECK(rows == V && cols == E);
    CHECK_FAILS(NULL, spec_weight_shape(&c, SPEC_W_ATTN_Q, 2, &rows, &cols), SPEC_ERR_OUT_OF_RANGE,
                "weight attn_q: layer 2 is out of range (model has 2 layers)");
    CHECK_FAILS(NULL, spec_weight_shape(&c, SPEC_W_FFN_DOWN, -1, &rows, &cols), SPEC_ERR_OUT_OF_RANGE, "layer -1");
    CHECK(rows == 0 && cols == 0); /* a failure leaves no stale shape behind */

    CHECK_FAILS(NULL, spec_weight_shape(&c, SPEC_W_ROLE_COUNT, 0, &rows, &cols), SPEC_ERR_INVALID_ARGUMENT,
                "unknown weight role 19");
    CHECK_FAILS(NULL, spec_weight_shape(&c, -1, 0, &rows, &cols), SPEC_ERR_INVALID_ARGUMENT, "unknown weight role -1");
    CHECK_FAILS(NULL, spec_weight_shape(NULL, SPEC_W_ATTN_Q, 0, &rows, &cols), SPEC_ERR_INVALID_ARGUMENT, "null");
    CHECK_FAILS(NULL, spec_weight_shape(&c, SPEC_W_ATTN_Q, 0, NULL, &cols), SPEC_ERR_INVALID_ARGUMENT, "null");
    CHECK_FAILS(NULL, spec_weight_shape(&c, SPEC_W_ATTN_Q, 0, &rows, NULL), SPEC_ERR_INVALID_ARGUMENT, "null");

    /* the config is checked as spec_model_create checks it */
    spec_model_config bad = c;
    bad.n_head_kv = 3;
    CHECK_FAILS(NULL, spec_weight_shape(&bad, SPEC_W_ATTN_K, 0, &rows, &cols), SPEC_ERR_INVALID_ARGUMENT, "not a multiple");
    bad = c;
    bad.n_embd = 0;
    CHECK_FAILS(NULL, spec_weight_shape(&bad, SPEC_W_TOKEN_EMBD, 0, &rows, &cols), SPEC_ERR_INVALID_ARGUMENT, "n_embd = 0");
    bad = c;
    bad.arch = 7;
    CHECK_FAILS(NULL, spec_weight_shape(&bad, SPEC_W_TOKEN_EMBD, 0, &rows, &cols), SPEC_ERR_INVALID_ARGUMENT, "unknown arch 7");

    /* spec_model_set_weight holds weights to the same rule */
    spec_context *ctx = NULL;
    spec_model *model = NULL;
    CHECK_OK(spec_context_create("cpu", 0, &ctx));
    CHECK_OK(spec_model_create(ctx, &c, &model));
    float *data = (float *)calloc((size_t)(KV * E), sizeof(float));
    CHECK_OK(spec_model_set_weight(model, SPEC_W_ATTN_K, 1, SPEC_DTYPE_F32, data, (uint64_t)(KV * E * 4), KV, E));
    CHECK_FAILS(ctx, spec_model_set_weight(model, SPEC_W_ATTN_K, 1, SPEC_DTYPE_F32, data, (uint64_t)(KV * E * 4), E, KV),
                SPEC_ERR_INVALID_ARGUMENT, "expected [48 x 64]");
    CHECK_FAILS(ctx, spec_model_set_weight(model, SPEC_W_ATTN_K, 2, SPEC_DTYPE_F32, data, (uint64_t)(KV * E * 4), KV, E),
                SPEC_ERR_OUT_OF_RANGE, "layer 2 is out of range");
    /* ABI 0.8: a norm the arch does not have is refused, not ignored; one it needs is required */
    CHECK_FAILS(ctx, spec_model_set_weight(model, SPEC_W_ATTN_Q_NORM, 0, SPEC_DTYPE_F32, data, 24 * 4, 1, 24),
                SPEC_ERR_INVALID_ARGUMENT, "weight attn_q_norm is not part of a qwen2 model");
    CHECK_OK(spec_model_destroy(model));
    spec_model_config g = c;
    g.arch = SPEC_ARCH_GEMMA3;
    g.sliding_window = 4;
    g.swa_pattern = 6;
    CHECK_OK(spec_model_create(ctx, &g, &model));
    CHECK_OK(spec_model_set_weight(model, SPEC_W_ATTN_POST_NORM, 0, SPEC_DTYPE_F32, data, (uint64_t)(E * 4), 1, E));
    CHECK_FAILS(ctx, spec_model_finalize(model), SPEC_ERR_INVALID_ARGUMENT, "missing weight");
    g.sliding_window = -1;
    CHECK_FAILS(NULL, spec_weight_shape(&g, SPEC_W_ATTN_Q_NORM, 0, &rows, &cols), SPEC_ERR_INVALID_ARGUMENT, "sliding_window -1");
    free(data);
    CHECK_OK(spec_model_destroy(model));
    CHECK_OK(spec_context_destroy(ctx));
}

int main(void) {
    test_versions();
    test_memory_plan();
    test_weight_shape();
    test_contexts();
    test_buffers();
    test_cuda_without_gpu_is_a_status();
    return check_finish("test_abi");
}
