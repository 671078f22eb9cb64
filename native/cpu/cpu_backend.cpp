// The cpu backend: host memory for buffers, and the reference implementation of every operation.
#include "cpu_model.hpp"
#include "spec_kernels.hpp"

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>
#include <sys/sysinfo.h>
#include <thread>

namespace specula {
namespace {

std::string cpu_model_name() {
    std::ifstream in("/proc/cpuinfo");
    std::string line;
    while (std::getline(in, line)) {
        if (line.rfind("model name", 0) == 0) {
            auto colon = line.find(':');
            if (colon != std::string::npos) {
                auto start = line.find_first_not_of(' ', colon + 1);
                return start == std::string::npos ? "cpu" : line.substr(start);
            }
        }
    }
    return "cpu";
}

class CpuBackend final : public Backend {
public:
    const char *name() const override { return "cpu"; }

    Status device_count(int32_t *out, Failure &) override {
        *out = 1;
        return SPEC_OK;
    }
    // The context's one thread pool (thread_pool.hpp), started on its first parallel call.
    Status context_init(spec_context *ctx, Failure &) override {
        ctx->backend_state = new cpu::ContextPool(ctx->n_threads);
        return SPEC_OK;
    }
    void context_release(spec_context *ctx) override {
        delete (cpu::ContextPool *)ctx->backend_state;
        ctx->backend_state = nullptr;
    }

    Status device_query(const spec_context *, spec_device_info *out, Failure &) override {
        std::snprintf(out->name, sizeof out->name, "%s", cpu_model_name().c_str());
        struct sysinfo si{};
        if (sysinfo(&si) == 0) {
            out->total_memory = (uint64_t)si.totalram * si.mem_unit;
            out->free_memory = ((uint64_t)si.freeram + si.bufferram) * si.mem_unit;
        }
        out->multiprocessors = (int32_t)std::thread::hardware_concurrency();
        return SPEC_OK;
    }

    Status alloc(spec_context *, uint64_t nbytes, void **out, Failure &err) override {
        // 64-byte alignment suits AVX-512 loads.
        uint64_t rounded = (nbytes + 63) & ~uint64_t(63);
        void *p = std::aligned_alloc(64, rounded);
        if (!p) {
            err = failure(SPEC_ERR_OUT_OF_MEMORY, "cpu: cannot allocate %llu bytes", (unsigned long long)nbytes);
            return err.status;
        }
        std::memset(p, 0, rounded);
        *out = p;
        return SPEC_OK;
    }
    void release(spec_context *, void *ptr) override { std::free(ptr); }

    Status copy(spec_context *, void *dst, const void *src, uint64_t nbytes, Copy, Failure &) override {
        std::memmove(dst, src, nbytes);
        return SPEC_OK;
    }

    Status model_finalize(spec_model *m, Failure &err) override { return cpu::model_finalize(m, err); }
    void model_release(spec_model *m) override { cpu::model_release(m); }
    Status kv_init(spec_kv *kv, Failure &err) override { return cpu::kv_init(kv, err); }
    void kv_release(spec_kv *kv) override { cpu::kv_release(kv); }
    Status kv_commit(spec_kv *kv, int32_t n, const int32_t *path, Failure &err) override { return cpu::kv_commit(kv, n, path, err); }
    Status forward(spec_model *m, int32_t n_seq, spec_kv *const *kvs, const spec_forward_args *a, Failure &err) override {
        return cpu::forward(m, n_seq, kvs, a, err);
    }

    Status tree_attention(spec_context *ctx, const spec_tree_attention_args &a, Failure &err) override {
        return cpu::tree_attention(ctx, a, 0, err);
    }
    Status tree_attention_windowed(spec_context *ctx, const spec_tree_attention_args &a, int32_t window, Failure &err) override {
        return cpu::tree_attention(ctx, a, window, err);
    }
    Status verify(spec_context *ctx, const spec_verify_args &a, Failure &err) override { return cpu::verify(ctx, a, err); }
    Status recycler_init(spec_recycler *, Failure &) override { return SPEC_OK; }
    void recycler_release(spec_recycler *) override {}
    Status recycler_update(spec_recycler *r, const spec_recycler_update_args &a, Failure &err) override {
        return cpu::recycler_update(r, a, err);
    }
    Status recycler_draft(spec_recycler *r, const spec_recycler_draft_args &a, Failure &err) override {
        return cpu::recycler_draft(r, a, err);
    }
    Status logits_summarize(spec_context *ctx, const float *rows, int32_t n, int64_t stride, int32_t limit, int32_t k,
                            spec_logits_summary *out, Failure &err) override {
        return cpu::logits_summarize(ctx, rows, n, stride, limit, k, out, err);
    }

    Status memory_plan(const spec_model_config &c, const spec_memory_request &r, spec_memory_plan *p, Failure &) override {
        p->weights = 0; // read in place from the caller's mapping
        p->kv_caches = cpu::kv_state_bytes(c, r.kv_capacity) * (uint64_t)r.n_sequences; // tensors and slot positions
        p->model_scratch = cpu::model_scratch_bytes(c, r.kv_capacity);
        // verify.cpp's per-call vectors: sampling weights of one vocabulary row plus per-node
        // bookkeeping; recycling.cpp's top-k rows of every node.
        const uint64_t nodes = (uint64_t)r.n_sequences * (uint64_t)r.max_tree_nodes;
        p->kernel_scratch = r.max_tree_nodes ? (uint64_t)c.n_vocab * 8 + nodes * (8 + 4 + 1 + 8 + 4 * (uint64_t)r.recycler_k) : 0;
        p->recycler = (uint64_t)c.n_vocab * (uint64_t)r.recycler_k * 4;
        return SPEC_OK;
    }
    Status weights_memory_plan(const spec_model &shape, spec_weights_memory *out, Failure &) override {
        cpu::weights_memory_plan(shape, out);
        return SPEC_OK;
    }
    Status model_memory(const spec_model *model, spec_weights_memory *out, Failure &) override {
        cpu::model_memory(model, out);
        return SPEC_OK;
    }
    // Host scratch is allocated per call (and host memory is not the scarce resource here).
    Status reserve(spec_context *, int32_t, int32_t, int32_t, int32_t, Failure &) override { return SPEC_OK; }
};

} // namespace

Backend *cpu_backend() {
    static CpuBackend backend;
    return &backend;
}

} // namespace specula
