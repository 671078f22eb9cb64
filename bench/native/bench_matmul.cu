// Benchmark of the cuda matrix products (native/cuda/matmul.cu) at llama-1B-like shapes:
// bf16, f16 and q8_0 weights, 1..128 tokens, in the style of llm.c's dev/cuda benchmarks.
// Each row: the median over repeats of a batch of calls timed with CUDA events, after a warm-up;
// effective bandwidth counts the weight bytes only (what a decode step streams); the floor is a
// streaming-read kernel's bandwidth measured in the same run. The weights rotate over copies
// that together exceed the L2 cache, so every call reads them from HBM.
//
//   bench_matmul [--quick]
//
// Output: a markdown table, then one summary line per dtype for bench/device-check.sh:
//   | matmul | bf16 | n=1 GB/s 3861 | 89.8% of floor | n=64 x3.10 of n=1 |
#include "../../native/cuda/matmul.cuh"
#include "../../native/core/matmul_math.hpp"
#include "test_random.hpp"
#include "cuda/cuda_check.cuh"

#include <cuda_runtime.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

using namespace specula;

namespace {


// Reads every 16 bytes once; the sum is written only in a case that never happens, so the loads
// cannot be dropped.
__global__ void read_kernel(const float4 *p, size_t n4, float *sink) {
    float s = 0.0f;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n4; i += (size_t)gridDim.x * blockDim.x) {
        const float4 v = __ldcs(p + i);
        s += v.x + v.y + v.z + v.w;
    }
    if (s == 1234.5678f) *sink = s;
}

double median(std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
}

double measure_floor_gbs(int sms) {
    const size_t bytes = (size_t)2 << 30;
    float4 *buf;
    float *sink;
    CUDA_OK(cudaMalloc((void **)&buf, bytes));
    CUDA_OK(cudaMalloc((void **)&sink, 4));
    CUDA_OK(cudaMemset(buf, 0, bytes));
    cudaEvent_t a, b;
    CUDA_OK(cudaEventCreate(&a));
    CUDA_OK(cudaEventCreate(&b));
    std::vector<double> gbs;
    for (int rep = 0; rep < 12; rep++) {
        CUDA_OK(cudaEventRecord(a));
        read_kernel<<<sms * 8, 512>>>(buf, bytes / 16, sink);
        CUDA_OK(cudaEventRecord(b));
        CUDA_OK(cudaEventSynchronize(b));
        float ms = 0;
        CUDA_OK(cudaEventElapsedTime(&ms, a, b));
        if (rep >= 2) gbs.push_back((double)bytes / (ms * 1e-3) / 1e9);
    }
    cudaEventDestroy(a);
    cudaEventDestroy(b);
    cudaFree(buf);
    cudaFree(sink);
    return median(gbs);
}

struct Dtype {
    int32_t id;
    const char *name;
};

uint64_t row_bytes_of(int32_t dt, int64_t cols) {
    if (dt == SPEC_DTYPE_Q8_0) return (uint64_t)cols / 32 * mm::Q8_0_BLOCK_BYTES;
    return (uint64_t)cols * 2;
}

} // namespace

