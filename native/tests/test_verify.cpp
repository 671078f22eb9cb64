/* Batched tree verification on the cpu backend (the twin the cuda kernel is held to):
 *   - greedy against hand-worked trees and a brute-force reference on random trees;
 *   - sampling against the target distribution with chi-square tests: the first emitted token
 *     over many seeds, and the next token after an accepted node, for a deterministic drafter
 *     and for random draft distributions (drafts drawn from q as the contract requires);
 *   - every kind of bad input: status and message. */
#include <stdint.h>
#include <stdlib.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

#include "check.h"
#include "test_random.hpp"


struct Batch {
    int B, N, V;
    std::vector<int32_t> n_nodes, tokens, parents;
    std::vector<float> logits, q;
    std::vector<spec_sampling_params> params;
    Batch(int b, int n, int v)
        : B(b), N(n), V(v), n_nodes(b, n), tokens((size_t)b * n, 0), parents((size_t)b * n, -1), logits((size_t)b * n * v, 0.0f),
          params(b, spec_sampling_params{0, 0.0f, 1.0f, 0, 0}) {}
    float *row(int b, int node) { return &logits[((size_t)b * N + node) * V]; }
};

/* Runs spec_verify on a context; q (draft probs) optional. */
static spec_status run_verify(spec_context *ctx, Batch &bt, bool with_q, uint64_t step, std::vector<spec_verify_result> &res) {
    spec_buffer *lg = NULL, *qb = NULL;
    size_t bytes = bt.logits.size() * 4;
    if (spec_buffer_alloc(ctx, bytes, &lg) != SPEC_OK) return -1;
    spec_copy_h2d(lg, 0, bt.logits.data(), bytes);
    if (with_q) {
        spec_buffer_alloc(ctx, bytes, &qb);
        spec_copy_h2d(qb, 0, bt.q.data(), bytes);
    }
    res.assign(bt.B, spec_verify_result{});
    spec_verify_args a = {};
    a.batch = bt.B;
    a.max_tree_nodes = bt.N;
    a.n_vocab = bt.V;
    a.n_nodes = bt.n_nodes.data();
    a.tokens = bt.tokens.data();
    a.parents = bt.parents.data();
    a.params = bt.params.data();
    a.logits = lg;
    a.draft_probs = qb;
    a.step = step;
    a.results = res.data();
    spec_status st = spec_verify(ctx, &a);
    spec_buffer_free(lg);
    if (qb) spec_buffer_free(qb);
    return st;
}

/* ---------------------------------------------------------------- greedy */

