// Benchmark of the cuda speculative kernels through the public ABI: tree attention, batched
// verification, the Token Recycling update and draft, and one whole speculative step
// (verify + update + next draft). Each row: warm-up, then the median of many runs timed with
// CUDA events on the default stream (where the library's kernels run), and the achieved
// bandwidth against the device's peak measured in the same run by a device-to-device copy.
//
//   bench_kernels [--runs N] [--quick]
//
// Rows are printed as "| kernel | shape | median us | GB/s | % of peak |" so that
// bench/native/torch_kernels.py's rows line up with them.
#include "specula.h"
#include "test_random.hpp"
#include "cuda/cuda_check.cuh"

#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

namespace {

int g_runs = 50, g_warmup = 10;
double g_peak_gbs = 0; // device-to-device copy, read + write bytes per second / 1e9

bool spec_ok(spec_context *ctx, spec_status st, const char *what) {
    if (st == SPEC_OK) return true;
    char msg[512] = "";
    spec_last_error(ctx, msg, sizeof msg, NULL);
    fprintf(stderr, "%s failed (%d): %s\n", what, st, msg);
    return false;
}

uint16_t to_bf16(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    u += 0x7fffu + ((u >> 16) & 1);
    return (uint16_t)(u >> 16);
}

// Median time of fn in microseconds over g_runs runs, after g_warmup.
double time_us(const std::function<bool()> &fn) {
    cudaEvent_t a, b;
    CUDA_OK(cudaEventCreate(&a));
    CUDA_OK(cudaEventCreate(&b));
    for (int i = 0; i < g_warmup; i++)
        if (!fn()) return NAN;
    CUDA_OK(cudaDeviceSynchronize());
    std::vector<float> ms;
    for (int i = 0; i < g_runs; i++) {
        CUDA_OK(cudaEventRecord(a, 0));
        if (!fn()) return NAN;
        CUDA_OK(cudaEventRecord(b, 0));
        CUDA_OK(cudaEventSynchronize(b));
        float t = 0;
        CUDA_OK(cudaEventElapsedTime(&t, a, b));
        ms.push_back(t);
    }
    cudaEventDestroy(a);
    cudaEventDestroy(b);
    std::sort(ms.begin(), ms.end());
    return ms[ms.size() / 2] * 1000.0;
}

void row(const char *kernel, const std::string &shape, double us, double bytes) {
    double gbs = bytes / (us * 1e-6) / 1e9;
    printf("| %-22s | %-44s | %10.1f | %8.0f | %7.1f |\n", kernel, shape.c_str(), us, gbs, 100.0 * gbs / g_peak_gbs);
    fflush(stdout);
}

void measure_peak() {
    const size_t n = (size_t)1 << 30;
    void *a = nullptr, *b = nullptr;
    CUDA_OK(cudaMalloc(&a, n));
    CUDA_OK(cudaMalloc(&b, n));
    CUDA_OK(cudaMemset(a, 1, n));
    double us = time_us([&] { return cudaMemcpy(b, a, n, cudaMemcpyDeviceToDevice) == cudaSuccess; });
    g_peak_gbs = 2.0 * n / (us * 1e-6) / 1e9;
    printf("peak: device-to-device copy of 1 GiB in %.1f us = %.0f GB/s (read + write)\n\n", us, g_peak_gbs);
    cudaFree(a);
    cudaFree(b);
}

spec_buffer *alloc_fill(spec_context *ctx, const void *data, size_t bytes) {
    spec_buffer *b = nullptr;
    if (!spec_ok(ctx, spec_buffer_alloc(ctx, bytes, &b), "spec_buffer_alloc")) exit(1);
    if (data && !spec_ok(ctx, spec_copy_h2d(b, 0, data, bytes), "spec_copy_h2d")) exit(1);
    return b;
}

// ---------------------------------------------------------------- tree attention

void bench_attention(spec_context *ctx, int B, int P, int T, int H, int Hkv, int D, int dtype) {
    uint64_t s = 1;
    const int max_ctx = P + T;
    const size_t nq = (size_t)B * T * H * D, ncache = (size_t)B * max_ctx * Hkv * D, esz = dtype == SPEC_DTYPE_F32 ? 4 : 2;
    std::vector<float> q(nq);
    for (float &x : q) x = uniform(s);
    std::vector<uint16_t> kv(ncache);
    for (auto &x : kv) x = to_bf16(uniform(s));
    if (dtype == SPEC_DTYPE_F16) for (auto &x : kv) x = (uint16_t)(0x3000 | (x & 0x83ff)); // small f16 values
    std::vector<int32_t> prefix(B, P), tree(B, T), parents((size_t)B * T);
    for (int b = 0; b < B; b++)
        for (int i = 0; i < T; i++) parents[(size_t)b * T + i] = i == 0 ? -1 : (int)(splitmix64(s) % (uint64_t)i);
    spec_tree_attention_args a = {};
    a.batch = B, a.n_head = H, a.n_head_kv = Hkv, a.head_dim = D, a.max_tree_nodes = T, a.max_ctx = max_ctx, a.kv_dtype = dtype;
    a.prefix_len = prefix.data(), a.tree_len = tree.data(), a.parents = parents.data();
    a.q = alloc_fill(ctx, q.data(), nq * 4);
    std::vector<uint8_t> cache(ncache * esz, 0);
    if (esz == 2) memcpy(cache.data(), kv.data(), ncache * 2);
    a.k_cache = alloc_fill(ctx, cache.data(), cache.size());
    a.v_cache = alloc_fill(ctx, cache.data(), cache.size());
    a.out = alloc_fill(ctx, nullptr, nq * 4);
    double us = time_us([&] { return spec_ok(ctx, spec_tree_attention(ctx, &a), "spec_tree_attention"); });
    const double bytes = 2.0 * ncache * esz + 2.0 * nq * 4; // K and V once, q in, out
    char shape[128];
    snprintf(shape, sizeof shape, "B=%d P=%d T=%d H=%d/%d d=%d %s", B, P, T, H, Hkv, D,
             dtype == SPEC_DTYPE_BF16 ? "bf16" : dtype == SPEC_DTYPE_F16 ? "f16" : "f32");
    row("tree_attention", shape, us, bytes);
    spec_buffer_free(a.q);
    spec_buffer_free(a.k_cache);
    spec_buffer_free(a.v_cache);
    spec_buffer_free(a.out);
}

// ---------------------------------------------------------------- a speculative step

// B sequences with the default 81-node template over a vocabulary of V: logits with a few
// favourites per row, and a matrix whose rows name them, so that drafts get accepted like in a
// real run (a few tokens per step).
void bench_step(spec_context *ctx, int B, int V) {
    int32_t tp[SPEC_RECYCLER_DEFAULT_TEMPLATE_NODES], tr[SPEC_RECYCLER_DEFAULT_TEMPLATE_NODES], N = 0;
    spec_recycler_default_template(tp, tr, SPEC_RECYCLER_DEFAULT_TEMPLATE_NODES, &N);
    uint64_t s = 2;
    spec_recycler *rec = nullptr;
    if (!spec_ok(ctx, spec_recycler_create(ctx, V, SPEC_RECYCLER_DEFAULT_K, &rec), "spec_recycler_create")) exit(1);
    // Matrix: row t = 8 "likely successors" of t.
    std::vector<int32_t> m((size_t)V * 8);
    for (auto &x : m) x = (int32_t)(splitmix64(s) % (uint64_t)V);
    spec_recycler_load(rec, m.data(), m.size());
    std::vector<int32_t> roots(B), tokens((size_t)B * N), parents((size_t)B * N), n_nodes(B, N);
    for (auto &r : roots) r = (int32_t)(splitmix64(s) % (uint64_t)V);
    spec_recycler_draft_args d = {B, N, tp, tr, roots.data(), tokens.data(), parents.data()};
    if (!spec_ok(ctx, spec_recycler_draft(rec, &d), "spec_recycler_draft")) exit(1);
    // Logits: noise, and the target's choice at each node is the draft child of rank 0 with
    // probability 0.7 (so greedy acceptance runs a few levels deep).
    const size_t rows = (size_t)B * N;
    std::vector<float> logits(rows * V);
    for (size_t r = 0; r < rows; r++) {
        float *lr = &logits[r * V];
        for (int v = 0; v < V; v++) lr[v] = uniform(s) * 3.0f;
        const int32_t node_tok = tokens[r];
        int32_t fav = splitmix64(s) % 10 < 7 ? m[(size_t)node_tok * 8] : (int32_t)(splitmix64(s) % (uint64_t)V);
        lr[fav] = 12.0f;
        lr[m[(size_t)node_tok * 8 + 1]] = std::max(lr[m[(size_t)node_tok * 8 + 1]], 10.0f);
    }
    spec_buffer *lg = alloc_fill(ctx, logits.data(), logits.size() * 4);
    std::vector<spec_verify_result> res(B);
    std::vector<spec_sampling_params> greedy(B, spec_sampling_params{0, 0.0f, 1.0f, 0, 0}), sample(B);
    for (int b = 0; b < B; b++) sample[b] = spec_sampling_params{(uint64_t)b, 0.8f, 0.9f, 50, 0};
    spec_verify_args va = {};
    va.batch = B, va.max_tree_nodes = N, va.n_vocab = V, va.n_nodes = n_nodes.data(), va.tokens = tokens.data();
    va.parents = parents.data(), va.logits = lg, va.results = res.data();
    spec_recycler_update_args ua = {B, N, n_nodes.data(), tokens.data(), lg};
    std::vector<int32_t> next_roots(B), next_tokens((size_t)B * N);
    spec_recycler_draft_args da = {B, N, tp, tr, next_roots.data(), next_tokens.data(), nullptr};
    uint64_t step = 0;

    const double logits_bytes = (double)rows * V * 4;
    char shape[128];
    for (int mode = 0; mode < 2; mode++) {
        va.params = mode ? sample.data() : greedy.data();
        double us = time_us([&] {
            va.step = step++;
            return spec_ok(ctx, spec_verify(ctx, &va), "spec_verify");
        });
        double path_rows = 0;
        for (auto &r : res) path_rows += r.n_accepted + 1;
        snprintf(shape, sizeof shape, "B=%d nodes=%d V=%d %s (%.1f acc/seq)", B, N, V, mode ? "T=0.8 k=50 p=0.9" : "greedy",
                 (path_rows - B) / B);
        row(mode ? "verify_sample" : "verify_greedy", shape, us, path_rows * V * 4); // rows the walk must read
    }
    snprintf(shape, sizeof shape, "B=%d nodes=%d V=%d k=8", B, N, V);
    double us = time_us([&] { return spec_ok(ctx, spec_recycler_update(rec, &ua), "spec_recycler_update"); });
    row("recycler_update", shape, us, logits_bytes);
    for (int b = 0; b < B; b++) next_roots[b] = tokens[(size_t)b * N + 1];
    us = time_us([&] { return spec_ok(ctx, spec_recycler_draft(rec, &da), "spec_recycler_draft"); });
    row("recycler_draft", shape, us, (double)B * N * 4 * 2);
    for (int mode = 0; mode < 2; mode++) {
        va.params = mode ? sample.data() : greedy.data();
        us = time_us([&] {
            va.step = step++;
            if (!spec_ok(ctx, spec_verify(ctx, &va), "spec_verify")) return false;
            if (!spec_ok(ctx, spec_recycler_update(rec, &ua), "spec_recycler_update")) return false;
            for (int b = 0; b < B; b++) next_roots[b] = res[b].bonus_token;
            return spec_ok(ctx, spec_recycler_draft(rec, &da), "spec_recycler_draft");
        });
        snprintf(shape, sizeof shape, "B=%d nodes=%d V=%d %s", B, N, V, mode ? "sample" : "greedy");
        row("step (verify+upd+draft)", shape, us, logits_bytes);
    }
    spec_buffer_free(lg);
    spec_recycler_destroy(rec);
}

} // namespace

