// The cuda backend: device memory through the CUDA runtime (linked statically, so only the
// driver is needed at run time); the model in model.cu, the speculative kernels beside it.
#include "../core/internal.hpp"
#include "copy_plan.hpp"
#include "model.cuh"
#include "spec_cuda.cuh"

#include <cuda_runtime.h>
#include <dlfcn.h>
#include <cstdio>
#include <cstring>

namespace specula {

namespace cuda { // the speculative kernels: tree_attention.cu, verify.cu, recycling.cu, logits_summary.cu
Status tree_attention(spec_context *ctx, const spec_tree_attention_args &args, Failure &err);
Status verify(spec_context *ctx, const spec_verify_args &args, Failure &err);
Status recycler_init(spec_recycler *rec, Failure &err);
void recycler_release(spec_recycler *rec);
Status recycler_update(spec_recycler *rec, const spec_recycler_update_args &args, Failure &err);
Status recycler_draft(spec_recycler *rec, const spec_recycler_draft_args &args, Failure &err);
Status logits_summarize(spec_context *ctx, const float *rows, int32_t n_rows, int64_t row_stride, int32_t limit, int32_t k,
                        spec_logits_summary *out, Failure &err);
} // namespace cuda

namespace {

// Without a driver the runtime only says "insufficient driver"; naming the missing library is clearer.
bool driver_library_present() {
    void *h = dlopen("libcuda.so.1", RTLD_LAZY | RTLD_NOLOAD);
    if (!h) h = dlopen("libcuda.so.1", RTLD_LAZY);
    if (!h) return false;
    dlclose(h);
    return true;
}

Status device_failure(Failure &err, cudaError_t e, const char *what) {
    err = failure(SPEC_ERR_DEVICE, "cuda: %s failed: %s (%s)", what, cudaGetErrorString(e), cudaGetErrorName(e));
    return err.status;
}

class CudaBackend final : public Backend {
public:
    const char *name() const override { return "cuda"; }

    Status device_count(int32_t *out, Failure &err) override {
        *out = 0;
        if (!driver_library_present()) {
            err = failure(SPEC_ERR_BACKEND_UNAVAILABLE, "no CUDA driver (libcuda.so.1 cannot be loaded)");
            return err.status;
        }
        int n = 0;
        cudaError_t e = cudaGetDeviceCount(&n);
        if (e == cudaErrorNoDevice || (e == cudaSuccess && n == 0)) {
            cudaGetLastError();
            err = failure(SPEC_ERR_BACKEND_UNAVAILABLE, "no CUDA device found");
            return err.status;
        }
        if (e != cudaSuccess) {
            cudaGetLastError();
            err = failure(SPEC_ERR_BACKEND_UNAVAILABLE, "CUDA unavailable: %s", cudaGetErrorString(e));
            return err.status;
        }
        *out = n;
        return SPEC_OK;
    }

    Status context_init(spec_context *ctx, Failure &err) override {
        return cuda::select_device(ctx->device, err);
    }
    void context_release(spec_context *ctx) override { cuda::release_kernel_state(ctx); }

    Status device_query(const spec_context *ctx, spec_device_info *out, Failure &err) override {
        cudaDeviceProp prop{};
        cudaError_t e = cudaGetDeviceProperties(&prop, ctx->device);
        if (e != cudaSuccess) return device_failure(err, e, "cudaGetDeviceProperties");
        std::snprintf(out->name, sizeof out->name, "%s", prop.name);
        out->compute_major = prop.major;
        out->compute_minor = prop.minor;
        out->multiprocessors = prop.multiProcessorCount;
        size_t free_b = 0, total_b = 0;
        if (cuda::select_device(ctx->device, err)) return err.status;
        e = cudaMemGetInfo(&free_b, &total_b);
        if (e != cudaSuccess) return device_failure(err, e, "cudaMemGetInfo");
        out->total_memory = total_b;
        out->free_memory = free_b;
        return SPEC_OK;
    }

    Status alloc(spec_context *ctx, uint64_t nbytes, void **out, Failure &err) override {
        if (cuda::select_device(ctx->device, err)) return err.status;
        void *p = nullptr;
        cudaError_t e = cudaMalloc(&p, nbytes);
        if (e == cudaErrorMemoryAllocation) {
            cudaGetLastError();
            err = failure(SPEC_ERR_OUT_OF_MEMORY, "cuda: cannot allocate %llu bytes on device %d", (unsigned long long)nbytes, ctx->device);
            return err.status;
        }
        if (e != cudaSuccess) return device_failure(err, e, "cudaMalloc");
        e = cudaMemset(p, 0, nbytes);
        if (e != cudaSuccess) {
            cudaFree(p);
            return device_failure(err, e, "cudaMemset");
        }
        *out = p;
        return SPEC_OK;
    }
    void release(spec_context *ctx, void *ptr) override {
        cuda::select_device_for_release(ctx->device);
        cudaFree(ptr);
    }

