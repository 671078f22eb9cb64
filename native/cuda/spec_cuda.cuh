// Shared pieces of the cuda speculative kernels (tree_attention.cu, verify.cu, recycling.cu,
// logits_summary.cu): the per-context scratch memory, error reporting, block-wide reductions, and
// the block top-k of a logits row.
#pragma once

#include "../core/internal.hpp"
#include "../core/kernel_math.hpp"

#include <cuda_runtime.h>
#include <mutex>
#include <vector>

namespace specula::cuda {

Status cuda_failure(Failure &err, cudaError_t e, const char *what);
// Makes `device` current for the calls that follow; a failure becomes a status with its message.
Status select_device(int device, Failure &err);
// The same on a release path, which has no status to return: a failure is cleared (it must not
// surface in a later, unrelated check_launch) and the release goes on on the current device,
// where cudaFree and stream waits still act on the right device (they find it from the pointer
// or the stream).
void select_device_for_release(int device);
// Reports a failed launch (bad configuration, or an earlier asynchronous fault).
Status check_launch(Failure &err, const char *what);

// Each context owns one scratch allocation for the speculative kernels, grown on demand, and a
// lock: two threads calling kernels on one context take turns instead of sharing the scratch.
// Kernels run on the legacy default stream, so a later call's upload waits for earlier kernels.
struct KernelState {
    std::mutex lock;
    char *scratch = nullptr;
    size_t scratch_size = 0;
    int sm_count = 0;
};
KernelState &kernel_state(spec_context *ctx);
void release_kernel_state(spec_context *ctx);
// Makes the scratch at least `bytes` (contents are not kept). Call with the state's lock held.
Status grow_scratch(spec_context *ctx, KernelState &st, size_t bytes, Failure &err);

// Scratch each speculative kernel takes at a shape (their layouts, computed where they are used),
// and what a context must hold for B trees of N nodes over V tokens with a recycler of k.
size_t verify_scratch_bytes(size_t B, size_t N, size_t V);
size_t recycler_update_scratch_bytes(size_t n_nodes, size_t k);
size_t recycler_draft_scratch_bytes(size_t B, size_t N);
size_t logits_summary_scratch_bytes(size_t rows);
uint64_t recycler_bytes(int64_t n_vocab, int32_t k);
uint64_t kernel_scratch_bytes(int32_t batch, int32_t max_tree_nodes, int32_t n_vocab, int32_t recycler_k);
// Grows the context's scratch to kernel_scratch_bytes(...) now (spec_context_reserve).
Status reserve_kernel_scratch(spec_context *ctx, int32_t batch, int32_t max_tree_nodes, int32_t n_vocab, int32_t recycler_k,
                              Failure &err);

// Places pieces in one allocation, each 256-byte aligned: first the ones uploaded from the
// host in a single copy, then device-only ones.
struct Layout {
    size_t bytes = 0;
    size_t add(size_t n) {
        size_t off = (bytes + 255) & ~(size_t)255;
        bytes = off + n;
        return off;
    }
};

// Host-side staging of the upload region: fill, then copy once.
struct Staging {
    std::vector<char> host;
    explicit Staging(size_t n) : host(n) {}
    template <typename T>
    void put(size_t off, const T *src, size_t count) {
        if (count) std::memcpy(host.data() + off, src, count * sizeof(T));
    }
    Status upload(char *dst, Failure &err) {
        if (host.empty()) return SPEC_OK;
        cudaError_t e = cudaMemcpy(dst, host.data(), host.size(), cudaMemcpyHostToDevice);
        return e == cudaSuccess ? SPEC_OK : cuda_failure(err, e, "cudaMemcpy (kernel arguments)");
    }
};

#ifdef __CUDACC__
// ---------------------------------------------------------------- warp and block reductions

__device__ __forceinline__ unsigned long long warp_max_u64(unsigned long long v) {
    for (int o = 16; o; o >>= 1) {
        unsigned long long x = __shfl_xor_sync(0xffffffffu, v, o);
        v = x > v ? x : v;
    }
    return v;
}
__device__ __forceinline__ unsigned long long warp_sum_u64(unsigned long long v) {
    for (int o = 16; o; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}
__device__ __forceinline__ unsigned long long warp_inclusive_scan_u64(unsigned long long v) {
    const int lane = threadIdx.x & 31;
    for (int o = 1; o < 32; o <<= 1) {
        unsigned long long x = __shfl_up_sync(0xffffffffu, v, o);
        if (lane >= o) v += x;
    }
    return v;
}

// Block-wide max or sum; every thread gets the result. red: 33 elements of shared memory.
// Every thread of the block must call it (it synchronizes).
template <bool Max>
__device__ unsigned long long block_reduce_u64(unsigned long long v, unsigned long long *red) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, n_warps = blockDim.x >> 5;
    v = Max ? warp_max_u64(v) : warp_sum_u64(v);
    __syncthreads(); // red may still be read by a previous call
    if (lane == 0) red[warp] = v;
    __syncthreads();
    if (warp == 0) {
        unsigned long long x = lane < n_warps ? red[lane] : 0;
        x = Max ? warp_max_u64(x) : warp_sum_u64(x);
        if (lane == 0) red[32] = x;
    }
    __syncthreads();
    return red[32];
}

// Block-wide sum of doubles; every thread gets it. red: 33 elements of shared memory. Every thread
// of the block must call it (it synchronizes).
__device__ inline double block_sum_f64(double v, double *red) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, n_warps = blockDim.x >> 5;
    for (int o = 16; o; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    __syncthreads(); // red may still be read by a previous call
    if (lane == 0) red[warp] = v;
    __syncthreads();
    if (warp == 0) {
        double x = lane < n_warps ? red[lane] : 0.0;
        for (int o = 16; o; o >>= 1) x += __shfl_xor_sync(0xffffffffu, x, o);
        if (lane == 0) red[32] = x;
    }
    __syncthreads();
    return red[32];
}

// Block-wide inclusive prefix sum in thread order. red: 33 elements of shared memory.
__device__ inline unsigned long long block_inclusive_scan_u64(unsigned long long v, unsigned long long *red) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, n_warps = blockDim.x >> 5;
    unsigned long long x = warp_inclusive_scan_u64(v);
    __syncthreads();
    if (lane == 31) red[warp] = x;
    __syncthreads();
    if (warp == 0) {
        unsigned long long y = lane < n_warps ? red[lane] : 0;
        y = warp_inclusive_scan_u64(y);
        red[lane] = y;
    }
    __syncthreads();
    return x + (warp > 0 ? red[warp - 1] : 0);
}

