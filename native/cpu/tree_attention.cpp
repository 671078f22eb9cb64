// Tree attention, cpu twin: for every (sequence, query head, tree token) a plain two-pass
// softmax over the prefix slots and the token's ancestors-or-self in the tree, in fp32. With a
// sliding window, of those only the keys at positions > the token's own - window (prefix slot j at
// position j, tree token i at prefix_len + its depth).
// The cuda kernel (tree_attention.cu) computes the same with an online softmax split across
// blocks; the two agree within the tolerance documented in specula.h.
#include "spec_kernels.hpp"

#include "../core/kernel_math.hpp"

#include <cmath>

namespace specula::cpu {
namespace {

// One K or V row of head_dim elements, as f32.
void load_row(const void *cache, int32_t dtype, size_t offset, int d, float *out) {
    switch (dtype) {
    case SPEC_DTYPE_F32: std::copy_n((const float *)cache + offset, d, out); break;
    case SPEC_DTYPE_F16:
        for (int i = 0; i < d; i++) out[i] = km::f16_to_f32(((const uint16_t *)cache)[offset + i]);
        break;
    default:
        for (int i = 0; i < d; i++) out[i] = km::bf16_to_f32(((const uint16_t *)cache)[offset + i]);
        break;
    }
}

} // namespace

Status tree_attention(spec_context *ctx, const spec_tree_attention_args &a, int32_t window, Failure &) {
    const int D = a.head_dim, H = a.n_head, Hkv = a.n_head_kv, G = H / Hkv;
    const float *q = (const float *)a.q->ptr;
    float *out = (float *)a.out->ptr;
    // One work item per (sequence, kv head): its K/V rows are converted once and reused by the
    // G query heads and T tree tokens that read them.
    int64_t work = 0; // per (sequence, kv head): K/V conversion plus G*T query rows over L keys
    for (int b = 0; b < a.batch; b++) {
        const int64_t L = (int64_t)a.prefix_len[b] + a.tree_len[b];
        work += Hkv * L * D * (2 + (int64_t)G * a.tree_len[b]);
    }
    parallel_for(ctx, (int64_t)a.batch * Hkv, [&](int64_t item) {
        const int b = (int)(item / Hkv), kvh = (int)(item % Hkv);
        const int P = a.prefix_len[b], T = a.tree_len[b], L = P + T;
        const int32_t *parents = a.parents + (size_t)b * a.max_tree_nodes;
        std::vector<float> K((size_t)L * D), V((size_t)L * D), s(L), acc(D);
        std::vector<int32_t> pos(L); // each key's position: the prefix's slots, then P + depth
        for (int j = 0; j < P; j++) pos[j] = j;
        for (int i = 0; i < T; i++) pos[P + i] = parents[i] < 0 ? P : pos[P + parents[i]] + 1;
        for (int j = 0; j < L; j++) {
            size_t off = (((size_t)b * a.max_ctx + j) * Hkv + kvh) * D;
            load_row(a.k_cache->ptr, a.kv_dtype, off, D, &K[(size_t)j * D]);
            load_row(a.v_cache->ptr, a.kv_dtype, off, D, &V[(size_t)j * D]);
        }
        for (int t = 0; t < T; t++) {
            uint32_t mask[km::MASK_WORDS];
            km::tree_mask_row(parents, t, mask);
            for (int g = 0; g < G; g++) {
                const int h = kvh * G + g;
                const float *qr = q + (((size_t)b * a.max_tree_nodes + t) * H + h) * D;
                float m = -INFINITY;
                for (int j = 0; j < L; j++) {
                    bool allowed = (j < P || km::mask_bit(mask, j - P)) && (window <= 0 || pos[j] > pos[P + t] - window);
                    if (!allowed) {
                        s[j] = -INFINITY;
                        continue;
                    }
                    float dot = 0.0f;
                    for (int d = 0; d < D; d++) dot += qr[d] * K[(size_t)j * D + d];
                    s[j] = dot * a.scale;
                    m = std::max(m, s[j]);
                }
                float l = 0.0f;
                std::fill(acc.begin(), acc.end(), 0.0f);
                for (int j = 0; j < L; j++) {
                    if (s[j] == -INFINITY) continue;
                    float p = std::exp(s[j] - m);
                    l += p;
                    for (int d = 0; d < D; d++) acc[d] += p * V[(size_t)j * D + d];
                }
                float *o = out + (((size_t)b * a.max_tree_nodes + t) * H + h) * D;
                for (int d = 0; d < D; d++) o[d] = acc[d] / l;
            }
        }
    }, work);
    return SPEC_OK;
}

} // namespace specula::cpu