static void test_greedy_hand_worked(spec_context *ctx) {
    /* node:    0   1   2   3   4   5   6
     * token:   5   2   3   1   4   0   4
     * parent: -1   0   0   1   1   2   3
     * Argmax at node 0 is token 3 (tokens 3 and 4 tie at 5.0: the lower id wins), so node 2 is
     * accepted and node 1 is not; argmax at node 2 is 0: node 5 accepted; node 5 is a leaf, so
     * the bonus is the argmax at node 5: token 1. Path [0, 2, 5]. */
    Batch bt(1, 7, 6);
    const int32_t tok[] = {5, 2, 3, 1, 4, 0, 4}, par[] = {-1, 0, 0, 1, 1, 2, 3};
    std::copy(tok, tok + 7, bt.tokens.begin());
    std::copy(par, par + 7, bt.parents.begin());
    for (int n = 0; n < 7; n++)
        for (int v = 0; v < 6; v++) bt.row(0, n)[v] = (float)((n * 7 + v * 3) % 5) - 2.0f; /* filler */
    bt.row(0, 0)[3] = 5.0f;
    bt.row(0, 0)[4] = 5.0f;
    bt.row(0, 1)[1] = 9.0f; /* would accept node 3, but node 1 is rejected */
    bt.row(0, 2)[0] = 4.0f;
    bt.row(0, 5)[1] = 3.0f;
    std::vector<spec_verify_result> res;
    CHECK_OK(run_verify(ctx, bt, false, 0, res));
    const spec_verify_result &r = res[0];
    CHECK(r.n_accepted == 2 && r.last_node == 5 && r.bonus_token == 1);
    CHECK(r.path[0] == 0 && r.path[1] == 2 && r.path[2] == 5 && r.path[3] == -1);
    CHECK(r.depth_flags[0] == SPEC_DEPTH_ACCEPTED && r.depth_flags[1] == SPEC_DEPTH_ACCEPTED &&
          r.depth_flags[2] == SPEC_DEPTH_ACCEPTED && r.depth_flags[3] == SPEC_DEPTH_NOT_REACHED);

    /* Rejected at depth 1: no child carries the argmax. */
    bt.row(0, 0)[2] = 8.0f; /* argmax 2 = node 1's token: accepted; then at node 1 argmax is 1 = node 3 */
    bt.row(0, 3)[5] = 6.0f; /* node 3's children: node 6 (token 4) rejected, bonus 5 */
    CHECK_OK(run_verify(ctx, bt, false, 0, res));
    CHECK(res[0].n_accepted == 2 && res[0].path[1] == 1 && res[0].path[2] == 3 && res[0].bonus_token == 5);
    CHECK(res[0].depth_flags[3] == SPEC_DEPTH_REJECTED);

    /* The longest path wins between siblings with the same token; a single root node works. */
    Batch dup(2, 4, 4);
    const int32_t dt[] = {0, 3, 3, 2}, dp[] = {-1, 0, 0, 2};
    std::copy(dt, dt + 4, dup.tokens.begin());
    std::copy(dp, dp + 4, dup.parents.begin());
    dup.row(0, 0)[3] = 1.0f;
    dup.row(0, 2)[2] = 1.0f;
    dup.n_nodes[1] = 1;
    dup.tokens[4] = 1;
    dup.row(1, 0)[2] = -1.0f; /* argmax 0 */
    CHECK_OK(run_verify(ctx, dup, false, 0, res));
    CHECK(res[0].n_accepted == 2 && res[0].path[1] == 2 && res[0].path[2] == 3 && res[0].bonus_token == 0);
    CHECK(res[1].n_accepted == 0 && res[1].last_node == 0 && res[1].bonus_token == 0 && res[1].path[1] == -1);
    CHECK(res[1].depth_flags[1] == SPEC_DEPTH_NOT_REACHED);
}

/* Brute force: a node is accepted when every node on its path has the token its parent's
 * argmax picks; the deepest such node wins, ties to the lower index. */
static void test_greedy_random(spec_context *ctx) {
    uint64_t s = 42;
    Batch bt(24, 40, 50);
    for (int b = 0; b < bt.B; b++) {
        bt.n_nodes[b] = 1 + (int)(splitmix64(s) % bt.N);
        for (int i = 0; i < bt.N; i++) {
            bt.parents[(size_t)b * bt.N + i] = i == 0 ? -1 : (int)(splitmix64(s) % (uint64_t)i);
            for (int v = 0; v < bt.V; v++) bt.row(b, i)[v] = (float)(splitmix64(s) % 8); /* many ties */
        }
        for (int i = 0; i < bt.N; i++) {
            /* Half the tokens follow the parent's argmax so that paths grow deep. */
            int p = bt.parents[(size_t)b * bt.N + i];
            int am = 0;
            if (p >= 0)
                for (int v = 1; v < bt.V; v++)
                    if (bt.row(b, p)[v] > bt.row(b, p)[am]) am = v;
            bt.tokens[(size_t)b * bt.N + i] = (p >= 0 && splitmix64(s) % 3) ? am : (int)(splitmix64(s) % bt.V);
        }
    }
    std::vector<spec_verify_result> res;
    CHECK_OK(run_verify(ctx, bt, false, 0, res));
    int bad = 0;
    for (int b = 0; b < bt.B; b++) {
        const int32_t *par = &bt.parents[(size_t)b * bt.N], *tok = &bt.tokens[(size_t)b * bt.N];
        auto argmax = [&](int node) {
            int am = 0;
            for (int v = 1; v < bt.V; v++)
                if (bt.row(b, node)[v] > bt.row(b, node)[am]) am = v;
            return am;
        };
        int best = 0, best_depth = 0;
        for (int i = 1; i < bt.n_nodes[b]; i++) {
            bool ok = true;
            int depth = 0;
            for (int n = i; n > 0; n = par[n]) {
                depth++;
                if (tok[n] != argmax(par[n])) ok = false;
            }
            if (ok && depth > best_depth) {
                best = i;
                best_depth = depth;
            }
        }
        const spec_verify_result &r = res[b];
        bool good = r.n_accepted == best_depth && r.last_node == best && r.bonus_token == argmax(best);
        for (int n = best, d = best_depth; n > 0; n = par[n], d--) good = good && r.path[d] == n;
        bool has_child = false;
        for (int i = best + 1; i < bt.n_nodes[b]; i++) has_child |= par[i] == best;
        good = good && r.depth_flags[best_depth + 1] == (has_child ? SPEC_DEPTH_REJECTED : SPEC_DEPTH_NOT_REACHED);
        if (!good) bad++;
    }
    CHECK(bad == 0);
}

