// Tree attention on the GPU (verify phase), flash-decoding style:
//   1. mask_kernel: each tree token's row of packed bits (itself and its ancestors), from the
//      parent indices, on the device.
//   2. tree_attn_kernel: grid (sequence x kv head, row tile, key chunk: tree_attention_plan.hpp,
//      which also says why in that order). A block takes 64 query
//      rows (tree token t, query head g of this kv head's group: GQA rows share every K/V load)
//      and one chunk of the sequence's keys (prefix slots, then tree slots), and runs an online
//      softmax over tiles of 32 keys: lane j of each warp scores key j against the warp's 8
//      rows, then each lane accumulates P.V for its slice of head_dim. All fp32.
//   3. combine_kernel: when a sequence's keys were split over several chunks, merges the
//      partial (max, sum, unnormalized output) of each chunk.
// The cpu twin (native/cpu/tree_attention.cpp) is the plain two-pass version of the same.
#include "spec_cuda.cuh"
#include "tree_attention_plan.hpp"

#include <algorithm>
#include <cuda_fp16.h>

namespace specula::cuda {
namespace {

constexpr int TA_THREADS = 256;
constexpr int TA_WARPS = TA_THREADS / 32;
constexpr int TA_ROWS_PER_WARP = 8;
static_assert(TA_WARPS * TA_ROWS_PER_WARP == TA_ROWS, "a block's warps cover its query rows");
static_assert(TA_KEYS == 32, "a tile has one key per lane");

struct TaDev {
    const float *q;
    const void *k, *v;
    float *out;
    float *o_part, *m_part, *l_part; // [n_chunks][B][Tmax][H] (x head_dim for o_part)
    const int32_t *prefix, *tree_len;
    const uint32_t *mask; // [B][Tmax][MASK_WORDS]
    int B, H, Hkv, G, Tmax, max_ctx, chunk, n_chunks;
    float scale_log2; // softmax scale * log2(e): scores in base 2, exp2f below
};

__global__ void mask_kernel(const int32_t *parents, const int32_t *tree_len, int Tmax, uint32_t *mask) {
    const int b = blockIdx.x, i = threadIdx.x;
    if (i < tree_len[b]) km::tree_mask_row(parents + (size_t)b * Tmax, i, mask + ((size_t)b * Tmax + i) * km::MASK_WORDS);
}

// Converts 8 cache elements (16 bytes) to f32.
template <int DTYPE>
__device__ __forceinline__ void load8(const void *base, size_t elem, float *dst) {
    if (DTYPE == SPEC_DTYPE_F32) {
        const float4 *p = reinterpret_cast<const float4 *>((const float *)base + elem);
        const float4 a = p[0], b = p[1];
        dst[0] = a.x; dst[1] = a.y; dst[2] = a.z; dst[3] = a.w;
        dst[4] = b.x; dst[5] = b.y; dst[6] = b.z; dst[7] = b.w;
    } else {
        const uint4 raw = *reinterpret_cast<const uint4 *>((const uint16_t *)base + elem);
        const uint32_t words[4] = {raw.x, raw.y, raw.z, raw.w};
#pragma unroll
        for (int i = 0; i < 4; i++) {
            const uint16_t lo = (uint16_t)(words[i] & 0xffff), hi = (uint16_t)(words[i] >> 16);
            if (DTYPE == SPEC_DTYPE_F16) {
                dst[2 * i] = __half2float(__ushort_as_half(lo));
                dst[2 * i + 1] = __half2float(__ushort_as_half(hi));
            } else {
                dst[2 * i] = km::bf16_to_f32(lo);
                dst[2 * i + 1] = km::bf16_to_f32(hi);
            }
        }
    }
}

template <int D>
constexpr size_t ta_smem_bytes() {
    return sizeof(float) * ((size_t)TA_ROWS * D + (size_t)TA_KEYS * (D + 4) + (size_t)TA_KEYS * D +
                            (size_t)TA_WARPS * TA_ROWS_PER_WARP * TA_KEYS) +
           sizeof(uint32_t) * TA_ROWS * km::MASK_WORDS;
}

template <int D, int DTYPE>
__global__ void __launch_bounds__(TA_THREADS) tree_attn_kernel(TaDev a) {
    constexpr int DPL = D / 32; // output dims per lane
    constexpr int KS = D + 4;   // K row stride in shared memory: lanes read different rows conflict-free
    extern __shared__ float4 smem4[];
    float *Qs = reinterpret_cast<float *>(smem4);           // [TA_ROWS][D], pre-scaled
    float *Ks = Qs + TA_ROWS * D;                           // [TA_KEYS][KS]
    float *Vs = Ks + TA_KEYS * KS;                          // [TA_KEYS][D]
    float *Ps = Vs + TA_KEYS * D;                           // [TA_WARPS][TA_ROWS_PER_WARP][TA_KEYS]
    uint32_t *Ms = reinterpret_cast<uint32_t *>(Ps + TA_WARPS * TA_ROWS_PER_WARP * TA_KEYS); // [TA_ROWS][MASK_WORDS]

    const int chunk = blockIdx.z, b = blockIdx.x / a.Hkv, kvh = blockIdx.x % a.Hkv;
    const int P = a.prefix[b], T = a.tree_len[b], L = P + T;
    const int row0 = blockIdx.y * TA_ROWS;
    const int k_begin = chunk * a.chunk;
    if (row0 >= T * a.G || k_begin >= L) return; // past this tree's rows or this sequence's keys
    const int k_end = min(L, k_begin + a.chunk);
    const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;

    for (int e = tid; e < TA_ROWS * D; e += TA_THREADS) {
        const int r = e / D, d = e % D, rg = row0 + r, t = rg / a.G, g = rg % a.G;
        float x = 0.0f;
        if (t < T) x = a.q[(((size_t)b * a.Tmax + t) * a.H + kvh * a.G + g) * D + d] * a.scale_log2;
        Qs[e] = x;
    }
    for (int e = tid; e < TA_ROWS * km::MASK_WORDS; e += TA_THREADS) {
        const int r = e / km::MASK_WORDS, t = (row0 + r) / a.G;
        Ms[e] = t < T ? a.mask[((size_t)b * a.Tmax + t) * km::MASK_WORDS + e % km::MASK_WORDS] : 0u;
    }

    float acc[TA_ROWS_PER_WARP][DPL], m[TA_ROWS_PER_WARP], l[TA_ROWS_PER_WARP];
#pragma unroll
    for (int r = 0; r < TA_ROWS_PER_WARP; r++) {
        m[r] = -INFINITY;
        l[r] = 0.0f;
#pragma unroll
        for (int dd = 0; dd < DPL; dd++) acc[r][dd] = 0.0f;
    }

    for (int k0 = k_begin; k0 < k_end; k0 += TA_KEYS) {
        __syncthreads(); // the previous tile is consumed (and Q, mask are loaded)
        for (int e = tid; e < TA_KEYS * D / 8; e += TA_THREADS) {
            const int kk = e / (D / 8), d8 = (e % (D / 8)) * 8, pos = k0 + kk;
            float kx[8], vx[8];
            if (pos < k_end) {
                const size_t elem = (((size_t)b * a.max_ctx + pos) * a.Hkv + kvh) * D + d8;
                load8<DTYPE>(a.k, elem, kx);
                load8<DTYPE>(a.v, elem, vx);
            } else {
#pragma unroll
                for (int i = 0; i < 8; i++) kx[i] = vx[i] = 0.0f;
            }
            float4 *kd = reinterpret_cast<float4 *>(Ks + kk * KS + d8), *vd = reinterpret_cast<float4 *>(Vs + kk * D + d8);
            kd[0] = make_float4(kx[0], kx[1], kx[2], kx[3]);
            kd[1] = make_float4(kx[4], kx[5], kx[6], kx[7]);
            vd[0] = make_float4(vx[0], vx[1], vx[2], vx[3]);
            vd[1] = make_float4(vx[4], vx[5], vx[6], vx[7]);
        }
        __syncthreads();

        // Scores of key k0 + lane against the warp's rows.
        float s[TA_ROWS_PER_WARP];
#pragma unroll
        for (int r = 0; r < TA_ROWS_PER_WARP; r++) s[r] = 0.0f;
        const float *krow = Ks + lane * KS;
        const float *qbase = Qs + warp * TA_ROWS_PER_WARP * D;
#pragma unroll 4
        for (int d = 0; d < D; d += 4) {
            const float4 kv = *reinterpret_cast<const float4 *>(krow + d);
#pragma unroll
            for (int r = 0; r < TA_ROWS_PER_WARP; r++) {
                const float4 qv = *reinterpret_cast<const float4 *>(qbase + r * D + d); // broadcast
                s[r] += qv.x * kv.x + qv.y * kv.y + qv.z * kv.z + qv.w * kv.w;
            }
        }
        const int key = k0 + lane;
#pragma unroll
        for (int r = 0; r < TA_ROWS_PER_WARP; r++) {
            const uint32_t *mrow = Ms + (warp * TA_ROWS_PER_WARP + r) * km::MASK_WORDS;
            const bool allowed = key < k_end && (key < P || km::mask_bit(mrow, key - P));
            if (!allowed) s[r] = -INFINITY;
        }

        // Online softmax per row: rescale what was accumulated when the row max grows.
        float *prow = Ps + warp * TA_ROWS_PER_WARP * TA_KEYS;
#pragma unroll
        for (int r = 0; r < TA_ROWS_PER_WARP; r++) {
            float mt = s[r];
#pragma unroll
            for (int o = 16; o; o >>= 1) mt = fmaxf(mt, __shfl_xor_sync(0xffffffffu, mt, o));
            const float mn = fmaxf(m[r], mt);
            float alpha = 1.0f, p = 0.0f;
            if (mn != -INFINITY) { // a row with no allowed key yet keeps m = -inf, l = 0
                alpha = exp2f(m[r] - mn);
                p = exp2f(s[r] - mn);
            }
            m[r] = mn;
            l[r] = l[r] * alpha + p; // per-lane partial sum, reduced at the end
#pragma unroll
            for (int dd = 0; dd < DPL; dd++) acc[r][dd] *= alpha;
            prow[r * TA_KEYS + lane] = p;
        }
        __syncwarp();

        // acc[r][:] += sum_j p[r][j] * V[j][lane's dims]
        const float *vcol = Vs + lane * DPL;
#pragma unroll 2
        for (int j = 0; j < TA_KEYS; j += 4) {
            float vv[4][DPL];
#pragma unroll
            for (int jj = 0; jj < 4; jj++) {
                if constexpr (DPL == 4) {
                    const float4 x = *reinterpret_cast<const float4 *>(vcol + (j + jj) * D);
                    vv[jj][0] = x.x; vv[jj][1] = x.y; vv[jj][2] = x.z; vv[jj][3] = x.w;
                } else {
                    const float2 x = *reinterpret_cast<const float2 *>(vcol + (j + jj) * D);
                    vv[jj][0] = x.x; vv[jj][1] = x.y;
                }
            }
#pragma unroll
            for (int r = 0; r < TA_ROWS_PER_WARP; r++) {
                const float4 pv = *reinterpret_cast<const float4 *>(prow + r * TA_KEYS + j); // broadcast
#pragma unroll
                for (int dd = 0; dd < DPL; dd++)
                    acc[r][dd] += pv.x * vv[0][dd] + pv.y * vv[1][dd] + pv.z * vv[2][dd] + pv.w * vv[3][dd];
            }
        }
        __syncwarp();
    }

#pragma unroll
    for (int r = 0; r < TA_ROWS_PER_WARP; r++) {
        float lsum = l[r];
#pragma unroll
        for (int o = 16; o; o >>= 1) lsum += __shfl_xor_sync(0xffffffffu, lsum, o);
        const int rg = row0 + warp * TA_ROWS_PER_WARP + r, t = rg / a.G, h = kvh * a.G + rg % a.G;
        if (t >= T) continue;
        const size_t row = ((size_t)b * a.Tmax + t) * a.H + h;
        if (a.n_chunks == 1) {
            float *o = a.out + row * D + lane * DPL;
#pragma unroll
            for (int dd = 0; dd < DPL; dd++) o[dd] = acc[r][dd] / lsum;
        } else {
            const size_t prow_idx = (size_t)chunk * a.B * a.Tmax * a.H + row;
            float *o = a.o_part + prow_idx * D + lane * DPL;
#pragma unroll
            for (int dd = 0; dd < DPL; dd++) o[dd] = acc[r][dd];
            if (lane == 0) {
                a.m_part[prow_idx] = m[r];
                a.l_part[prow_idx] = lsum;
            }
        }
    }
}

// One warp per (sequence, tree token, head) row: merges the chunks that covered the sequence.
template <int D>
__global__ void combine_kernel(TaDev a) {
    constexpr int DPL = D / 32;
    const int64_t row = (int64_t)blockIdx.x * (blockDim.x / 32) + (threadIdx.x >> 5);
    const int lane = threadIdx.x & 31;
    if (row >= (int64_t)a.B * a.Tmax * a.H) return;
    const int b = (int)(row / ((int64_t)a.Tmax * a.H)), t = (int)(row / a.H % a.Tmax);
    if (t >= a.tree_len[b]) return;
    const int L = a.prefix[b] + a.tree_len[b], chunks = (L + a.chunk - 1) / a.chunk;
    const size_t stride = (size_t)a.B * a.Tmax * a.H;
    float mx = -INFINITY;
    for (int c = 0; c < chunks; c++) mx = fmaxf(mx, a.m_part[c * stride + row]);
    float den = 0.0f, o[DPL] = {};
    for (int c = 0; c < chunks; c++) {
        const float mc = a.m_part[c * stride + row];
        if (mc == -INFINITY) continue; // this chunk held no key of this row
        const float wgt = exp2f(mc - mx);
        den += a.l_part[c * stride + row] * wgt;
        const float *op = a.o_part + (c * stride + row) * D + lane * DPL;
#pragma unroll
        for (int dd = 0; dd < DPL; dd++) o[dd] += op[dd] * wgt;
    }
    float *out = a.out + row * D + lane * DPL;
#pragma unroll
    for (int dd = 0; dd < DPL; dd++) out[dd] = o[dd] / den;
}

template <int D, int DTYPE>
Status launch_attention(const TaDev &d, dim3 grid, Failure &err) {
    constexpr size_t smem = ta_smem_bytes<D>(); // 74 KiB for D = 128: past the default 48 KiB
    cudaError_t e = cudaFuncSetAttribute(tree_attn_kernel<D, DTYPE>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem);
    if (e != cudaSuccess) return cuda_failure(err, e, "cudaFuncSetAttribute (tree attention)");
    tree_attn_kernel<D, DTYPE><<<grid, TA_THREADS, smem>>>(d);
    return check_launch(err, "tree attention kernel");
}

template <int D>
Status launch_for_dim(const TaDev &d, dim3 grid, int32_t dtype, Failure &err) {
    switch (dtype) {
    case SPEC_DTYPE_F32: return launch_attention<D, SPEC_DTYPE_F32>(d, grid, err);
    case SPEC_DTYPE_F16: return launch_attention<D, SPEC_DTYPE_F16>(d, grid, err);
    default: return launch_attention<D, SPEC_DTYPE_BF16>(d, grid, err);
    }
}

} // namespace

Status tree_attention(spec_context *ctx, const spec_tree_attention_args &a, Failure &err) {
    KernelState &st = kernel_state(ctx);
    std::lock_guard<std::mutex> lock(st.lock);
    if (select_device(ctx->device, err)) return err.status;
    if (grow_scratch(ctx, st, 0, err)) return err.status; // learns the SM count

    const int B = a.batch, Tmax = a.max_tree_nodes, G = a.n_head / a.n_head_kv, D = a.head_dim;
    int L_max = 0, rows_max = 0;
    for (int b = 0; b < B; b++) {
        L_max = std::max(L_max, a.prefix_len[b] + a.tree_len[b]);
        rows_max = std::max(rows_max, a.tree_len[b] * G);
    }
    const TreeAttentionGrid plan = plan_tree_attention(B, a.n_head_kv, rows_max, L_max, st.sm_count);
    if (!plan.fits()) { // never for arguments the ABI accepts (test_model_math checks its limits)
        err = failure(SPEC_ERR_UNSUPPORTED, "cuda: tree attention of %d sequences x %d kv heads needs a %lld x %lld x %lld grid",
                      B, a.n_head_kv, (long long)plan.x, (long long)plan.y, (long long)plan.z);
        return err.status;
    }
    const int chunk = plan.chunk, n_chunks = plan.n_chunks;

    Layout lay;
    const size_t o_prefix = lay.add((size_t)B * 4), o_tlen = lay.add((size_t)B * 4), o_par = lay.add((size_t)B * Tmax * 4);
    const size_t upload = lay.bytes;
    const size_t o_mask = lay.add((size_t)B * Tmax * km::MASK_WORDS * 4);
    const size_t part_rows = (size_t)n_chunks * B * Tmax * a.n_head;
    size_t o_o = 0, o_m = 0, o_l = 0;
    if (n_chunks > 1) {
        o_o = lay.add(part_rows * D * 4);
        o_m = lay.add(part_rows * 4);
        o_l = lay.add(part_rows * 4);
    }
    if (grow_scratch(ctx, st, lay.bytes, err)) return err.status;
    Staging up(upload);
    up.put(o_prefix, a.prefix_len, (size_t)B);
    up.put(o_tlen, a.tree_len, (size_t)B);
    up.put(o_par, a.parents, (size_t)B * Tmax);
    if (up.upload(st.scratch, err)) return err.status;

    TaDev d{};
    d.q = (const float *)a.q->ptr;
    d.k = a.k_cache->ptr;
    d.v = a.v_cache->ptr;
    d.out = (float *)a.out->ptr;
    d.prefix = (const int32_t *)(st.scratch + o_prefix);
    d.tree_len = (const int32_t *)(st.scratch + o_tlen);
    d.mask = (const uint32_t *)(st.scratch + o_mask);
    if (n_chunks > 1) {
        d.o_part = (float *)(st.scratch + o_o);
        d.m_part = (float *)(st.scratch + o_m);
        d.l_part = (float *)(st.scratch + o_l);
    }
    d.B = B;
    d.H = a.n_head;
    d.Hkv = a.n_head_kv;
    d.G = G;
    d.Tmax = Tmax;
    d.max_ctx = a.max_ctx;
    d.chunk = chunk;
    d.n_chunks = n_chunks;
    d.scale_log2 = a.scale * 1.4426950408889634f;

    mask_kernel<<<B, SPEC_MAX_TREE_NODES>>>((const int32_t *)(st.scratch + o_par), d.tree_len, Tmax,
                                            (uint32_t *)(st.scratch + o_mask));
    if (check_launch(err, "tree mask kernel")) return err.status;
    const dim3 grid((unsigned)plan.x, (unsigned)plan.y, (unsigned)plan.z);
    Status s = D == 64 ? launch_for_dim<64>(d, grid, a.kv_dtype, err) : launch_for_dim<128>(d, grid, a.kv_dtype, err);
    if (s != SPEC_OK || n_chunks == 1) return s;
    const int64_t rows = (int64_t)B * Tmax * a.n_head;
    const unsigned blocks = (unsigned)((rows + 7) / 8);
    if (D == 64)
        combine_kernel<64><<<blocks, 256>>>(d);
    else
        combine_kernel<128><<<blocks, 256>>>(d);
    return check_launch(err, "tree attention combine kernel");
}

} // namespace specula::cuda
