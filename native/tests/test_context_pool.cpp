/* The cpu context's one thread pool (native/cpu/thread_pool.hpp), through the ABI:
 *   1. every model and spec kernel on a context shares one set of workers (the process gains
 *      threads - 1 threads however many models run), and a context's destruction ends them;
 *   2. calls on one context from several threads at once (two models' forwards, verification,
 *      thread-count changes) give exactly the results of the same calls made one at a time. */
#pragma GCC diagnostic ignored "-Wunused-function" // the fixture's helpers this test does not need
#include "model_fixture.hpp"

#include <atomic>
#include <dirent.h>
#include <thread>

namespace {

int process_threads() {
    DIR *d = opendir("/proc/self/task");
    if (!d) return -1;
    int n = 0;
    while (struct dirent *e = readdir(d))
        if (e->d_name[0] != '.') n++;
    closedir(d);
    return n;
}

/* A prompt, its commit, then a 5-node tree: every logit of both calls, or empty on any failure.
 * Plain ABI calls only (no CHECK), so that several threads may run it at once. */
std::vector<float> run_model(spec_context *ctx, spec_model *model, const spec_model_config &c, const std::vector<int> &prompt,
                             const std::vector<int> &tree) {
    static const int32_t par[5] = {-1, 0, 0, 1, 1};
    std::vector<float> out;
    spec_kv *kv = NULL;
    if (spec_kv_create(model, 64, &kv) != SPEC_OK) return out;
    const std::vector<int> *calls[2] = {&prompt, &tree};
    for (int k = 0; k < 2; k++) {
        const int n = (int)calls[k]->size();
        spec_buffer *lg = NULL;
        if (spec_buffer_alloc(ctx, (uint64_t)n * c.n_vocab * 4, &lg) != SPEC_OK) break;
        spec_forward_args a;
        std::memset(&a, 0, sizeof a);
        a.n_tokens = n;
        a.tokens = calls[k]->data();
        a.parents = k == 1 ? par : NULL;
        a.logits_mode = SPEC_LOGITS_ALL;
        a.logits = lg;
        bool ok = spec_forward(model, kv, &a) == SPEC_OK;
        const size_t at = out.size();
        out.resize(at + (size_t)n * c.n_vocab);
        ok = ok && spec_copy_d2h(out.data() + at, lg, 0, (uint64_t)n * c.n_vocab * 4) == SPEC_OK;
        spec_buffer_free(lg);
        if (!ok) {
            out.clear();
            break;
        }
        if (k == 0) {
            std::vector<int32_t> path((size_t)n);
            for (int i = 0; i < n; i++) path[(size_t)i] = i;
            if (spec_kv_commit(kv, n, path.data()) != SPEC_OK) {
                out.clear();
                break;
            }
        }
    }
    spec_kv_destroy(kv);
    return out;
}

/* A sampled verification big enough for the pool (B x nodes x V element operations above the
 * spec kernels' threshold): each sequence's (n_accepted, last node, bonus), or empty on failure. */
struct VerifyCase {
    static constexpr int B = 8, N = 4, V = 40000;
    std::vector<float> logits = std::vector<float>((size_t)B * N * V);
    std::vector<int32_t> n_nodes = std::vector<int32_t>(B, N), tokens = std::vector<int32_t>((size_t)B * N),
                         parents = std::vector<int32_t>((size_t)B * N);
    std::vector<spec_sampling_params> params = std::vector<spec_sampling_params>(B);
    explicit VerifyCase(uint64_t seed) {
        Rng r(seed);
        for (auto &x : logits) x = (float)(r.uniform() * 8.0 - 4.0);
        for (int b = 0; b < B; b++) {
            for (int i = 0; i < N; i++) {
                tokens[(size_t)b * N + i] = r.below(V);
                parents[(size_t)b * N + i] = i - 1;
            }
            params[(size_t)b] = spec_sampling_params{(uint64_t)b + 7, 0.8f, 1.0f, 0, 0};
        }
    }
};

std::vector<int32_t> run_verify(spec_context *ctx, const VerifyCase &vc, uint64_t step) {
    std::vector<int32_t> out;
    spec_buffer *lg = NULL;
    if (spec_buffer_alloc(ctx, vc.logits.size() * 4, &lg) != SPEC_OK) return out;
    std::vector<spec_verify_result> res((size_t)vc.B);
    spec_verify_args a = {};
    a.batch = vc.B;
    a.max_tree_nodes = vc.N;
    a.n_vocab = vc.V;
    a.n_nodes = vc.n_nodes.data();
    a.tokens = vc.tokens.data();
    a.parents = vc.parents.data();
    a.params = vc.params.data();
    a.logits = lg;
    a.step = step;
    a.results = res.data();
    if (spec_copy_h2d(lg, 0, vc.logits.data(), vc.logits.size() * 4) == SPEC_OK && spec_verify(ctx, &a) == SPEC_OK)
        for (const auto &r : res) out.insert(out.end(), {r.n_accepted, r.last_node, r.bonus_token});
    spec_buffer_free(lg);
    return out;
}

struct Models {
    ModelSpec target_spec, draft_spec;
    TestModel target_tm, draft_tm;
    spec_model *target = NULL, *draft = NULL;
    std::vector<int> prompt, tree;
    explicit Models(spec_context *ctx) {
        spec_model_config tc = base_config(), dc = base_config();
        tc.n_embd = 128, tc.head_dim = 32, tc.n_ff = 192, tc.n_vocab = 300;
        dc.n_layer = 1, dc.n_vocab = 300;
        target_spec = spec_all("target", tc, SPEC_DTYPE_Q8_0, SPEC_DTYPE_F32, false, 31);
        draft_spec = spec_all("draft", dc, SPEC_DTYPE_F16, SPEC_DTYPE_F32, true, 32);
        target_tm = make_model(target_spec);
        draft_tm = make_model(draft_spec);
        target = load_model(ctx, target_tm);
        draft = load_model(ctx, draft_tm);
        Rng r(5);
        prompt = random_tokens(r, 24, 300);
        tree = random_tokens(r, 5, 300);
    }
    ~Models() {
        if (target) spec_model_destroy(target);
        if (draft) spec_model_destroy(draft);
    }
};

/* ------------------------------------------------------------------ 1. one set of workers */

void test_one_pool_per_context() {
    /* Counted against the process's threads once the context is gone (a sanitizer's runtime may start
     * a thread of its own meanwhile). */
    int at3 = -1, at2 = -1;
    spec_context *ctx = NULL;
    CHECK_OK(spec_context_create("cpu", 0, &ctx));
    if (!ctx) return;
    CHECK_OK(spec_context_set_threads(ctx, 3));
    {
        Models m(ctx);
        if (!m.target || !m.draft) return;
        VerifyCase vc(3);
        for (int i = 0; i < 3; i++) {
            CHECK(!run_model(ctx, m.target, m.target_spec.cfg, m.prompt, m.tree).empty());
            CHECK(!run_model(ctx, m.draft, m.draft_spec.cfg, m.prompt, m.tree).empty());
            CHECK(!run_verify(ctx, vc, 1).empty());
        }
        at3 = process_threads();
        CHECK_OK(spec_context_set_threads(ctx, 2));
        CHECK(!run_model(ctx, m.draft, m.draft_spec.cfg, m.prompt, m.tree).empty());
        at2 = process_threads();
    }
    CHECK_OK(spec_context_destroy(ctx));
    const int after = process_threads();
    printf("  threads beyond the process's own: %d after forwards of two models and verifications at 3 threads, %d at 2\n",
           at3 - after, at2 - after);
    CHECK(at3 - after == 2); /* one pool: 2 workers beside the calling thread */
    CHECK(at2 - after == 1); /* restarted at the new count, the old workers gone; none left once the context is */
}

/* ------------------------------------------------------------------ 2. several threads on one context */

void test_concurrent_calls(spec_context *ctx) {
    Models m(ctx);
    if (!m.target || !m.draft) return;
    VerifyCase vc(4);
    CHECK_OK(spec_context_set_threads(ctx, 2));
    const std::vector<float> target_ref = run_model(ctx, m.target, m.target_spec.cfg, m.prompt, m.tree);
    const std::vector<float> draft_ref = run_model(ctx, m.draft, m.draft_spec.cfg, m.prompt, m.tree);
    const std::vector<int32_t> verify_ref = run_verify(ctx, vc, 9);
    CHECK(!target_ref.empty() && !draft_ref.empty() && !verify_ref.empty());

    std::atomic<int> differ{0}, calls{0}, running{0};
    std::atomic<bool> done{false};
    const int rounds = 12;
    std::vector<std::thread> th;
    auto model_thread = [&](spec_model *model, const spec_model_config &c, const std::vector<float> &ref) {
        running++;
        for (int i = 0; i < rounds; i++) {
            if (run_model(ctx, model, c, m.prompt, m.tree) != ref) differ++;
            calls++;
        }
        running--;
    };
    th.emplace_back(model_thread, m.target, m.target_spec.cfg, std::cref(target_ref));
    th.emplace_back(model_thread, m.target, m.target_spec.cfg, std::cref(target_ref)); /* one model from two threads */
    th.emplace_back(model_thread, m.draft, m.draft_spec.cfg, std::cref(draft_ref));
    th.emplace_back([&] {
        running++;
        for (int i = 0; i < rounds; i++) {
            if (run_verify(ctx, vc, 9) != verify_ref) differ++;
            calls++;
        }
        running--;
    });
    th.emplace_back([&] { /* the thread count changes under them: results must not */
        const int counts[] = {1, 3, 2, 0};
        for (int i = 0; !done.load(); i++) {
            if (spec_context_set_threads(ctx, counts[i % 4]) != SPEC_OK) differ++;
            std::this_thread::sleep_for(std::chrono::microseconds(300));
        }
    });
    for (size_t i = 0; i + 1 < th.size(); i++) th[i].join();
    done = true;
    th.back().join();
    printf("  concurrent calls on one context (two models, one of them from two threads, verification, changing thread "
           "counts): %d calls, %d differ from the same calls one at a time\n",
           calls.load(), differ.load());
    CHECK(calls.load() == 4 * rounds);
    CHECK(differ.load() == 0);
    CHECK(running.load() == 0);
    CHECK_OK(spec_context_set_threads(ctx, 0));
}

} // namespace

int main() {
    printf("test_context_pool\n");
    test_one_pool_per_context();
    spec_context *ctx = NULL;
    CHECK_OK(spec_context_create("cpu", 0, &ctx));
    if (ctx) {
        test_concurrent_calls(ctx);
        CHECK_OK(spec_context_destroy(ctx));
    }
    return check_finish("test_context_pool");
}
