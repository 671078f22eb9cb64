/* Buffers and copies on the cuda backend, checked against host memory. Skips without a GPU. */
#include <stdlib.h>

#include "check.h"

int main(void) {
    int32_t n = 0;
    if (spec_device_count("cuda", &n) != SPEC_OK || n == 0) {
        char msg[256] = "";
        spec_last_error(NULL, msg, sizeof msg, NULL);
        printf("SKIP test_cuda_buffers: cuda unavailable (%s)\n", msg);
        return 77;
    }
    spec_context *ctx = NULL;
    CHECK_OK(spec_context_create("cuda", 0, &ctx));
    spec_device_info info;
    CHECK_OK(spec_device_query(ctx, &info));
    printf("device: %s, cc %d.%d, %llu MiB\n", info.name, info.compute_major, info.compute_minor,
           (unsigned long long)(info.total_memory >> 20));
    CHECK(info.compute_major >= 5);
    const uint64_t sizes[] = {1, 4096, 1 << 20, (1 << 24) + 3};
    for (size_t s = 0; s < sizeof sizes / sizeof *sizes; s++) {
        uint64_t sz = sizes[s];
        unsigned char *src = malloc(sz), *dst = malloc(sz);
        for (uint64_t i = 0; i < sz; i++) src[i] = (unsigned char)(rand() & 0xff);
        memset(dst, 0x5A, sz);
        spec_buffer *a = NULL, *b = NULL;
        CHECK_OK(spec_buffer_alloc(ctx, sz, &a));
        CHECK_OK(spec_buffer_alloc(ctx, sz, &b));
        CHECK_OK(spec_copy_h2d(a, 0, src, sz));
        CHECK_OK(spec_copy_d2d(b, 0, a, 0, sz));
        CHECK_OK(spec_copy_d2h(dst, b, 0, sz));
        CHECK(memcmp(src, dst, sz) == 0);
        CHECK_FAILS(ctx, spec_copy_d2h(dst, b, 1, sz), SPEC_ERR_OUT_OF_RANGE, "past the buffer's end");
        spec_buffer_free(a);
        spec_buffer_free(b);
        free(src);
        free(dst);
    }
    CHECK_OK(spec_context_destroy(ctx));
    return check_finish("test_cuda_buffers");
}
