// The native core's own view of the ABI handles, and the interface every backend implements.
// The core (specula.cpp) validates every argument before it calls a backend, so a backend may
// assume its arguments are in range.
#pragma once

#include "specula.h"

#include <atomic>
#include <cstdarg>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace specula {

// Handles carry a tag so that a null, destroyed or foreign pointer is caught before use.
enum : uint32_t {
    TAG_CONTEXT = 0x53504358u, // "SPCX"
    TAG_BUFFER = 0x53504246u,  // "SPBF"
    TAG_MODEL = 0x53504d44u,   // "SPMD"
    TAG_KV = 0x53504b56u,      // "SPKV"
    TAG_RECYCLER = 0x53505243u, // "SPRC"
    TAG_HEADS = 0x53504844u,    // "SPHD"
    TAG_DEAD = 0xdeadbeefu
};

class Backend;

// A failure on its way out of the ABI: a status and the message that goes with it.
struct Failure {
    spec_status status;
    std::string message;
};

// Formats a message into a Failure; backends return these through Result.
Failure failure(spec_status status, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

} // namespace specula

namespace specula {
// The objects alive on a context (ABI 0.12), counted at create and destroy: spec_context_destroy refuses while any
// lives, since each points into the context (and a KV cache or heads into its model).
struct LiveObjects {
    std::atomic<int32_t> buffers{0}, models{0}, kvs{0}, recyclers{0}, heads{0};
};
} // namespace specula

struct spec_context {
    uint32_t tag = specula::TAG_CONTEXT;
    specula::LiveObjects live;
    specula::Backend *backend = nullptr;
    int32_t device = 0;
    std::atomic<int32_t> n_threads{0}; // cpu backend; atomic: set while other threads' calls read it
    void *backend_state = nullptr;
    std::string last_error;
};

struct spec_buffer {
    uint32_t tag = specula::TAG_BUFFER;
    spec_context *ctx = nullptr;
    void *ptr = nullptr; // device memory for the context's backend (host memory for cpu)
    uint64_t size = 0;
};

struct spec_weight {
    int32_t dtype = -1;
    const void *data = nullptr; // host memory owned by the caller (a mapped file)
    uint64_t nbytes = 0;
    int64_t rows = 0;
    int64_t cols = 0;
    const void *device_data = nullptr; // where the backend reads it from (== data for cpu)
};

struct spec_model {
    uint32_t tag = specula::TAG_MODEL;
    spec_context *ctx = nullptr;
    // KV caches and draft heads made on this model and not yet destroyed: spec_model_destroy refuses while any lives.
    std::atomic<int32_t> live_kvs{0}, live_heads{0};
    spec_model_config config{};
    bool finalized = false;
    // weights[role][layer]; global roles use layer 0.
    std::vector<std::vector<spec_weight>> weights;
    void *backend_state = nullptr;
    // ABI 0.9: an EAGLE draft layer (spec_model_set_eagle): inputs FC [embd; feature] (+ bias).
    bool eagle = false;
    spec_eagle_config eagle_config{};
    spec_weight eagle_fc, eagle_fc_bias;

    const spec_weight &w(int role, int layer = 0) const { return weights[role][layer]; }
};

struct spec_kv {
    uint32_t tag = specula::TAG_KV;
    spec_model *model = nullptr;
    int32_t capacity = 0;
    int32_t committed = 0;
    int32_t pending = 0;                // tree tokens after the committed prefix
    std::vector<int32_t> pending_parents; // the last forward's tree, for commit validation
    void *backend_state = nullptr;
};

// A Token Recycling adjacency matrix on a context's device.
struct spec_recycler {
    uint32_t tag = specula::TAG_RECYCLER;
    spec_context *ctx = nullptr;
    int32_t n_vocab = 0;
    int32_t k = 0;
    void *matrix = nullptr;   // int32 [n_vocab][k], allocated through the backend's alloc
    uint32_t updates = 0;     // successful update calls so far
    void *backend_state = nullptr;
};

// Draft heads over a target model (ABI 0.8): weights[role][head][block]; PROJ roles use block 0.
struct spec_heads {
    uint32_t tag = specula::TAG_HEADS;
    spec_model *target = nullptr;
    spec_heads_config config{};
    bool finalized = false;
    std::vector<std::vector<std::vector<spec_weight>>> weights;
    void *backend_state = nullptr;

    const spec_weight &w(int role, int head, int block = 0) const { return weights[role][head][block]; }
};

namespace specula {

using Status = spec_status;

// Every backend implements this interface. Methods return SPEC_OK or fill `err`.
class Backend {
public:
    virtual ~Backend() = default;
    virtual const char *name() const = 0;
    // Number of devices, or BACKEND_UNAVAILABLE with the reason in err.
    virtual Status device_count(int32_t *out, Failure &err) = 0;
    virtual Status context_init(spec_context *ctx, Failure &err) = 0;
    virtual void context_release(spec_context *ctx) = 0;
    virtual Status device_query(const spec_context *ctx, spec_device_info *out, Failure &err) = 0;

