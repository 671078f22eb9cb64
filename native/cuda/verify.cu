// Batched tree verification on the GPU: one block of SAMPLE_LANES (1024) threads per sequence.
// The walk down the tree is inherently sequential (a node is only examined once its parent was
// accepted), so the block walks it in lockstep and parallelizes each row operation over the
// vocabulary: argmax, the radix selects of top-k / top-p, materializing the integer weights,
// the residual, and the draw. Every thread computes the (cheap) decisions itself from the same
// values, so no broadcast is needed; the steps mirror native/cpu/verify.cpp and
// native/core/sampling.hpp and give bit-identical results.
#include "spec_cuda.cuh"
#include "../core/sampling.hpp"

namespace specula::cuda {
namespace {

constexpr int VT = km::SAMPLE_LANES; // threads per block: one per canonical sampling lane

struct VerifyDev {
    const int32_t *n_nodes;  // [B]
    const int32_t *tokens;   // [B][max_tree_nodes]
    const int32_t *parents;  // [B][max_tree_nodes]
    const spec_sampling_params *params; // [B]
    const float *logits;     // [B][max_tree_nodes][V]
    const float *q;          // [B][max_tree_nodes][V] or null
    uint64_t *w;             // [B][V] weights scratch (sampling sequences only)
    spec_verify_result *results; // [B]
    int32_t max_tree_nodes;
    int64_t V;
    uint64_t step;
};

struct Shared {
    spec_verify_result res;
    int32_t tok[SPEC_MAX_TREE_NODES];
    int32_t par[SPEC_MAX_TREE_NODES];
    int32_t depth[SPEC_MAX_TREE_NODES];
    unsigned long long amax[SPEC_MAX_TREE_NODES]; // 0 = not computed yet
    int32_t ok[SPEC_MAX_TREE_NODES];
    unsigned long long red[33];
    unsigned long long hstat[km::RADIX_BINS];
    unsigned int hcount[km::RADIX_BINS];
    int32_t bin;
    unsigned long long acc;
    int32_t pick_lane;
    unsigned long long pick_u;
    int32_t pick_token;
};

__device__ unsigned long long block_argmax(const float *row, int64_t V, Shared &sh) {
    unsigned long long best = 0;
    for (int64_t i = threadIdx.x; i < V; i += VT) {
        unsigned long long c = km::composite(row[i], (uint32_t)i);
        best = c > best ? c : best;
    }
    return block_reduce_u64<true>(best, sh.red);
}

// Adds a warp's (bin, stat) pairs to the block histogram with one atomic per distinct bin:
// the top digits are shared by most tokens, and plain atomics would serialize on them.
// Stats stay below 2^42, so 20-bit halves summed over 32 lanes fit redux's 32 bits.
__device__ __forceinline__ void hist_add(bool active, uint32_t d, uint64_t st, Shared &sh) {
    const int lane = threadIdx.x & 31;
    unsigned pending = __ballot_sync(0xffffffffu, active);
    while (pending) {
        const int leader = __ffs(pending) - 1;
        const uint32_t ld = __shfl_sync(0xffffffffu, d, leader);
        const bool mine = active && d == ld;
        const unsigned group = __ballot_sync(0xffffffffu, mine);
        const unsigned lo = __reduce_add_sync(0xffffffffu, mine ? (unsigned)(st & 0xFFFFFu) : 0u);
        const unsigned hi = __reduce_add_sync(0xffffffffu, mine ? (unsigned)(st >> 20) : 0u);
        if (lane == leader) {
            atomicAdd(&sh.hstat[ld], ((unsigned long long)hi << 20) + lo);
            atomicAdd(&sh.hcount[ld], (unsigned)__popc(group));
        }
        pending &= ~group;
    }
}

// seq::radix_select, block-parallel. stat(logit, composite) is a token's statistic.
template <typename Stat>
__device__ unsigned long long block_radix_select(const float *row, int64_t V, Stat stat, uint64_t target, Shared &sh) {
    unsigned long long prefix = 0, acc = 0;
    for (int pass = 0; pass < km::RADIX_PASSES; pass++) {
        for (int b = threadIdx.x; b < km::RADIX_BINS; b += VT) {
            sh.hstat[b] = 0;
            sh.hcount[b] = 0;
        }
        __syncthreads();
        for (int64_t base = 0; base < V; base += VT) { // same trip count in every warp
            const int64_t i = base + threadIdx.x;
            bool active = false;
            uint32_t d = 0;
            uint64_t st = 0;
            if (i < V) {
                const float x = row[i];
                const uint64_t c = km::composite(x, (uint32_t)i);
                if (km::radix_match(c, prefix, pass)) {
                    st = stat(x, c);
                    active = st > 0; // a token without mass is never the pivot: leave it out
                    d = km::radix_digit(c, pass);
                }
            }
            hist_add(active, d, st, sh);
        }
        __syncthreads();
        if (threadIdx.x == 0) {
            uint64_t a = acc;
            sh.bin = km::radix_choose(reinterpret_cast<const uint64_t *>(sh.hstat), a, target);
            sh.acc = a;
        }
        __syncthreads();
        const int bin = sh.bin;
        acc = sh.acc;
        const bool single = sh.hcount[bin] == 1;
        __syncthreads(); // everyone has read the histogram before anyone clears or reuses it
        prefix |= (unsigned long long)bin << (56 - 8 * pass);
        if (single && pass + 1 < km::RADIX_PASSES) {
            // One token in the bin: it is the pivot; find its full composite.
            unsigned long long best = 0;
            for (int64_t i = threadIdx.x; i < V; i += VT) {
                const uint64_t c = km::composite(row[i], (uint32_t)i);
                if (km::radix_match(c, prefix, pass + 1)) best = c > best ? c : best;
            }
            return block_reduce_u64<true>(best, sh.red);
        }
        if (single) return prefix;
    }
    return prefix;
}

struct CountStat {
    __device__ uint64_t operator()(float, uint64_t) const { return 1; }
};
struct WeightStat {
    uint64_t cut;
    float max_logit, inv_temp;
    __device__ uint64_t operator()(float x, uint64_t c) const { return c >= cut ? km::token_weight(x, max_logit, inv_temp) : 0; }
};

// seq::shape_row: writes w and returns the total (every thread gets it).
__device__ uint64_t block_shape(const float *row, int64_t V, const spec_sampling_params &p, unsigned long long amax,
                                uint64_t *w, Shared &sh) {
    const float max_logit = row[km::composite_id(amax)];
    const float inv_temp = km::fdiv(1.0f, p.temperature);
    unsigned long long cut_k = 0, cut_p = 0;
    if (p.top_k > 0 && p.top_k < V) cut_k = block_radix_select(row, V, CountStat{}, (uint64_t)p.top_k, sh);
    if (p.top_p < 1.0f) {
        unsigned long long part = 0;
        for (int64_t i = threadIdx.x; i < V; i += VT)
            if (km::composite(row[i], (uint32_t)i) >= cut_k) part += km::token_weight(row[i], max_logit, inv_temp);
        const uint64_t total_k = block_reduce_u64<false>(part, sh.red);
        if (total_k > 0)
            cut_p = block_radix_select(row, V, WeightStat{cut_k, max_logit, inv_temp}, km::top_p_target(p.top_p, total_k), sh);
    }
    const unsigned long long pivot = cut_k > cut_p ? cut_k : cut_p;
    unsigned long long part = 0;
    for (int64_t i = threadIdx.x; i < V; i += VT) {
        const float x = row[i];
        const uint64_t wi = km::composite(x, (uint32_t)i) >= pivot ? km::token_weight(x, max_logit, inv_temp) : 0;
        w[i] = wi;
        part += wi;
    }
    uint64_t total = block_reduce_u64<false>(part, sh.red); // its barriers also publish w
    if (total == 0) { // every logit nan: the point mass at the argmax
        if (threadIdx.x == 0) w[km::composite_id(amax)] = km::WEIGHT_ONE;
        __syncthreads();
        total = km::WEIGHT_ONE;
    }
    return total;
}

// seq::residual: w <- max(w - floor(q * total), 0); returns the new total.
__device__ uint64_t block_residual(uint64_t *w, int64_t V, const float *qrow, uint64_t total, Shared &sh) {
    unsigned long long part = 0;
    for (int64_t i = threadIdx.x; i < V; i += VT) {
        const uint64_t c = km::draft_weight(qrow[i], total);
        const uint64_t wi = w[i] > c ? w[i] - c : 0;
        w[i] = wi;
        part += wi;
    }
    return block_reduce_u64<false>(part, sh.red);
}

// seq::sample_weights: thread t sums lane t; a block scan finds the lane holding u; warp 0
// then splits that lane's tokens into 32 contiguous pieces and finds the token. Returns -1, as
// seq::sample_weights does, when no lane holds u (total is not the sum of w: it cannot happen
// while the two agree); verify() then fails with a status rather than return a bonus token of -1.
__device__ int32_t block_sample(const uint64_t *w, int64_t V, uint64_t total, uint64_t r, Shared &sh) {
    if (threadIdx.x == 0) { // before the scan, whose barriers order these before the writes below
        sh.pick_token = -1;
        sh.pick_lane = -1;
    }
    unsigned long long lane_sum = 0;
    for (int64_t i = threadIdx.x; i < V; i += VT) lane_sum += w[i];
    const unsigned long long incl = block_inclusive_scan_u64(lane_sum, sh.red), excl = incl - lane_sum;
    const uint64_t u = km::mulhi64(r, total);
    if (excl <= u && u < incl) {
        sh.pick_lane = threadIdx.x;
        sh.pick_u = u - excl;
    }
    __syncthreads();
    if (sh.pick_lane < 0) return -1; // the same for every thread: nothing below touches shared memory
    if (threadIdx.x < 32) {
        const int lane = threadIdx.x;
        const int64_t t = sh.pick_lane;
        const unsigned long long u2 = sh.pick_u;
        const int64_t n = (V - t + VT - 1) / VT; // tokens t, t + VT, ...
        const int64_t piece = (n + 31) / 32;
        const int64_t j0 = lane * piece < n ? lane * piece : n, j1 = j0 + piece < n ? j0 + piece : n;
        unsigned long long s = 0;
        for (int64_t j = j0; j < j1; j++) s += w[t + j * VT];
        const unsigned long long inc = warp_inclusive_scan_u64(s), exc = inc - s;
        if (exc <= u2 && u2 < inc) {
            unsigned long long v = u2 - exc;
            for (int64_t j = j0; j < j1; j++) {
                const uint64_t wj = w[t + j * VT];
                if (v < wj) {
                    sh.pick_token = (int32_t)(t + j * VT);
                    break;
                }
                v -= wj;
            }
        }
    }
    __syncthreads();
    return sh.pick_token;
}

__device__ void verify_greedy(const VerifyDev &a, int n, const float *logits, Shared &sh) {
    const int64_t V = a.V;
    int best = 0;
    for (int i = 1; i < n; i++) {
        const int p = sh.par[i];
        bool ok = false;
        if (sh.ok[p]) {
            unsigned long long am = sh.amax[p];
            if (am == 0) {
                am = block_argmax(logits + (size_t)p * V, V, sh);
                if (threadIdx.x == 0) sh.amax[p] = am;
            }
            ok = (uint32_t)sh.tok[i] == km::composite_id(am);
        }
        const int depth = sh.depth[p] + 1;
        if (ok && depth > sh.depth[best]) best = i;
        __syncthreads(); // all have read depth/ok/amax before thread 0 writes
        if (threadIdx.x == 0) {
            sh.ok[i] = ok;
            sh.depth[i] = depth;
        }
        __syncthreads();
    }
    unsigned long long am = sh.amax[best];
    if (am == 0) am = block_argmax(logits + (size_t)best * V, V, sh);
    if (threadIdx.x == 0) {
        spec_verify_result &res = sh.res;
        res.bonus_token = (int32_t)km::composite_id(am);
        res.n_accepted = sh.depth[best];
        res.last_node = best;
        for (int node = best; node > 0; node = sh.par[node]) {
            res.path[sh.depth[node]] = node;
            res.depth_flags[sh.depth[node]] = SPEC_DEPTH_ACCEPTED;
        }
        for (int c = best + 1; c < n; c++)
            if (sh.par[c] == best) {
                res.depth_flags[sh.depth[best] + 1] = SPEC_DEPTH_REJECTED;
                break;
            }
    }
}

__device__ void verify_sample(const VerifyDev &a, int b, int n, const float *logits, const float *q,
                              const spec_sampling_params &p, Shared &sh) {
    const int64_t V = a.V;
    uint64_t *w = a.w + (size_t)b * V;
    int cur = 0, depth = 0;
    for (;;) {
        const float *row = logits + (size_t)cur * V;
        const unsigned long long am = block_argmax(row, V, sh); // its barriers also end every read of w
        uint64_t total = block_shape(row, V, p, am, w, sh);
        int accepted = -1, ordinal = 0;
        for (int c = cur + 1; c < n && accepted < 0; c++) {
            if (sh.par[c] != cur) continue;
            const int32_t x = sh.tok[c];
            const uint64_t r = km::random64(p.seed, a.step, (uint32_t)cur, (uint32_t)ordinal++);
            const uint64_t wx = w[x];
            if (!q) {
                if (km::mulhi64(r, total) < wx) {
                    accepted = c;
                } else {
                    total -= wx;
                    __syncthreads(); // everyone has read w[x]
                    if (threadIdx.x == 0) w[x] = 0;
                    __syncthreads();
                }
            } else {
                const float *qrow = q + (size_t)cur * V;
                if (km::accept_draft(r, wx, total, qrow[x])) {
                    accepted = c;
                } else {
                    __syncthreads(); // everyone has read w[x] before the residual rewrites it
                    total = block_residual(w, V, qrow, total, sh);
                    if (total == 0) total = block_shape(row, V, p, am, w, sh); // q covered p: start over
                }
            }
        }
        if (ordinal > 0 && threadIdx.x == 0)
            sh.res.depth_flags[depth + 1] = accepted >= 0 ? SPEC_DEPTH_ACCEPTED : SPEC_DEPTH_REJECTED;
        if (accepted < 0) {
            const uint64_t r = km::random64(p.seed, a.step, (uint32_t)cur, km::DRAW_BONUS);
            const int32_t token = block_sample(w, V, total, r, sh);
            if (threadIdx.x == 0) {
                sh.res.bonus_token = token;
                sh.res.n_accepted = depth;
                sh.res.last_node = cur;
            }
            return;
        }
        cur = accepted;
        depth++;
        if (threadIdx.x == 0) sh.res.path[depth] = cur;
    }
}

__global__ void __launch_bounds__(VT) verify_kernel(VerifyDev a) {
    __shared__ Shared sh;
    const int b = blockIdx.x;
    const int n = a.n_nodes[b];
    const size_t base = (size_t)b * a.max_tree_nodes;
    for (int i = threadIdx.x; i < SPEC_MAX_TREE_NODES; i += VT) {
        sh.tok[i] = i < n ? a.tokens[base + i] : 0;
        sh.par[i] = i < n ? a.parents[base + i] : -1;
        sh.amax[i] = 0;
        sh.ok[i] = i == 0;
        sh.depth[i] = 0;
        sh.res.path[i] = i == 0 ? 0 : -1;
        sh.res.depth_flags[i] = i == 0 ? SPEC_DEPTH_ACCEPTED : SPEC_DEPTH_NOT_REACHED;
    }
    if (threadIdx.x == 0) {
        sh.res.n_accepted = 0;
        sh.res.last_node = 0;
        sh.res.bonus_token = -1;
        sh.res.reserved = 0;
    }
    __syncthreads();
    const spec_sampling_params p = a.params[b];
    const float *logits = a.logits + base * a.V;
    if (p.temperature == 0.0f)
        verify_greedy(a, n, logits, sh);
    else
        verify_sample(a, b, n, logits, a.q ? a.q + base * a.V : nullptr, p, sh);
    __syncthreads();
    const int32_t *src = reinterpret_cast<const int32_t *>(&sh.res);
    int32_t *dst = reinterpret_cast<int32_t *>(&a.results[b]);
    for (int i = threadIdx.x; i < (int)(sizeof(spec_verify_result) / 4); i += VT) dst[i] = src[i];
}

} // namespace

namespace {
// Where verify's pieces sit in the context's scratch: uploaded arguments first, then device-only.
struct VerifyLayout {
    size_t o_nn, o_tok, o_par, o_params, upload, o_res, o_w, bytes;
    VerifyLayout(size_t B, size_t N, size_t V, bool sampling) {
        Layout lay;
        o_nn = lay.add(B * 4);
        o_tok = lay.add(B * N * 4);
        o_par = lay.add(B * N * 4);
        o_params = lay.add(B * sizeof(spec_sampling_params));
        upload = lay.bytes;
        o_res = lay.add(B * sizeof(spec_verify_result));
        o_w = sampling ? lay.add(B * V * 8) : 0;
        bytes = lay.bytes;
    }
};
} // namespace

size_t verify_scratch_bytes(size_t B, size_t N, size_t V) { return VerifyLayout(B, N, V, true).bytes; }

Status verify(spec_context *ctx, const spec_verify_args &a, Failure &err) {
    KernelState &st = kernel_state(ctx);
    std::lock_guard<std::mutex> lock(st.lock);
    if (select_device(ctx->device, err)) return err.status;
    const size_t B = (size_t)a.batch, N = (size_t)a.max_tree_nodes, V = (size_t)a.n_vocab;
    bool sampling = false;
    for (size_t b = 0; b < B; b++) sampling |= a.params[b].temperature != 0.0f;

    const VerifyLayout lay(B, N, V, sampling);
    const size_t o_nn = lay.o_nn, o_tok = lay.o_tok, o_par = lay.o_par, o_params = lay.o_params, upload = lay.upload;
    const size_t o_res = lay.o_res, o_w = lay.o_w;
    if (grow_scratch(ctx, st, lay.bytes, err)) return err.status;

    Staging up(upload);
    up.put(o_nn, a.n_nodes, B);
    up.put(o_tok, a.tokens, B * N);
    up.put(o_par, a.parents, B * N);
    up.put(o_params, a.params, B);
    if (up.upload(st.scratch, err)) return err.status;

    VerifyDev d{};
    d.n_nodes = (const int32_t *)(st.scratch + o_nn);
    d.tokens = (const int32_t *)(st.scratch + o_tok);
    d.parents = (const int32_t *)(st.scratch + o_par);
    d.params = (const spec_sampling_params *)(st.scratch + o_params);
    d.logits = (const float *)a.logits->ptr;
    d.q = a.draft_probs ? (const float *)a.draft_probs->ptr : nullptr;
    d.w = sampling ? (uint64_t *)(st.scratch + o_w) : nullptr;
    d.results = (spec_verify_result *)(st.scratch + o_res);
    d.max_tree_nodes = a.max_tree_nodes;
    d.V = a.n_vocab;
    d.step = a.step;
    verify_kernel<<<(unsigned)B, VT>>>(d);
    if (check_launch(err, "verify kernel")) return err.status;
    const cudaError_t e = cudaMemcpy(a.results, d.results, B * sizeof(spec_verify_result), cudaMemcpyDeviceToHost);
    if (e != cudaSuccess) return cuda_failure(err, e, "verify kernel / results copy");
    const int64_t bad = seq::first_without_bonus(a.results, a.batch);
    if (bad >= 0) {
        err = failure(SPEC_ERR_INTERNAL,
                      "cuda: verify drew no bonus token for sequence %lld (its sampling weights do not add up to their total)",
                      (long long)bad);
        return err.status;
    }
    return SPEC_OK;
}

} // namespace specula::cuda
