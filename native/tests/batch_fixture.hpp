/* The batch scenarios of spec_forward_batch's tests (test_forward_batch on the cpu backend,
 * tests/cuda/test_cuda_forward_batch on cuda): B sequences run step after step through one
 * spec_forward_batch on "batch" caches and through one spec_forward each on "solo" caches of the
 * same model, the caches kept in step by spec_kv_commit_batch / spec_kv_truncate_batch on the
 * batch side and per-cache calls on the solo side; a comparison decides what "the same outputs"
 * means (bytes on the cpu, a tolerance on cuda). Sequences differ in committed length, token count
 * (1 to a 300-token prompt, so that slices split sequences), tree shape (chains, trees, several
 * roots), positions (given or not), logits mode and exit options (hidden, logits, stop_at_exit). */
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "check.h"
#include "model_fixture.hpp"

namespace {

// One sequence's part of a step: its args' inputs and where its outputs go.
struct Job {
    std::vector<int> tokens, parents, positions;
    int mode = SPEC_LOGITS_ALL;
    int exit_layer = 0;
    bool hidden = false, exit_logits = false, stop = false;
};

Job random_job(Rng &r, const spec_model_config &c, int committed, int room, bool allow_long) {
    Job j;
    int n;
    const int kind = r.below(6);
    if (allow_long && kind == 0) n = 150 + r.below(150); // a prompt: the call then spans several 512-row slices
    else if (kind <= 2) n = 1 + r.below(3);              // decode-like
    else n = 2 + r.below(24);                             // a draft tree
    n = std::max(1, std::min(n, room));
    j.tokens = random_tokens(r, n, c.n_vocab);
    if (kind >= 3) {
        j.parents.resize((size_t)n);
        for (int i = 0; i < n; i++) j.parents[(size_t)i] = i == 0 || r.below(8) == 0 ? -1 : r.below(i);
    }
    if (r.below(4) == 0) {
        j.positions.resize((size_t)n);
        for (int i = 0; i < n; i++) j.positions[(size_t)i] = committed + r.below(n + 3);
    }
    const int m = r.below(6);
    j.mode = m < 3 ? SPEC_LOGITS_ALL : m < 5 ? SPEC_LOGITS_LAST : SPEC_LOGITS_NONE;
    if (r.below(3) == 0) {
        j.exit_layer = 1 + r.below(c.n_layer);
        j.hidden = r.below(2) == 0;
        j.exit_logits = r.below(2) == 0;
        if (r.below(3) == 0) { // an early-exit draft: no final logits
            j.stop = true;
            j.mode = SPEC_LOGITS_NONE;
        }
    }
    return j;
}

struct Outputs {
    std::vector<float> logits, exit_hidden, exit_logits;
};

uint64_t logits_rows(const Job &j) { return j.mode == SPEC_LOGITS_ALL ? j.tokens.size() : j.mode == SPEC_LOGITS_LAST ? 1 : 0; }

// args for job j: outputs in fresh buffers, logits at offset in `shared`. (The solo side uses the
// fixture's forward(), which allocates its own.)
spec_forward_args make_args(spec_context *ctx, const spec_model_config &c, const Job &j, spec_buffer *shared, uint64_t offset,
                            std::vector<spec_buffer *> &owned) {
    spec_forward_args a;
    std::memset(&a, 0, sizeof a);
    const int n = (int)j.tokens.size();
    a.n_tokens = n;
    a.tokens = j.tokens.data();
    a.parents = j.parents.empty() ? NULL : j.parents.data();
    a.positions = j.positions.empty() ? NULL : j.positions.data();
    a.logits_mode = j.mode;
    if (j.mode != SPEC_LOGITS_NONE) {
        if (shared) {
            a.logits = shared;
            a.logits_offset = offset;
        } else {
            a.logits = alloc_buf(ctx, logits_rows(j) * c.n_vocab);
            owned.push_back(a.logits);
        }
    }
    a.exit_layer = j.exit_layer;
    if (j.hidden) owned.push_back(a.exit_hidden = alloc_buf(ctx, (uint64_t)n * c.n_embd));
    if (j.exit_logits) owned.push_back(a.exit_logits = alloc_buf(ctx, (uint64_t)n * c.n_vocab));
    a.stop_at_exit = j.stop;
    return a;
}

Outputs read_outputs(const spec_forward_args &a, const spec_model_config &c, const Job &j) {
    Outputs o;
    const uint64_t n = j.tokens.size();
    auto take = [&](spec_buffer *b, uint64_t offset, uint64_t count, std::vector<float> &dst) {
        if (!b) return;
        dst.resize(count);
        CHECK_OK(spec_copy_d2h(dst.data(), b, offset, count * 4));
    };
    if (j.mode != SPEC_LOGITS_NONE) take(a.logits, a.logits_offset, logits_rows(j) * c.n_vocab, o.logits);
    take(a.exit_hidden, 0, n * c.n_embd, o.exit_hidden);
    take(a.exit_logits, 0, n * c.n_vocab, o.exit_logits);
    return o;
}

bool same(const std::vector<float> &a, const std::vector<float> &b) {
    return a.size() == b.size() && (a.empty() || std::memcmp(a.data(), b.data(), a.size() * 4) == 0);
}

// A random root-to-node path of the job's tree (chains when parents are empty), or an empty path.
std::vector<int> random_path(Rng &r, const Job &j) {
    const int n = (int)j.tokens.size();
    if (r.below(5) == 0) return {};
    std::vector<int> par((size_t)n);
    for (int i = 0; i < n; i++) par[(size_t)i] = j.parents.empty() ? i - 1 : j.parents[(size_t)i];
    return path_to(par, r.below(n));
}

// What a scenario's comparison gets: one output (logits, exit hidden or exit logits) of one
// sequence, solo and batch, rows of `width` floats; it returns whether they count as the same.
using CompareOutputs = std::function<bool(const char *what, const std::vector<float> &solo, const std::vector<float> &batch, int width)>;

inline bool same_bytes(const char *, const std::vector<float> &a, const std::vector<float> &b, int) { return same(a, b); }

// B sequences over `steps` steps: solo and batch give the same outputs by `compare`. Every batch
// output is appended to *record when given (to compare two runs). Returns the rows compared.
long run_scenario(spec_context *ctx, spec_model *model, const spec_model_config &c, int B, int steps, uint64_t seed,
                  bool allow_long, const CompareOutputs &compare = same_bytes, std::vector<float> *record = nullptr) {
    Rng r(seed);
    const int cap = 720;
    std::vector<spec_kv *> solo((size_t)B), batch((size_t)B);
    for (int i = 0; i < B; i++) {
        CHECK_OK(spec_kv_create(model, cap, &solo[(size_t)i]));
        CHECK_OK(spec_kv_create(model, cap, &batch[(size_t)i]));
    }
    // a committed prefix of a different length per sequence, written by the batch call itself
    {
        std::vector<std::vector<int>> prompts((size_t)B);
        std::vector<spec_forward_args> args((size_t)B);
        std::memset(args.data(), 0, sizeof(spec_forward_args) * (size_t)B);
        for (int i = 0; i < B; i++) {
            prompts[(size_t)i] = random_tokens(r, 1 + r.below(allow_long ? 40 : 12), c.n_vocab);
            args[(size_t)i].n_tokens = (int)prompts[(size_t)i].size();
            args[(size_t)i].tokens = prompts[(size_t)i].data();
            CHECK_OK(spec_forward(model, solo[(size_t)i], &args[(size_t)i]));
            commit_chain(solo[(size_t)i], args[(size_t)i].n_tokens);
        }
        CHECK_OK(spec_forward_batch(model, B, batch.data(), args.data()));
        std::vector<int32_t> lengths((size_t)B);
        std::vector<std::vector<int32_t>> paths((size_t)B);
        std::vector<const int32_t *> path_ptrs((size_t)B);
        for (int i = 0; i < B; i++) {
            lengths[(size_t)i] = args[(size_t)i].n_tokens;
            for (int k = 0; k < lengths[(size_t)i]; k++) paths[(size_t)i].push_back(k);
            path_ptrs[(size_t)i] = paths[(size_t)i].data();
        }
        CHECK_OK(spec_kv_commit_batch(B, batch.data(), lengths.data(), path_ptrs.data()));
    }
    long compared = 0;
    for (int step = 0; step < steps; step++) {
        std::vector<Job> jobs((size_t)B);
        uint64_t shared_rows = 0;
        for (int i = 0; i < B; i++) {
            int32_t len = 0;
            CHECK_OK(spec_kv_length(solo[(size_t)i], &len));
            jobs[(size_t)i] = random_job(r, c, len, cap - len, allow_long && step < 2);
            shared_rows += logits_rows(jobs[(size_t)i]);
        }
        // batch: every sequence's logits rows in one buffer, one after another, as a verifier wants them
        std::vector<spec_buffer *> owned;
        spec_buffer *shared = shared_rows ? alloc_buf(ctx, shared_rows * c.n_vocab) : NULL;
        std::vector<spec_forward_args> bargs((size_t)B);
        uint64_t at = 0;
        for (int i = 0; i < B; i++) {
            bargs[(size_t)i] = make_args(ctx, c, jobs[(size_t)i], shared, at * c.n_vocab * 4, owned);
            at += logits_rows(jobs[(size_t)i]);
        }
        spec_status st = spec_forward_batch(model, B, batch.data(), bargs.data());
        CHECK(st == SPEC_OK);
        if (st != SPEC_OK) {
            char msg[512];
            spec_last_error(ctx, msg, sizeof msg, NULL);
            fprintf(stderr, "  spec_forward_batch failed: %s\n", msg);
        }
        for (int i = 0; i < B; i++) {
            const Job &j = jobs[(size_t)i];
            const Out so = forward(ctx, model, solo[(size_t)i], c, j.tokens, j.parents.empty() ? NULL : j.parents.data(),
                                   j.positions.empty() ? NULL : j.positions.data(), j.mode, j.exit_layer, j.hidden, j.exit_logits, j.stop);
            CHECK(so.status == SPEC_OK);
            const Outputs bo = read_outputs(bargs[(size_t)i], c, j);
            const bool ok = compare("logits", so.logits, bo.logits, c.n_vocab) &&
                            compare("exit hidden", so.exit_hidden, bo.exit_hidden, c.n_embd) &&
                            compare("exit logits", so.exit_logits, bo.exit_logits, c.n_vocab);
            if (record)
                for (const std::vector<float> *v : {&bo.logits, &bo.exit_hidden, &bo.exit_logits}) record->insert(record->end(), v->begin(), v->end());
            CHECK(ok);
            if (!ok)
                fprintf(stderr, "  step %d sequence %d of %d (%zu tokens, mode %d, exit %d%s): batch differs from solo (logits rel %.3g)\n",
                        step, i, B, j.tokens.size(), j.mode, j.exit_layer, j.stop ? " stop" : "",
                        so.logits.size() == bo.logits.size() && !so.logits.empty()
                            ? row_err_f(bo.logits.data(), so.logits.data(), (int)so.logits.size()) : -1.0);
            compared += (long)j.tokens.size();
        }
        for (spec_buffer *b : owned) spec_buffer_free(b);
        if (shared) spec_buffer_free(shared);
        // keep a random path of each tree: per cache on the solo side, one call on the batch side
        std::vector<std::vector<int32_t>> paths((size_t)B);
        std::vector<int32_t> lengths((size_t)B);
        std::vector<const int32_t *> ptrs((size_t)B);
        for (int i = 0; i < B; i++) {
            paths[(size_t)i] = random_path(r, jobs[(size_t)i]);
            lengths[(size_t)i] = (int32_t)paths[(size_t)i].size();
            ptrs[(size_t)i] = paths[(size_t)i].empty() ? NULL : paths[(size_t)i].data();
            CHECK_OK(spec_kv_commit(solo[(size_t)i], lengths[(size_t)i], ptrs[(size_t)i]));
        }
        CHECK_OK(spec_kv_commit_batch(B, batch.data(), lengths.data(), ptrs.data()));
        if (step == steps / 2) { // and drop a little of some sequences' committed text
            std::vector<int32_t> to((size_t)B);
            for (int i = 0; i < B; i++) {
                int32_t len = 0;
                CHECK_OK(spec_kv_length(solo[(size_t)i], &len));
                to[(size_t)i] = std::max(1, len - r.below(4));
                CHECK_OK(spec_kv_truncate(solo[(size_t)i], to[(size_t)i]));
            }
            CHECK_OK(spec_kv_truncate_batch(B, batch.data(), to.data()));
        }
        for (int i = 0; i < B; i++) {
            int32_t a = -1, b = -2;
            CHECK_OK(spec_kv_length(solo[(size_t)i], &a));
            CHECK_OK(spec_kv_length(batch[(size_t)i], &b));
            CHECK(a == b);
        }
    }
    for (int i = 0; i < B; i++) {
        spec_kv_destroy(solo[(size_t)i]);
        spec_kv_destroy(batch[(size_t)i]);
    }
    return compared;
}

} // namespace
