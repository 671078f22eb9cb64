/* The ABI's contract on the cpu backend: versions, contexts, buffers and copies, and a clear
 * status plus message for every kind of bad argument. */
#include <stdint.h>
#include <stdlib.h>

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

int main(void) {
    test_versions();
    test_contexts();
    test_buffers();
    test_cuda_without_gpu_is_a_status();
    return check_finish("test_abi");
}