/* ---------------------------------------------------------------- sampling */

/* The shaped target in double precision: softmax(logits / t), top-k, top-p, renormalized. */
static std::vector<double> target(const float *logits, int V, float t, int top_k, float top_p, double *margin) {
    std::vector<int> order(V);
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return logits[a] > logits[b]; });
    std::vector<double> p(V, 0.0);
    double z = 0;
    for (int i = 0; i < V; i++) z += std::exp((logits[i] - logits[order[0]]) / t);
    int keep = top_k > 0 && top_k < V ? top_k : V;
    double zk = 0;
    for (int j = 0; j < keep; j++) zk += std::exp((logits[order[j]] - logits[order[0]]) / t) / z;
    *margin = 1.0;
    if (top_p < 1.0f) {
        double run = 0;
        for (int j = 0; j < keep; j++) {
            run += std::exp((logits[order[j]] - logits[order[0]]) / t) / z / zk;
            *margin = std::min(*margin, std::fabs(run - top_p));
            if (run >= top_p) {
                keep = j + 1;
                break;
            }
        }
    }
    double zz = 0;
    for (int j = 0; j < keep; j++) zz += std::exp((logits[order[j]] - logits[order[0]]) / t);
    for (int j = 0; j < keep; j++) p[order[j]] = std::exp((logits[order[j]] - logits[order[0]]) / t) / zz;
    return p;
}

/* Pearson's chi-square of counts against probabilities; tokens with p = 0 must not occur. */
static double chi_square(const std::vector<long> &count, const std::vector<double> &p, long n, int *df, long *impossible) {
    double chi = 0;
    *df = -1;
    *impossible = 0;
    for (size_t i = 0; i < p.size(); i++) {
        if (p[i] == 0) {
            *impossible += count[i];
            continue;
        }
        double e = p[i] * n;
        chi += (count[i] - e) * (count[i] - e) / e;
        (*df)++;
    }
    return chi;
}

/* 0.9999 quantiles of chi-square for df = 1..8: a correct sampler fails one run in 10^4 (and
 * the seeds are fixed, so the test is deterministic). */
static const double kChiCritical[] = {0, 15.14, 18.42, 21.11, 23.51, 25.74, 27.86, 29.88, 31.83};

