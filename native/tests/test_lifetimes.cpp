// Destroying a context or a model while objects made on it still live (ABI 0.12): the call is refused with
// SPEC_ERR_IN_USE and a message that counts what lives, nothing is freed, and everything stays usable. Under the
// sanitizer build a use after free or a leak here fails the run.
// A handle used after its destroy, or a foreign pointer, is refused as not live without its memory being read.
#include <cstring>
#include <thread>
#include <vector>

#include "../core/internal.hpp" // only for sizeof the handles, to forge look-alikes

#pragma GCC diagnostic ignored "-Wunused-function" // the fixture's helpers this test has no use for
#include "model_fixture.hpp"

namespace {

// A context with one object of every kind on it: a finalized model, a KV cache and draft heads on the model, a
// recycler and a buffer.
struct OneOfEach {
    spec_context *ctx = nullptr;
    spec_model_config c = base_config();
    TestModel m;
    spec_model *model = nullptr;
    spec_kv *kv = nullptr;
    spec_heads *heads = nullptr;
    spec_recycler *rec = nullptr;
    spec_buffer *buf = nullptr;

    OneOfEach(const char *name, uint64_t seed) {
        CHECK_OK(spec_context_create("cpu", 0, &ctx));
        m = make_model(spec_all(name, c, SPEC_DTYPE_F32, SPEC_DTYPE_F32, true, seed));
        model = load_model(ctx, m);
        CHECK_OK(spec_kv_create(model, 64, &kv));
        spec_heads_config hc = {2, 1, 0, 0};
        CHECK_OK(spec_heads_create(model, &hc, &heads));
        CHECK_OK(spec_recycler_create(ctx, c.n_vocab, 4, &rec));
        buf = alloc_buf(ctx, (uint64_t)c.n_vocab);
    }
};

void test_context_refuses_while_objects_live() {
    OneOfEach o("lifetimes", 11);
    spec_context *ctx = o.ctx;
    spec_model_config c = o.c;
    spec_model *model = o.model;
    spec_kv *kv1 = o.kv, *kv2 = nullptr;
    spec_heads *heads = o.heads;
    spec_recycler *rec = o.rec;
    spec_buffer *buf = o.buf;
    spec_model *eagle_free = nullptr; // a second, unfinalized model: models count whether finalized or not
    CHECK_OK(spec_model_create(ctx, &c, &eagle_free));
    CHECK_OK(spec_kv_create(model, 64, &kv2));

    CHECK_FAILS(ctx, spec_context_destroy(ctx), SPEC_ERR_IN_USE,
                "2 models, 2 KV caches, 1 draft-heads object, 1 recycler and 1 buffer still live on this context");
    CHECK(error_mentions(nullptr, "destroy them first (nothing was freed)")); // the thread's error says it too
    // A model with KV caches or heads on it is refused the same way.
    CHECK_FAILS(ctx, spec_model_destroy(model), SPEC_ERR_IN_USE, "2 KV caches and 1 draft-heads object still live on this model");

    // Nothing was freed: the context, the model and its caches still work.
    CHECK_OK(spec_context_noop(ctx));
    Out out = forward(ctx, model, kv1, c, {1, 2, 3});
    CHECK(out.status == SPEC_OK && out.logits.size() == 3u * (size_t)c.n_vocab);
    int32_t len = -1;
    CHECK_OK(spec_kv_length(kv1, &len));

    CHECK_OK(spec_heads_destroy(heads));
    CHECK_OK(spec_kv_destroy(kv1));
    CHECK_FAILS(ctx, spec_model_destroy(model), SPEC_ERR_IN_USE, "1 KV cache still live on this model");
    CHECK_OK(spec_kv_destroy(kv2));
    CHECK_OK(spec_model_destroy(model));
    CHECK_OK(spec_model_destroy(eagle_free));
    CHECK_OK(spec_recycler_destroy(rec));
    CHECK_FAILS(ctx, spec_context_destroy(ctx), SPEC_ERR_IN_USE, "1 buffer still live");
    CHECK_OK(spec_buffer_free(buf));
    CHECK_OK(spec_context_destroy(ctx));
}

// Objects made and destroyed on several threads at once leave the counts at zero, so the context can then go.
void test_counts_hold_across_threads() {
    spec_context *ctx = nullptr;
    CHECK_OK(spec_context_create("cpu", 0, &ctx));
    spec_model_config c = base_config();
    TestModel m = make_model(spec_all("lifetimes-threads", c, SPEC_DTYPE_F32, SPEC_DTYPE_F32, true, 12));
    spec_model *model = load_model(ctx, m);
    std::vector<std::thread> threads;
    std::vector<int> failures(4, 0);
    for (int t = 0; t < 4; t++)
        threads.emplace_back([&, t] {
            for (int i = 0; i < 200; i++) {
                spec_buffer *b = nullptr;
                spec_kv *kv = nullptr;
                if (spec_buffer_alloc(ctx, 64, &b) != SPEC_OK || spec_kv_create(model, 8, &kv) != SPEC_OK) failures[t]++;
                if (spec_kv_destroy(kv) != SPEC_OK || spec_buffer_free(b) != SPEC_OK) failures[t]++;
            }
        });
    for (auto &th : threads) th.join();
    for (int f : failures) CHECK(f == 0);
    CHECK_FAILS(ctx, spec_context_destroy(ctx), SPEC_ERR_IN_USE, "1 model still live on this context");
    CHECK_OK(spec_model_destroy(model));
    CHECK_OK(spec_context_destroy(ctx));
}

// Every handle kind used again after its destroy: refused with SPEC_ERR_INVALID_HANDLE, and (under ASan) without a
// read of the freed memory. A double destroy is the same.
void test_destroyed_handles_are_refused() {
    OneOfEach each("lifetimes-dead", 13);
    spec_context *ctx = each.ctx;
    spec_model_config c = each.c;
    spec_model *model = each.model;
    spec_kv *kv = each.kv;
    spec_heads *heads = each.heads;
    spec_recycler *rec = each.rec;
    spec_buffer *buf = each.buf;

    const char *dead = "is not live (destroyed or foreign)";
    int32_t len = -1;
    CHECK_OK(spec_kv_destroy(kv));
    CHECK_FAILS(nullptr, spec_kv_length(kv, &len), SPEC_ERR_INVALID_HANDLE, dead);
    CHECK_FAILS(nullptr, spec_kv_destroy(kv), SPEC_ERR_INVALID_HANDLE, dead);
    Out o = forward(ctx, model, kv, c, {1, 2});
    CHECK(o.status == SPEC_ERR_INVALID_HANDLE);
    CHECK_OK(spec_heads_destroy(heads));
    CHECK_FAILS(nullptr, spec_heads_destroy(heads), SPEC_ERR_INVALID_HANDLE, dead);
    CHECK_OK(spec_recycler_destroy(rec));
    CHECK_FAILS(nullptr, spec_recycler_destroy(rec), SPEC_ERR_INVALID_HANDLE, dead);
    CHECK_OK(spec_buffer_free(buf));
    CHECK_FAILS(nullptr, spec_buffer_free(buf), SPEC_ERR_INVALID_HANDLE, dead);
    CHECK_OK(spec_model_destroy(model));
    CHECK_FAILS(nullptr, spec_model_destroy(model), SPEC_ERR_INVALID_HANDLE, dead);
    CHECK_FAILS(nullptr, spec_kv_create(model, 8, &kv), SPEC_ERR_INVALID_HANDLE, dead);
    CHECK_OK(spec_context_destroy(ctx));
    CHECK_FAILS(nullptr, spec_context_noop(ctx), SPEC_ERR_INVALID_HANDLE, dead);
    CHECK_FAILS(nullptr, spec_context_destroy(ctx), SPEC_ERR_INVALID_HANDLE, dead);
}

// A copy of a live handle's bytes at another address has the right tag and points at live objects, yet was never
// handed out: refused. (Before the registry of handed-out handles, only the tag was checked and this passed.)
void test_a_copied_handle_is_refused() {
    spec_context *ctx = nullptr;
    CHECK_OK(spec_context_create("cpu", 0, &ctx));
    spec_buffer *buf = alloc_buf(ctx, 64);
    alignas(64) unsigned char fake[sizeof(spec_buffer)];
    std::memcpy(fake, (const void *)buf, sizeof fake);
    CHECK_FAILS(nullptr, spec_buffer_free((spec_buffer *)fake), SPEC_ERR_INVALID_HANDLE, "is not live (destroyed or foreign)");
    alignas(64) unsigned char fake_ctx[sizeof(spec_context)] = {};
    const uint32_t tag = specula::TAG_CONTEXT;
    std::memcpy(fake_ctx, &tag, sizeof tag);
    CHECK_FAILS(nullptr, spec_context_noop((spec_context *)fake_ctx), SPEC_ERR_INVALID_HANDLE, "is not live (destroyed or foreign)");
    CHECK_OK(spec_buffer_free(buf));
    CHECK_OK(spec_context_destroy(ctx));
}

} // namespace

int main() {
    test_destroyed_handles_are_refused();
    test_a_copied_handle_is_refused();
    test_context_refuses_while_objects_live();
    test_counts_hold_across_threads();
    return check_finish("test_lifetimes");
}
