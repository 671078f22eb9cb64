// The cuda matrix products (native/cuda/matmul.cu) against a double-precision cpu reference, on
// fresh random inputs: every dtype (the k-quants and Q4_1 / Q5_0 / Q5_1 with weights decoded by
// the independent reference, quant_reference.hpp), n from 1 to 200 tokens (both regimes and the chunking past
// 128), shapes with rows that fill no tile and columns that fill no k tile or no chunk, strided
// inputs and outputs, accumulate on and off. Also: argument validation, and that a call captured in a CUDA
// graph gives the same bits as the eager call (graph capture, determinism).
//
// Exit 0: all passed; 1: a failure; 77: no CUDA device (ctest reports it as skipped).
// SPECULA_TEST_QUICK=1 runs fewer and smaller cases (compute-sanitizer runs it that way).
//
// Tolerance, relative to sum_k |w_k x_k| of each output: 2^-16 on the tensor-core path (the
// split of activations into two 16-bit parts costs up to 2^-17, see native/core/matmul_math.hpp;
// the rest is f32 accumulation), 2^-18 on the streaming path (exact products, f32 sums: the
// observed error is far below; either bound is far below what any indexing mistake produces).
#include "../../cuda/matmul.cuh"
#include "../../core/matmul_math.hpp"
#include "../../core/quant_blocks.hpp"
#include "../quant_reference.hpp"
#include "../quant_test_blocks.hpp"
#include "../test_random.hpp"
#include "cuda_check.cuh"

#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

using namespace specula;