    virtual Status alloc(spec_context *ctx, uint64_t nbytes, void **out, Failure &err) = 0;
    virtual void release(spec_context *ctx, void *ptr) = 0;
    enum class Copy { HostToDevice, DeviceToHost, DeviceToDevice };
    virtual Status copy(spec_context *ctx, void *dst, const void *src, uint64_t nbytes, Copy kind, Failure &err) = 0;

    virtual Status model_finalize(spec_model *model, Failure &err) = 0;
    virtual void model_release(spec_model *model) = 0;
    virtual Status kv_init(spec_kv *kv, Failure &err) = 0;
    virtual void kv_release(spec_kv *kv) = 0;
    // Moves pending tokens path[0..n) into committed positions committed..committed+n.
    virtual Status kv_commit(spec_kv *kv, int32_t n_path, const int32_t *path, Failure &err) = 0;
    // Sequence i runs args[i] over kvs[i] (n_seq >= 1 distinct caches of model; spec_forward is
    // n_seq = 1). args are validated; parents and positions are always given (the core fills
    // defaults), logits point at the first row (logits_offset is applied and 0).
    virtual Status forward(spec_model *model, int32_t n_seq, spec_kv *const *kvs, const spec_forward_args *args, Failure &err) = 0;

    // Speculative kernels (kernels_abi.cpp validates every argument; scale is already resolved).
    virtual Status tree_attention(spec_context *ctx, const spec_tree_attention_args &args, Failure &err) = 0;
    // The same with a sliding window (> 0; spec_tree_attention_windowed). A backend without it refuses.
    virtual Status tree_attention_windowed(spec_context *, const spec_tree_attention_args &, int32_t window, Failure &err) {
        err = failure(SPEC_ERR_UNSUPPORTED, "spec_tree_attention_windowed: the %s backend has no sliding-window tree attention (window %d)",
                      name(), window);
        return err.status;
    }
    virtual Status verify(spec_context *ctx, const spec_verify_args &args, Failure &err) = 0;
    // Backend state of a recycler whose matrix is already allocated and filled.
    virtual Status recycler_init(spec_recycler *rec, Failure &err) = 0;
    virtual void recycler_release(spec_recycler *rec) = 0;
    virtual Status recycler_update(spec_recycler *rec, const spec_recycler_update_args &args, Failure &err) = 0;
    // args.parents is filled by the core; the backend writes args.tokens.
    virtual Status recycler_draft(spec_recycler *rec, const spec_recycler_draft_args &args, Failure &err) = 0;

    // rows: the first row's device address (the core applied the offset and range-checked every row).
    virtual Status logits_summarize(spec_context *ctx, const float *rows, int32_t n_rows, int64_t row_stride, int32_t limit,
                                    int32_t k, spec_logits_summary *out, Failure &err) = 0;

    // Memory planning (request validated by the core): the same arithmetic the backend
    // allocates by. plan->total is filled by the core.
    virtual Status memory_plan(const spec_model_config &config, const spec_memory_request &request, spec_memory_plan *plan,
                               Failure &err) = 0;
    // ABI 0.11: what finalize and the forwards take beyond memory_plan for a model of these weights (spec_memory_plan_weights):
    // shape is a spec_model that was never created through the ABI, its weights' data a non-null placeholder never
    // read. model_memory: what a finalized model holds of the same. A backend that makes nothing of them: zeros.
    virtual Status weights_memory_plan(const spec_model &shape, spec_weights_memory *out, Failure &) {
        (void)shape;
        *out = spec_weights_memory{};
        return SPEC_OK;
    }
    virtual Status model_memory(const spec_model *model, spec_weights_memory *out, Failure &) {
        (void)model;
        *out = spec_weights_memory{};
        return SPEC_OK;
    }
    // Grows the context's kernel scratch to the plan's kernel_scratch for these shapes.
    virtual Status reserve(spec_context *ctx, int32_t batch, int32_t max_tree_nodes, int32_t n_vocab, int32_t recycler_k,
                           Failure &err) = 0;
};

Backend *cpu_backend();
#ifdef SPECULA_WITH_CUDA
Backend *cuda_backend();
#endif

// Bytes one row of `cols` elements takes in a dtype, or 0 when cols does not fit its blocks.
uint64_t dtype_row_bytes(int32_t dtype, int64_t cols);

// One KV cache: [n_layer][K, V][capacity][n_head_kv][head_dim] in kv_dtype, on every backend.
inline uint64_t kv_slot_bytes(const spec_model_config &c) {
    return (uint64_t)c.n_head_kv * (uint64_t)c.head_dim * (c.kv_dtype == SPEC_DTYPE_F32 ? 4u : 2u);
}
inline uint64_t kv_cache_bytes(const spec_model_config &c, int32_t capacity) {
    return 2 * (uint64_t)c.n_layer * (uint64_t)capacity * kv_slot_bytes(c);
}
const char *dtype_name(int32_t dtype);

} // namespace specula
