/* spec_forward_batch on the cpu backend: several sequences in one forward, each over its own KV
 * cache, give bit for bit the logits, exit hidden states and exit logits that the same sequences
 * give alone through spec_forward; spec_kv_commit_batch and spec_kv_truncate_batch keep the caches
 * in step with per-cache calls; and bad input is refused with a message naming the sequence,
 * changing nothing.
 *
 * Every scenario runs twice over the same random model: once with one spec_forward per sequence
 * ("solo" caches), once with one spec_forward_batch for all ("batch" caches); the outputs are
 * compared with memcmp. Sequences differ in committed length, in token count (1 to a 300-token
 * prompt, so that slices of 512 rows split sequences), in tree shape (chains, trees, several roots),
 * positions (given or not), logits mode, and exit options (exit hidden / logits, stop_at_exit). */
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
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

// B sequences over `steps` steps: solo and batch give the same bytes. Returns the rows compared.
long run_scenario(spec_context *ctx, spec_model *model, const spec_model_config &c, int B, int steps, uint64_t seed,
                  bool allow_long) {
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
            const bool ok = same(so.logits, bo.logits) && same(so.exit_hidden, bo.exit_hidden) && same(so.exit_logits, bo.exit_logits);
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

void test_model(spec_context *ctx, const ModelSpec &s, bool allow_long) {
    TestModel tm = make_model(s);
    spec_model *model = load_model(ctx, tm);
    if (!model) return;
    long rows = 0;
    int scenarios = 0;
    for (int nt : {1, 2, 3}) {
        CHECK_OK(spec_context_set_threads(ctx, nt));
        for (int B : {1, 2, 3, 5}) {
            rows += run_scenario(ctx, model, s.cfg, B, 5, s.seed * 131 + (uint64_t)(B * 7 + nt), allow_long && B >= 2);
            scenarios++;
        }
    }
    CHECK_OK(spec_context_set_threads(ctx, 0));
    printf("  %s: %d scenarios (1-5 sequences, threads 1-3), %ld rows: batch == solo bit for bit\n", s.name, scenarios, rows);
    spec_model_destroy(model);
}

// ------------------------------------------------------------------ bad input

void test_errors(spec_context *ctx) {
    spec_model_config c = base_config();
    TestModel tm = make_model(spec_all("errors", c, SPEC_DTYPE_F32, SPEC_DTYPE_F32, false, 61));
    spec_model *model = load_model(ctx, tm), *other = load_model(ctx, tm);
    if (!model || !other) return;
    spec_kv *kv[3] = {NULL, NULL, NULL}, *foreign = NULL;
    for (auto &k : kv) CHECK_OK(spec_kv_create(model, 16, &k));
    CHECK_OK(spec_kv_create(other, 16, &foreign));
    spec_buffer *logits = alloc_buf(ctx, 3 * 4 * c.n_vocab);
    int toks[4] = {1, 2, 3, 4};
    const int tree[3] = {-1, 0, 0};
    spec_forward_args a[3];
    std::memset(a, 0, sizeof a);
    for (int i = 0; i < 3; i++) {
        a[i].n_tokens = 3;
        a[i].tokens = toks;
        a[i].parents = tree;
        a[i].logits_mode = SPEC_LOGITS_ALL;
        a[i].logits = logits;
        a[i].logits_offset = (uint64_t)i * 3 * c.n_vocab * 4;
    }
    CHECK_OK(spec_forward_batch(model, 3, kv, a)); // every cache now holds a pending tree

    CHECK_FAILS(ctx, spec_forward_batch(model, 0, kv, a), SPEC_ERR_INVALID_ARGUMENT, "n_seq 0 is out of range");
    CHECK_FAILS(ctx, spec_forward_batch(model, SPEC_MAX_FORWARD_SEQUENCES + 1, kv, a), SPEC_ERR_INVALID_ARGUMENT, "out of range");
    CHECK_FAILS(ctx, spec_forward_batch(model, 3, NULL, a), SPEC_ERR_INVALID_ARGUMENT, "must not be null");
    CHECK_FAILS(ctx, spec_forward_batch(model, 3, kv, NULL), SPEC_ERR_INVALID_ARGUMENT, "must not be null");
    CHECK_FAILS(NULL, spec_forward_batch(NULL, 3, kv, a), SPEC_ERR_INVALID_HANDLE, "model is null");
    spec_kv *twice[3] = {kv[0], kv[1], kv[0]};
    CHECK_FAILS(ctx, spec_forward_batch(model, 3, twice, a), SPEC_ERR_INVALID_ARGUMENT, "sequences 0 and 2 name the same kv cache");
    spec_kv *mixed[3] = {kv[0], foreign, kv[2]};
    CHECK_FAILS(ctx, spec_forward_batch(model, 3, mixed, a), SPEC_ERR_INVALID_ARGUMENT, "sequence 1: kv cache belongs to another model");
    spec_kv *with_null[3] = {kv[0], kv[1], NULL};
    CHECK_FAILS(ctx, spec_forward_batch(model, 3, with_null, a), SPEC_ERR_INVALID_HANDLE, "sequence 2: kv cache is null");
    const int bad_tree[3] = {-1, 0, 2};
    a[2].parents = bad_tree;
    CHECK_FAILS(ctx, spec_forward_batch(model, 3, kv, a), SPEC_ERR_INVALID_ARGUMENT, "sequence 2: parent[2] = 2");
    a[2].parents = tree;
    a[1].logits_offset = 3 * 4 * c.n_vocab * 4 - 4; // past the end for 3 rows
    CHECK_FAILS(ctx, spec_forward_batch(model, 3, kv, a), SPEC_ERR_BUFFER_TOO_SMALL, "sequence 1: logits buffer");
    a[1].logits_offset = 3 * c.n_vocab * 4;
    a[0].n_tokens = 17;
    CHECK_FAILS(ctx, spec_forward_batch(model, 3, kv, a), SPEC_ERR_OUT_OF_RANGE, "sequence 0: 17 tokens do not fit");
    a[0].n_tokens = 3;

    // none of the refused calls touched a cache: the trees of the first call are still pending
    const int32_t paths0[2] = {0, 2}, paths1[1] = {0}, bad[2] = {1, 2};
    const int32_t *paths[3] = {paths0, paths1, bad};
    int32_t n_path[3] = {2, 1, 2};
    CHECK_FAILS(ctx, spec_kv_commit_batch(3, kv, n_path, paths), SPEC_ERR_INVALID_ARGUMENT, "sequence 2: path[0] = 1 has parent 0");
    CHECK_FAILS(ctx, spec_kv_commit_batch(3, twice, n_path, paths), SPEC_ERR_INVALID_ARGUMENT, "same kv cache");
    // with no sequence there is no context to record on: the thread's last error says it
    CHECK_FAILS(NULL, spec_kv_commit_batch(0, kv, n_path, paths), SPEC_ERR_INVALID_ARGUMENT, "n_seq 0");
    CHECK_FAILS(ctx, spec_kv_commit_batch(3, kv, NULL, paths), SPEC_ERR_INVALID_ARGUMENT, "must not be null");
    n_path[2] = 4;
    CHECK_FAILS(ctx, spec_kv_commit_batch(3, kv, n_path, paths), SPEC_ERR_OUT_OF_RANGE, "sequence 2: path length 4");
    for (auto &k : kv) {
        int32_t len = -1;
        CHECK_OK(spec_kv_length(k, &len));
        CHECK(len == 0); // the refused commits changed nothing, not even sequence 0's valid path
    }
    n_path[2] = 0;
    CHECK_OK(spec_kv_commit_batch(3, kv, n_path, paths));
    int32_t len[3];
    for (int i = 0; i < 3; i++) CHECK_OK(spec_kv_length(kv[i], &len[i]));
    CHECK(len[0] == 2 && len[1] == 1 && len[2] == 0);

    int32_t to[3] = {1, 2, 0};
    CHECK_FAILS(ctx, spec_kv_truncate_batch(3, kv, to), SPEC_ERR_OUT_OF_RANGE, "sequence 1: length 2 is out of range");
    CHECK_FAILS(ctx, spec_kv_truncate_batch(3, kv, NULL), SPEC_ERR_INVALID_ARGUMENT, "must not be null");
    to[1] = 0;
    CHECK_OK(spec_kv_truncate_batch(3, kv, to));
    for (int i = 0; i < 3; i++) CHECK_OK(spec_kv_length(kv[i], &len[i]));
    CHECK(len[0] == 1 && len[1] == 0 && len[2] == 0);

    spec_buffer_free(logits);
    for (auto &k : kv) spec_kv_destroy(k);
    spec_kv_destroy(foreign);
    spec_model_destroy(other);
    spec_model_destroy(model);
    printf("  bad input: refused with the sequence named, caches unchanged\n");
}

spec_model_config kquant_config() {
    spec_model_config c = base_config();
    c.n_embd = 256;
    c.n_head = 4;
    c.n_head_kv = 2;
    c.head_dim = 64;
    c.n_ff = 512;
    c.n_vocab = 60;
    return c;
}

} // namespace

