// Matrix products of the cuda model (see matmul.cuh): a weight-streaming kernel for few tokens,
// a tensor-core (mma.sync) kernel for many. The per-element arithmetic of both lives in
// native/core/matmul_math.hpp, and the decoding of the GGML formats beyond Q8_0 / Q4_0 in
// native/core/quant_chunks.hpp, where the host tests check it.
#include "matmul.cuh"
#include "spec_cuda.cuh"
#include "../core/matmul_math.hpp"
#include "../core/quant_chunks.hpp"

#include <cooperative_groups.h>
#include <cuda_fp16.h>

#include <atomic>

namespace specula::cuda {

namespace {

namespace cg = cooperative_groups;

constexpr int DT_F32 = SPEC_DTYPE_F32, DT_F16 = SPEC_DTYPE_F16, DT_BF16 = SPEC_DTYPE_BF16, DT_Q8_0 = SPEC_DTYPE_Q8_0,
              DT_Q4_0 = SPEC_DTYPE_Q4_0;

// Integer-coded weights: Q8_0 and Q4_0 (one scale per block of 32, decoded here) and the formats
// of quant_blocks.hpp (a scale, and for some a min, per sub-block of 16 or 32; decoded by
// quant_chunks.hpp). Their rows hold whole blocks and are only 2-byte aligned.
__host__ __device__ constexpr bool is_quant(int dt) { return dt == DT_Q8_0 || dt == DT_Q4_0 || qb::is_block_decoded(dt); }

// Both kernels are sized for two blocks of 256 threads per SM (at most 128 registers a thread).
// The formats of quant_chunks.hpp decode with more live values and ptxas would otherwise take up
// to ~180 registers, leaving one block per SM: they ask for two. 0 asks for nothing (no
// .minnctapersm in the PTX), leaving the other dtypes' code as ptxas chooses it by itself.
__host__ __device__ constexpr int min_blocks_per_sm(int dt) { return qb::is_block_decoded(dt) ? 2 : 0; }

// The switch between the regimes. The streaming kernel reads each weight byte once from HBM but
// every token's activations once per weight row group from L1: 4n/STREAM_ROWS bytes of
// activations per byte of 16-bit weights. Up to n = 8 that stays under L1's bandwidth at HBM
// speed; beyond it the tensor-core kernel, which stages weights and activations in shared memory
// once per tile, is the faster one (and its fixed costs, the split and the tile, are paid back).
// bench_matmul prints both sides of the switch.
constexpr int STREAM_MAX_N = 8;
constexpr int STREAM_ROWS = 4;     // weight rows per block: each activation load serves 4 rows
constexpr int STREAM_THREADS = 256;

constexpr int MMA_THREADS = 256;   // 8 warps
constexpr int MMA_MAX_N = 128;     // tokens per launch; more loop over chunks of this
constexpr int BK = 32;             // k per pipeline stage: one quantized block
constexpr int MAX_SPLITS = 8;      // split-k blocks per cluster (the portable cluster size)
constexpr int SUM_GROUP = 16;      // k per activation sum (the smallest sub-block with a min)

// ---------------------------------------------------------------- small device helpers

__device__ __forceinline__ float warp_sum(float v) {
    for (int o = 16; o; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}
__device__ __forceinline__ float warp_max(float v) {
    for (int o = 16; o; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

// Weights are read once per call: streaming loads keep them from evicting the activations.
__device__ __forceinline__ uint16_t load_weight_u16(const uint8_t *p) {
    return __ldcs(reinterpret_cast<const unsigned short *>(p));
}

// Element k of a 16-bit or f32 row (the scalar path: rows that are not 16-byte aligned).
template <int DT>
__device__ __forceinline__ float load_weight_elem(const uint8_t *row, int64_t k) {
    if constexpr (DT == DT_F32) return __ldcs(reinterpret_cast<const float *>(row) + k);
    else if constexpr (DT == DT_F16) return mm::half_to_float(load_weight_u16(row + 2 * k));
    else return km::bf16_to_f32(load_weight_u16(row + 2 * k));
}

// Chunk c (elements 8c..8c+7) of a row, converted exactly to f32. F32/F16/BF16 rows must be
// 16-byte aligned here; quantized rows only 2-byte aligned (blocks are 34 or 18 bytes, k-quant
// super-blocks 84 to 210). A warp's 32 consecutive chunks of a k-quant row are one super-block of
// 256, decoded in registers, 8 elements per lane (its scales are read by all lanes at once).
template <int DT>
__device__ __forceinline__ void load_weight_chunk(const uint8_t *row, int64_t c, float w[8]) {
    if constexpr (DT == DT_F32) {
        const float4 *p = reinterpret_cast<const float4 *>(row) + 2 * c;
        const float4 a = __ldcs(p), b = __ldcs(p + 1);
        w[0] = a.x, w[1] = a.y, w[2] = a.z, w[3] = a.w, w[4] = b.x, w[5] = b.y, w[6] = b.z, w[7] = b.w;
    } else if constexpr (DT == DT_F16 || DT == DT_BF16) {
        const uint4 v = __ldcs(reinterpret_cast<const uint4 *>(row) + c);
        const uint32_t u[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
        for (int i = 0; i < 4; i++) {
            const uint16_t lo = (uint16_t)(u[i] & 0xffffu), hi = (uint16_t)(u[i] >> 16);
            if constexpr (DT == DT_F16) {
                w[2 * i] = mm::half_to_float(lo);
                w[2 * i + 1] = mm::half_to_float(hi);
            } else {
                w[2 * i] = km::bf16_to_f32(lo);
                w[2 * i + 1] = km::bf16_to_f32(hi);
            }
        }
    } else if constexpr (qb::is_block_decoded(DT)) {
        constexpr int CPB = qb::chunks_per_block(DT);
        qb::Chunk ch;
        qb::chunk_of<DT>(row + (uint64_t)(c / CPB) * qb::block_bytes(DT), (int)(c % CPB), ch, qb::StreamingLoad());
#pragma unroll
        for (int i = 0; i < 8; i++) w[i] = qb::chunk_weight(ch, i);
    } else {
        const uint8_t *blk = row + (c >> 2) * qb::block_bytes(DT);
        const int part = (int)(c & 3);
        const float d = mm::half_to_float(load_weight_u16(blk));
        const uint8_t *q = blk + 2 + (DT == DT_Q8_0 ? mm::q8_0_chunk_byte(part) : mm::q4_0_chunk_byte(part));
        const int shift = mm::q4_0_chunk_shift(part);
#pragma unroll
        for (int i = 0; i < 4; i++) {
            const uint16_t two = load_weight_u16(q + 2 * i); // little-endian: the lower byte comes first
            const uint8_t b0 = (uint8_t)(two & 0xffu), b1 = (uint8_t)(two >> 8);
            if constexpr (DT == DT_Q8_0) {
                w[2 * i] = mm::dequant(mm::q8_0_value(b0), d);
                w[2 * i + 1] = mm::dequant(mm::q8_0_value(b1), d);
            } else {
                w[2 * i] = mm::dequant(mm::q4_0_value(b0, shift), d);
                w[2 * i + 1] = mm::dequant(mm::q4_0_value(b1, shift), d);
            }
        }
    }
}

// 8 activations from p; vec: p is 16-byte aligned.
__device__ __forceinline__ void load_x8(const float *p, bool vec, float x[8]) {
    if (vec) {
        const float4 a = __ldg(reinterpret_cast<const float4 *>(p)), b = __ldg(reinterpret_cast<const float4 *>(p) + 1);
        x[0] = a.x, x[1] = a.y, x[2] = a.z, x[3] = a.w, x[4] = b.x, x[5] = b.y, x[6] = b.z, x[7] = b.w;
    } else {
#pragma unroll
        for (int j = 0; j < 8; j++) x[j] = __ldg(p + j);
    }
}

// ---------------------------------------------------------------- streaming (few tokens)

struct StreamArgs {
    const uint8_t *W;
    int64_t rows, cols;
    uint64_t row_bytes;
    const float *X;
    int64_t ldx;
    bool x_vec; // X and ldx allow 16-byte loads
    float *Y;
    int64_t ldy;
    bool accumulate;
};

// One block: STREAM_ROWS weight rows x N tokens. The block's threads split the rows' k range in
// chunks of 8 elements (CHUNKED: 16-byte aligned float rows or any quantized row) or single
// elements (unaligned float rows), each thread keeping STREAM_ROWS x N f32 sums in registers;
// then a shuffle reduction per warp and a fixed-order sum over the warps (deterministic).
template <int DT, int N, bool CHUNKED>
__global__ void __launch_bounds__(STREAM_THREADS, min_blocks_per_sm(DT)) stream_kernel(const StreamArgs a) {
    constexpr int R = STREAM_ROWS;
    __shared__ float red[STREAM_THREADS / 32][R * N];
    const int64_t r0 = (int64_t)blockIdx.x * R;
    const uint8_t *wrow[R];
#pragma unroll
    for (int i = 0; i < R; i++) wrow[i] = a.W + (uint64_t)(r0 + i < a.rows ? r0 + i : a.rows - 1) * a.row_bytes;
    float acc[R][N];
#pragma unroll
    for (int i = 0; i < R; i++)
#pragma unroll
        for (int t = 0; t < N; t++) acc[i][t] = 0.0f;

    if constexpr (CHUNKED) {
        const int64_t chunks = a.cols / 8;
        for (int64_t c = threadIdx.x; c < chunks; c += STREAM_THREADS) {
            float w[R][8];
#pragma unroll
            for (int i = 0; i < R; i++) load_weight_chunk<DT>(wrow[i], c, w[i]);
#pragma unroll
            for (int t = 0; t < N; t++) {
                float x[8];
                load_x8(a.X + t * a.ldx + 8 * c, a.x_vec, x);
#pragma unroll
                for (int i = 0; i < R; i++)
#pragma unroll
                    for (int j = 0; j < 8; j++) acc[i][t] = fmaf(w[i][j], x[j], acc[i][t]);
            }
        }
    } else {
        for (int64_t k = threadIdx.x; k < a.cols; k += STREAM_THREADS) {
            float w[R];
#pragma unroll
            for (int i = 0; i < R; i++) w[i] = load_weight_elem<DT>(wrow[i], k);
#pragma unroll
            for (int t = 0; t < N; t++) {
                const float x = __ldg(a.X + t * a.ldx + k);
#pragma unroll
                for (int i = 0; i < R; i++) acc[i][t] = fmaf(w[i], x, acc[i][t]);
            }
        }
    }

    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
#pragma unroll
    for (int i = 0; i < R; i++)
#pragma unroll
        for (int t = 0; t < N; t++) {
            const float v = warp_sum(acc[i][t]);
            if (lane == 0) red[warp][i * N + t] = v;
        }
    __syncthreads();
    if (threadIdx.x < R * N) {
        const int i = threadIdx.x / N, t = threadIdx.x % N;
        float sum = red[0][threadIdx.x];
        for (int w = 1; w < STREAM_THREADS / 32; w++) sum += red[w][threadIdx.x];
        const int64_t row = r0 + i;
        if (row < a.rows) {
            float *y = a.Y + t * a.ldy + row;
            *y = a.accumulate ? *y + sum : sum;
        }
    }
}

template <int DT, bool CHUNKED, int N = 1>
void launch_stream(const StreamArgs &a, int n, cudaStream_t stream) {
    if constexpr (N < STREAM_MAX_N) {
        if (n != N) return launch_stream<DT, CHUNKED, N + 1>(a, n, stream);
    }
    const unsigned blocks = (unsigned)((a.rows + STREAM_ROWS - 1) / STREAM_ROWS);
    stream_kernel<DT, N, CHUNKED><<<blocks, STREAM_THREADS, 0, stream>>>(a);
}

// ---------------------------------------------------------------- activations split (mma)

// One block per token: the token's scale from its largest |x|, then x*s as hi + lo 16-bit parts
// in [n][kpad] arrays, zero past cols so that the mma kernel's last k tile adds nothing. SUMS
// (weights with a min per sub-block): also the sum of hi + lo over each group of 16 k, [n][kpad / 16].
template <bool BF16, bool SUMS>
__global__ void __launch_bounds__(256) split_kernel(const float *X, int64_t ldx, int64_t cols, int64_t kpad,
                                                    uint16_t *hi, uint16_t *lo, float *inv_scale, float *sums) {
    __shared__ float red[32];
    const float *x = X + blockIdx.x * ldx;
    float m = 0.0f;
    for (int64_t k = threadIdx.x; k < cols; k += blockDim.x) m = fmaxf(m, fabsf(x[k]));
    m = warp_max(m);
    if ((threadIdx.x & 31) == 0) red[threadIdx.x >> 5] = m;
    __syncthreads();
    if (threadIdx.x < 32) {
        float v = threadIdx.x < blockDim.x / 32 ? red[threadIdx.x] : 0.0f;
        v = warp_max(v);
        if (threadIdx.x == 0) red[0] = v;
    }
    __syncthreads();
    const float s = mm::split_scale(red[0]);
    uint16_t *h = hi + blockIdx.x * kpad, *l = lo + blockIdx.x * kpad;
    for (int64_t k = threadIdx.x; k < kpad; k += blockDim.x) {
        mm::Split16 p{0, 0};
        if (k < cols) p = BF16 ? mm::split_bf16(km::fmul(x[k], s)) : mm::split_f16(km::fmul(x[k], s));
        h[k] = p.hi;
        l[k] = p.lo;
    }
    if constexpr (SUMS) {
        const int64_t groups = kpad / SUM_GROUP;
        for (int64_t g = threadIdx.x; g < groups; g += blockDim.x) {
            float sum = 0.0f;
            for (int j = 0; j < SUM_GROUP; j++) {
                const int64_t k = g * SUM_GROUP + j;
                if (k < cols) {
                    const float v = km::fmul(x[k], s);
                    sum = km::fadd(sum, mm::split_value(BF16 ? mm::split_bf16(v) : mm::split_f16(v), BF16));
                }
            }
            sums[blockIdx.x * groups + g] = sum;
        }
    }
    if (threadIdx.x == 0) inv_scale[blockIdx.x] = mm::inverse_scale(s);
}

// Scratch of the split for n tokens: hi, lo ([n][kpad] 16-bit each), 1/s per token, then the
// activation sums per group of 16 ([n][kpad / 16] f32; only formats with a min use them, but the
// scratch is the same for every dtype).
struct SplitLayout {
    int64_t kpad = 0, groups = 0;
    size_t hi = 0, lo = 0, inv_scale = 0, sums = 0, bytes = 0;
    SplitLayout(int64_t cols, int n) {
        kpad = (cols + BK - 1) / BK * BK;
        groups = kpad / SUM_GROUP;
        Layout l;
        hi = l.add((size_t)n * kpad * 2);
        lo = l.add((size_t)n * kpad * 2);
        inv_scale = l.add((size_t)n * 4);
        sums = l.add((size_t)n * groups * 4);
        bytes = l.bytes;
    }
};

// ---------------------------------------------------------------- tensor cores (many tokens)

__device__ __forceinline__ uint32_t smem_addr(const void *p) { return (uint32_t)__cvta_generic_to_shared(p); }

// 16 bytes global -> shared, asynchronously; src_bytes = 0 fills the 16 bytes with zeros.
__device__ __forceinline__ void cp_async16(void *dst, const void *src, int src_bytes) {
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(smem_addr(dst)), "l"(src), "r"(src_bytes)
                 : "memory");
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::: "memory"); }
// 8 bytes global -> shared (through L1: the activation sums are small and read by every block).
__device__ __forceinline__ void cp_async8(void *dst, const void *src, int src_bytes) {
    asm volatile("cp.async.ca.shared.global [%0], [%1], 8, %2;\n" ::"r"(smem_addr(dst)), "l"(src), "r"(src_bytes)
                 : "memory");
}
template <int PENDING>
__device__ __forceinline__ void cp_async_wait() {
    asm volatile("cp.async.wait_group %0;\n" ::"n"(PENDING) : "memory");
}

__device__ __forceinline__ void ldmatrix_x4(uint32_t r[4], const void *p) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(smem_addr(p))
                 : "memory");
}

// c += a (16x16, row-major) * b (16x8, column-major), f32 accumulation.
template <bool BF16>
__device__ __forceinline__ void mma16816(float c[4], const uint32_t a[4], uint32_t b0, uint32_t b1) {
    if constexpr (BF16) {
        asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, "
                     "{%8, %9}, {%0, %1, %2, %3};\n"
                     : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                     : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
    } else {
        asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, "
                     "{%8, %9}, {%0, %1, %2, %3};\n"
                     : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                     : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
    }
}

// A tile of 16-bit values [rows][BK = 32] in shared memory: four 16-byte chunks per row, the
// chunk index XORed with bits 1..2 of the row so that the 8 row addresses of an ldmatrix (and
// the cp.async writes) fall in 8 different bank groups. Offset in elements.
__device__ __forceinline__ int tile_offset(int row, int chunk) { return row * BK + ((chunk ^ ((row >> 1) & 3)) << 3); }

struct MmaArgs {
    const uint8_t *W;
    int64_t rows, cols;
    uint64_t row_bytes;
    const uint16_t *hi, *lo; // this launch's tokens: [n][kpad]
    const float *inv_scale;  // [n]
    const float *sums;       // [n][groups]: activation sums per 16 k (formats with a min)
    int64_t kpad, groups;
    int n;                   // tokens of this launch, <= BN
    float *Y;                // this launch's first token
    int64_t ldy;
    bool accumulate;
};

// ROWF: floats per weight row and pipeline stage for the scales (and mins) of quantized weights;
// SUMS: whether each stage also holds the tokens' activation sums (2 per token and k tile).
template <int BM, int BN, int ROWF, bool SUMS>
struct MmaShape {
    static constexpr int WARPS_M = BM / 32, WARPS_N = MMA_THREADS / 32 / WARPS_M;
    static constexpr int WM = 32, WN = BN / WARPS_N; // each warp: 32 rows x WN tokens
    static constexpr int MI = WM / 16, NI = WN / 8;  // m16n8 tiles per warp
    static constexpr int RED_LD = BM + 4;            // the split-k partial tile [BN][BM + 4] f32
    static constexpr size_t A_BYTES = (size_t)BM * BK * 2, B_BYTES = (size_t)BN * BK * 2;
    static constexpr size_t SCALE_BYTES = (size_t)BM * ROWF * sizeof(float), SUM_BYTES = SUMS ? (size_t)BN * 2 * sizeof(float) : 0;
    static constexpr size_t PIPE_BYTES = 2 * (A_BYTES + 2 * B_BYTES + SCALE_BYTES + SUM_BYTES);
    static constexpr size_t RED_BYTES = (size_t)BN * RED_LD * sizeof(float);
    static constexpr size_t SMEM_BYTES = PIPE_BYTES > RED_BYTES ? PIPE_BYTES : RED_BYTES;
    static_assert(WN % 16 == 0, "a warp takes tokens 16 at a time (one ldmatrix.x4)");
    static_assert(SMEM_BYTES <= 48 * 1024, "static shared memory");
};

// One block: BM weight rows x BN tokens over its share of k; a cluster of `splits` blocks
// (blockIdx.y) covers all of k and sums its partial tiles through distributed shared memory in a
// fixed order, so the result does not depend on timing. Two pipeline stages of BK = 32: 16-bit
// weights and the activations come by cp.async, quantized weights through registers (their
// blocks are only 2-byte aligned), converted to f16 integers on the way into shared memory, with
// their scales (and mins) per row and sub-block beside them. A sub-block's products are summed
// apart and enter the accumulator scaled by its scale, minus its min times the activations' sum.
template <int DT, int BM, int BN>
__global__ void __launch_bounds__(MMA_THREADS, min_blocks_per_sm(DT)) mma_kernel(const MmaArgs a) {
    constexpr bool QUANT = is_quant(DT), BF16 = DT == DT_BF16;
    constexpr bool CHUNKS = qb::is_block_decoded(DT);               // decoded by quant_chunks.hpp
    constexpr int SUB = CHUNKS ? qb::sub_block_elems(DT) : BK;      // k per scale: 16 or 32
    constexpr int SUBS = BK / SUB, KS_PER_SUB = SUB / 16;           // scales per row and k tile; mma k steps per scale
    constexpr bool MINS = CHUNKS && qb::has_min(DT);
    constexpr int ROWF = QUANT ? SUBS * (MINS ? 2 : 1) : 1;         // per row and stage: the scales, then the mins
    static_assert(SUB % 16 == 0 && BK % SUB == 0 && BK / SUM_GROUP == 2, "a scale covers whole mma k steps");
    using S = MmaShape<BM, BN, ROWF, MINS>;
    __shared__ __align__(128) unsigned char smem[S::SMEM_BYTES];
    uint16_t *As = reinterpret_cast<uint16_t *>(smem);                      // [2][BM * BK]
    uint16_t *Bs = reinterpret_cast<uint16_t *>(smem + 2 * S::A_BYTES);     // [2][hi, lo][BN * BK]
    float *scale_s = reinterpret_cast<float *>(smem + 2 * (S::A_BYTES + 2 * S::B_BYTES)); // [2][BM][ROWF]
    float *sum_s = reinterpret_cast<float *>(smem + 2 * (S::A_BYTES + 2 * S::B_BYTES + S::SCALE_BYTES)); // [2][BN][2] (MINS)

    cg::cluster_group cluster = cg::this_cluster();
    const int splits = (int)cluster.num_blocks(), rank = (int)cluster.block_rank();
    const int64_t m0 = (int64_t)blockIdx.x * BM;
    const int nk = (int)(a.kpad / BK);
    const int kt0 = (int)((int64_t)rank * nk / splits), kt1 = (int)((int64_t)(rank + 1) * nk / splits);
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int wm = warp % S::WARPS_M, wn = warp / S::WARPS_M;

    // ---- loaders
    auto load_b = [&](int kt, int stage) {
        constexpr int UNITS = 2 * BN * 4; // hi and lo, BN tokens, 4 chunks
#pragma unroll
        for (int u = tid; u < UNITS; u += MMA_THREADS) {
            const int part = u / (BN * 4), t = (u >> 2) % BN, c = u & 3;
            const bool ok = t < a.n;
            const uint16_t *src = (part ? a.lo : a.hi) + (ok ? t * a.kpad + (int64_t)kt * BK + c * 8 : 0);
            cp_async16(Bs + (stage * 2 + part) * BN * BK + tile_offset(t, c), src, ok ? 16 : 0);
        }
        if constexpr (MINS) { // token t's two sums of this k tile: 8 contiguous bytes
            for (int t = tid; t < BN; t += MMA_THREADS) {
                const bool ok = t < a.n;
                const float *src = a.sums + (ok ? t * a.groups + (int64_t)kt * (BK / SUM_GROUP) : 0);
                cp_async8(sum_s + (stage * BN + t) * 2, src, ok ? 8 : 0);
            }
        }
    };
    auto load_a_async = [&](int kt, int stage) { // 16-bit weights
#pragma unroll
        for (int u = tid; u < BM * 4; u += MMA_THREADS) {
            const int r = u >> 2, c = u & 3;
            const int64_t k = (int64_t)kt * BK + c * 8;
            const bool ok = m0 + r < a.rows && k < a.cols; // cols % 8 == 0 here: a chunk is all in or all out
            const uint8_t *src = ok ? a.W + (uint64_t)(m0 + r) * a.row_bytes + 2 * k : a.W;
            cp_async16(As + stage * BM * BK + tile_offset(r, c), src, ok ? 16 : 0);
        }
    };
    // Quantized weights: each thread fetches chunk units (row, chunk of 8) into registers ...
    constexpr int QUNITS = QUANT ? BM * 4 / MMA_THREADS : 1;
    constexpr int CPB = CHUNKS ? qb::chunks_per_block(DT) : 4; // chunks per block
    uint16_t q_scale[CHUNKS ? 1 : QUNITS];
    uint16_t q_bytes[CHUNKS ? 1 : QUNITS][4];
    qb::ChunkBytes q_chunk[CHUNKS ? QUNITS : 1];
    auto fetch_q = [&](int kt) {
#pragma unroll
        for (int i = 0; i < QUNITS; i++) {
            const int u = tid + i * MMA_THREADS, r = u >> 2, c = u & 3;
            if constexpr (CHUNKS) {
                const int chunk = kt * 4 + c; // of the row
                q_chunk[i] = qb::ChunkBytes{}; // rows past the matrix: weights of zero
                if (m0 + r < a.rows) {
                    const uint8_t *blk = a.W + (uint64_t)(m0 + r) * a.row_bytes + (uint64_t)(chunk / CPB) * qb::block_bytes(DT);
                    qb::fetch_chunk<DT>(blk, chunk % CPB, qb::CachedLoad(), q_chunk[i]);
                }
            } else if (m0 + r < a.rows) {
                const uint8_t *blk = a.W + (uint64_t)(m0 + r) * a.row_bytes + (uint64_t)kt * qb::block_bytes(DT);
                const uint8_t *q = blk + 2 + (DT == DT_Q8_0 ? mm::q8_0_chunk_byte(c) : mm::q4_0_chunk_byte(c));
                // default caching: a block shares its 32-byte sectors with the next k tile's
                q_scale[i] = __ldg(reinterpret_cast<const unsigned short *>(blk));
#pragma unroll
                for (int j = 0; j < 4; j++) q_bytes[i][j] = __ldg(reinterpret_cast<const unsigned short *>(q + 2 * j));
            } else {
                q_scale[i] = 0;
#pragma unroll
                for (int j = 0; j < 4; j++) q_bytes[i][j] = DT == DT_Q4_0 ? 0x8888 : 0; // q = 0
            }
        }
    };
    // ... and stores them as f16 integers (exact) plus the block's (sub-blocks') scales (and mins)
    // as f32. kt: the tile fetch_q fetched.
    auto store_q = [&](int kt, int stage) {
#pragma unroll
        for (int i = 0; i < QUNITS; i++) {
            const int u = tid + i * MMA_THREADS, r = u >> 2, c = u & 3;
            int v[8];
            if constexpr (CHUNKS) {
                qb::Chunk ch;
                qb::decode_chunk<DT>(q_chunk[i], (kt * 4 + c) % CPB, ch);
#pragma unroll
                for (int j = 0; j < 8; j++) v[j] = ch.q[j];
                if (c % (SUB / qb::CHUNK) == 0) { // the sub-block's first chunk in this tile
                    const int sub = c / (SUB / qb::CHUNK);
                    float *sr = scale_s + (stage * BM + r) * ROWF;
                    sr[sub] = ch.dl;
                    if constexpr (MINS) sr[SUBS + sub] = ch.ml;
                }
            } else {
                const int shift = mm::q4_0_chunk_shift(c);
#pragma unroll
                for (int j = 0; j < 4; j++) {
                    const uint8_t b0 = (uint8_t)(q_bytes[i][j] & 0xffu), b1 = (uint8_t)(q_bytes[i][j] >> 8);
                    v[2 * j] = DT == DT_Q8_0 ? mm::q8_0_value(b0) : mm::q4_0_value(b0, shift);
                    v[2 * j + 1] = DT == DT_Q8_0 ? mm::q8_0_value(b1) : mm::q4_0_value(b1, shift);
                }
                if (c == 0) scale_s[stage * BM + r] = mm::half_to_float(q_scale[i]);
            }
            uint32_t packed[4];
#pragma unroll
            for (int j = 0; j < 4; j++)
                packed[j] = (uint32_t)__half_as_ushort(__int2half_rn(v[2 * j])) | (uint32_t)__half_as_ushort(__int2half_rn(v[2 * j + 1])) << 16;
            *reinterpret_cast<uint4 *>(As + stage * BM * BK + tile_offset(r, c)) = make_uint4(packed[0], packed[1], packed[2], packed[3]);
        }
    };

    float acc[S::MI][S::NI][4];
#pragma unroll
    for (int mi = 0; mi < S::MI; mi++)
#pragma unroll
        for (int ni = 0; ni < S::NI; ni++)
#pragma unroll
            for (int j = 0; j < 4; j++) acc[mi][ni][j] = 0.0f;

    // A block's (sub-block's) products go to a partial first when its scale must be applied after
    // them; a min then takes the activations' sum over the sub-block (sum_s, per 16 k).
    auto compute = [&](int stage) {
        float part[QUANT ? S::MI : 1][QUANT ? S::NI : 1][4];
        const uint16_t *At = As + stage * BM * BK;
        const uint16_t *Bh = Bs + (stage * 2 + 0) * BN * BK, *Bl = Bs + (stage * 2 + 1) * BN * BK;
#pragma unroll
        for (int ks = 0; ks < BK / 16; ks++) {
            if constexpr (QUANT) {
                if (ks % KS_PER_SUB == 0) {
#pragma unroll
                    for (int mi = 0; mi < S::MI; mi++)
#pragma unroll
                        for (int ni = 0; ni < S::NI; ni++)
#pragma unroll
                            for (int j = 0; j < 4; j++) part[mi][ni][j] = 0.0f;
                }
            }
            uint32_t af[S::MI][4];
#pragma unroll
            for (int mi = 0; mi < S::MI; mi++)
                ldmatrix_x4(af[mi], At + tile_offset(wm * S::WM + mi * 16 + (lane & 15), ks * 2 + (lane >> 4)));
#pragma unroll
            for (int nj = 0; nj < S::NI / 2; nj++) {
                const int t = wn * S::WN + nj * 16 + (lane & 7) + ((lane >> 4) << 3);
                const int c = ks * 2 + ((lane >> 3) & 1);
                uint32_t bh[4], bl[4];
                ldmatrix_x4(bh, Bh + tile_offset(t, c));
                ldmatrix_x4(bl, Bl + tile_offset(t, c));
#pragma unroll
                for (int mi = 0; mi < S::MI; mi++) {
                    float *c0 = QUANT ? part[QUANT ? mi : 0][QUANT ? 2 * nj : 0] : acc[mi][2 * nj];
                    float *c1 = QUANT ? part[QUANT ? mi : 0][QUANT ? 2 * nj + 1 : 0] : acc[mi][2 * nj + 1];
                    mma16816<BF16>(c0, af[mi], bh[0], bh[1]);
                    mma16816<BF16>(c0, af[mi], bl[0], bl[1]);
                    mma16816<BF16>(c1, af[mi], bh[2], bh[3]);
                    mma16816<BF16>(c1, af[mi], bl[2], bl[3]);
                }
            }
            if constexpr (QUANT) {
                if (ks % KS_PER_SUB == KS_PER_SUB - 1) { // the sub-block's last k step: scale it in
                    const int sub = ks / KS_PER_SUB;
#pragma unroll
                    for (int mi = 0; mi < S::MI; mi++) {
                        const int r = wm * S::WM + mi * 16 + (lane >> 2);
                        const float *s0 = scale_s + (stage * BM + r) * ROWF, *s1 = scale_s + (stage * BM + r + 8) * ROWF;
                        const float d0 = s0[sub], d1 = s1[sub];
#pragma unroll
                        for (int ni = 0; ni < S::NI; ni++) {
                            acc[mi][ni][0] = mm::add_scaled_block(acc[mi][ni][0], d0, part[mi][ni][0]);
                            acc[mi][ni][1] = mm::add_scaled_block(acc[mi][ni][1], d0, part[mi][ni][1]);
                            acc[mi][ni][2] = mm::add_scaled_block(acc[mi][ni][2], d1, part[mi][ni][2]);
                            acc[mi][ni][3] = mm::add_scaled_block(acc[mi][ni][3], d1, part[mi][ni][3]);
                        }
                        if constexpr (MINS) {
                            const float n0 = s0[SUBS + sub], n1 = s1[SUBS + sub];
#pragma unroll
                            for (int ni = 0; ni < S::NI; ni++) {
                                // the sums of this thread's two tokens over the sub-block
                                const float *g = sum_s + (stage * BN + wn * S::WN + ni * 8 + 2 * (lane & 3)) * 2;
                                const float x0 = SUBS == 2 ? g[sub] : km::fadd(g[0], g[1]);
                                const float x1 = SUBS == 2 ? g[2 + sub] : km::fadd(g[2], g[3]);
                                acc[mi][ni][0] = mm::subtract_block_min(acc[mi][ni][0], n0, x0);
                                acc[mi][ni][1] = mm::subtract_block_min(acc[mi][ni][1], n0, x1);
                                acc[mi][ni][2] = mm::subtract_block_min(acc[mi][ni][2], n1, x0);
                                acc[mi][ni][3] = mm::subtract_block_min(acc[mi][ni][3], n1, x1);
                            }
                        }
                    }
                }
            }
        }
    };

    // ---- the pipeline: tile kt + 1 loads while tile kt multiplies
    if (kt0 < kt1) {
        load_b(kt0, 0);
        if constexpr (!QUANT) load_a_async(kt0, 0);
        cp_async_commit();
        if constexpr (QUANT) {
            fetch_q(kt0);
            store_q(kt0, 0);
        }
    }
    for (int kt = kt0; kt < kt1; kt++) {
        const int stage = (kt - kt0) & 1;
        const bool more = kt + 1 < kt1;
        if (more) {
            load_b(kt + 1, stage ^ 1);
            if constexpr (!QUANT) load_a_async(kt + 1, stage ^ 1);
            cp_async_commit();
            if constexpr (QUANT) fetch_q(kt + 1);
            cp_async_wait<1>();
        } else {
            cp_async_wait<0>();
        }
        __syncthreads();
        compute(stage);
        if constexpr (QUANT) {
            if (more) store_q(kt + 1, stage ^ 1); // that stage was last read before the previous barrier
        }
        __syncthreads();
    }

    // ---- split-k: every block of the cluster parks its partial tile, then each sums a slice of
    // the tokens over all blocks, in rank order.
    float *red = reinterpret_cast<float *>(smem); // [BN][RED_LD]; the pipeline is done with smem
#pragma unroll
    for (int mi = 0; mi < S::MI; mi++)
#pragma unroll
        for (int ni = 0; ni < S::NI; ni++)
#pragma unroll
            for (int j = 0; j < 4; j++) {
                const int r = wm * S::WM + mi * 16 + (lane >> 2) + (j >= 2 ? 8 : 0);
                const int t = wn * S::WN + ni * 8 + 2 * (lane & 3) + (j & 1);
                red[t * S::RED_LD + r] = acc[mi][ni][j];
            }
    cluster.sync();
    const int tokens_per_rank = BN / splits; // splits is a power of two <= 8, BN >= 32
    for (int e = tid; e < tokens_per_rank * BM; e += MMA_THREADS) {
        const int t = rank * tokens_per_rank + e / BM, r = e % BM;
        const int64_t row = m0 + r;
        if (t >= a.n || row >= a.rows) continue;
        float sum = cluster.map_shared_rank(red, 0)[t * S::RED_LD + r];
        for (int j = 1; j < splits; j++) sum += cluster.map_shared_rank(red, j)[t * S::RED_LD + r];
        float *y = a.Y + t * a.ldy + row;
        *y = mm::finish_output(sum, a.inv_scale[t], a.accumulate, a.accumulate ? *y : 0.0f);
    }
    cluster.sync(); // no block may leave while another still reads its shared memory
}

// Falls back to an H100's 132 SMs when the device cannot be asked (only the split-k choice
// depends on it), and clears the error of that query: left pending, it would fail the caller's
// next, unrelated launch check.
int sm_count_of_current_device() {
    static std::atomic<int> cache[64];
    int dev = 0;
    if (cudaGetDevice(&dev) != cudaSuccess) {
        cudaGetLastError();
        return 132;
    }
    if (dev >= 0 && dev < 64) {
        int v = cache[dev].load(std::memory_order_relaxed);
        if (v > 0) return v;
    }
    int v = 0;
    if (cudaDeviceGetAttribute(&v, cudaDevAttrMultiProcessorCount, dev) != cudaSuccess) {
        cudaGetLastError();
        v = 132;
    }
    if (v <= 0) v = 132;
    if (dev >= 0 && dev < 64) cache[dev].store(v, std::memory_order_relaxed);
    return v;
}

template <int DT, int BM, int BN>
cudaError_t launch_mma_tile(const MmaArgs &a, int sm_count, cudaStream_t stream) {
    const int64_t m_tiles = (a.rows + BM - 1) / BM;
    const int nk = (int)(a.kpad / BK);
    // Split k until the grid covers the device about twice (two blocks fit per SM); the weights
    // are still read once, the partial tiles meet in distributed shared memory.
    int splits = 1;
    while (splits < MAX_SPLITS && m_tiles * splits * 2 <= 2 * sm_count && splits * 2 <= nk) splits *= 2;
    cudaLaunchConfig_t cfg = {};
    cfg.gridDim = dim3((unsigned)m_tiles, (unsigned)splits, 1);
    cfg.blockDim = dim3(MMA_THREADS, 1, 1);
    cfg.dynamicSmemBytes = 0;
    cfg.stream = stream;
    cudaLaunchAttribute attr[1];
    attr[0].id = cudaLaunchAttributeClusterDimension;
    attr[0].val.clusterDim.x = 1;
    attr[0].val.clusterDim.y = (unsigned)splits;
    attr[0].val.clusterDim.z = 1;
    cfg.attrs = attr;
    cfg.numAttrs = 1;
    return cudaLaunchKernelEx(&cfg, mma_kernel<DT, BM, BN>, a);
}

template <int DT>
cudaError_t launch_mma(const MmaArgs &a, int sm_count, cudaStream_t stream) {
    if (a.n <= 32) return launch_mma_tile<DT, 128, 32>(a, sm_count, stream);
    if (a.n <= 64) return launch_mma_tile<DT, 128, 64>(a, sm_count, stream);
    return launch_mma_tile<DT, 64, 128>(a, sm_count, stream);
}

// ---------------------------------------------------------------- dispatch

// Bytes of a row in the GGML layout (what DeviceMatrix::row_bytes must say), whole blocks.
uint64_t layout_row_bytes(int32_t dtype, int64_t cols) {
    const int elems = qb::block_elems(dtype);
    return elems > 0 ? (uint64_t)(cols / elems) * (uint64_t)qb::block_bytes(dtype) : 0;
}

bool aligned(const void *p, uintptr_t to) { return ((uintptr_t)p & (to - 1)) == 0; }

// 16-bit and f32 rows take 16-byte loads (and the tensor-core path) when every row starts 16-byte
// aligned and holds whole chunks of 8; other shapes take the scalar streaming path.
bool float_rows_chunked(const DeviceMatrix &W) { return aligned(W.data, 16) && W.cols % 8 == 0; }

template <int DT>
Status run_stream(const DeviceMatrix &W, const float *X, int64_t ldx, int n, float *Y, int64_t ldy, bool accumulate,
                  cudaStream_t stream, Failure &err) {
    StreamArgs a{static_cast<const uint8_t *>(W.data), W.rows, W.cols, W.row_bytes, X, ldx,
                 aligned(X, 16) && ldx % 4 == 0, Y, ldy, accumulate};
    const bool chunked = is_quant(DT) || float_rows_chunked(W);
    for (int t0 = 0; t0 < n; t0 += STREAM_MAX_N) {
        const int nc = n - t0 < STREAM_MAX_N ? n - t0 : STREAM_MAX_N;
        a.X = X + t0 * ldx;
        a.Y = Y + t0 * ldy;
        if (chunked) launch_stream<DT, true>(a, nc, stream);
        else if constexpr (!is_quant(DT)) launch_stream<DT, false>(a, nc, stream);
    }
    return check_launch(err, "matmul (streaming kernel)");
}

template <int DT>
Status run_mma(const DeviceMatrix &W, const float *X, int64_t ldx, int n, float *Y, int64_t ldy, bool accumulate,
               void *scratch, cudaStream_t stream, Failure &err) {
    const SplitLayout L(W.cols, n);
    char *base = static_cast<char *>(scratch);
    uint16_t *hi = reinterpret_cast<uint16_t *>(base + L.hi), *lo = reinterpret_cast<uint16_t *>(base + L.lo);
    float *inv_scale = reinterpret_cast<float *>(base + L.inv_scale);
    float *sums = reinterpret_cast<float *>(base + L.sums);
    split_kernel<DT == DT_BF16, qb::has_min(DT)><<<(unsigned)n, 256, 0, stream>>>(X, ldx, W.cols, L.kpad, hi, lo, inv_scale, sums);
    Status st = check_launch(err, "matmul (activation split)");
    if (st != SPEC_OK) return st;
    const int sms = sm_count_of_current_device();
    for (int t0 = 0; t0 < n; t0 += MMA_MAX_N) {
        MmaArgs a;
        a.W = static_cast<const uint8_t *>(W.data);
        a.rows = W.rows;
        a.cols = W.cols;
        a.row_bytes = W.row_bytes;
        a.hi = hi + t0 * L.kpad;
        a.lo = lo + t0 * L.kpad;
        a.inv_scale = inv_scale + t0;
        a.sums = sums + t0 * L.groups;
        a.kpad = L.kpad;
        a.groups = L.groups;
        a.n = n - t0 < MMA_MAX_N ? n - t0 : MMA_MAX_N;
        a.Y = Y + t0 * ldy;
        a.ldy = ldy;
        a.accumulate = accumulate;
        const cudaError_t e = launch_mma<DT>(a, sms, stream);
        if (e != cudaSuccess) return cuda_failure(err, e, "matmul (tensor-core kernel launch)");
    }
    return check_launch(err, "matmul (tensor-core kernel)");
}

template <int DT>
Status run(const DeviceMatrix &W, const float *X, int64_t ldx, int n, float *Y, int64_t ldy, bool accumulate,
           void *scratch, cudaStream_t stream, Failure &err) {
    if constexpr (DT != DT_F32) {
        if (n > STREAM_MAX_N && (is_quant(DT) || float_rows_chunked(W)))
            return run_mma<DT>(W, X, ldx, n, Y, ldy, accumulate, scratch, stream, err);
    }
    return run_stream<DT>(W, X, ldx, n, Y, ldy, accumulate, stream, err);
}

Status invalid(Failure &err, const char *what) {
    err = failure(SPEC_ERR_INVALID_ARGUMENT, "matmul: %s", what);
    return err.status;
}

} // namespace

bool matmul_supports(int32_t dtype) { return qb::block_elems(dtype) > 0; }

size_t matmul_scratch_bytes(int64_t cols, int n) {
    if (n <= STREAM_MAX_N || cols <= 0) return 0;
    return SplitLayout(cols, n).bytes;
}

Status matmul(const DeviceMatrix &W, const float *X, int64_t ldx, int n, float *Y, int64_t ldy, bool accumulate,
              void *scratch, cudaStream_t stream, Failure &err) {
    if (n < 0) return invalid(err, "negative token count");
    if (n == 0 || W.rows == 0) return SPEC_OK;
    if (W.rows < 0 || W.cols <= 0) return invalid(err, "weight matrix without rows or columns");
    if (!W.data || !X || !Y) return invalid(err, "null weight, activation or output pointer");
    if (ldx < W.cols || ldy < W.rows) return invalid(err, "ldx below cols or ldy below rows");
    if (!aligned(X, 4) || !aligned(Y, 4)) return invalid(err, "activations and outputs must be 4-byte aligned");
    const int32_t dt = W.dtype;
    if (!matmul_supports(dt)) {
        err = failure(SPEC_ERR_INVALID_ARGUMENT, "matmul: unknown weight dtype %d", (int)dt);
        return err.status;
    }
    if (is_quant(dt) && W.cols % qb::block_elems(dt) != 0) {
        err = failure(SPEC_ERR_INVALID_ARGUMENT, "matmul: %s weights need cols a multiple of %d (got %lld)", dtype_name(dt),
                      qb::block_elems(dt), (long long)W.cols);
        return err.status;
    }
    if (W.row_bytes != layout_row_bytes(dt, W.cols)) {
        err = failure(SPEC_ERR_INVALID_ARGUMENT, "matmul: row_bytes %llu does not match %lld columns of dtype %d (%llu)",
                      (unsigned long long)W.row_bytes, (long long)W.cols, (int)dt,
                      (unsigned long long)layout_row_bytes(dt, W.cols));
        return err.status;
    }
    if (!aligned(W.data, dt == DT_F32 ? 4 : 2)) return invalid(err, "weights not aligned to their element (or block scale) size");
    if (matmul_scratch_bytes(W.cols, n) > 0 && (!scratch || !aligned(scratch, 16)))
        return invalid(err, "more than 8 tokens need a 16-byte aligned scratch of matmul_scratch_bytes(cols, n)");
    switch (dt) {
    case DT_F32: return run<DT_F32>(W, X, ldx, n, Y, ldy, accumulate, scratch, stream, err);
    case DT_F16: return run<DT_F16>(W, X, ldx, n, Y, ldy, accumulate, scratch, stream, err);
    case DT_BF16: return run<DT_BF16>(W, X, ldx, n, Y, ldy, accumulate, scratch, stream, err);
    case DT_Q8_0: return run<DT_Q8_0>(W, X, ldx, n, Y, ldy, accumulate, scratch, stream, err);
    case DT_Q4_0: return run<DT_Q4_0>(W, X, ldx, n, Y, ldy, accumulate, scratch, stream, err);
    case SPEC_DTYPE_Q4_1: return run<SPEC_DTYPE_Q4_1>(W, X, ldx, n, Y, ldy, accumulate, scratch, stream, err);
    case SPEC_DTYPE_Q5_0: return run<SPEC_DTYPE_Q5_0>(W, X, ldx, n, Y, ldy, accumulate, scratch, stream, err);
    case SPEC_DTYPE_Q5_1: return run<SPEC_DTYPE_Q5_1>(W, X, ldx, n, Y, ldy, accumulate, scratch, stream, err);
    case SPEC_DTYPE_Q2_K: return run<SPEC_DTYPE_Q2_K>(W, X, ldx, n, Y, ldy, accumulate, scratch, stream, err);
    case SPEC_DTYPE_Q3_K: return run<SPEC_DTYPE_Q3_K>(W, X, ldx, n, Y, ldy, accumulate, scratch, stream, err);
    case SPEC_DTYPE_Q4_K: return run<SPEC_DTYPE_Q4_K>(W, X, ldx, n, Y, ldy, accumulate, scratch, stream, err);
    case SPEC_DTYPE_Q5_K: return run<SPEC_DTYPE_Q5_K>(W, X, ldx, n, Y, ldy, accumulate, scratch, stream, err);
    default: return run<SPEC_DTYPE_Q6_K>(W, X, ldx, n, Y, ldy, accumulate, scratch, stream, err);
    }
}

} // namespace specula::cuda
