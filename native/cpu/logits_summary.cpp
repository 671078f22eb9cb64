// Logits summaries, cpu twin: per row one scan keeps the k best composites (TopList, as the recycler's
// update does) and a second sums the softmax terms in double. The cuda kernel (native/cuda/
// logits_summary.cu) splits both scans over a block and is tested against this.
#include "spec_kernels.hpp"

#include "../core/kernel_math.hpp"

namespace specula::cpu {

Status logits_summarize(spec_context *ctx, const float *rows, int32_t n_rows, int64_t row_stride, int32_t limit, int32_t k,
                        spec_logits_summary *out, Failure &) {
    parallel_for(ctx, n_rows, [&](int64_t r) {
        const float *row = rows + (size_t)r * (size_t)row_stride;
        km::TopList<SPEC_SUMMARY_MAX_K> list;
        list.clear();
        for (int64_t i = 0; i < limit; i++) list.push(km::composite(row[i], (uint32_t)i));
        float top_logit[SPEC_SUMMARY_MAX_K] = {};
        for (int j = 0; j < k; j++)
            if (list.c[j]) top_logit[j] = row[km::composite_id(list.c[j])];
        double sum = 0.0, weighted = 0.0;
        for (int64_t i = 0; i < limit; i++) km::summary_accumulate(row[i], top_logit[0], sum, weighted);
        km::summary_write(list.c, top_logit, k, sum, weighted, out[r]);
    }, (int64_t)n_rows * limit);
    return SPEC_OK;
}

} // namespace specula::cpu