// ---------------------------------------------------------------- block top-k of a row
// Each of THREADS threads keeps a sorted list of its own best K composites in registers; then k
// rounds of a block-wide max merge them (recycling.cu's update, logits_summary.cu).

// This thread's best K of row[0..n), scanning with four loads in flight: the scan is memory-bound.
template <int K, int THREADS>
__device__ void thread_top_list(const float *row, int64_t n, km::TopList<K> &list) {
    list.clear();
    for (int64_t base = threadIdx.x; base < n; base += 4 * THREADS) {
        float x[4];
#pragma unroll
        for (int u = 0; u < 4; u++) {
            const int64_t i = base + (int64_t)u * THREADS;
            x[u] = i < n ? row[i] : 0.0f;
        }
#pragma unroll
        for (int u = 0; u < 4; u++) {
            const int64_t i = base + (int64_t)u * THREADS;
            if (i < n) list.push(km::composite(x[u], (uint32_t)i));
        }
    }
}

// The block's best k (k <= K), best first: every thread calls emit(j, composite) for j = 0..k-1 with
// the same values (0 once the row has fewer than k tokens). Each round the best head in the block
// wins and its owner drops it; composites are unique (they include the id), so exactly one thread
// pops. Every thread of the block must call it.
template <int K, typename Emit>
__device__ void block_merge_top(km::TopList<K> &list, int k, unsigned long long *red, Emit emit) {
    for (int j = 0; j < k; j++) {
        const unsigned long long head = list.c[0];
        const unsigned long long best = block_reduce_u64<true>(head, red);
        if (head == best && best != 0) list.pop();
        emit(j, best);
    }
}
#endif

} // namespace specula::cuda
