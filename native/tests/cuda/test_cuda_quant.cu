// The chunk decoders of the GGML formats beyond Q8_0 / Q4_0 (native/core/quant_chunks.hpp) on the
// device, with the loads the matrix kernels use (StreamingLoad: __ldcs; CachedLoad: __ldg), and
// model_math's dequant_element (the embedding kernel's path), against the independent scalar
// reference (quant_reference.hpp), bit for bit, on the blocks the cpu test checks
// (quant_test_blocks.hpp: random, extreme f16 scales and mins, all ones, all zeros). The blocks
// sit back to back from a 2-byte aligned address, as they do in a row of a model file.
//
// Exit 0: all passed; 1: a failure; 77: no CUDA device (ctest reports it as skipped).
#include "../../core/model_math.hpp"
#include "../../core/quant_chunks.hpp"
#include "../quant_reference.hpp"
#include "../quant_test_blocks.hpp"
#include "../test_random.hpp"
#include "cuda_check.cuh"

#include <cuda_runtime.h>

#include <cstdio>
#include <cstring>
#include <vector>

using namespace specula;

namespace {

// out[3][blocks * elems]: per element, the streaming kernel's decode, the tensor-core kernel's
// (fetch then decode, as mma_kernel splits them), and dequant_element. One thread per chunk.
template <int32_t DT>
__global__ void decode_kernel(const uint8_t *blocks, int n_blocks, float *out) {
    constexpr int CPB = qb::chunks_per_block(DT), BE = qb::block_elems(DT), BB = qb::block_bytes(DT);
    const int64_t total = (int64_t)n_blocks * BE;
    for (int64_t g = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; g < (int64_t)n_blocks * CPB; g += (int64_t)gridDim.x * blockDim.x) {
        const int64_t b = g / CPB;
        const int c = (int)(g % CPB);
        const uint8_t *blk = blocks + b * BB;
        qb::Chunk streamed, cached;
        qb::chunk_of<DT>(blk, c, streamed, qb::StreamingLoad());
        qb::ChunkBytes r;
        qb::fetch_chunk<DT>(blk, c, qb::CachedLoad(), r);
        qb::decode_chunk<DT>(r, c, cached);
        for (int i = 0; i < qb::CHUNK; i++) {
            const int64_t e = b * BE + c * qb::CHUNK + i;
            out[e] = qb::chunk_weight(streamed, i);
            out[total + e] = qb::chunk_weight(cached, i);
            out[2 * total + e] = mm::dequant_element(DT, blocks, e); // the row is all the blocks
        }
    }
}

template <int32_t DT>
void launch(const uint8_t *d_blocks, int n_blocks, float *d_out) {
    decode_kernel<DT><<<64, 128>>>(d_blocks, n_blocks, d_out);
}

void launch_any(int32_t dt, const uint8_t *d_blocks, int n_blocks, float *d_out) {
    switch (dt) {
    case SPEC_DTYPE_Q4_1: launch<SPEC_DTYPE_Q4_1>(d_blocks, n_blocks, d_out); break;
    case SPEC_DTYPE_Q5_0: launch<SPEC_DTYPE_Q5_0>(d_blocks, n_blocks, d_out); break;
    case SPEC_DTYPE_Q5_1: launch<SPEC_DTYPE_Q5_1>(d_blocks, n_blocks, d_out); break;
    case SPEC_DTYPE_Q2_K: launch<SPEC_DTYPE_Q2_K>(d_blocks, n_blocks, d_out); break;
    case SPEC_DTYPE_Q3_K: launch<SPEC_DTYPE_Q3_K>(d_blocks, n_blocks, d_out); break;
    case SPEC_DTYPE_Q4_K: launch<SPEC_DTYPE_Q4_K>(d_blocks, n_blocks, d_out); break;
    case SPEC_DTYPE_Q5_K: launch<SPEC_DTYPE_Q5_K>(d_blocks, n_blocks, d_out); break;
    default: launch<SPEC_DTYPE_Q6_K>(d_blocks, n_blocks, d_out); break;
    }
}

uint32_t bits(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

} // namespace

int main() {
    int devices = 0;
    if (cudaGetDeviceCount(&devices) != cudaSuccess || devices == 0) {
        printf("test_cuda_quant: no CUDA device, skipped\n");
        return 77;
    }
    int failures = 0;
    uint64_t s = 3333;
    const int n_blocks = 60 * quant_test::kKinds;
    for (int32_t dt : quant_test::kTypes) {
        const int be = quant_ref::elems(dt), bb = quant_ref::bytes(dt);
        std::vector<uint8_t> host((size_t)n_blocks * bb);
        for (int b = 0; b < n_blocks; b++) quant_test::fill_block(s, dt, b % quant_test::kKinds, host.data() + (size_t)b * bb);
        std::vector<float> want((size_t)n_blocks * be);
        for (int b = 0; b < n_blocks; b++) quant_ref::dequant_block(dt, host.data() + (size_t)b * bb, want.data() + (size_t)b * be);

        uint8_t *d_mem = nullptr;
        float *d_out = nullptr;
        CUDA_OK(cudaMalloc((void **)&d_mem, host.size() + 2));
        CUDA_OK(cudaMalloc((void **)&d_out, want.size() * 3 * sizeof(float)));
        uint8_t *d_blocks = d_mem + 2; // 2-byte aligned only, as a block inside a row may be
        CUDA_OK(cudaMemcpy(d_blocks, host.data(), host.size(), cudaMemcpyHostToDevice));
        launch_any(dt, d_blocks, n_blocks, d_out);
        CUDA_OK(cudaGetLastError());
        CUDA_OK(cudaDeviceSynchronize());
        std::vector<float> got(want.size() * 3);
        CUDA_OK(cudaMemcpy(got.data(), d_out, got.size() * sizeof(float), cudaMemcpyDeviceToHost));
        cudaFree(d_mem);
        cudaFree(d_out);

        const char *paths[3] = {"streaming decode", "tensor-core fetch+decode", "dequant_element"};
        int bad = 0;
        for (int p = 0; p < 3; p++)
            for (size_t e = 0; e < want.size(); e++)
                if (bits(got[p * want.size() + e]) != bits(want[e]) && bad++ < 5)
                    fprintf(stderr, "  %s %s: block %zu (kind %zu) element %zu: device %a, reference %a\n", quant_test::type_name(dt),
                            paths[p], e / be, e / be % quant_test::kKinds, e % be, got[p * want.size() + e], want[e]);
        printf("  %-5s %zu elements x 3 device paths: %s\n", quant_test::type_name(dt), want.size(), bad ? "DIFFERENT" : "identical to the reference");
        failures += bad != 0;
    }
    if (failures) {
        fprintf(stderr, "test_cuda_quant: %d format(s) differ\n", failures);
        return 1;
    }
    printf("test_cuda_quant: all checks passed\n");
    return 0;
}
