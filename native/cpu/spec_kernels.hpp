// The cpu twins of the speculative kernels (tree_attention.cpp, verify.cpp, recycling.cpp,
// logits_summary.cpp): plain loops over host memory, the reference the cuda kernels are tested against.
#pragma once

#include "../core/internal.hpp"

#include "thread_pool.hpp"

#include <algorithm>
#include <cstdint>
#include <vector>

namespace specula::cpu {

// window > 0: only keys at positions > the query's - window (spec_tree_attention_windowed).
Status tree_attention(spec_context *ctx, const spec_tree_attention_args &args, int32_t window, Failure &err);
Status verify(spec_context *ctx, const spec_verify_args &args, Failure &err);
Status recycler_update(spec_recycler *rec, const spec_recycler_update_args &args, Failure &err);
Status recycler_draft(spec_recycler *rec, const spec_recycler_draft_args &args, Failure &err);
Status logits_summarize(spec_context *ctx, const float *rows, int32_t n_rows, int64_t row_stride, int32_t limit, int32_t k,
                        spec_logits_summary *out, Failure &err);

// Below this many element operations in all, parallel_for runs the work on the caller without
// touching the context's pool: waking its workers (or waiting for another call's turn on it) costs
// more than such work takes (a batch's greedy verification of one-node trees: an argmax over the
// vocabulary per sequence).
constexpr int64_t PARALLEL_MIN_WORK = int64_t(1) << 20;

// Runs body(i) for i in [0, n) on the context's pool (thread_pool.hpp: the one the context's models
// use, no threads started per call); work, when known, is the element operations of all n items
// together (small work stays on the caller). Work items are independent and write disjoint outputs,
// so results do not depend on the split. An exception in a worker (say bad_alloc) is carried over
// and rethrown here, for guarded().
template <typename Body>
void parallel_for(const spec_context *ctx, int64_t n, Body body, int64_t work = INT64_MAX) {
    if (n <= 0) return;
    // Inside a pool's task the pool is busy with this very job: waiting for it would never end.
    if (n == 1 || work < PARALLEL_MIN_WORK || ContextPool::threads_for(ctx->n_threads) == 1 || ThreadPool::in_task()) {
        for (int64_t i = 0; i < n; i++) body(i);
        return;
    }
    ContextPool::Lease lease(context_pool(ctx));
    ThreadPool &pool = lease.pool();
    // A few tasks per thread, so a thread the OS is late to schedule leaves its share to the others.
    const int64_t tasks = std::min<int64_t>(n, (int64_t)pool.size() * 4);
    pool.parallel_for((int)tasks, [&](int task, int) {
        const int64_t i0 = n * task / tasks, i1 = n * (task + 1) / tasks;
        for (int64_t i = i0; i < i1; i++) body(i);
    });
}

} // namespace specula::cpu