    Status copy(spec_context *ctx, void *dst, const void *src, uint64_t nbytes, Copy kind, Failure &err) override {
        if (cuda::select_device(ctx->device, err)) return err.status;
        cudaMemcpyKind k = kind == Copy::HostToDevice   ? cudaMemcpyHostToDevice
                           : kind == Copy::DeviceToHost ? cudaMemcpyDeviceToHost
                                                        : cudaMemcpyDeviceToDevice;
        if (kind == Copy::DeviceToDevice) return copy_on_device(dst, src, nbytes, err);
        cudaError_t e = cudaMemcpy(dst, src, nbytes, k);
        if (e != cudaSuccess) return device_failure(err, e, "cudaMemcpy");
        return SPEC_OK;
    }
    // As memmove, also where the ranges overlap (cuda::copy_pieces; a small shift through a temporary copy).
    Status copy_on_device(void *dst, const void *src, uint64_t nbytes, Failure &err) {
        if (nbytes == 0 || dst == src) return SPEC_OK;
        cudaError_t e = cudaSuccess;
        const uint64_t pieces = cuda::copy_pieces((uint64_t)(uintptr_t)dst, (uint64_t)(uintptr_t)src, nbytes, [&](uint64_t d, uint64_t s, uint64_t n) {
            if (e == cudaSuccess) e = cudaMemcpy((void *)(uintptr_t)d, (const void *)(uintptr_t)s, n, cudaMemcpyDeviceToDevice);
        });
        if (pieces == 0) {
            void *tmp = nullptr;
            e = cudaMalloc(&tmp, nbytes);
            if (e != cudaSuccess) return device_failure(err, e, "cudaMalloc (overlapping copy)");
            e = cudaMemcpy(tmp, src, nbytes, cudaMemcpyDeviceToDevice);
            if (e == cudaSuccess) e = cudaMemcpy(dst, tmp, nbytes, cudaMemcpyDeviceToDevice);
            const cudaError_t f = cudaFree(tmp);
            if (e == cudaSuccess) e = f;
        }
        if (e != cudaSuccess) return device_failure(err, e, "cudaMemcpy (device to device)");
        return SPEC_OK;
    }

    Status model_finalize(spec_model *m, Failure &err) override { return cuda::model_finalize(m, err); }
    void model_release(spec_model *m) override { cuda::model_release(m); }
    Status kv_init(spec_kv *kv, Failure &err) override { return cuda::kv_init(kv, err); }
    void kv_release(spec_kv *kv) override { cuda::kv_release(kv); }
    Status kv_commit(spec_kv *kv, int32_t n, const int32_t *path, Failure &err) override {
        return cuda::kv_commit(kv, n, path, err);
    }
    Status forward(spec_model *m, int32_t n_seq, spec_kv *const *kvs, const spec_forward_args *a, Failure &err) override {
        return cuda::forward(m, n_seq, kvs, a, err);
    }

    Status tree_attention(spec_context *ctx, const spec_tree_attention_args &a, Failure &err) override {
        return cuda::tree_attention(ctx, a, err);
    }
    Status verify(spec_context *ctx, const spec_verify_args &a, Failure &err) override { return cuda::verify(ctx, a, err); }
    Status recycler_init(spec_recycler *r, Failure &err) override { return cuda::recycler_init(r, err); }
    void recycler_release(spec_recycler *r) override { cuda::recycler_release(r); }
    Status recycler_update(spec_recycler *r, const spec_recycler_update_args &a, Failure &err) override {
        return cuda::recycler_update(r, a, err);
    }
    Status recycler_draft(spec_recycler *r, const spec_recycler_draft_args &a, Failure &err) override {
        return cuda::recycler_draft(r, a, err);
    }
    Status logits_summarize(spec_context *ctx, const float *rows, int32_t n, int64_t stride, int32_t limit, int32_t k,
                            spec_logits_summary *out, Failure &err) override {
        return cuda::logits_summarize(ctx, rows, n, stride, limit, k, out, err);
    }

    Status memory_plan(const spec_model_config &c, const spec_memory_request &r, spec_memory_plan *p, Failure &) override {
        p->weights = cuda::model_weight_bytes(c, r.weight_bytes);
        p->kv_caches = cuda::kv_bytes(c, r.kv_capacity) * (uint64_t)r.n_sequences;
        p->model_scratch = cuda::model_scratch_bytes(c);
        p->kernel_scratch = r.max_tree_nodes ? cuda::kernel_scratch_bytes(r.n_sequences, r.max_tree_nodes, c.n_vocab, r.recycler_k) : 0;
        p->recycler = cuda::recycler_bytes(c.n_vocab, r.recycler_k);
        return SPEC_OK;
    }
    // ABI 0.11: nothing is prepacked; an EAGLE layer's input rows and the room its FC and bias take (eagle_extra_bytes),
    // allocated at finalize, so a finalized layer holds what was planned.
    Status weights_memory_plan(const spec_model &shape, spec_weights_memory *out, Failure &) override {
        *out = spec_weights_memory{};
        out->eagle_scratch = cuda::eagle_extra_bytes(shape);
        return SPEC_OK;
    }
    Status model_memory(const spec_model *model, spec_weights_memory *out, Failure &) override {
        *out = spec_weights_memory{};
        out->eagle_scratch = cuda::eagle_extra_bytes(*model);
        return SPEC_OK;
    }
    Status reserve(spec_context *ctx, int32_t batch, int32_t max_tree_nodes, int32_t n_vocab, int32_t k, Failure &err) override {
        return cuda::reserve_kernel_scratch(ctx, batch, max_tree_nodes, n_vocab, k, err);
    }
};

} // namespace

Backend *cuda_backend() {
    static CudaBackend backend;
    return &backend;
}

} // namespace specula