namespace {

int g_failures = 0;

#define EXPECT(cond, ...)                                                                         \
    do {                                                                                          \
        if (!(cond)) {                                                                            \
            fprintf(stderr, "%s:%d: ", __FILE__, __LINE__);                                       \
            fprintf(stderr, __VA_ARGS__);                                                         \
            fprintf(stderr, "\n");                                                                \
            g_failures++;                                                                         \
        }                                                                                         \
    } while (0)


const char *dtype_label(int32_t dt) {
    switch (dt) {
    case SPEC_DTYPE_F32: return "f32";
    case SPEC_DTYPE_F16: return "f16";
    case SPEC_DTYPE_BF16: return "bf16";
    case SPEC_DTYPE_Q8_0: return "q8_0";
    case SPEC_DTYPE_Q4_0: return "q4_0";
    default: return quant_test::type_name(dt);
    }
}
bool is_quant(int32_t dt) { return dt == SPEC_DTYPE_Q8_0 || dt == SPEC_DTYPE_Q4_0 || quant_ref::bytes(dt) > 0; }
int block_elems_of(int32_t dt) { return quant_ref::bytes(dt) > 0 ? quant_ref::elems(dt) : is_quant(dt) ? 32 : 1; }
uint64_t row_bytes_of(int32_t dt, int64_t cols) {
    switch (dt) {
    case SPEC_DTYPE_F32: return (uint64_t)cols * 4;
    case SPEC_DTYPE_F16:
    case SPEC_DTYPE_BF16: return (uint64_t)cols * 2;
    case SPEC_DTYPE_Q8_0: return (uint64_t)cols / 32 * mm::Q8_0_BLOCK_BYTES;
    case SPEC_DTYPE_Q4_0: return (uint64_t)cols / 32 * mm::Q4_0_BLOCK_BYTES;
    default: return (uint64_t)(cols / quant_ref::elems(dt)) * quant_ref::bytes(dt);
    }
}

// Random weights in the dtype's file layout, and the same weights as exact f32 (the reference).
void random_weights(uint64_t &s, int32_t dt, int64_t rows, int64_t cols, std::vector<uint8_t> &bytes,
                    std::vector<float> &dense) {
    const uint64_t rb = row_bytes_of(dt, cols);
    bytes.assign(rb * rows, 0);
    dense.assign((size_t)(rows * cols), 0.0f);
    for (int64_t r = 0; r < rows; r++) {
        uint8_t *row = bytes.data() + r * rb;
        float *out = dense.data() + r * cols;
        if (quant_ref::bytes(dt) > 0) { // typical scales and mins (kind 0), random quants
            const int be = quant_ref::elems(dt), bb = quant_ref::bytes(dt);
            for (int64_t b = 0; b < cols / be; b++) {
                quant_test::fill_block(s, dt, 0, row + b * bb);
                quant_ref::dequant_block(dt, row + b * bb, out + b * be);
            }
        } else if (is_quant(dt)) {
            const int bb = dt == SPEC_DTYPE_Q8_0 ? mm::Q8_0_BLOCK_BYTES : mm::Q4_0_BLOCK_BYTES;
            for (int64_t b = 0; b < cols / 32; b++) {
                uint8_t *blk = row + b * bb;
                const uint16_t d = km::f32_to_f16(uniform(s, -0.02f, 0.02f));
                blk[0] = (uint8_t)d;
                blk[1] = (uint8_t)(d >> 8);
                for (int i = 2; i < bb; i++) blk[i] = (uint8_t)splitmix64(s);
                for (int j = 0; j < 32; j++) {
                    const int q = dt == SPEC_DTYPE_Q8_0 ? mm::q8_0_element(blk + 2, j) : mm::q4_0_element(blk + 2, j);
                    out[b * 32 + j] = mm::dequant(q, mm::block_scale(blk));
                }
            }
        } else {
            for (int64_t k = 0; k < cols; k++) {
                const float w = uniform(s, -1.0f, 1.0f);
                if (dt == SPEC_DTYPE_F32) {
                    memcpy(row + 4 * k, &w, 4);
                    out[k] = w;
                } else {
                    const uint16_t h = dt == SPEC_DTYPE_F16 ? km::f32_to_f16(w) : km::f32_to_bf16(w);
                    row[2 * k] = (uint8_t)h;
                    row[2 * k + 1] = (uint8_t)(h >> 8);
                    out[k] = dt == SPEC_DTYPE_F16 ? km::f16_to_f32(h) : km::bf16_to_f32(h);
                }
            }
        }
    }
}

// ref[t][r] = sum_k w[r][k] x[t][k] and mag[t][r] = sum_k |w[r][k] x[t][k]|, in double, on all cores.
void reference(const std::vector<float> &w, int64_t rows, int64_t cols, const std::vector<float> &x, int64_t ldx,
               int n, std::vector<double> &ref, std::vector<double> &mag) {
    ref.assign((size_t)n * rows, 0.0);
    mag.assign((size_t)n * rows, 0.0);
    unsigned workers = std::max(1u, std::min(32u, std::thread::hardware_concurrency()));
    std::vector<std::thread> pool;
    for (unsigned wk = 0; wk < workers; wk++)
        pool.emplace_back([&, wk] {
            for (int64_t r = wk; r < rows; r += workers) {
                const float *wr = w.data() + r * cols;
                for (int t = 0; t < n; t++) {
                    const float *xt = x.data() + t * ldx;
                    double acc = 0, m = 0;
                    for (int64_t k = 0; k < cols; k++) {
                        const double p = (double)wr[k] * (double)xt[k];
                        acc += p;
                        m += std::fabs(p);
                    }
                    ref[(size_t)t * rows + r] = acc;
                    mag[(size_t)t * rows + r] = m;
                }
            }
        });
    for (auto &th : pool) th.join();
}

struct Shape {
    int64_t rows, cols;
    int64_t ldx_pad, ldy_pad; // ldx = cols + ldx_pad, ldy = rows + ldy_pad
};

// One (dtype, shape): weights and 200 (or 128) tokens uploaded once, then every n.
void test_shape(uint64_t &seed, int32_t dt, const Shape &sh, const std::vector<int> &ns, void *d_scratch,
                size_t scratch_bytes) {
    const int max_n = *std::max_element(ns.begin(), ns.end());
    const int64_t rows = sh.rows, cols = sh.cols, ldx = cols + sh.ldx_pad, ldy = rows + sh.ldy_pad;
    std::vector<uint8_t> wbytes;
    std::vector<float> wdense;
    random_weights(seed, dt, rows, cols, wbytes, wdense);
    std::vector<float> x((size_t)(max_n * ldx), 0.0f);
    for (int t = 0; t < max_n; t++) {
        const float scale = std::ldexp(1.0f, (int)(splitmix64(seed) % 21) - 10); // tokens of different sizes
        for (int64_t k = 0; k < cols; k++) x[(size_t)(t * ldx + k)] = uniform(seed, -scale, scale);
    }
    std::vector<double> ref, mag;
    reference(wdense, rows, cols, x, ldx, max_n, ref, mag);

    void *d_w = nullptr;
    float *d_x = nullptr, *d_y = nullptr;
    CUDA_OK(cudaMalloc(&d_w, wbytes.size()));
    CUDA_OK(cudaMalloc((void **)&d_x, x.size() * 4));
    CUDA_OK(cudaMalloc((void **)&d_y, (size_t)(max_n * ldy) * 4));
    CUDA_OK(cudaMemcpy(d_w, wbytes.data(), wbytes.size(), cudaMemcpyHostToDevice));
    CUDA_OK(cudaMemcpy(d_x, x.data(), x.size() * 4, cudaMemcpyHostToDevice));
    cuda::DeviceMatrix W;
    W.data = d_w;
    W.dtype = dt;
    W.rows = rows;
    W.cols = cols;
    W.row_bytes = row_bytes_of(dt, cols);

    std::vector<float> y0((size_t)(max_n * ldy)), y((size_t)(max_n * ldy));
    for (size_t i = 0; i < ns.size(); i++) {
        const int n = ns[i];
        const bool accumulate = (i % 2) == 1;
        for (auto &v : y0) v = uniform(seed, -1.0f, 1.0f);
        CUDA_OK(cudaMemcpy(d_y, y0.data(), y0.size() * 4, cudaMemcpyHostToDevice));
        if (cuda::matmul_scratch_bytes(cols, n) > scratch_bytes) {
            EXPECT(false, "scratch of %zu bytes too small", scratch_bytes);
            continue;
        }
        Failure err{SPEC_OK, ""};
        const Status st = cuda::matmul(W, d_x, ldx, n, d_y, ldy, accumulate, d_scratch, 0, err);
        EXPECT(st == SPEC_OK, "%s %lldx%lld n=%d: matmul failed: %s", dtype_label(dt), (long long)rows,
               (long long)cols, n, err.message.c_str());
        if (st != SPEC_OK) continue;
        CUDA_OK(cudaDeviceSynchronize());
        CUDA_OK(cudaMemcpy(y.data(), d_y, y.size() * 4, cudaMemcpyDeviceToHost));

        const bool tensor_cores = n > 8 && dt != SPEC_DTYPE_F32 && (is_quant(dt) || cols % 8 == 0);
        const double tol = tensor_cores ? 0x1.0p-16 : 0x1.0p-18;
        double worst = 0;
        int bad = 0;
        for (int t = 0; t < max_n; t++)
            for (int64_t r = 0; r < ldy; r++) {
                const size_t o = (size_t)(t * ldy + r);
                if (t >= n || r >= rows) { // outside the product: untouched
                    if (memcmp(&y[o], &y0[o], 4) != 0 && bad++ < 5)
                        fprintf(stderr, "  %s n=%d: Y[%d][%lld] outside the product was written\n", dtype_label(dt), n, t,
                                (long long)r);
                    continue;
                }
                const size_t ri = (size_t)t * rows + r;
                const double want = ref[ri] + (accumulate ? (double)y0[o] : 0.0);
                const double err_abs = std::fabs((double)y[o] - want);
                const double bound = tol * mag[ri] + (accumulate ? std::fabs(want) * 0x1.0p-23 : 0.0) + 1e-30;
                const double ratio = err_abs / (mag[ri] + 1e-30);
                if (ratio > worst || std::isnan(ratio)) worst = std::isnan(ratio) ? INFINITY : ratio;
                if (!(err_abs <= bound) && bad++ < 5)
                    fprintf(stderr, "  %s %lldx%lld n=%d acc=%d: Y[%d][%lld] = %.9g, want %.9g (|err|/sum|wx| = %.3g)\n",
                            dtype_label(dt), (long long)rows, (long long)cols, n, (int)accumulate, t, (long long)r, y[o],
                            want, ratio);
            }
        printf("  %-4s %5lldx%-5lld n=%-3d acc=%d %-12s worst |err|/sum|wx| = %.3g%s\n", dtype_label(dt),
               (long long)rows, (long long)cols, n, (int)accumulate, tensor_cores ? "tensor-core" : "streaming", worst,
               bad ? "  FAILED" : "");
        if (bad) g_failures++;
    }
    cudaFree(d_w);
    cudaFree(d_x);
    cudaFree(d_y);
}

void test_validation(void *d_scratch) {
    void *d_w = nullptr;
    float *d_x = nullptr, *d_y = nullptr;
    CUDA_OK(cudaMalloc(&d_w, 1 << 16));
    CUDA_OK(cudaMalloc((void **)&d_x, 1 << 16));
    CUDA_OK(cudaMalloc((void **)&d_y, 1 << 16));
    cuda::DeviceMatrix W;
    W.data = d_w;
    W.dtype = SPEC_DTYPE_Q8_0;
    W.rows = 4;
    W.cols = 100;
    W.row_bytes = 0;
    Failure err{SPEC_OK, ""};
    Status st = cuda::matmul(W, d_x, 100, 1, d_y, 4, false, nullptr, 0, err);
    EXPECT(st == SPEC_ERR_INVALID_ARGUMENT && err.message.find("multiple of 32") != std::string::npos,
           "Q8_0 with 100 columns: status %d, \"%s\"", st, err.message.c_str());
    W.cols = 64;
    W.row_bytes = 64; // should be 68
    st = cuda::matmul(W, d_x, 64, 1, d_y, 4, false, nullptr, 0, err);
    EXPECT(st == SPEC_ERR_INVALID_ARGUMENT && err.message.find("row_bytes") != std::string::npos,
           "wrong row_bytes: status %d, \"%s\"", st, err.message.c_str());
    W.row_bytes = 68;
    st = cuda::matmul(W, d_x, 64, 16, d_y, 4, false, nullptr, 0, err);
    EXPECT(st == SPEC_ERR_INVALID_ARGUMENT && err.message.find("scratch") != std::string::npos,
           "16 tokens without scratch: status %d, \"%s\"", st, err.message.c_str());
    st = cuda::matmul(W, d_x, 32, 1, d_y, 4, false, nullptr, 0, err);
    EXPECT(st == SPEC_ERR_INVALID_ARGUMENT, "ldx below cols: status %d", st);
    st = cuda::matmul(W, d_x, 64, 0, d_y, 4, false, nullptr, 0, err);
    EXPECT(st == SPEC_OK, "no tokens: status %d", st);
    W.dtype = SPEC_DTYPE_Q4_K; // 64 columns: not a super-block
    W.row_bytes = 0;
    st = cuda::matmul(W, d_x, 64, 1, d_y, 4, false, nullptr, 0, err);
    EXPECT(st == SPEC_ERR_INVALID_ARGUMENT && err.message.find("Q4_K weights need cols a multiple of 256") != std::string::npos,
           "Q4_K with 64 columns: status %d, \"%s\"", st, err.message.c_str());
    W.dtype = 77;
    st = cuda::matmul(W, d_x, 64, 1, d_y, 4, false, nullptr, 0, err);
    EXPECT(st == SPEC_ERR_INVALID_ARGUMENT, "unknown dtype: status %d", st);
    EXPECT(cuda::matmul_scratch_bytes(2048, 8) == 0, "streaming needs no scratch");
    EXPECT(cuda::matmul_scratch_bytes(2048, 9) >= (size_t)9 * 2048 * 4, "scratch for 9 tokens");
    cudaFree(d_w);
    cudaFree(d_x);
    cudaFree(d_y);
}

// Calls captured into a graph on a non-default stream reproduce the eager results bit for bit.
void test_graph_capture(uint64_t &seed, void *d_scratch) {
    const int64_t rows = 1000, cols = 2048;
    const int32_t dts[] = {SPEC_DTYPE_BF16, SPEC_DTYPE_Q8_0, SPEC_DTYPE_Q4_K};
    for (int32_t dt : dts) {
        std::vector<uint8_t> wbytes;
        std::vector<float> wdense;
        random_weights(seed, dt, rows, cols, wbytes, wdense);
        const int ns[] = {1, 64};
        for (int n : ns) {
            std::vector<float> x((size_t)(n * cols));
            for (auto &v : x) v = uniform(seed, -1.0f, 1.0f);
            void *d_w;
            float *d_x, *d_y;
            CUDA_OK(cudaMalloc(&d_w, wbytes.size()));
            CUDA_OK(cudaMalloc((void **)&d_x, x.size() * 4));
            CUDA_OK(cudaMalloc((void **)&d_y, (size_t)(2 * n * rows) * 4));
            CUDA_OK(cudaMemcpy(d_w, wbytes.data(), wbytes.size(), cudaMemcpyHostToDevice));
            CUDA_OK(cudaMemcpy(d_x, x.data(), x.size() * 4, cudaMemcpyHostToDevice));
            cuda::DeviceMatrix W;
            W.data = d_w;
            W.dtype = dt;
            W.rows = rows;
            W.cols = cols;
            W.row_bytes = row_bytes_of(dt, cols);
            cudaStream_t stream;
            CUDA_OK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
            // A non-blocking stream does not wait for the legacy stream: the uploads above (a
            // pageable cudaMemcpy may return before its copy lands) and earlier tests' work on
            // d_scratch must be done before the eager call reads them.
            CUDA_OK(cudaDeviceSynchronize());
            Failure err{SPEC_OK, ""};
            EXPECT(cuda::matmul(W, d_x, cols, n, d_y, rows, false, d_scratch, stream, err) == SPEC_OK, "eager: %s",
                   err.message.c_str());
            cudaGraph_t graph;
            cudaGraphExec_t exec;
            CUDA_OK(cudaStreamBeginCapture(stream, cudaStreamCaptureModeGlobal));
            const Status st = cuda::matmul(W, d_x, cols, n, d_y + n * rows, rows, false, d_scratch, stream, err);
            CUDA_OK(cudaStreamEndCapture(stream, &graph));
            EXPECT(st == SPEC_OK, "captured: %s", err.message.c_str());
            CUDA_OK(cudaGraphInstantiate(&exec, graph, 0));
            CUDA_OK(cudaGraphLaunch(exec, stream));
            CUDA_OK(cudaGraphLaunch(exec, stream)); // twice: replays are repeatable too
            CUDA_OK(cudaStreamSynchronize(stream));
            std::vector<float> y((size_t)(2 * n * rows));
            CUDA_OK(cudaMemcpy(y.data(), d_y, y.size() * 4, cudaMemcpyDeviceToHost));
            EXPECT(memcmp(y.data(), y.data() + n * rows, (size_t)(n * rows) * 4) == 0,
                   "%s n=%d: graph replay differs from the eager call", dtype_label(dt), n);
            printf("  graph capture %s n=%d: %s\n", dtype_label(dt), n,
                   memcmp(y.data(), y.data() + n * rows, (size_t)(n * rows) * 4) == 0 ? "identical" : "DIFFERENT");
            cudaGraphExecDestroy(exec);
            cudaGraphDestroy(graph);
            cudaStreamDestroy(stream);
            cudaFree(d_w);
            cudaFree(d_x);
            cudaFree(d_y);
        }
    }
}

} // namespace