static void test_sampling_distribution(spec_context *ctx, bool random_q) {
    /* Tree: root 0 with children 1, 2, 3; node 1 has children 4, 5. */
    const int V = 8, N = 6, B = 1000, ROUNDS = 30;
    const int32_t par[N] = {-1, 0, 0, 0, 1, 1};
    const float root_logits[V] = {2.0f, 1.5f, 0.3f, -0.5f, 1.0f, -2.0f, 0.8f, 0.0f};
    const float node1_logits[V] = {-1.0f, 0.2f, 1.1f, 0.4f, -0.3f, 0.9f, 0.0f, 0.6f};
    const float temp = 0.8f, top_p = 0.9f;
    const int top_k = 6;
    double m0, m1;
    std::vector<double> p0 = target(root_logits, V, temp, top_k, top_p, &m0), p1 = target(node1_logits, V, temp, top_k, top_p, &m1);
    CHECK(m0 > 1e-3 && m1 > 1e-3); /* no top-p boundary within rounding */
    /* Draft distributions: random ones for the random-q drafter (as far from p as it gets). */
    uint64_t s = random_q ? 1234 : 99;
    std::vector<float> q0(V), q1(V);
    double z0 = 0, z1 = 0;
    for (int v = 0; v < V; v++) {
        q0[v] = (float)(0.05 + unit(s));
        q1[v] = (float)(0.05 + unit(s));
        z0 += q0[v];
        z1 += q1[v];
    }
    for (int v = 0; v < V; v++) {
        q0[v] /= (float)z0;
        q1[v] /= (float)z1;
    }
    auto draw = [&](const std::vector<float> &q) {
        double u = unit(s), run = 0;
        for (int v = 0; v < V; v++) {
            run += q[v];
            if (u < run) return v;
        }
        return V - 1;
    };
    std::vector<long> first(V, 0), second(V, 0);
    long n_first = 0, n_second = 0;
    for (int round = 0; round < ROUNDS; round++) {
        Batch bt(B, N, V);
        bt.q.assign((size_t)B * N * V, 0.0f);
        for (int b = 0; b < B; b++) {
            std::copy(par, par + N, &bt.parents[(size_t)b * N]);
            std::copy(root_logits, root_logits + V, bt.row(b, 0));
            std::copy(node1_logits, node1_logits + V, bt.row(b, 1));
            for (int n = 2; n < N; n++)
                for (int v = 0; v < V; v++) bt.row(b, n)[v] = (float)v * 0.1f;
            int32_t *tok = &bt.tokens[(size_t)b * N];
            tok[0] = 7;
            if (random_q) {
                /* Children are i.i.d. draws from their parent's q, as the contract requires. */
                std::copy(q0.begin(), q0.end(), &bt.q[((size_t)b * N + 0) * V]);
                std::copy(q1.begin(), q1.end(), &bt.q[((size_t)b * N + 1) * V]);
                for (int n = 2; n < N; n++) bt.q[((size_t)b * N + n) * V] = 1.0f;
                tok[1] = draw(q0), tok[2] = draw(q0), tok[3] = draw(q0);
                tok[4] = draw(q1), tok[5] = draw(q1);
            } else {
                /* A deterministic drafter, duplicates included. */
                const int32_t fixed[N] = {7, 1, 0, 1, 2, 5};
                std::copy(fixed, fixed + N, tok);
            }
            bt.params[b] = spec_sampling_params{(uint64_t)round * B + b, temp, top_p, top_k, 0};
        }
        std::vector<spec_verify_result> res;
        CHECK_OK(run_verify(ctx, bt, random_q, 77, res));
        for (int b = 0; b < B; b++) {
            const spec_verify_result &r = res[b];
            const int32_t *tok = &bt.tokens[(size_t)b * N];
            int t0 = r.n_accepted >= 1 ? tok[r.path[1]] : r.bonus_token;
            first[t0]++;
            n_first++;
            if (r.n_accepted >= 1 && r.path[1] == 1) { /* after node 1: the target is p1 */
                int t1 = r.n_accepted >= 2 ? tok[r.path[2]] : r.bonus_token;
                second[t1]++;
                n_second++;
            }
        }
    }
    int df;
    long impossible;
    double chi = chi_square(first, p0, n_first, &df, &impossible);
    printf("%s drafter: first token chi2 = %.2f (df %d, %ld samples)", random_q ? "random-q" : "deterministic", chi, df, n_first);
    CHECK(impossible == 0 && df >= 1 && chi < kChiCritical[df]);
    chi = chi_square(second, p1, n_second, &df, &impossible);
    printf(", after node 1: chi2 = %.2f (df %d, %ld samples)\n", chi, df, n_second);
    CHECK(impossible == 0 && df >= 1 && chi < kChiCritical[df]);
    CHECK(n_second > 3000);
}

