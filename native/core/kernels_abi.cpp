// The ABI entry points of the speculative kernels: tree attention, batched verification, Token
// Recycling and logits summaries. As in specula.cpp, each validates every argument (the host-side tree arrays
// included, so that no kernel ever sees a bad parent or token id) before it dispatches to the
// context's backend.
#include "abi_guard.hpp"

#include <cmath>
#include <cstdio>
#include <cstring>
#include <algorithm>
#include <vector>

using namespace specula;

namespace {

// The default draft tree has the shape the Token Recycling paper uses (80 drafts, depth at most 6, at most
// 8 children per node), built here by best-first expansion: a node's value is the product, along its path,
// of a prior probability that a candidate of that rank is accepted, and the 80 most valuable nodes are kept.
// The prior falls steeply with rank, as acceptance does in practice; the tree is then laid out breadth-first.
constexpr double kRankPrior[8] = {0.55, 0.18, 0.09, 0.06, 0.045, 0.035, 0.03, 0.025};
constexpr int kTemplateMaxDepth = 6;

void build_default_template(int32_t *parents, int32_t *ranks) {
    struct Node { int parent, rank, depth; double value; };
    struct Candidate { double value; int parent, rank; };
    auto later = [](const Candidate &a, const Candidate &b) {
        if (a.value != b.value) return a.value < b.value; // the most valuable first
        if (a.parent != b.parent) return a.parent > b.parent;
        return a.rank > b.rank;
    };
    std::vector<Node> nodes = {{-1, 0, 0, 1.0}};
    std::vector<Candidate> heap = {{kRankPrior[0], 0, 0}};
    while ((int)nodes.size() < SPEC_RECYCLER_DEFAULT_TEMPLATE_NODES && !heap.empty()) {
        std::pop_heap(heap.begin(), heap.end(), later);
        Candidate c = heap.back();
        heap.pop_back();
        int depth = nodes[c.parent].depth + 1;
        nodes.push_back({c.parent, c.rank, depth, c.value});
        int self = (int)nodes.size() - 1;
        // A node's next-ranked sibling and its own first child become candidates.
        if (c.rank + 1 < 8) {
            heap.push_back({nodes[c.parent].value * kRankPrior[c.rank + 1], c.parent, c.rank + 1});
            std::push_heap(heap.begin(), heap.end(), later);
        }
        if (depth < kTemplateMaxDepth) {
            heap.push_back({c.value * kRankPrior[0], self, 0});
            std::push_heap(heap.begin(), heap.end(), later);
        }
    }
    // Breadth-first layout: a queue over the kept nodes, children in rank order.
    std::vector<int> index_of(nodes.size()), placed;
    placed.push_back(0);
    index_of[0] = 0;
    for (size_t head = 0; head < placed.size(); head++) {
        int p = placed[head];
        std::vector<int> kids;
        for (size_t i = 1; i < nodes.size(); i++) if (nodes[i].parent == p) kids.push_back((int)i);
        std::sort(kids.begin(), kids.end(), [&](int a, int b) { return nodes[a].rank < nodes[b].rank; });
        for (int k : kids) {
            index_of[k] = (int)placed.size();
            placed.push_back(k);
        }
    }
    for (size_t i = 0; i < placed.size(); i++) {
        const Node &n = nodes[placed[i]];
        parents[i] = n.parent < 0 ? -1 : index_of[n.parent];
        ranks[i] = n.rank;
    }
}

constexpr int32_t kMaxVocab = 1 << 22;

// A device buffer argument: live, of this context, and at least `need` bytes.
spec_status check_buffer(const spec_buffer *b, const spec_context *ctx, uint64_t need, const char *fn, const char *what,
                         Failure &err) {
    if (!live_buffer(b)) FAIL(err, SPEC_ERR_INVALID_HANDLE, "%s: %s buffer %s", fn, what, handle_problem(b));
    if (b->ctx != ctx) FAIL(err, SPEC_ERR_INVALID_ARGUMENT, "%s: %s buffer belongs to another context", fn, what);
    if (b->size < need)
        FAIL(err, SPEC_ERR_BUFFER_TOO_SMALL, "%s: %s buffer holds %llu bytes, needs %llu", fn, what, (unsigned long long)b->size,
             (unsigned long long)need);
    return SPEC_OK;
}

spec_status check_count(int32_t v, int32_t lo, int32_t hi, const char *fn, const char *what, Failure &err) {
    if (v < lo || v > hi) FAIL(err, SPEC_ERR_INVALID_ARGUMENT, "%s: %s = %d is out of range (%d..%d)", fn, what, v, lo, hi);
    return SPEC_OK;
}

// Node 0 is the root (-1); every other node's parent is an earlier node.
spec_status check_rooted_tree(const int32_t *parents, int32_t n, const char *fn, const char *where, Failure &err) {
    if (parents[0] != -1)
        FAIL(err, SPEC_ERR_INVALID_ARGUMENT, "%s: %sparents[0] = %d must be -1: node 0 is the root", fn, where, parents[0]);
    for (int32_t i = 1; i < n; i++)
        if (parents[i] < 0 || parents[i] >= i)
            FAIL(err, SPEC_ERR_INVALID_ARGUMENT, "%s: %sparents[%d] = %d must be an earlier node (0..%d): not topological or out of range",
                 fn, where, i, parents[i], i - 1);
    return SPEC_OK;
}

spec_status check_tokens(const int32_t *tokens, int32_t n, int32_t n_vocab, const char *fn, const char *where, Failure &err) {
    for (int32_t i = 0; i < n; i++)
        if (tokens[i] < 0 || tokens[i] >= n_vocab)
            FAIL(err, SPEC_ERR_OUT_OF_RANGE, "%s: %stoken[%d] = %d is out of range (vocabulary %d)", fn, where, i, tokens[i], n_vocab);
    return SPEC_OK;
}

// The per-sequence tree arrays verification and recycling updates share.
spec_status check_node_arrays(int32_t batch, int32_t max_tree_nodes, const int32_t *n_nodes, const int32_t *tokens,
                              const int32_t *parents, int32_t n_vocab, const char *fn, Failure &err) {
    if (check_count(batch, 1, SPEC_KERNEL_MAX_BATCH, fn, "batch", err)) return err.status;
    if (check_count(max_tree_nodes, 1, SPEC_MAX_TREE_NODES, fn, "max_tree_nodes", err)) return err.status;
    if (!n_nodes || !tokens) FAIL(err, SPEC_ERR_INVALID_ARGUMENT, "%s: n_nodes or tokens is null", fn);
    for (int32_t b = 0; b < batch; b++) {
        char where[48];
        std::snprintf(where, sizeof where, "sequence %d: ", b);
        if (n_nodes[b] < 1 || n_nodes[b] > max_tree_nodes)
            FAIL(err, SPEC_ERR_INVALID_ARGUMENT, "%s: %sn_nodes = %d is out of range (1..%d = max_tree_nodes)", fn, where, n_nodes[b], max_tree_nodes);
        if (check_tokens(tokens + (size_t)b * max_tree_nodes, n_nodes[b], n_vocab, fn, where, err)) return err.status;
        if (parents && check_rooted_tree(parents + (size_t)b * max_tree_nodes, n_nodes[b], fn, where, err)) return err.status;
    }
    return SPEC_OK;
}

uint64_t dtype_bytes(int32_t dtype) { return dtype == SPEC_DTYPE_F32 ? 4 : 2; }

} // namespace

