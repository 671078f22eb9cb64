/* The cuda kernels' decoders of the GGML formats beyond Q8_0 / Q4_0 (native/core/quant_chunks.hpp),
 * run on the cpu: the same __host__ __device__ code the weight-streaming and tensor-core kernels
 * run (matmul.cu), compiled for the host. Block by block, chunk by chunk, against the independent
 * scalar reference (quant_reference.hpp), bit for bit, on random blocks, blocks with extreme f16
 * scales and mins (the largest, subnormals, both signs, negative zero), all-ones and all-zero
 * blocks (quant_test_blocks.hpp: the device test cuda/test_cuda_quant.cu checks the same ones).
 * Also the tensor-core path's arithmetic with those decoded chunks: integers summed per sub-block,
 * scaled by dl, minus ml times the sub-block's activation sum, against a double reference. */
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <vector>

#include "check.h"
#include "../core/matmul_math.hpp"
#include "../core/quant_chunks.hpp"
#include "quant_reference.hpp"
#include "quant_test_blocks.hpp"
#include "test_random.hpp"

using namespace specula;

namespace {

bool same_bits(float a, float b) { return km::float_bits(a) == km::float_bits(b); }

// Every chunk of many blocks of every kind, through each load policy's host twin.
void test_chunks_against_reference() {
    uint64_t s = 1111;
    qb::Chunk none;
    CHECK(!qb::chunk_of_dtype(SPEC_DTYPE_Q8_0, nullptr, 0, none)); // Q8_0 / Q4_0 have their own path
    for (int32_t dt : quant_test::kTypes) {
        const int be = quant_ref::elems(dt), bb = quant_ref::bytes(dt);
        CHECK(qb::block_elems(dt) == be && qb::block_bytes(dt) == bb && qb::chunks_per_block(dt) * qb::CHUNK == be);
        CHECK(qb::sub_block_elems(dt) % qb::CHUNK == 0);
        int bad = 0, checked = 0, zeros_ok = 1, q_ok = 1, min_ok = 1;
        const int blocks = 60 * quant_test::kKinds;
        for (int b = 0; b < blocks; b++) {
            const int kind = b % quant_test::kKinds;
            uint8_t blk[256];
            float want[256];
            quant_test::fill_block(s, dt, kind, blk);
            quant_ref::dequant_block(dt, blk, want);
            for (int c = 0; c < qb::chunks_per_block(dt); c++) {
                qb::Chunk ch[3] = {};
                CHECK(qb::chunk_of_dtype(dt, blk, c, ch[0]));
                qb::chunk_of_dtype(dt, blk, c, ch[1], qb::StreamingLoad());
                qb::chunk_of_dtype(dt, blk, c, ch[2], qb::CachedLoad());
                if (!qb::has_min(dt) && !(ch[0].ml == 0.0f)) min_ok = 0;
                for (int i = 0; i < qb::CHUNK; i++) {
                    const int j = c * qb::CHUNK + i;
                    // the tensor-core path stores q as an f16 integer: exact below 2^11
                    if (ch[0].q[i] < -2048 || ch[0].q[i] > 2048) q_ok = 0;
                    for (int v = 0; v < 3; v++) {
                        const float got = qb::chunk_weight(ch[v], i);
                        checked++;
                        if (!same_bits(got, want[j]) && bad++ < 5)
                            fprintf(stderr, "  %s block %d (kind %d) chunk %d element %d (load %d): chunk %a, reference %a\n",
                                    quant_test::type_name(dt), b, kind, c, j, v, got, want[j]);
                    }
                    if (kind == quant_test::kZeroKind && !(qb::chunk_weight(ch[0], i) == 0.0f)) zeros_ok = 0;
                }
            }
        }
        CHECK(bad == 0);
        CHECK(zeros_ok);
        CHECK(q_ok);
        CHECK(min_ok);
        printf("  %-5s %d chunk elements decoded as the reference (%d blocks, %d kinds, 3 load policies)\n",
               quant_test::type_name(dt), checked, blocks, quant_test::kKinds);
    }
}

// Fetched bytes left at their defaults (the tensor-core kernel's rows past the matrix) decode to zero.
template <int32_t DT>
void zero_fetch_decodes_to_zero(int &bad) {
    for (int c = 0; c < qb::chunks_per_block(DT); c++) {
        qb::ChunkBytes r;
        qb::Chunk ch;
        qb::decode_chunk<DT>(r, c, ch);
        for (int i = 0; i < qb::CHUNK; i++) bad += !(qb::chunk_weight(ch, i) == 0.0f) || !std::isfinite(qb::chunk_weight(ch, i));
    }
}

void test_default_fetch() {
    int bad = 0;
    zero_fetch_decodes_to_zero<SPEC_DTYPE_Q4_1>(bad);
    zero_fetch_decodes_to_zero<SPEC_DTYPE_Q5_0>(bad);
    zero_fetch_decodes_to_zero<SPEC_DTYPE_Q5_1>(bad);
    zero_fetch_decodes_to_zero<SPEC_DTYPE_Q2_K>(bad);
    zero_fetch_decodes_to_zero<SPEC_DTYPE_Q3_K>(bad);
    zero_fetch_decodes_to_zero<SPEC_DTYPE_Q4_K>(bad);
    zero_fetch_decodes_to_zero<SPEC_DTYPE_Q5_K>(bad);
    zero_fetch_decodes_to_zero<SPEC_DTYPE_Q6_K>(bad);
    CHECK(bad == 0);
    printf("  default-fetched chunks decode to zero weights\n");
}

// The tensor-core kernel's arithmetic over one row (matmul.cu, mma_kernel): k tiles of 32, each
// chunk's integers times the activations summed per sub-block in f32 (the mma), the sum added
// scaled by dl (mm::add_scaled_block), then ml times the sub-block's activation sum subtracted
// (mm::subtract_block_min). Against sum w x in double: within 2^-20 of the magnitudes involved.
void test_tile_arithmetic() {
    uint64_t s = 2222;
    for (int32_t dt : quant_test::kTypes) {
        const int be = qb::block_elems(dt), bb = qb::block_bytes(dt), sub = qb::sub_block_elems(dt);
        const int K = 768;
        int bad = 0;
        double worst = 0.0;
        for (int rep = 0; rep < 40; rep++) {
            std::vector<uint8_t> row((size_t)(K / be * bb));
            for (int b = 0; b < K / be; b++) quant_test::fill_block(s, dt, 0, row.data() + b * bb);
            std::vector<float> x(K), w(K);
            const float scale = std::ldexp(1.0f, (int)(splitmix64(s) % 9) - 4);
            for (float &v : x) v = uniform(s, -scale, scale);
            for (int b = 0; b < K / be; b++) quant_ref::dequant_block(dt, row.data() + b * bb, w.data() + b * be);
            float acc = 0.0f;
            double bound = 0.0, want = 0.0;
            for (int kt = 0; kt < K / 32; kt++) {
                for (int s0 = 0; s0 < 32; s0 += sub) {
                    float partial = 0.0f, xsum = 0.0f, dl = 0.0f, ml = 0.0f;
                    double qmag = 0.0, xmag = 0.0;
                    for (int c = s0 / qb::CHUNK; c < (s0 + sub) / qb::CHUNK; c++) {
                        const int chunk = kt * 4 + c; // the chunk of the row, then of its block
                        qb::Chunk ch{};
                        qb::chunk_of_dtype(dt, row.data() + (chunk / qb::chunks_per_block(dt)) * bb, chunk % qb::chunks_per_block(dt), ch);
                        dl = ch.dl, ml = ch.ml; // one sub-block: every chunk of it carries the same
                        for (int i = 0; i < qb::CHUNK; i++) {
                            const int k = chunk * qb::CHUNK + i;
                            partial = std::fma((float)ch.q[i], x[k], partial);
                            xsum = km::fadd(xsum, x[k]);
                            qmag += std::fabs((double)ch.q[i] * x[k]);
                            xmag += std::fabs((double)x[k]);
                        }
                    }
                    acc = mm::add_scaled_block(acc, dl, partial);
                    if (qb::has_min(dt)) acc = mm::subtract_block_min(acc, ml, xsum);
                    bound += std::fabs((double)dl) * qmag + std::fabs((double)ml) * xmag;
                }
            }
            for (int k = 0; k < K; k++) want += (double)w[k] * x[k];
            const double err = std::fabs((double)acc - want);
            worst = std::max(worst, err / (bound + 1e-300));
            if (!(err <= 0x1.0p-20 * bound) && bad++ < 3)
                fprintf(stderr, "  %s rep %d: tile arithmetic %.9g, reference %.9g (bound %.3g)\n", quant_test::type_name(dt), rep,
                        acc, want, bound);
        }
        CHECK(bad == 0);
        printf("  %-5s tile arithmetic (sub-blocks of %d) within %.2e of the magnitudes\n", quant_test::type_name(dt), sub, worst);
    }
}

} // namespace

int main() {
    (void)error_mentions;
    printf("chunk decoders (the cuda kernels' host twin) against the reference:\n");
    test_chunks_against_reference();
    test_default_fetch();
    printf("tensor-core tile arithmetic:\n");
    test_tile_arithmetic();
    return check_finish("test_quant_chunks");
}
