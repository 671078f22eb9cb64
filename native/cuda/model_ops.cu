// The cuda model's kernels other than the matrix products; see model_ops.cuh. The per-element
// math (rope, rmsnorm's scale, silu, dequantizing) comes from native/core/model_math.hpp, which
// the cpu backend and the host tests share; the key sets, the attention split and the online
// softmax from forward_plan.hpp, which the host tests check.
#include "model_ops.cuh"

#include <algorithm>

namespace specula::cuda::ops {
namespace {

constexpr int THREADS = 256;

__device__ __forceinline__ float warp_max_f(float v) {
    for (int o = 16; o; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}
__device__ __forceinline__ float warp_sum_f(float v) {
    for (int o = 16; o; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}
__device__ __forceinline__ double warp_sum_d(double v) {
    for (int o = 16; o; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

// KV cache elements: f32 as is, f16 / bf16 through the shared exact conversions.
template <int DT>
__device__ __forceinline__ float kv_load(const char *base, size_t elem) {
    if (DT == SPEC_DTYPE_F32) return reinterpret_cast<const float *>(base)[elem];
    const uint16_t h = reinterpret_cast<const uint16_t *>(base)[elem];
    return DT == SPEC_DTYPE_F16 ? km::f16_to_f32(h) : km::bf16_to_f32(h);
}
__device__ __forceinline__ void kv_store(char *base, size_t elem, float v, int dt) {
    if (dt == SPEC_DTYPE_F32) reinterpret_cast<float *>(base)[elem] = v;
    else reinterpret_cast<uint16_t *>(base)[elem] = dt == SPEC_DTYPE_F16 ? km::f32_to_f16(v) : km::f32_to_bf16(v);
}

// ---------------------------------------------------------------- embedding and rope table

__global__ void embed_kernel(const mm::StepParams *p, Embed a) {
    const int t = blockIdx.x, E = a.n_embd, half = a.rope_half;
    float *xr = a.x + (size_t)t * E;
    if (t >= p->h.n_rows) {
        for (int e = threadIdx.x; e < E; e += blockDim.x) xr[e] = 0.0f;
        return;
    }
    const mm::StepRow &r = p->rows[t];
    const uint8_t *row = (const uint8_t *)a.embd + (uint64_t)r.token * a.row_bytes;
    for (int e = threadIdx.x; e < E; e += blockDim.x) xr[e] = km::fmul(mm::dequant_element(a.dtype, row, e), a.scale);
    float *cs = a.rope + (size_t)t * half * 2;
    for (int i = threadIdx.x; i < half; i += blockDim.x) {
        const double ang = mm::rope_angle(r.position, a.pos_scale, a.inv_freq[i]);
        cs[2 * i] = (float)cos(ang);
        cs[2 * i + 1] = (float)sin(ang);
    }
    if (a.rope_local) {
        float *lcs = a.rope_local + (size_t)t * half * 2;
        for (int i = threadIdx.x; i < half; i += blockDim.x) {
            const double ang = mm::rope_angle(r.position, a.pos_scale_local, a.inv_freq_local[i]);
            lcs[2 * i] = (float)cos(ang);
            lcs[2 * i + 1] = (float)sin(ang);
        }
    }
    const mm::StepSeq &sq = p->seqs[r.seq];
    if (sq.slot_positions && threadIdx.x == 0) // before any layer's attention reads it (stream order)
        reinterpret_cast<int32_t *>(sq.slot_positions)[sq.first_slot + (t - sq.first_row)] = r.position;
}

// ---------------------------------------------------------------- rmsnorm

__global__ void rmsnorm_kernel(const float *x, const float *w, float *out, int32_t n, float eps, const mm::StepParams *gather) {
    __shared__ double red[32];
    float *o = out + (size_t)blockIdx.x * n;
    if (gather && (int)blockIdx.x >= gather->h.n_head) { // padding of the head's bucket: zeros
        for (int i = threadIdx.x; i < n; i += blockDim.x) o[i] = 0.0f;
        return;
    }
    const int src = gather ? gather->head_src[blockIdx.x] : blockIdx.x;
    const float *xr = x + (size_t)src * n;
    if (!w) { // no norm (an EAGLE layer's absent output norm): the rows as they are
        for (int i = threadIdx.x; i < n; i += blockDim.x) o[i] = xr[i];
        return;
    }
    double ss = 0.0;
    for (int i = threadIdx.x; i < n; i += blockDim.x) ss += (double)xr[i] * xr[i];
    ss = warp_sum_d(ss);
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    if (lane == 0) red[warp] = ss;
    __syncthreads();
    if (warp == 0) {
        double v = lane < (int)(blockDim.x >> 5) ? red[lane] : 0.0;
        v = warp_sum_d(v);
        if (lane == 0) red[0] = v;
    }
    __syncthreads();
    const float s = mm::rms_scale(red[0], n, eps);
    for (int i = threadIdx.x; i < n; i += blockDim.x) o[i] = km::fmul(km::fmul(xr[i], s), w[i]);
}

// ---------------------------------------------------------------- q/k/v epilogue

__global__ void qkv_post_kernel(const mm::StepParams *p, QkvPost a, int32_t layer) {
    const int t = blockIdx.x;
    if (t >= p->h.n_rows) return; // padding: q/k/v stay as computed, the cache untouched
    const int D = a.head_dim, QD = a.n_head * D, KD = a.n_head_kv * D;
    float *q = a.q + (size_t)t * a.ld, *k = a.k + (size_t)t * a.ld, *v = a.v + (size_t)t * a.ld;
    if (a.bq) {
        for (int i = threadIdx.x; i < QD; i += blockDim.x) q[i] = km::fadd(q[i], a.bq[i]);
        for (int i = threadIdx.x; i < KD; i += blockDim.x) {
            k[i] = km::fadd(k[i], a.bk[i]);
            v[i] = km::fadd(v[i], a.bv[i]);
        }
        __syncthreads();
    }
    if (a.q_norm) { // per-head RMSNorm before rope (qwen3, gemma3): one thread per head, the cpu's order
        for (int h = threadIdx.x; h < a.n_head + a.n_head_kv; h += blockDim.x) {
            float *vec = h < a.n_head ? q + (size_t)h * D : k + (size_t)(h - a.n_head) * D;
            mm::rmsnorm_row(vec, h < a.n_head ? a.q_norm : a.k_norm, vec, D, a.eps);
        }
        __syncthreads();
    }
    const float *cs = a.rope + (size_t)t * a.rope_half * 2;
    const int pairs = (a.n_head + a.n_head_kv) * a.rope_half;
    for (int idx = threadIdx.x; idx < pairs; idx += blockDim.x) {
        const int h = idx / a.rope_half, i = idx % a.rope_half;
        float *vec = h < a.n_head ? q + (size_t)h * D : k + (size_t)(h - a.n_head) * D;
        int ia, ib;
        mm::rope_pair(i, a.rope_half, a.neox, ia, ib);
        mm::rope_rotate(vec[ia], vec[ib], cs[2 * i], cs[2 * i + 1], vec[ia], vec[ib]);
    }
    __syncthreads();
    const mm::StepSeq &sq = p->seqs[p->rows[t].seq];
    const size_t slot = (size_t)(sq.first_slot + (t - sq.first_row));
    char *kc = reinterpret_cast<char *>(sq.kv) + (size_t)(2 * layer) * sq.layer_bytes;
    char *vc = kc + sq.layer_bytes;
    for (int i = threadIdx.x; i < KD; i += blockDim.x) {
        kv_store(kc, slot * KD + i, k[i], a.kv_dtype);
        kv_store(vc, slot * KD + i, v[i], a.kv_dtype);
    }
}

// ---------------------------------------------------------------- tree attention
//
// Grid (split, row tile, kv head). A block takes mm::ATT_ROWS query rows (row = token * G + g) of
// one sequence (tiles never mix sequences: mm::attn_tile_seq; grid rows past h.n_tiles only zero
// the padding rows' outputs) and the split's share of the keys its tokens can see ([0, last
// token's slot] of that sequence's cache), in tiles of
// ATT_KEYS keys staged in shared memory as f32. Each warp owns ATT_ROWS / 4 rows: lane j scores
// key j of the tile against a row (masked by the row's key set), then the warp updates the
// row's online softmax and accumulates P.V, each lane owning dims lane, lane + 32, ...
// With one split the block writes the normalized output; otherwise (m, l, acc) partials that
// combine_kernel merges.

constexpr int ATT_THREADS = 128;
constexpr int ATT_WARPS = ATT_THREADS / 32;
constexpr int ATT_RPW = mm::ATT_ROWS / ATT_WARPS;
static_assert(mm::ATT_KEYS == 32, "one key per lane");

struct AttnDev {
    const mm::StepParams *p;
    const float *q;
    int64_t q_ld;
    float *out, *part;
    int32_t layer, D, G, n_head, n_head_kv, rows_total, splits, part_rows;
    float scale;
    int32_t window; // 0: every key of the key set; else only keys at positions > the query's - window
};

template <int MAXD, int DT>
__global__ void __launch_bounds__(ATT_THREADS) attention_kernel(AttnDev a) {
    constexpr int DPL = MAXD / 32;
    extern __shared__ float smem[];
    __shared__ mm::StepRow meta[mm::ATT_ROWS];
    __shared__ int32_t key_pos[mm::ATT_KEYS]; // with a window: the positions of the tile's keys
    const int D = a.D, G = a.G;
    float *Qs = smem;                            // [ATT_ROWS][D]
    float *Ks = Qs + mm::ATT_ROWS * D;           // [ATT_KEYS][D + 1]: lanes read different rows
    float *Vs = Ks + mm::ATT_KEYS * (D + 1);     // [ATT_KEYS][D]
    const int split = blockIdx.x, tile = blockIdx.y, kvh = blockIdx.z;
    const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
    if (tile >= a.p->h.n_tiles) {
        // No sequence's tile. With one split the padding rows' outputs are written here, once (the
        // combine kernel writes them otherwise): zeros, so the next products stay finite.
        if (a.splits == 1 && tile == a.p->h.n_tiles) {
            const int pad0 = a.p->h.n_rows, rows = a.rows_total / G;
            for (int e = tid; e < (rows - pad0) * G * D; e += ATT_THREADS) {
                const int t = pad0 + e / (G * D), g = (e / D) % G, d = e % D;
                a.out[((size_t)t * a.n_head + (size_t)kvh * G + g) * D + d] = 0.0f;
            }
        }
        return;
    }
    const mm::StepSeq &sq = a.p->seqs[mm::attn_tile_seq(*a.p, tile)];
    // This block's rows: (token, g) pairs row0 .. row0 + ATT_ROWS - 1 of its sequence, whose rows
    // are slice rows first_row .. first_row + n_rows - 1; rg = the pair's index in the slice.
    const int row0 = (tile - sq.tile0) * mm::ATT_ROWS, seq_rows = sq.n_rows * G, base = sq.first_row * G;
    const int first = sq.first_slot;

    // Keys this tile's tokens can see: up to the last token's own slot.
    const int last_row = min(row0 + mm::ATT_ROWS, seq_rows) - 1;
    const int n_keys = first + last_row / G + 1;
    int k0, k1;
    mm::split_range(n_keys, a.splits, split, k0, k1);

    for (int e = tid; e < mm::ATT_ROWS * D; e += ATT_THREADS) {
        const int r = e / D, d = e % D, rl = row0 + r, t = sq.first_row + rl / G, g = rl % G;
        Qs[e] = rl < seq_rows ? a.q[(size_t)t * a.q_ld + ((size_t)kvh * G + g) * D + d] : 0.0f;
    }
    for (int r = tid; r < mm::ATT_ROWS; r += ATT_THREADS) {
        const int rl = row0 + r;
        if (rl < seq_rows) meta[r] = a.p->rows[sq.first_row + rl / G];
    }

    float acc[ATT_RPW][DPL], m[ATT_RPW], l[ATT_RPW];
#pragma unroll
    for (int i = 0; i < ATT_RPW; i++) {
        m[i] = -INFINITY;
        l[i] = 0.0f;
#pragma unroll
        for (int dd = 0; dd < DPL; dd++) acc[i][dd] = 0.0f;
    }

    const char *kbase = reinterpret_cast<const char *>(sq.kv) + (size_t)(2 * a.layer) * sq.layer_bytes;
    const char *vbase = kbase + sq.layer_bytes;
    const size_t slot_elems = (size_t)a.n_head_kv * D;
    const int32_t *slot_pos = a.window > 0 ? reinterpret_cast<const int32_t *>(sq.slot_positions) : nullptr;
    for (int kt = k0; kt < k1; kt += mm::ATT_KEYS) {
        __syncthreads(); // the previous tile is consumed (and Q, meta are in place)
        if (slot_pos && tid < mm::ATT_KEYS) key_pos[tid] = kt + tid < k1 ? slot_pos[kt + tid] : 0;
        for (int e = tid; e < mm::ATT_KEYS * D; e += ATT_THREADS) {
            const int j = e / D, d = e % D, slot = kt + j;
            float kx = 0.0f, vx = 0.0f;
            if (slot < k1) {
                const size_t elem = (size_t)slot * slot_elems + (size_t)kvh * D + d;
                kx = kv_load<DT>(kbase, elem);
                vx = kv_load<DT>(vbase, elem);
            }
            Ks[j * (D + 1) + d] = kx;
            Vs[j * D + d] = vx;
        }
        __syncthreads();
#pragma unroll
        for (int i = 0; i < ATT_RPW; i++) {
            const int r = warp * ATT_RPW + i;
            if (row0 + r >= seq_rows) continue; // warp-uniform
            const int slot = kt + lane;
            const bool ok = slot < k1 && mm::key_allowed(meta[r], slot) &&
                            (!slot_pos || mm::key_in_window(key_pos[lane], meta[r].position, a.window));
            float s = -INFINITY;
            if (ok) {
                float dot = 0.0f;
                const float *qr = Qs + r * D, *kr = Ks + lane * (D + 1);
                for (int d = 0; d < D; d++) dot = fmaf(qr[d], kr[d], dot);
                s = dot * a.scale;
            }
            const float m_new = fmaxf(m[i], warp_max_f(s));
            if (m_new == -INFINITY) continue; // nothing visible yet (warp-uniform)
            const float alpha = mm::softmax_rescale(m[i], m_new);
            const float pw = ok ? mm::softmax_weight(s, m_new) : 0.0f;
            l[i] = l[i] * alpha + warp_sum_f(pw);
#pragma unroll
            for (int dd = 0; dd < DPL; dd++) acc[i][dd] *= alpha;
            for (int j = 0; j < mm::ATT_KEYS; j++) {
                const float pj = __shfl_sync(0xffffffffu, pw, j);
#pragma unroll
                for (int dd = 0; dd < DPL; dd++) {
                    const int d = lane + 32 * dd;
                    if (d < D) acc[i][dd] = fmaf(pj, Vs[j * D + d], acc[i][dd]);
                }
            }
            m[i] = m_new;
        }
    }

#pragma unroll
    for (int i = 0; i < ATT_RPW; i++) {
        const int r = warp * ATT_RPW + i, rl = row0 + r, rg = base + rl, t = rg / G, g = rg % G;
        if (rl >= seq_rows) continue;
        if (a.splits == 1) {
            float *o = a.out + ((size_t)t * a.n_head + (size_t)kvh * G + g) * D;
            const float inv = 1.0f / l[i];
#pragma unroll
            for (int dd = 0; dd < DPL; dd++) {
                const int d = lane + 32 * dd;
                if (d < D) o[d] = acc[i][dd] * inv;
            }
        } else {
            float *pp = a.part + (((size_t)split * a.part_rows + rg) * a.n_head_kv + kvh) * mm::attn_partial_floats_per_row(D);
            if (lane == 0) {
                pp[0] = m[i];
                pp[1] = l[i];
            }
#pragma unroll
            for (int dd = 0; dd < DPL; dd++) {
                const int d = lane + 32 * dd;
                if (d < D) pp[2 + d] = acc[i][dd];
            }
        }
    }
}

// One warp per (token, query head): merges the splits' partials (lane s weighs split s).
__global__ void combine_kernel(AttnDev a, int32_t rows) {
    __shared__ float wsh[ATT_WARPS][32];
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const int w = blockIdx.x * ATT_WARPS + warp;
    const int t = w / a.n_head, hq = w % a.n_head, D = a.D;
    if (t >= rows) return;
    float *o = a.out + ((size_t)t * a.n_head + hq) * D;
    if (t >= a.p->h.n_rows) {
        for (int d = lane; d < D; d += 32) o[d] = 0.0f;
        return;
    }
    const int kvh = hq / a.G, rg = t * a.G + hq % a.G;
    const int64_t stride = mm::attn_partial_floats_per_row(D);
    auto partial = [&](int s) { return a.part + (((size_t)s * a.part_rows + rg) * a.n_head_kv + kvh) * stride; };
    const float ms = lane < a.splits ? partial(lane)[0] : -INFINITY;
    const float M = warp_max_f(ms);
    const float ws = lane < a.splits ? mm::softmax_rescale(ms, M) : 0.0f;
    const float L = warp_sum_f(lane < a.splits ? partial(lane)[1] * ws : 0.0f);
    wsh[warp][lane] = ws;
    __syncwarp();
    const float inv = 1.0f / L;
    for (int d = lane; d < D; d += 32) {
        float acc = 0.0f;
        for (int s = 0; s < a.splits; s++)
            if (wsh[warp][s] != 0.0f) acc = fmaf(wsh[warp][s], partial(s)[2 + d], acc);
        o[d] = acc * inv;
    }
}

template <int MAXD>
void *attention_kernel_for(int dtype) {
    switch (dtype) {
    case SPEC_DTYPE_F16: return (void *)attention_kernel<MAXD, SPEC_DTYPE_F16>;
    case SPEC_DTYPE_BF16: return (void *)attention_kernel<MAXD, SPEC_DTYPE_BF16>;
    default: return (void *)attention_kernel<MAXD, SPEC_DTYPE_F32>;
    }
}
void *attention_kernel_for(int head_dim, int dtype) {
    static_assert(mm::ATT_MAX_HEAD_DIM == 256, "one instance per mm::attn_head_dim_bucket");
    switch (mm::attn_head_dim_bucket(head_dim)) {
    case 32: return attention_kernel_for<32>(dtype);
    case 64: return attention_kernel_for<64>(dtype);
    case 128: return attention_kernel_for<128>(dtype);
    default: return attention_kernel_for<256>(dtype);
    }
}

// ---------------------------------------------------------------- elementwise and copies

// Grid (column blocks, rows).
__global__ void gate_mul_kernel(float *g, const float *u, int64_t ld, int64_t width, bool gelu) {
    const int64_t row = (int64_t)blockIdx.y * ld;
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < width; i += (int64_t)gridDim.x * blockDim.x)
        g[row + i] = km::fmul(gelu ? mm::gelu_tanh(g[row + i]) : mm::silu(g[row + i]), u[row + i]);
}

// One block per row: x += y * rms_scale(y) * w.
__global__ void add_rmsnorm_kernel(const float *y, const float *w, float *x, int32_t n, float eps) {
    __shared__ double red[33];
    const float *yr = y + (size_t)blockIdx.x * n;
    float *xr = x + (size_t)blockIdx.x * n;
    double ss = 0.0;
    for (int i = threadIdx.x; i < n; i += blockDim.x) ss += km::dmul((double)yr[i], (double)yr[i]);
    const float s = mm::rms_scale(block_sum_f64(ss, red), n, eps);
    for (int i = threadIdx.x; i < n; i += blockDim.x) xr[i] = km::fadd(xr[i], km::fmul(km::fmul(yr[i], s), w[i]));
}

// Grid (column blocks, rows): row y of the grid is a slice row (All) or a head row (Head, HeadRows).
__global__ void copy_out_kernel(const mm::StepParams *p, Dest dest, RowsOut which, const float *src, int64_t width) {
    const int y = blockIdx.y;
    uint64_t addr = 0;
    int64_t src_row = y;
    if (which == RowsOut::All) {
        if (y >= p->h.n_rows) return;
        const mm::StepSeq &sq = p->seqs[p->rows[y].seq];
        const uint64_t first = dest == Dest::ExitHidden    ? sq.exit_hidden
                               : dest == Dest::ExitLogits  ? sq.exit_logits
                               : dest == Dest::FinalHidden ? sq.final_hidden
                                                           : 0;
        if (!first) return;
        addr = first + (uint64_t)(y - sq.first_row) * (uint64_t)width * 4;
    } else {
        if (y >= p->h.n_head) return;
        addr = p->head_dst[y];
        if (which == RowsOut::HeadRows) src_row = p->head_src[y];
    }
    const int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
    if (i < width) reinterpret_cast<float *>(addr)[i] = src[src_row * width + i];
}

__global__ void kv_move_kernel(char *kv, uint64_t layer_bytes, int64_t units, int32_t committed, const int32_t *pairs, int32_t n_pairs,
                               int32_t *slot_positions) {
    const int64_t e = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
    if (slot_positions && e == 0 && blockIdx.y == 0) // the slots' positions move with them, in the same order
        for (int32_t i = 0; i < n_pairs; i++) slot_positions[committed + pairs[2 * i]] = slot_positions[committed + pairs[2 * i + 1]];
    if (e >= units) return;
    uint16_t *base = reinterpret_cast<uint16_t *>(kv + (uint64_t)blockIdx.y * layer_bytes);
    // In path order: a slot is read before any later move overwrites it (path[j] >= j).
    for (int32_t i = 0; i < n_pairs; i++) {
        const int64_t dst = committed + pairs[2 * i], src = committed + pairs[2 * i + 1];
        base[dst * units + e] = base[src * units + e];
    }
}

// ---------------------------------------------------------------- draft heads

// One block per row.
__global__ void heads_input_kernel(const float *hidden, const uint8_t *embd, int32_t dtype, uint64_t row_bytes, int32_t E,
                                   const int32_t *tokens, int32_t n_tokens, float *x, int64_t ld) {
    const int j = blockIdx.x;
    float *xr = x + (size_t)j * ld;
    for (int e = threadIdx.x; e < E; e += blockDim.x) xr[e] = hidden[e];
    for (int t = 0; t < n_tokens; t++) {
        const uint8_t *row = embd + (uint64_t)tokens[j * n_tokens + t] * row_bytes;
        for (int e = threadIdx.x; e < E; e += blockDim.x) xr[(size_t)(t + 1) * E + e] = mm::dequant_element(dtype, row, e);
    }
}

__global__ void heads_bias_silu_kernel(float *y, const float *bias, int64_t total, int32_t n) {
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < total; i += (int64_t)gridDim.x * blockDim.x)
        y[i] = mm::head_activation(y[i], bias, i % n);
}

__global__ void heads_residual_kernel(float *x, const float *r, const float *res_bias, const float *y, int64_t total, int32_t n) {
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < total; i += (int64_t)gridDim.x * blockDim.x)
        x[i] = mm::head_residual(r ? r[i] : x[i], r ? res_bias : nullptr, i % n, y[i]);
}

// ---------------------------------------------------------------- EAGLE draft layers

// One block per row: cat[t] = [e[t]; the feature row at features[t]], zeros for the padding rows.
__global__ void eagle_input_kernel(const mm::StepParams *p, const float *e, const uint64_t *features, int32_t E, float *cat) {
    const int t = blockIdx.x;
    float *c = cat + (size_t)t * 2 * E;
    if (t >= p->h.n_rows) {
        for (int i = threadIdx.x; i < 2 * E; i += blockDim.x) c[i] = 0.0f;
        return;
    }
    const float *er = e + (size_t)t * E, *f = reinterpret_cast<const float *>(features[t]);
    for (int i = threadIdx.x; i < E; i += blockDim.x) {
        c[i] = er[i];
        c[E + i] = f[i];
    }
}

// Grid (column blocks, rows).
__global__ void add_row_bias_kernel(float *out, int64_t ld, const float *bias, int64_t n) {
    float *o = out + (size_t)blockIdx.y * ld;
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
        o[i] = km::fadd(o[i], bias[i]);
}

unsigned blocks_for(int64_t n, int per) { return (unsigned)std::max<int64_t>(1, (n + per - 1) / per); }

} // namespace

Status prepare(int32_t head_dim, Failure &err) {
    // The attribute belongs to the kernel instance, which every model of the bucket shares: set
    // it for the bucket's largest head_dim, or a later model with a smaller head_dim would lower
    // it below what an earlier, larger one launches with (a failed launch).
    const size_t smem = mm::attn_smem_bytes(mm::attn_head_dim_bucket(head_dim));
    for (int dt : {SPEC_DTYPE_F32, SPEC_DTYPE_F16, SPEC_DTYPE_BF16}) {
        cudaError_t e = cudaFuncSetAttribute(attention_kernel_for(head_dim, dt), cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem);
        if (e != cudaSuccess) return cuda_failure(err, e, "cudaFuncSetAttribute (model attention shared memory)");
    }
    return SPEC_OK;
}

Status embed(const mm::StepParams *p, const Embed &a, int32_t rows, cudaStream_t stream, Failure &err) {
    embed_kernel<<<rows, THREADS, 0, stream>>>(p, a);
    return check_launch(err, "model embedding kernel");
}

Status rmsnorm(const float *x, const float *w, float *out, int32_t rows, int32_t n, float eps, const mm::StepParams *gather,
               cudaStream_t stream, Failure &err) {
    rmsnorm_kernel<<<rows, THREADS, 0, stream>>>(x, w, out, n, eps, gather);
    return check_launch(err, "model rmsnorm kernel");
}

Status qkv_post(const mm::StepParams *p, const QkvPost &a, int32_t layer, int32_t rows, cudaStream_t stream, Failure &err) {
    qkv_post_kernel<<<rows, THREADS, 0, stream>>>(p, a, layer);
    return check_launch(err, "model q/k/v kernel");
}

Status attention(const mm::StepParams *p, const Attention &a, int32_t layer, int32_t rows, cudaStream_t stream, Failure &err) {
    AttnDev d;
    d.p = p;
    d.q = a.q;
    d.q_ld = a.q_ld;
    d.out = a.out;
    d.part = a.part;
    d.layer = layer;
    d.D = a.head_dim;
    d.G = a.n_head / a.n_head_kv;
    d.n_head = a.n_head;
    d.n_head_kv = a.n_head_kv;
    d.rows_total = rows * d.G;
    d.splits = mm::attn_splits(rows, d.G, a.n_head_kv);
    d.part_rows = mm::attn_tiles(rows, d.G) * mm::ATT_ROWS; // rows of the slice's (token, g) pairs
    d.scale = a.scale;
    d.window = a.window;
    const dim3 grid((unsigned)d.splits, (unsigned)mm::attn_grid_tiles(rows, d.G), (unsigned)a.n_head_kv);
    void *args[] = {&d};
    cudaError_t e = cudaLaunchKernel(attention_kernel_for(a.head_dim, a.kv_dtype), grid, dim3(ATT_THREADS), args,
                                     mm::attn_smem_bytes(a.head_dim), stream);
    if (e != cudaSuccess) return cuda_failure(err, e, "model attention kernel");
    if (d.splits > 1) {
        combine_kernel<<<blocks_for((int64_t)rows * a.n_head, ATT_WARPS), ATT_THREADS, 0, stream>>>(d, rows);
        return check_launch(err, "model attention combine kernel");
    }
    return SPEC_OK;
}

Status gate_mul(float *g, const float *u, int64_t ld, int32_t rows, int64_t width, bool gelu, cudaStream_t stream, Failure &err) {
    const dim3 grid(std::min<unsigned>(blocks_for(width, THREADS), 64), (unsigned)rows);
    gate_mul_kernel<<<grid, THREADS, 0, stream>>>(g, u, ld, width, gelu);
    return check_launch(err, "model gated activation kernel");
}

Status add_rmsnorm(const float *y, const float *w, float *x, int32_t rows, int32_t n, float eps, cudaStream_t stream, Failure &err) {
    add_rmsnorm_kernel<<<rows, THREADS, 0, stream>>>(y, w, x, n, eps);
    return check_launch(err, "model post-block norm kernel");
}

Status copy_out(const mm::StepParams *p, Dest dest, RowsOut which, const float *src, int64_t width, int32_t rows,
                cudaStream_t stream, Failure &err) {
    const dim3 grid(blocks_for(width, THREADS), (unsigned)rows);
    copy_out_kernel<<<grid, THREADS, 0, stream>>>(p, dest, which, src, width);
    return check_launch(err, "model output copy kernel");
}

Status kv_move(void *kv, uint64_t layer_bytes, uint64_t slot_bytes, int32_t n_layers, int32_t committed, const int32_t *pairs,
               int32_t n_pairs, int32_t *slot_positions, cudaStream_t stream, Failure &err) {
    const int64_t units = (int64_t)(slot_bytes / 2);
    const dim3 grid(blocks_for(units, THREADS), (unsigned)(2 * n_layers));
    kv_move_kernel<<<grid, THREADS, 0, stream>>>((char *)kv, layer_bytes, units, committed, pairs, n_pairs, slot_positions);
    return check_launch(err, "kv_commit kernel");
}

Status heads_input(const float *hidden, const void *embd, int32_t embd_dtype, uint64_t embd_row_bytes, int32_t n_embd,
                   const int32_t *tokens, int32_t n_tokens, int32_t rows, float *x, int64_t ld, cudaStream_t stream, Failure &err) {
    heads_input_kernel<<<rows, THREADS, 0, stream>>>(hidden, (const uint8_t *)embd, embd_dtype, embd_row_bytes, n_embd, tokens, n_tokens,
                                                     x, ld);
    return check_launch(err, "heads input kernel");
}

Status heads_bias_silu(float *y, const float *bias, int32_t rows, int32_t n, cudaStream_t stream, Failure &err) {
    const int64_t total = (int64_t)rows * n;
    heads_bias_silu_kernel<<<std::min<unsigned>(blocks_for(total, THREADS), 1024), THREADS, 0, stream>>>(y, bias, total, n);
    return check_launch(err, "heads activation kernel");
}

Status heads_residual(float *x, const float *r, const float *res_bias, const float *y, int32_t rows, int32_t n, cudaStream_t stream,
                      Failure &err) {
    const int64_t total = (int64_t)rows * n;
    heads_residual_kernel<<<std::min<unsigned>(blocks_for(total, THREADS), 1024), THREADS, 0, stream>>>(x, r, res_bias, y, total, n);
    return check_launch(err, "heads residual kernel");
}

Status add_row_bias(float *out, int64_t ld, const float *bias, int32_t rows, int64_t n, cudaStream_t stream, Failure &err) {
    const dim3 grid(std::min<unsigned>(blocks_for(n, THREADS), 256), (unsigned)rows);
    add_row_bias_kernel<<<grid, THREADS, 0, stream>>>(out, ld, bias, n);
    return check_launch(err, "heads projection bias kernel");
}

Status eagle_input(const mm::StepParams *p, const float *e, const uint64_t *features, int32_t n_embd, float *cat, int32_t rows,
                   cudaStream_t stream, Failure &err) {
    eagle_input_kernel<<<rows, THREADS, 0, stream>>>(p, e, features, n_embd, cat);
    return check_launch(err, "EAGLE input kernel");
}

} // namespace specula::cuda::ops