int main(int argc, char **argv) {
    bool quick = false;
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "--quick")) quick = true;
    int devices = 0;
    if (cudaGetDeviceCount(&devices) != cudaSuccess || devices == 0) {
        printf("bench_matmul: no CUDA device\n");
        return 77;
    }
    cudaDeviceProp prop;
    CUDA_OK(cudaGetDeviceProperties(&prop, 0));
    const double floor_gbs = measure_floor_gbs(prop.multiProcessorCount);
    printf("device: %s, %d SMs, L2 %d MiB; HBM floor (streaming read) %.0f GB/s\n\n", prop.name,
           prop.multiProcessorCount, prop.l2CacheSize >> 20, floor_gbs);

    const Dtype dtypes[] = {{SPEC_DTYPE_BF16, "bf16"}, {SPEC_DTYPE_F16, "f16"}, {SPEC_DTYPE_Q8_0, "q8_0"}};
    const int64_t shapes[][2] = {{2048, 2048}, {5632, 2048}, {2048, 5632}, {32000, 2048}};
    const int ns[] = {1, 2, 4, 8, 16, 32, 64, 128};
    const int batch = 10, repeats = quick ? 5 : 15;

    const int max_n = 128;
    const int64_t max_cols = 5632, max_rows = 32000;
    float *d_x, *d_y;
    CUDA_OK(cudaMalloc((void **)&d_x, (size_t)max_n * max_cols * 4));
    CUDA_OK(cudaMalloc((void **)&d_y, (size_t)max_n * max_rows * 4));
    {
        uint64_t s = 7;
        std::vector<float> x((size_t)max_n * max_cols);
        for (auto &v : x) v = uniform(s);
        CUDA_OK(cudaMemcpy(d_x, x.data(), x.size() * 4, cudaMemcpyHostToDevice));
    }
    const size_t scratch_bytes = cuda::matmul_scratch_bytes(max_cols, max_n);
    void *d_scratch;
    CUDA_OK(cudaMalloc(&d_scratch, scratch_bytes));
    cudaEvent_t ev0, ev1;
    CUDA_OK(cudaEventCreate(&ev0));
    CUDA_OK(cudaEventCreate(&ev1));

    printf("| dtype | rows x cols | n | regime | us | weight GB/s | %% of floor | x n=1 |\n");
    printf("|---|---|---|---|---|---|---|---|\n");
    struct Summary {
        double bytes_n1 = 0, us_n1 = 0, us_n64 = 0;
    };
    std::vector<Summary> summary(sizeof dtypes / sizeof dtypes[0]);
    for (size_t di = 0; di < summary.size(); di++) {
        const Dtype dt = dtypes[di];
        for (const auto &shape : shapes) {
            const int64_t rows = shape[0], cols = shape[1];
            const uint64_t rb = row_bytes_of(dt.id, cols), wbytes = rb * rows;
            // enough copies to exceed L2 three times over
            const int copies = (int)std::max<uint64_t>(2, (3ull * prop.l2CacheSize) / wbytes + 1);
            std::vector<void *> d_w(copies);
            {
                uint64_t s = 11;
                std::vector<uint8_t> host(wbytes);
                for (int64_t r = 0; r < rows; r++)
                    for (uint64_t i = 0; i < rb; i++) {
                        uint8_t *p = host.data() + r * rb + i;
                        *p = (uint8_t)splitmix64(s);
                    }
                // sane scales and 16-bit values: random bytes could be nan/inf
                for (uint64_t i = 0; i + 1 < wbytes; i += 2) {
                    uint16_t h = km::f32_to_f16(uniform(s) * 0.01f);
                    if (dt.id == SPEC_DTYPE_BF16) h = km::f32_to_bf16(uniform(s));
                    if (dt.id != SPEC_DTYPE_Q8_0 || (i % 34) == 0) {
                        host[i] = (uint8_t)h;
                        host[i + 1] = (uint8_t)(h >> 8);
                    }
                }
                for (int c = 0; c < copies; c++) {
                    CUDA_OK(cudaMalloc(&d_w[c], wbytes));
                    CUDA_OK(cudaMemcpy(d_w[c], host.data(), wbytes, cudaMemcpyHostToDevice));
                }
            }
            double us_n1 = 0;
            for (int n : ns) {
                cuda::DeviceMatrix W;
                W.dtype = dt.id;
                W.rows = rows;
                W.cols = cols;
                W.row_bytes = rb;
                Failure err{SPEC_OK, ""};
                int next = 0;
                auto call = [&]() {
                    W.data = d_w[next];
                    next = (next + 1) % copies;
                    if (cuda::matmul(W, d_x, cols, n, d_y, rows, false, d_scratch, 0, err) != SPEC_OK) {
                        fprintf(stderr, "matmul failed: %s\n", err.message.c_str());
                        exit(1);
                    }
                };
                for (int i = 0; i < 3 * batch; i++) call(); // warm-up
                std::vector<double> us;
                for (int rep = 0; rep < repeats; rep++) {
                    CUDA_OK(cudaEventRecord(ev0));
                    for (int i = 0; i < batch; i++) call();
                    CUDA_OK(cudaEventRecord(ev1));
                    CUDA_OK(cudaEventSynchronize(ev1));
                    float ms = 0;
                    CUDA_OK(cudaEventElapsedTime(&ms, ev0, ev1));
                    us.push_back(ms * 1e3 / batch);
                }
                const double t = median(us), gbs = (double)wbytes / (t * 1e-6) / 1e9;
                if (n == 1) {
                    us_n1 = t;
                    summary[di].bytes_n1 += (double)wbytes;
                    summary[di].us_n1 += t;
                }
                if (n == 64) summary[di].us_n64 += t;
                printf("| %s | %lldx%lld | %d | %s | %.1f | %.0f | %.1f%% | %.2f |\n", dt.name, (long long)rows,
                       (long long)cols, n, n <= 8 ? "stream" : "mma", t, gbs, 100.0 * gbs / floor_gbs, t / us_n1);
                fflush(stdout);
            }
            for (void *p : d_w) cudaFree(p);
        }
    }
    printf("\n");
    for (size_t di = 0; di < summary.size(); di++) {
        const Summary &s = summary[di];
        const double gbs = s.bytes_n1 / (s.us_n1 * 1e-6) / 1e9;
        printf("| matmul | %s | n=1 GB/s %.0f | %.1f%% of floor | n=64 x%.2f of n=1 |\n", dtypes[di].name, gbs,
               100.0 * gbs / floor_gbs, s.us_n64 / s.us_n1);
    }
    cudaFree(d_x);
    cudaFree(d_y);
    cudaFree(d_scratch);
    return 0;
}
