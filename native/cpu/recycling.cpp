// Token Recycling, cpu twin: the adjacency-matrix update (top-k of every node's logits row into
// the row of the node's token) and the BFS expansion of a tree template over the matrix.
#include "spec_kernels.hpp"

#include "../core/kernel_math.hpp"

namespace specula::cpu {

Status recycler_update(spec_recycler *rec, const spec_recycler_update_args &a, Failure &) {
    const int64_t V = rec->n_vocab;
    const int k = rec->k;
    const float *logits = (const float *)a.logits->ptr;
    int32_t *matrix = (int32_t *)rec->matrix;
    // Collect every node's top-k first, then write: the update is one step, and a row written
    // by several nodes keeps the last node's candidates (batch order, then node index).
    std::vector<int64_t> rows; // flat node index b * max_tree_nodes + i, in write order
    for (int32_t b = 0; b < a.batch; b++)
        for (int32_t i = 0; i < a.n_nodes[b]; i++) rows.push_back((int64_t)b * a.max_tree_nodes + i);
    std::vector<int32_t> top(rows.size() * k);
    parallel_for(rec->ctx, (int64_t)rows.size(), [&](int64_t n) {
        const float *row = logits + (size_t)rows[n] * V;
        km::TopList<SPEC_RECYCLER_MAX_K> list;
        list.clear();
        for (int64_t i = 0; i < V; i++) list.push(km::composite(row[i], (uint32_t)i));
        for (int j = 0; j < k; j++) top[(size_t)n * k + j] = (int32_t)km::composite_id(list.c[j]);
    }, (int64_t)rows.size() * V);
    for (size_t n = 0; n < rows.size(); n++) {
        int32_t token = a.tokens[rows[n]];
        std::copy_n(&top[n * k], k, matrix + (size_t)token * k);
    }
    return SPEC_OK;
}

Status recycler_draft(spec_recycler *rec, const spec_recycler_draft_args &a, Failure &) {
    const int32_t *matrix = (const int32_t *)rec->matrix;
    for (int32_t b = 0; b < a.batch; b++) {
        int32_t *tokens = a.tokens + (size_t)b * a.n_template;
        tokens[0] = a.root_tokens[b];
        // Parents come first in a topological template, so one pass in index order is the BFS.
        for (int32_t i = 1; i < a.n_template; i++)
            tokens[i] = matrix[(size_t)tokens[a.template_parents[i]] * rec->k + a.template_ranks[i]];
    }
    return SPEC_OK;
}

} // namespace specula::cpu
