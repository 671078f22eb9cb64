// Per-context scratch and error helpers of the cuda speculative kernels.
#include "spec_cuda.cuh"

#include <algorithm>
#include <new>

namespace specula::cuda {

namespace {
std::mutex g_state_mutex; // guards creating a context's state
}

Status cuda_failure(Failure &err, cudaError_t e, const char *what) {
    // Reported here, so cleared here: a recoverable error left as the runtime's last error would
    // fail a later, unrelated check_launch. (A sticky error stays: every later call reports it.)
    cudaGetLastError();
    if (e == cudaErrorMemoryAllocation) {
        err = failure(SPEC_ERR_OUT_OF_MEMORY, "cuda: %s: out of device memory", what);
        return err.status;
    }
    err = failure(SPEC_ERR_DEVICE, "cuda: %s failed: %s (%s)", what, cudaGetErrorString(e), cudaGetErrorName(e));
    return err.status;
}

Status select_device(int device, Failure &err) {
    const cudaError_t e = cudaSetDevice(device);
    return e == cudaSuccess ? SPEC_OK : cuda_failure(err, e, "cudaSetDevice");
}

void select_device_for_release(int device) {
    if (cudaSetDevice(device) != cudaSuccess) cudaGetLastError();
}

Status check_launch(Failure &err, const char *what) {
    cudaError_t e = cudaGetLastError();
    return e == cudaSuccess ? SPEC_OK : cuda_failure(err, e, what);
}

KernelState &kernel_state(spec_context *ctx) {
    std::lock_guard<std::mutex> lock(g_state_mutex);
    if (!ctx->backend_state) ctx->backend_state = new KernelState();
    return *static_cast<KernelState *>(ctx->backend_state);
}

void release_kernel_state(spec_context *ctx) {
    auto *st = static_cast<KernelState *>(ctx->backend_state);
    if (!st) return;
    if (st->scratch) {
        select_device_for_release(ctx->device);
        cudaFree(st->scratch);
    }
    delete st;
    ctx->backend_state = nullptr;
}

// Some headroom against regrowing every call when shapes creep up.
static size_t scratch_allocation(size_t bytes) { return bytes + bytes / 4; }

Status grow_scratch(spec_context *ctx, KernelState &st, size_t bytes, Failure &err) {
    if (st.sm_count == 0) {
        cudaError_t e = cudaDeviceGetAttribute(&st.sm_count, cudaDevAttrMultiProcessorCount, ctx->device);
        if (e != cudaSuccess) return cuda_failure(err, e, "cudaDeviceGetAttribute");
    }
    if (bytes <= st.scratch_size) return SPEC_OK;
    if (st.scratch) {
        cudaFree(st.scratch); // waits for kernels still using it
        st.scratch = nullptr;
        st.scratch_size = 0;
    }
    size_t want = scratch_allocation(bytes);
    cudaError_t e = cudaMalloc((void **)&st.scratch, want);
    if (e != cudaSuccess) {
        st.scratch = nullptr;
        return cuda_failure(err, e, "cudaMalloc (kernel scratch)");
    }
    st.scratch_size = want;
    return SPEC_OK;
}

// The largest of the speculative kernels' layouts at these shapes, before grow_scratch's headroom.
static size_t kernel_scratch_needed(int32_t batch, int32_t max_tree_nodes, int32_t n_vocab, int32_t recycler_k) {
    const size_t B = (size_t)batch, N = (size_t)max_tree_nodes;
    size_t bytes = verify_scratch_bytes(B, N, (size_t)n_vocab);
    bytes = std::max(bytes, logits_summary_scratch_bytes(B * N)); // a summary per tree node
    if (recycler_k > 0) {
        bytes = std::max(bytes, recycler_update_scratch_bytes(B * N, (size_t)recycler_k));
        bytes = std::max(bytes, recycler_draft_scratch_bytes(B, N));
    }
    return bytes;
}

uint64_t kernel_scratch_bytes(int32_t batch, int32_t max_tree_nodes, int32_t n_vocab, int32_t recycler_k) {
    return scratch_allocation(kernel_scratch_needed(batch, max_tree_nodes, n_vocab, recycler_k));
}

Status reserve_kernel_scratch(spec_context *ctx, int32_t batch, int32_t max_tree_nodes, int32_t n_vocab, int32_t recycler_k,
                              Failure &err) {
    KernelState &st = kernel_state(ctx);
    std::lock_guard<std::mutex> lock(st.lock);
    if (select_device(ctx->device, err)) return err.status;
    return grow_scratch(ctx, st, kernel_scratch_needed(batch, max_tree_nodes, n_vocab, recycler_k), err);
}

} // namespace specula::cuda
