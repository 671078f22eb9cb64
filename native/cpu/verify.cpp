// Batched tree verification, cpu twin. One sequence at a time, the steps of specula.h's
// contract written out plainly; the cuda kernel (verify.cu) runs the same steps block-parallel
// and, thanks to integer probabilities and the shared Philox stream, returns identical results.
#include "spec_kernels.hpp"

#include "../core/sampling.hpp"

namespace specula::cpu {
namespace {

struct Tree {
    int32_t n;
    const int32_t *tokens;
    const int32_t *parents;
};

void init_result(spec_verify_result &r) {
    r.n_accepted = 0;
    r.last_node = 0;
    r.bonus_token = -1;
    r.reserved = 0;
    for (int i = 0; i < SPEC_MAX_TREE_NODES; i++) {
        r.path[i] = -1;
        r.depth_flags[i] = SPEC_DEPTH_NOT_REACHED;
    }
    r.path[0] = 0;
    r.depth_flags[0] = SPEC_DEPTH_ACCEPTED;
}

bool has_children(const Tree &t, int node) {
    for (int i = node + 1; i < t.n; i++)
        if (t.parents[i] == node) return true;
    return false;
}

// Greedy: the deepest node whose whole path matches the argmax chain (ties: lowest index).
void verify_greedy(const Tree &t, const float *logits, int64_t V, spec_verify_result &res) {
    std::vector<uint64_t> amax(t.n, 0); // composite of each node's argmax, computed when needed
    std::vector<int32_t> depth(t.n, 0);
    std::vector<char> ok(t.n, 0);
    auto argmax = [&](int node) {
        if (!amax[node]) amax[node] = seq::row_argmax(logits + (size_t)node * V, V);
        return km::composite_id(amax[node]);
    };
    ok[0] = 1;
    int best = 0;
    for (int i = 1; i < t.n; i++) {
        int p = t.parents[i];
        depth[i] = depth[p] + 1;
        ok[i] = ok[p] && (uint32_t)t.tokens[i] == argmax(p);
        if (ok[i] && depth[i] > depth[best]) best = i;
    }
    res.bonus_token = (int32_t)argmax(best);
    res.n_accepted = depth[best];
    res.last_node = best;
    for (int node = best; node > 0; node = t.parents[node]) {
        res.path[depth[node]] = node;
        res.depth_flags[depth[node]] = SPEC_DEPTH_ACCEPTED;
    }
    if (has_children(t, best)) res.depth_flags[depth[best] + 1] = SPEC_DEPTH_REJECTED;
}

// Sampling: recursive rejection sampling across siblings, walking down from the root.
void verify_sample(const Tree &t, const float *logits, const float *q, int64_t V, const spec_sampling_params &p,
                   uint64_t step, std::vector<uint64_t> &w, spec_verify_result &res) {
    int cur = 0, depth = 0;
    for (;;) {
        const float *row = logits + (size_t)cur * V;
        seq::Shaped s = seq::shape_row(row, V, p, w.data());
        uint64_t total = s.total;
        int accepted = -1, ordinal = 0;
        for (int c = cur + 1; c < t.n && accepted < 0; c++) {
            if (t.parents[c] != cur) continue;
            const int32_t x = t.tokens[c];
            const uint64_t r = km::random64(p.seed, step, (uint32_t)cur, (uint32_t)ordinal++);
            if (!q) {
                // Deterministic drafter: accept with probability p(x); else zero p(x).
                if (km::mulhi64(r, total) < w[x]) {
                    accepted = c;
                } else {
                    total -= w[x];
                    w[x] = 0;
                }
            } else {
                const float *qrow = q + (size_t)cur * V;
                if (km::accept_draft(r, w[x], total, qrow[x])) {
                    accepted = c;
                } else {
                    total = seq::residual(w.data(), V, qrow, total);
                    if (total == 0) total = seq::shape_row(row, V, p, w.data()).total; // q covered p: start over
                }
            }
        }
        if (ordinal > 0) res.depth_flags[depth + 1] = accepted >= 0 ? SPEC_DEPTH_ACCEPTED : SPEC_DEPTH_REJECTED;
        if (accepted < 0) {
            const uint64_t r = km::random64(p.seed, step, (uint32_t)cur, km::DRAW_BONUS);
            res.bonus_token = seq::sample_weights(w.data(), V, total, r);
            res.n_accepted = depth;
            res.last_node = cur;
            return;
        }
        cur = accepted;
        res.path[++depth] = cur;
    }
}

} // namespace

Status verify(spec_context *ctx, const spec_verify_args &a, Failure &err) {
    const int64_t V = a.n_vocab;
    const float *logits = (const float *)a.logits->ptr;
    const float *q = a.draft_probs ? (const float *)a.draft_probs->ptr : nullptr;
    int64_t work = 0; // at most every node's row is read (greedy reads fewer)
    for (int32_t b = 0; b < a.batch; b++) work += (int64_t)a.n_nodes[b] * V;
    parallel_for(ctx, a.batch, [&](int64_t b) {
        const size_t base = (size_t)b * a.max_tree_nodes;
        Tree t{a.n_nodes[b], a.tokens + base, a.parents + base};
        spec_verify_result &res = a.results[b];
        init_result(res);
        const spec_sampling_params &p = a.params[b];
        if (p.temperature == 0.0f) {
            verify_greedy(t, logits + base * V, V, res);
        } else {
            std::vector<uint64_t> w((size_t)V);
            verify_sample(t, logits + base * V, q ? q + base * V : nullptr, V, p, a.step, w, res);
        }
    }, work);
    const int64_t bad = seq::first_without_bonus(a.results, a.batch);
    if (bad >= 0) {
        err = failure(SPEC_ERR_INTERNAL,
                      "cpu: verify drew no bonus token for sequence %lld (its sampling weights do not add up to their total)",
                      (long long)bad);
        return err.status;
    }
    return SPEC_OK;
}

} // namespace specula::cpu