extern "C" {

/* ---------------------------------------------------------------- tree attention */

namespace {
spec_status tree_attention_checked(spec_context *ctx, const spec_tree_attention_args *args, int32_t sliding_window, const char *fn) {
    return guarded(live_context(ctx) ? ctx : nullptr, [&](Failure &err) -> spec_status {
        if (sliding_window < 0) FAIL(err, SPEC_ERR_INVALID_ARGUMENT, "%s: sliding_window %d is negative (0 = none)", fn, sliding_window);
        if (!live_context(ctx)) FAIL(err, SPEC_ERR_INVALID_HANDLE, "%s: context %s", fn, handle_problem(ctx));
        if (!args) FAIL(err, SPEC_ERR_INVALID_ARGUMENT, "%s: args is null", fn);
        const spec_tree_attention_args &a = *args;
        if (check_count(a.batch, 1, SPEC_KERNEL_MAX_BATCH, fn, "batch", err)) return err.status;
        if (check_count(a.n_head_kv, 1, 256, fn, "n_head_kv", err)) return err.status;
        if (check_count(a.n_head, 1, 256, fn, "n_head", err)) return err.status;
        if (a.n_head % a.n_head_kv)
            FAIL(err, SPEC_ERR_INVALID_ARGUMENT, "%s: n_head %d is not a multiple of n_head_kv %d", fn, a.n_head, a.n_head_kv);
        if (a.head_dim != 64 && a.head_dim != 128)
            FAIL(err, SPEC_ERR_UNSUPPORTED, "%s: head_dim %d is not supported (64 or 128)", fn, a.head_dim);
        if (check_count(a.max_tree_nodes, 1, SPEC_MAX_TREE_NODES, fn, "max_tree_nodes", err)) return err.status;
        if (check_count(a.max_ctx, 1, 1 << 24, fn, "max_ctx", err)) return err.status;
        if (a.kv_dtype != SPEC_DTYPE_F32 && a.kv_dtype != SPEC_DTYPE_F16 && a.kv_dtype != SPEC_DTYPE_BF16)
            FAIL(err, SPEC_ERR_INVALID_ARGUMENT, "%s: kv_dtype %d must be F32, F16 or BF16", fn, a.kv_dtype);
        if (!(a.scale >= 0.0f) || !std::isfinite(a.scale))
            FAIL(err, SPEC_ERR_INVALID_ARGUMENT, "%s: scale %g must be finite and >= 0 (0 = 1/sqrt(head_dim))", fn, (double)a.scale);
        if (!a.prefix_len || !a.tree_len || !a.parents)
            FAIL(err, SPEC_ERR_INVALID_ARGUMENT, "%s: prefix_len, tree_len or parents is null", fn);
        for (int32_t b = 0; b < a.batch; b++) {
            const int32_t T = a.tree_len[b], P = a.prefix_len[b];
            if (T < 1 || T > a.max_tree_nodes)
                FAIL(err, SPEC_ERR_INVALID_ARGUMENT, "%s: sequence %d: tree_len = %d is out of range (1..%d = max_tree_nodes)", fn, b, T, a.max_tree_nodes);
            if (P < 0) FAIL(err, SPEC_ERR_INVALID_ARGUMENT, "%s: sequence %d: prefix_len = %d is negative", fn, b, P);
            if ((int64_t)P + T > a.max_ctx)
                FAIL(err, SPEC_ERR_OUT_OF_RANGE, "%s: sequence %d: prefix %d + tree %d tokens do not fit max_ctx %d", fn, b, P, T, a.max_ctx);
            const int32_t *par = a.parents + (size_t)b * a.max_tree_nodes;
            for (int32_t i = 0; i < T; i++)
                if (par[i] < -1 || par[i] >= i)
                    FAIL(err, SPEC_ERR_INVALID_ARGUMENT,
                         "%s: sequence %d: parents[%d] = %d must be -1 or an earlier node (0..%d): not topological or out of range", fn, b,
                         i, par[i], i - 1);
        }
        const uint64_t rows = (uint64_t)a.batch * a.max_tree_nodes * a.n_head * a.head_dim * 4;
        const uint64_t cache = (uint64_t)a.batch * a.max_ctx * a.n_head_kv * a.head_dim * dtype_bytes(a.kv_dtype);
        if (check_buffer(a.q, ctx, rows, fn, "q", err)) return err.status;
        if (check_buffer(a.k_cache, ctx, cache, fn, "k_cache", err)) return err.status;
        if (check_buffer(a.v_cache, ctx, cache, fn, "v_cache", err)) return err.status;
        if (check_buffer(a.out, ctx, rows, fn, "out", err)) return err.status;
        if (a.out == a.q || a.out == a.k_cache || a.out == a.v_cache)
            FAIL(err, SPEC_ERR_INVALID_ARGUMENT, "%s: out must not be the q, k_cache or v_cache buffer", fn);
        spec_tree_attention_args resolved = a;
        if (resolved.scale == 0.0f) resolved.scale = 1.0f / std::sqrt((float)a.head_dim);
        if (sliding_window > 0) return ctx->backend->tree_attention_windowed(ctx, resolved, sliding_window, err);
        return ctx->backend->tree_attention(ctx, resolved, err);
    });
}
} // namespace

SPEC_API spec_status spec_tree_attention(spec_context *ctx, const spec_tree_attention_args *args) {
    return tree_attention_checked(ctx, args, 0, "spec_tree_attention");
}

SPEC_API spec_status spec_tree_attention_windowed(spec_context *ctx, const spec_tree_attention_args *args, int32_t sliding_window) {
    return tree_attention_checked(ctx, args, sliding_window, "spec_tree_attention_windowed");
}

/* ---------------------------------------------------------------- verification */

SPEC_API spec_status spec_verify(spec_context *ctx, const spec_verify_args *args) {
    return guarded(live_context(ctx) ? ctx : nullptr, [&](Failure &err) -> spec_status {
        const char *fn = "spec_verify";
        if (!live_context(ctx)) FAIL(err, SPEC_ERR_INVALID_HANDLE, "%s: context %s", fn, handle_problem(ctx));
        if (!args) FAIL(err, SPEC_ERR_INVALID_ARGUMENT, "%s: args is null", fn);
        const spec_verify_args &a = *args;
        if (a.reserved != 0) FAIL(err, SPEC_ERR_INVALID_ARGUMENT, "%s: reserved must be 0", fn);
        if (check_count(a.n_vocab, 1, kMaxVocab, fn, "n_vocab", err)) return err.status;
        if (!a.parents || !a.params || !a.results)
            FAIL(err, SPEC_ERR_INVALID_ARGUMENT, "%s: parents, params or results is null", fn);
        if (check_node_arrays(a.batch, a.max_tree_nodes, a.n_nodes, a.tokens, a.parents, a.n_vocab, fn, err)) return err.status;
        for (int32_t b = 0; b < a.batch; b++) {
            const spec_sampling_params &p = a.params[b];
            if (!(p.temperature >= 0.0f) || !std::isfinite(p.temperature))
                FAIL(err, SPEC_ERR_INVALID_ARGUMENT, "%s: sequence %d: temperature %g must be finite and >= 0", fn, b, (double)p.temperature);
            if (p.top_k < 0) FAIL(err, SPEC_ERR_INVALID_ARGUMENT, "%s: sequence %d: top_k %d is negative", fn, b, p.top_k);
            if (!(p.top_p > 0.0f && p.top_p <= 1.0f))
                FAIL(err, SPEC_ERR_INVALID_ARGUMENT, "%s: sequence %d: top_p %g is out of range (0, 1]", fn, b, (double)p.top_p);
            if (p.reserved != 0) FAIL(err, SPEC_ERR_INVALID_ARGUMENT, "%s: sequence %d: params.reserved must be 0", fn, b);
        }
        const uint64_t rows = (uint64_t)a.batch * a.max_tree_nodes * a.n_vocab * 4;
        if (check_buffer(a.logits, ctx, rows, fn, "logits", err)) return err.status;
        if (a.draft_probs && check_buffer(a.draft_probs, ctx, rows, fn, "draft_probs", err)) return err.status;
        return ctx->backend->verify(ctx, a, err);
    });
}

/* ---------------------------------------------------------------- token recycling */

SPEC_API spec_status spec_recycler_create(spec_context *ctx, int32_t n_vocab, int32_t k, spec_recycler **out) {
    return guarded(live_context(ctx) ? ctx : nullptr, [&](Failure &err) -> spec_status {
        const char *fn = "spec_recycler_create";
        if (!live_context(ctx)) FAIL(err, SPEC_ERR_INVALID_HANDLE, "%s: context %s", fn, handle_problem(ctx));
        if (!out) FAIL(err, SPEC_ERR_INVALID_ARGUMENT, "%s: out is null", fn);
        *out = nullptr;
        if (check_count(n_vocab, 1, kMaxVocab, fn, "n_vocab", err)) return err.status;
        if (check_count(k, 1, SPEC_RECYCLER_MAX_K, fn, "k", err)) return err.status;
        if (k > n_vocab) FAIL(err, SPEC_ERR_INVALID_ARGUMENT, "%s: k = %d is more than the vocabulary (%d)", fn, k, n_vocab);
        void *matrix = nullptr;
        spec_status st = ctx->backend->alloc(ctx, (uint64_t)n_vocab * k * 4, &matrix, err); // zeroed: FILL_ZERO
        if (st != SPEC_OK) return st;
        auto *r = new spec_recycler();
        r->ctx = ctx;
        r->n_vocab = n_vocab;
        r->k = k;
        r->matrix = matrix;
        st = ctx->backend->recycler_init(r, err);
        if (st != SPEC_OK) {
            ctx->backend->release(ctx, matrix);
            retire(r);
            return st;
        }
        ctx->live.recyclers++;
        return hand_out(r, out);
    });
}

SPEC_API spec_status spec_recycler_destroy(spec_recycler *rec) {
    return guarded(nullptr, [&](Failure &err) -> spec_status {
        if (!live_recycler(rec)) FAIL(err, SPEC_ERR_INVALID_HANDLE, "spec_recycler_destroy: recycler %s", handle_problem(rec));
        rec->ctx->backend->recycler_release(rec);
        rec->ctx->backend->release(rec->ctx, rec->matrix);
        rec->ctx->live.recyclers--;
        retire(rec);
        return SPEC_OK;
    });
}

SPEC_API spec_status spec_recycler_shape(const spec_recycler *rec, int32_t *n_vocab, int32_t *k) {
    return guarded(nullptr, [&](Failure &err) -> spec_status {
        if (!live_recycler(rec)) FAIL(err, SPEC_ERR_INVALID_HANDLE, "spec_recycler_shape: recycler %s", handle_problem(rec));
        if (!n_vocab || !k) FAIL(err, SPEC_ERR_INVALID_ARGUMENT, "spec_recycler_shape: n_vocab or k is null");
        *n_vocab = rec->n_vocab;
        *k = rec->k;
        return SPEC_OK;
    });
}

SPEC_API spec_status spec_recycler_fill(spec_recycler *rec, int32_t fill) {
    const spec_context *ctx = live_recycler(rec) ? rec->ctx : nullptr;
    return guarded(ctx, [&](Failure &err) -> spec_status {
        if (!ctx) FAIL(err, SPEC_ERR_INVALID_HANDLE, "spec_recycler_fill: recycler %s", handle_problem(rec));
        if (fill < SPEC_RECYCLER_FILL_ZERO || fill > SPEC_RECYCLER_FILL_RANK)
            FAIL(err, SPEC_ERR_INVALID_ARGUMENT, "spec_recycler_fill: unknown fill %d", fill);
        std::vector<int32_t> m((size_t)rec->n_vocab * rec->k);
        for (int64_t t = 0; t < rec->n_vocab; t++)
            for (int32_t j = 0; j < rec->k; j++)
                m[(size_t)t * rec->k + j] = fill == SPEC_RECYCLER_FILL_ZERO ? 0 : fill == SPEC_RECYCLER_FILL_SELF ? (int32_t)t : j;
        return rec->ctx->backend->copy(rec->ctx, rec->matrix, m.data(), m.size() * 4, Backend::Copy::HostToDevice, err);
    });
}

SPEC_API spec_status spec_recycler_save(const spec_recycler *rec, int32_t *dst, uint64_t n_elements) {
    const spec_context *ctx = live_recycler(rec) ? rec->ctx : nullptr;
    return guarded(ctx, [&](Failure &err) -> spec_status {
        if (!ctx) FAIL(err, SPEC_ERR_INVALID_HANDLE, "spec_recycler_save: recycler %s", handle_problem(rec));
        if (!dst) FAIL(err, SPEC_ERR_INVALID_ARGUMENT, "spec_recycler_save: dst is null");
        const uint64_t n = (uint64_t)rec->n_vocab * rec->k;
        if (n_elements != n)
            FAIL(err, n_elements < n ? SPEC_ERR_BUFFER_TOO_SMALL : SPEC_ERR_INVALID_ARGUMENT,
                 "spec_recycler_save: n_elements %llu must be n_vocab * k = %llu", (unsigned long long)n_elements, (unsigned long long)n);
        return rec->ctx->backend->copy(rec->ctx, dst, rec->matrix, n * 4, Backend::Copy::DeviceToHost, err);
    });
}

SPEC_API spec_status spec_recycler_load(spec_recycler *rec, const int32_t *src, uint64_t n_elements) {
    const spec_context *ctx = live_recycler(rec) ? rec->ctx : nullptr;
    return guarded(ctx, [&](Failure &err) -> spec_status {
        if (!ctx) FAIL(err, SPEC_ERR_INVALID_HANDLE, "spec_recycler_load: recycler %s", handle_problem(rec));
        if (!src) FAIL(err, SPEC_ERR_INVALID_ARGUMENT, "spec_recycler_load: src is null");
        const uint64_t n = (uint64_t)rec->n_vocab * rec->k;
        if (n_elements != n)
            FAIL(err, SPEC_ERR_INVALID_ARGUMENT, "spec_recycler_load: n_elements %llu must be n_vocab * k = %llu",
                 (unsigned long long)n_elements, (unsigned long long)n);
        for (uint64_t i = 0; i < n; i++)
            if (src[i] < 0 || src[i] >= rec->n_vocab)
                FAIL(err, SPEC_ERR_OUT_OF_RANGE, "spec_recycler_load: element %llu (row %llu) = %d is out of range (vocabulary %d)",
                     (unsigned long long)i, (unsigned long long)(i / rec->k), src[i], rec->n_vocab);
        return rec->ctx->backend->copy(rec->ctx, rec->matrix, src, n * 4, Backend::Copy::HostToDevice, err);
    });
}

SPEC_API spec_status spec_recycler_update(spec_recycler *rec, const spec_recycler_update_args *args) {
    const spec_context *ctx = live_recycler(rec) ? rec->ctx : nullptr;
    return guarded(ctx, [&](Failure &err) -> spec_status {
        const char *fn = "spec_recycler_update";
        if (!ctx) FAIL(err, SPEC_ERR_INVALID_HANDLE, "%s: recycler %s", fn, handle_problem(rec));
        if (!args) FAIL(err, SPEC_ERR_INVALID_ARGUMENT, "%s: args is null", fn);
        const spec_recycler_update_args &a = *args;
        if (check_node_arrays(a.batch, a.max_tree_nodes, a.n_nodes, a.tokens, nullptr, rec->n_vocab, fn, err)) return err.status;
        if (check_buffer(a.logits, ctx, (uint64_t)a.batch * a.max_tree_nodes * rec->n_vocab * 4, fn, "logits", err)) return err.status;
        spec_status st = rec->ctx->backend->recycler_update(rec, a, err);
        if (st == SPEC_OK) rec->updates++;
        return st;
    });
}

SPEC_API spec_status spec_recycler_draft(spec_recycler *rec, const spec_recycler_draft_args *args) {
    const spec_context *ctx = live_recycler(rec) ? rec->ctx : nullptr;
    return guarded(ctx, [&](Failure &err) -> spec_status {
        const char *fn = "spec_recycler_draft";
        if (!ctx) FAIL(err, SPEC_ERR_INVALID_HANDLE, "%s: recycler %s", fn, handle_problem(rec));
        if (!args) FAIL(err, SPEC_ERR_INVALID_ARGUMENT, "%s: args is null", fn);
        const spec_recycler_draft_args &a = *args;
        if (check_count(a.batch, 1, SPEC_KERNEL_MAX_BATCH, fn, "batch", err)) return err.status;
        if (check_count(a.n_template, 1, SPEC_MAX_TREE_NODES, fn, "n_template", err)) return err.status;
        if (!a.template_parents || !a.template_ranks || !a.root_tokens || !a.tokens)
            FAIL(err, SPEC_ERR_INVALID_ARGUMENT, "%s: template_parents, template_ranks, root_tokens or tokens is null", fn);
        if (check_rooted_tree(a.template_parents, a.n_template, fn, "template ", err)) return err.status;
        for (int32_t i = 1; i < a.n_template; i++)
            if (a.template_ranks[i] < 0 || a.template_ranks[i] >= rec->k)
                FAIL(err, SPEC_ERR_INVALID_ARGUMENT, "%s: template ranks[%d] = %d is out of range (0..%d, k = %d)", fn, i,
                     a.template_ranks[i], rec->k - 1, rec->k);
        if (check_tokens(a.root_tokens, a.batch, rec->n_vocab, fn, "root ", err)) return err.status;
        spec_status st = rec->ctx->backend->recycler_draft(rec, a, err);
        if (st != SPEC_OK) return st;
        if (a.parents)
            for (int32_t b = 0; b < a.batch; b++)
                std::memcpy(a.parents + (size_t)b * a.n_template, a.template_parents, (size_t)a.n_template * 4);
        return SPEC_OK;
    });
}

SPEC_API spec_status spec_recycler_default_template(int32_t *parents, int32_t *ranks, int32_t cap, int32_t *n_out) {
    return guarded(nullptr, [&](Failure &err) -> spec_status {
        const int32_t n = SPEC_RECYCLER_DEFAULT_TEMPLATE_NODES;
        if (n_out) *n_out = n;
        if (!parents || !ranks) FAIL(err, SPEC_ERR_INVALID_ARGUMENT, "spec_recycler_default_template: parents or ranks is null");
        if (cap < n)
            FAIL(err, SPEC_ERR_BUFFER_TOO_SMALL, "spec_recycler_default_template: capacity %d, the template has %d nodes", cap, n);
        build_default_template(parents, ranks);
        return SPEC_OK;
    });
}

/* ---------------------------------------------------------------- logits summaries */

SPEC_API spec_status spec_logits_summarize(spec_context *ctx, const spec_buffer *logits, uint64_t offset_bytes, int32_t rows,
                                           int64_t row_stride, int32_t limit, int32_t k, spec_logits_summary *out) {
    return guarded(live_context(ctx) ? ctx : nullptr, [&](Failure &err) -> spec_status {
        const char *fn = "spec_logits_summarize";
        if (!live_context(ctx)) FAIL(err, SPEC_ERR_INVALID_HANDLE, "%s: context %s", fn, handle_problem(ctx));
        if (!out) FAIL(err, SPEC_ERR_INVALID_ARGUMENT, "%s: out is null", fn);
        if (check_count(rows, 1, SPEC_KERNEL_MAX_BATCH * SPEC_MAX_TREE_NODES, fn, "rows", err)) return err.status;
        if (check_count(k, 1, SPEC_SUMMARY_MAX_K, fn, "k", err)) return err.status;
        if (row_stride < 1)
            FAIL(err, SPEC_ERR_INVALID_ARGUMENT, "%s: row_stride = %lld must be at least 1 float", fn, (long long)row_stride);
        if (limit < 1 || limit > row_stride)
            FAIL(err, SPEC_ERR_INVALID_ARGUMENT, "%s: limit = %d is out of range (1..%lld = row_stride)", fn, limit, (long long)row_stride);
        if (check_buffer(logits, ctx, 0, fn, "logits", err)) return err.status;
        if (offset_bytes % 4)
            FAIL(err, SPEC_ERR_INVALID_ARGUMENT, "%s: offset_bytes = %llu is not a multiple of 4 (a float)", fn,
                 (unsigned long long)offset_bytes);
        // The last row ends at offset + ((rows - 1) * row_stride + limit) floats; 128-bit, so no product wraps.
        const unsigned __int128 end = (unsigned __int128)offset_bytes +
                                      ((unsigned __int128)(rows - 1) * (uint64_t)row_stride + (uint64_t)limit) * 4u;
        if (end > logits->size)
            FAIL(err, SPEC_ERR_OUT_OF_RANGE,
                 "%s: %d rows of stride %lld floats (limit %d) from byte %llu need %llu bytes, the logits buffer holds %llu", fn, rows,
                 (long long)row_stride, limit, (unsigned long long)offset_bytes,
                 end > (unsigned __int128)UINT64_MAX ? (unsigned long long)UINT64_MAX : (unsigned long long)end,
                 (unsigned long long)logits->size);
        const float *first = (const float *)((const char *)logits->ptr + offset_bytes);
        return ctx->backend->logits_summarize(ctx, first, rows, row_stride, limit, k, out, err);
    });
}

} // extern "C"
