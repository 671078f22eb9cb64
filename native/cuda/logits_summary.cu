// Logits summaries on the GPU: one block per row. The block top-k of spec_cuda.cuh (the recycler's)
// finds the row's best k; every thread then knows the maximum, sums its share of the softmax terms in
// double, and two block sums give S and W. Thread 0 writes the row's summary with the same
// kernel_math.hpp helpers as the cpu twin (native/cpu/logits_summary.cpp); one copy brings all rows back.
#include "spec_cuda.cuh"

namespace specula::cuda {
namespace {

constexpr int SUMMARY_THREADS = 256;

__global__ void __launch_bounds__(SUMMARY_THREADS)
    summary_kernel(const float *rows, int64_t row_stride, int limit, int k, spec_logits_summary *out) {
    __shared__ unsigned long long red[33];
    __shared__ double dred[33];
    __shared__ uint64_t top[SPEC_SUMMARY_MAX_K];
    const float *row = rows + (size_t)blockIdx.x * (size_t)row_stride;
    km::TopList<SPEC_SUMMARY_MAX_K> list;
    thread_top_list<SPEC_SUMMARY_MAX_K, SUMMARY_THREADS>(row, limit, list);
    unsigned long long best0 = 0; // every thread needs the maximum; only thread 0 the rest (in shared memory)
    block_merge_top(list, k, red, [&](int j, unsigned long long best) {
        if (j == 0) best0 = best;
        if (threadIdx.x == 0) top[j] = best;
    });
    const float max_logit = row[km::composite_id(best0)]; // limit >= 1: the best is a token
    double sum = 0.0, weighted = 0.0;
    for (int64_t i = threadIdx.x; i < limit; i += SUMMARY_THREADS) km::summary_accumulate(row[i], max_logit, sum, weighted);
    sum = block_sum_f64(sum, dred);
    weighted = block_sum_f64(weighted, dred);
    if (threadIdx.x == 0) { // top[] is its own writes
        float top_logit[SPEC_SUMMARY_MAX_K] = {};
        for (int j = 0; j < k; j++)
            if (top[j]) top_logit[j] = row[km::composite_id(top[j])];
        spec_logits_summary s;
        km::summary_write(top, top_logit, k, sum, weighted, s);
        out[blockIdx.x] = s;
    }
}

struct SummaryLayout {
    size_t o_out, bytes;
    explicit SummaryLayout(size_t rows) {
        Layout lay;
        o_out = lay.add(rows * sizeof(spec_logits_summary));
        bytes = lay.bytes;
    }
};

} // namespace

size_t logits_summary_scratch_bytes(size_t rows) { return SummaryLayout(rows).bytes; }

Status logits_summarize(spec_context *ctx, const float *rows, int32_t n_rows, int64_t row_stride, int32_t limit, int32_t k,
                        spec_logits_summary *out, Failure &err) {
    KernelState &st = kernel_state(ctx);
    std::lock_guard<std::mutex> lock(st.lock);
    if (select_device(ctx->device, err)) return err.status;
    const SummaryLayout lay((size_t)n_rows);
    if (grow_scratch(ctx, st, lay.bytes, err)) return err.status;
    spec_logits_summary *d_out = (spec_logits_summary *)(st.scratch + lay.o_out);
    summary_kernel<<<(unsigned)n_rows, SUMMARY_THREADS>>>(rows, row_stride, limit, k, d_out);
    if (check_launch(err, "logits summary kernel")) return err.status;
    // The legacy stream: the copy waits for the kernel, and the kernel for the forward that wrote the rows.
    const cudaError_t e = cudaMemcpy(out, d_out, (size_t)n_rows * sizeof(spec_logits_summary), cudaMemcpyDeviceToHost);
    if (e != cudaSuccess) return cuda_failure(err, e, "logits summary kernel / results copy");
    return SPEC_OK;
}

} // namespace specula::cuda