int main(void) {
    spec_context *ctx = NULL;
    CHECK_OK(spec_context_create("cpu", 0, &ctx));
    if (!ctx) return check_finish("test_forward_batch");

    spec_model_config c = base_config();
    c.n_layer = 3;
    test_model(ctx, spec_all("f32", c, SPEC_DTYPE_F32, SPEC_DTYPE_F32, false, 71), true);
    spec_model_config q = c;
    q.arch = SPEC_ARCH_QWEN2;
    q.rope_style = SPEC_ROPE_NEOX;
    q.kv_dtype = SPEC_DTYPE_F16;
    test_model(ctx, spec_all("qwen2 f16, kv f16", q, SPEC_DTYPE_F16, SPEC_DTYPE_F16, true, 72), false);
    ModelSpec mix = spec_all("q8_0 + q4_0 + f16", c, SPEC_DTYPE_Q8_0, SPEC_DTYPE_F32, false, 73);
    mix.mat_dtype[SPEC_W_FFN_UP] = SPEC_DTYPE_Q4_0;
    mix.mat_dtype[SPEC_W_ATTN_V] = SPEC_DTYPE_Q4_0;
    mix.mat_dtype[SPEC_W_ATTN_Q] = SPEC_DTYPE_F16;
    mix.cfg.kv_dtype = SPEC_DTYPE_BF16;
    test_model(ctx, mix, true);
    ModelSpec k = spec_all("k-quants", kquant_config(), SPEC_DTYPE_Q4_K, SPEC_DTYPE_F32, false, 74);
    k.mat_dtype[SPEC_W_ATTN_K] = SPEC_DTYPE_Q6_K;
    k.mat_dtype[SPEC_W_FFN_DOWN] = SPEC_DTYPE_Q5_K;
    k.mat_dtype[SPEC_W_OUTPUT] = SPEC_DTYPE_Q8_0;
    test_model(ctx, k, false);
    // the smaller kernel sets, on the int8 mix (their own tile and gemm paths)
    for (const char *isa : {"avx2", "scalar"}) {
        setenv("SPECULA_CPU_ISA", isa, 1);
        ModelSpec m2 = mix;
        m2.name = isa[0] == 'a' ? "q8_0 mix, kernels capped at avx2" : "q8_0 mix, kernels capped at scalar";
        test_model(ctx, m2, false);
    }
    unsetenv("SPECULA_CPU_ISA");
    test_errors(ctx);
    spec_context_destroy(ctx);
    return check_finish("test_forward_batch");
}
