// The cpu twins of the speculative kernels (tree_attention.cpp, verify.cpp, recycling.cpp,
// logits_summary.cpp): plain loops over host memory, the reference the cuda kernels are tested against.
#pragma once

#include "../core/internal.hpp"

#include <algorithm>
#include <cstdint>
#include <exception>
#include <mutex>
#include <thread>
#include <vector>

namespace specula::cpu {

// window > 0: only keys at positions > the query's - window (spec_tree_attention_windowed).
Status tree_attention(spec_context *ctx, const spec_tree_attention_args &args, int32_t window, Failure &err);
Status verify(spec_context *ctx, const spec_verify_args &args, Failure &err);
Status recycler_update(spec_recycler *rec, const spec_recycler_update_args &args, Failure &err);
Status recycler_draft(spec_recycler *rec, const spec_recycler_draft_args &args, Failure &err);
Status logits_summarize(spec_context *ctx, const float *rows, int32_t n_rows, int64_t row_stride, int32_t limit, int32_t k,
                        spec_logits_summary *out, Failure &err);

// Below this many element operations in all, parallel_for runs the work on the caller: the threads
// it starts cost tens of microseconds each (milliseconds on a loaded machine), more than such work
// takes (a batch's greedy verification of one-node trees: an argmax over the vocabulary per sequence).
constexpr int64_t PARALLEL_MIN_WORK = int64_t(1) << 20;

// Runs body(i) for i in [0, n) on up to the context's thread count (0 = all cores); work, when
// known, is the element operations of all n items together (small work stays on the caller). Work
// items are independent and write disjoint outputs, so results do not depend on the split. An
// exception in a worker (say bad_alloc) is carried over and rethrown here, for guarded().
template <typename Body>
void parallel_for(const spec_context *ctx, int64_t n, Body body, int64_t work = INT64_MAX) {
    int64_t threads = ctx->n_threads > 0 ? ctx->n_threads : (int64_t)std::thread::hardware_concurrency();
    threads = std::max<int64_t>(1, std::min<int64_t>(threads, n));
    if (threads == 1 || work < PARALLEL_MIN_WORK) {
        for (int64_t i = 0; i < n; i++) body(i);
        return;
    }
    std::exception_ptr failed;
    std::mutex failed_mutex;
    std::vector<std::thread> pool;
    pool.reserve((size_t)threads);
    for (int64_t t = 0; t < threads; t++)
        pool.emplace_back([&, t] {
            try {
                for (int64_t i = t; i < n; i += threads) body(i);
            } catch (...) {
                std::lock_guard<std::mutex> lock(failed_mutex);
                if (!failed) failed = std::current_exception();
            }
        });
    for (auto &th : pool) th.join();
    if (failed) std::rethrow_exception(failed);
}

} // namespace specula::cpu