static void test_sampling_determinism(spec_context *ctx) {
    /* Same seed and step: the same result; another step: a different stream. */
    Batch bt(64, 5, 30);
    uint64_t s = 5;
    for (int b = 0; b < bt.B; b++) {
        const int32_t par[] = {-1, 0, 0, 1, 1};
        std::copy(par, par + 5, &bt.parents[(size_t)b * 5]);
        for (int n = 0; n < 5; n++) {
            bt.tokens[(size_t)b * 5 + n] = (int)(splitmix64(s) % 30);
            for (int v = 0; v < 30; v++) bt.row(b, n)[v] = (float)unit(s) * 3.0f;
        }
        bt.params[b] = spec_sampling_params{(uint64_t)b, 1.0f, 1.0f, 0, 0};
    }
    std::vector<spec_verify_result> a, b2, c;
    CHECK_OK(run_verify(ctx, bt, false, 1, a));
    CHECK_OK(run_verify(ctx, bt, false, 1, b2));
    CHECK_OK(run_verify(ctx, bt, false, 2, c));
    CHECK(memcmp(a.data(), b2.data(), a.size() * sizeof(spec_verify_result)) == 0);
    CHECK(memcmp(a.data(), c.data(), a.size() * sizeof(spec_verify_result)) != 0);
    /* top_k = 1 at any temperature is greedy. */
    std::vector<spec_verify_result> g;
    CHECK_OK(run_verify(ctx, bt, false, 1, g));
    for (auto &p : bt.params) p = spec_sampling_params{p.seed, 0.0f, 1.0f, 0, 0};
    CHECK_OK(run_verify(ctx, bt, false, 1, g));
    for (auto &p : bt.params) p = spec_sampling_params{p.seed, 1.3f, 1.0f, 1, 0};
    CHECK_OK(run_verify(ctx, bt, false, 9, c));
    bool same = true;
    for (int b = 0; b < bt.B; b++) same = same && g[b].n_accepted == c[b].n_accepted && g[b].bonus_token == c[b].bonus_token;
    CHECK(same);
}

/* ---------------------------------------------------------------- bad input */