int main(int argc, char **argv) {
    bool quick = false;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--runs") && i + 1 < argc) g_runs = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--quick")) quick = true;
    }
    if (quick) g_runs = std::min(g_runs, 10), g_warmup = 3;
    int32_t n = 0;
    if (spec_device_count("cuda", &n) != SPEC_OK || n == 0) {
        char msg[256] = "";
        spec_last_error(NULL, msg, sizeof msg, NULL);
        printf("bench_kernels: cuda unavailable (%s)\n", msg);
        return 77;
    }
    spec_context *ctx = nullptr;
    if (!spec_ok(nullptr, spec_context_create("cuda", 0, &ctx), "spec_context_create")) return 1;
    spec_device_info info;
    spec_device_query(ctx, &info);
    printf("specula kernel benchmark on %s (%d SMs), median of %d runs after %d warm-ups\n", info.name, info.multiprocessors, g_runs,
           g_warmup);
    measure_peak();
    printf("| %-22s | %-44s | %10s | %8s | %7s |\n", "kernel", "shape", "median us", "GB/s", "% peak");
    printf("|%s|%s|%s|%s|%s|\n", std::string(24, '-').c_str(), std::string(46, '-').c_str(), std::string(12, '-').c_str(),
           std::string(10, '-').c_str(), std::string(9, '-').c_str());
    bench_attention(ctx, 1, 4096, 64, 32, 8, 128, SPEC_DTYPE_BF16); // the goal shape
    bench_attention(ctx, 8, 4096, 64, 32, 8, 128, SPEC_DTYPE_BF16);
    bench_attention(ctx, 1, 1024, 16, 32, 8, 128, SPEC_DTYPE_BF16);
    bench_attention(ctx, 4, 2048, 32, 16, 16, 64, SPEC_DTYPE_F16);
    const int V = 151936; // Qwen2's vocabulary
    bench_step(ctx, 1, V);
    if (!quick) bench_step(ctx, 32, V);
    spec_context_destroy(ctx);
    return 0;
}