int main() {
    int devices = 0;
    if (cudaGetDeviceCount(&devices) != cudaSuccess || devices == 0) {
        printf("test_cuda_matmul: no CUDA device, skipped\n");
        return 77;
    }
    const char *q = getenv("SPECULA_TEST_QUICK");
    const bool quick = q && strcmp(q, "1") == 0;
    uint64_t seed = 0x5eed;

    std::vector<Shape> shapes;
    if (quick) {
        shapes = {{1000, 96, 1, 3}, {300, 100, 0, 0}, {517, 200, 0, 2}, {520, 2048, 0, 0}, {517, 768, 0, 2}};
    } else {
        // 200 columns: a multiple of 8 but not of 32, so the tensor-core path's last k tile is part
        // weights, part zero fill (the other tensor-core shapes have whole k tiles)
        // 768 columns: three k-quant super-blocks, 24 k tiles (split-k ranges end inside a super-block)
        shapes = {{2048, 2048, 0, 0}, {5632, 2048, 0, 0}, {2048, 5632, 0, 0}, {1000, 96, 1, 3}, {1003, 160, 4, 1}, {1003, 768, 4, 1},
                  {517, 200, 0, 2}, {300, 100, 0, 0}};
    }
    const std::vector<int> ns_full = {1, 2, 3, 4, 5, 7, 8, 9, 16, 17, 31, 32, 64, 100, 128};
    const std::vector<int> ns_quick = {1, 3, 8, 9, 17, 64, 128};
    const int32_t dts[] = {SPEC_DTYPE_F32,  SPEC_DTYPE_F16,  SPEC_DTYPE_BF16, SPEC_DTYPE_Q8_0, SPEC_DTYPE_Q4_0,
                           SPEC_DTYPE_Q4_1, SPEC_DTYPE_Q5_0, SPEC_DTYPE_Q5_1, SPEC_DTYPE_Q2_K, SPEC_DTYPE_Q3_K,
                           SPEC_DTYPE_Q4_K, SPEC_DTYPE_Q5_K, SPEC_DTYPE_Q6_K};

    size_t scratch_bytes = 0;
    for (const Shape &sh : shapes) scratch_bytes = std::max(scratch_bytes, cuda::matmul_scratch_bytes(sh.cols, 200));
    scratch_bytes = std::max(scratch_bytes, cuda::matmul_scratch_bytes(2048, 128));
    void *d_scratch = nullptr;
    CUDA_OK(cudaMalloc(&d_scratch, scratch_bytes));

    for (int32_t dt : dts)
        for (const Shape &sh : shapes) {
            if (sh.cols % block_elems_of(dt) != 0) continue;
            // the formats of quant_chunks.hpp share the kernels' paths: spare the reference (and the sanitizers)
            if (quant_ref::bytes(dt) > 0 && (sh.rows == 5632 || (quick && sh.cols != 768))) continue;
            std::vector<int> ns = quick ? ns_quick : ns_full;
            if (sh.rows * sh.cols <= 1003 * 160) ns.push_back(200); // past one tensor-core launch
            test_shape(seed, dt, sh, ns, d_scratch, scratch_bytes);
        }
    test_validation(d_scratch);
    test_graph_capture(seed, d_scratch);
    cudaFree(d_scratch);
    if (g_failures) {
        fprintf(stderr, "test_cuda_matmul: %d failure(s)\n", g_failures);
        return 1;
    }
    printf("test_cuda_matmul: all checks passed\n");
    return 0;
}