static void test_bad_input(spec_context *ctx) {
    Batch bt(2, 4, 10);
    const int32_t par[] = {-1, 0, 1, 1};
    for (int b = 0; b < 2; b++) std::copy(par, par + 4, &bt.parents[(size_t)b * 4]);
    spec_buffer *lg = NULL, *small = NULL;
    CHECK_OK(spec_buffer_alloc(ctx, bt.logits.size() * 4, &lg));
    CHECK_OK(spec_buffer_alloc(ctx, 64, &small));
    std::vector<spec_verify_result> res(2);
    spec_verify_args a = {};
    a.batch = 2;
    a.max_tree_nodes = 4;
    a.n_vocab = 10;
    a.n_nodes = bt.n_nodes.data();
    a.tokens = bt.tokens.data();
    a.parents = bt.parents.data();
    a.params = bt.params.data();
    a.logits = lg;
    a.results = res.data();
    CHECK_OK(spec_verify(ctx, &a));

    CHECK_FAILS(ctx, spec_verify(ctx, NULL), SPEC_ERR_INVALID_ARGUMENT, "args is null");
    CHECK_FAILS(NULL, spec_verify(NULL, &a), SPEC_ERR_INVALID_HANDLE, "context is null");
    spec_verify_args x = a;
    x.batch = 0;
    CHECK_FAILS(ctx, spec_verify(ctx, &x), SPEC_ERR_INVALID_ARGUMENT, "batch = 0");
    x = a;
    x.max_tree_nodes = 129;
    CHECK_FAILS(ctx, spec_verify(ctx, &x), SPEC_ERR_INVALID_ARGUMENT, "max_tree_nodes = 129");
    x = a;
    x.results = NULL;
    CHECK_FAILS(ctx, spec_verify(ctx, &x), SPEC_ERR_INVALID_ARGUMENT, "results is null");
    x = a;
    x.reserved = 1;
    CHECK_FAILS(ctx, spec_verify(ctx, &x), SPEC_ERR_INVALID_ARGUMENT, "reserved");

    bt.parents[4 + 2] = 3; /* sequence 1, node 2: parent 3 is not earlier */
    CHECK_FAILS(ctx, spec_verify(ctx, &a), SPEC_ERR_INVALID_ARGUMENT, "sequence 1: parents[2] = 3 must be an earlier node");
    bt.parents[4 + 2] = 7;
    CHECK_FAILS(ctx, spec_verify(ctx, &a), SPEC_ERR_INVALID_ARGUMENT, "parents[2] = 7");
    bt.parents[4 + 2] = -1; /* a second root */
    CHECK_FAILS(ctx, spec_verify(ctx, &a), SPEC_ERR_INVALID_ARGUMENT, "parents[2] = -1");
    bt.parents[4 + 2] = 1;
    bt.parents[0] = 0;
    CHECK_FAILS(ctx, spec_verify(ctx, &a), SPEC_ERR_INVALID_ARGUMENT, "parents[0] = 0 must be -1");
    bt.parents[0] = -1;
    bt.tokens[3] = 10;
    CHECK_FAILS(ctx, spec_verify(ctx, &a), SPEC_ERR_OUT_OF_RANGE, "sequence 0: token[3] = 10 is out of range (vocabulary 10)");
    bt.tokens[3] = -2;
    CHECK_FAILS(ctx, spec_verify(ctx, &a), SPEC_ERR_OUT_OF_RANGE, "token[3] = -2");
    bt.tokens[3] = 0;
    bt.n_nodes[1] = 5;
    CHECK_FAILS(ctx, spec_verify(ctx, &a), SPEC_ERR_INVALID_ARGUMENT, "n_nodes = 5 is out of range");
    bt.n_nodes[1] = 0;
    CHECK_FAILS(ctx, spec_verify(ctx, &a), SPEC_ERR_INVALID_ARGUMENT, "n_nodes = 0");
    bt.n_nodes[1] = 4;
    bt.params[1].temperature = -1.0f;
    CHECK_FAILS(ctx, spec_verify(ctx, &a), SPEC_ERR_INVALID_ARGUMENT, "temperature -1");
    bt.params[1].temperature = NAN;
    CHECK_FAILS(ctx, spec_verify(ctx, &a), SPEC_ERR_INVALID_ARGUMENT, "temperature");
    bt.params[1].temperature = 1.0f;
    bt.params[1].top_p = 0.0f;
    CHECK_FAILS(ctx, spec_verify(ctx, &a), SPEC_ERR_INVALID_ARGUMENT, "top_p 0 is out of range");
    bt.params[1].top_p = 1.5f;
    CHECK_FAILS(ctx, spec_verify(ctx, &a), SPEC_ERR_INVALID_ARGUMENT, "top_p 1.5");
    bt.params[1].top_p = 1.0f;
    bt.params[1].top_k = -1;
    CHECK_FAILS(ctx, spec_verify(ctx, &a), SPEC_ERR_INVALID_ARGUMENT, "top_k -1");
    bt.params[1].top_k = 0;
    bt.params[1].reserved = 3;
    CHECK_FAILS(ctx, spec_verify(ctx, &a), SPEC_ERR_INVALID_ARGUMENT, "params.reserved");
    bt.params[1].reserved = 0;
    CHECK_OK(spec_verify(ctx, &a));

    x = a;
    x.logits = small;
    CHECK_FAILS(ctx, spec_verify(ctx, &x), SPEC_ERR_BUFFER_TOO_SMALL, "logits buffer holds 64 bytes, needs 320");
    x = a;
    x.draft_probs = small;
    CHECK_FAILS(ctx, spec_verify(ctx, &x), SPEC_ERR_BUFFER_TOO_SMALL, "draft_probs buffer holds 64 bytes");
    x = a;
    x.n_vocab = 1 << 23;
    CHECK_FAILS(ctx, spec_verify(ctx, &x), SPEC_ERR_INVALID_ARGUMENT, "n_vocab = 8388608 is out of range");
    spec_context *other = NULL;
    spec_buffer *foreign = NULL;
    CHECK_OK(spec_context_create("cpu", 0, &other));
    CHECK_OK(spec_buffer_alloc(other, bt.logits.size() * 4, &foreign));
    x = a;
    x.logits = foreign;
    CHECK_FAILS(ctx, spec_verify(ctx, &x), SPEC_ERR_INVALID_ARGUMENT, "logits buffer belongs to another context");
    spec_buffer_free(foreign);
    spec_context_destroy(other);
    spec_buffer_free(small);
    x = a;
    x.logits = NULL;
    CHECK_FAILS(ctx, spec_verify(ctx, &x), SPEC_ERR_INVALID_HANDLE, "logits buffer is null");
    uint64_t junk[8] = {0};
    x.logits = (spec_buffer *)junk;
    CHECK_FAILS(ctx, spec_verify(ctx, &x), SPEC_ERR_INVALID_HANDLE, "logits buffer is not live");
    spec_buffer_free(lg);
}

int main(void) {
    spec_context *ctx = NULL;
    CHECK_OK(spec_context_create("cpu", 0, &ctx));
    test_greedy_hand_worked(ctx);
    test_greedy_random(ctx);
    test_sampling_distribution(ctx, false);
    test_sampling_distribution(ctx, true);
    test_sampling_determinism(ctx);
    test_bad_input(ctx);
    spec_context_destroy(ctx);
    return check_finish("test_verify");
}
