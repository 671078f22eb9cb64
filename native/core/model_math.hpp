// The transformer's per-element math that both backends compute the same way (rope frequencies,
// the rotation of one pair, the rmsnorm scale, silu, dequantizing one weight element), included
// by the cpu backend, the cuda kernels and the host tests. The cuda forward's host plan (shapes,
// graph keys, parameter block, layouts) is native/cuda/forward_plan.hpp.
// Nothing here touches a device, so test_model_math checks all of it on any machine.
#pragma once

#include "kernel_math.hpp"
#include "matmul_math.hpp"
#include "quant_blocks.hpp"
#include "specula.h"

#include <cmath>
#include <cstddef>
#include <cstdint>

namespace specula::mm {

// ---------------------------------------------------------------- rope

SPEC_HD int32_t rope_dims(const spec_model_config &c) { return c.rope_dims > 0 ? c.rope_dims : c.head_dim; }

// Frequency of rotated pair i (of rope_dims / 2), with llama3 scaling applied.
inline double rope_inv_freq(const spec_model_config &c, int i) {
    const int rd = rope_dims(c);
    double theta = std::pow((double)c.rope_theta, -2.0 * i / rd);
    if (c.rope_scaling == SPEC_ROPE_SCALING_LLAMA3) {
        const double pi = 3.14159265358979323846;
        const double wavelen = 2.0 * pi / theta;
        const double low_wl = c.rope_orig_ctx / (double)c.rope_low_freq_factor;
        const double high_wl = c.rope_orig_ctx / (double)c.rope_high_freq_factor;
        if (wavelen < high_wl) {
            // high frequency: unchanged
        } else if (wavelen > low_wl) {
            theta /= c.rope_factor;
        } else {
            const double smooth = (c.rope_orig_ctx / wavelen - c.rope_low_freq_factor) /
                                  ((double)c.rope_high_freq_factor - c.rope_low_freq_factor);
            theta = (1.0 - smooth) * theta / c.rope_factor + smooth * theta;
        }
    }
    return theta;
}

// Linear scaling divides positions.
inline double rope_pos_scale(const spec_model_config &c) {
    return c.rope_scaling == SPEC_ROPE_SCALING_LINEAR ? 1.0 / c.rope_factor : 1.0;
}

// The rotation angle of pair i at a position, in double on both backends.
SPEC_HD double rope_angle(int32_t position, double pos_scale, double inv_freq) {
    return km::dmul(km::dmul((double)position, pos_scale), inv_freq);
}

// Which two elements of a head pair i rotates: adjacent (NORM) or half a rotation apart (NEOX).
SPEC_HD void rope_pair(int i, int half, bool neox, int &a, int &b) {
    a = neox ? i : 2 * i;
    b = neox ? i + half : 2 * i + 1;
}

// (x0, x1) rotated by the angle whose cosine and sine are c and s; no fused multiply-add, so
// both backends round alike.
SPEC_HD void rope_rotate(float x0, float x1, float c, float s, float &y0, float &y1) {
    y0 = km::fsub(km::fmul(x0, c), km::fmul(x1, s));
    y1 = km::fadd(km::fmul(x0, s), km::fmul(x1, c));
}

// ---------------------------------------------------------------- local and global layers (ABI 0.8)

// Whether layer l attends within the sliding window (a "local" layer) rather than to every key.
inline bool is_local_layer(const spec_model_config &c, int32_t l) {
    if (c.sliding_window <= 0) return false;
    return c.swa_pattern <= 0 || (l + 1) % c.swa_pattern != 0;
}

// The rope of local layers, as a config the functions above take: rope_theta_local without scaling
// when it is set, else the global layers' own.
inline spec_model_config local_rope_config(const spec_model_config &c) {
    spec_model_config l = c;
    if (c.rope_theta_local > 0.0f) {
        l.rope_theta = c.rope_theta_local;
        l.rope_scaling = SPEC_ROPE_SCALING_NONE;
    }
    return l;
}

// Whether layer l rotates with the local rope (rope_theta_local), as the cpu backend chooses: a
// local layer of a model that sets rope_theta_local; every other layer takes the global rope.
inline bool uses_local_rope(const spec_model_config &c, int32_t l) { return is_local_layer(c, l) && c.rope_theta_local > 0.0f; }

// Whether a key computed at position key_pos is visible to a query at query_pos in a layer with
// this sliding window (0 = none: every key): key_pos > query_pos - window, in 64 bits so that no
// position overflows.
SPEC_HD bool key_in_window(int32_t key_pos, int32_t query_pos, int32_t window) {
    return window <= 0 || (int64_t)key_pos > (int64_t)query_pos - (int64_t)window;
}

// The factor embeddings are multiplied by: sqrt(n_embd) rounded to float first for gemma3 (as
// llama.cpp does), 1 (exact: no change) for the others.
inline float embedding_scale(const spec_model_config &c) {
    return c.arch == SPEC_ARCH_GEMMA3 ? std::sqrt((float)c.n_embd) : 1.0f;
}

// The softmax scale of q.k.
inline float attention_scale(const spec_model_config &c) {
    return c.attn_scale > 0.0f ? c.attn_scale : 1.0f / std::sqrt((float)c.head_dim);
}

// ---------------------------------------------------------------- elementwise

// The factor rmsnorm multiplies a row by, from its sum of squares (accumulated in double).
SPEC_HD float rms_scale(double sum_squares, int64_t n, float eps) {
    return (float)(1.0 / sqrt(sum_squares / (double)n + (double)eps));
}

// out = x * rms_scale * w over n elements, the sum of squares accumulated in double in index
// order: the cpu backend's rmsnorm, step for step (its per-head q/k norms, and on the device one
// thread's norm of one head). out may be x.
SPEC_HD void rmsnorm_row(const float *x, const float *w, float *out, int64_t n, float eps) {
    double ss = 0.0;
    for (int64_t i = 0; i < n; i++) ss = ss + km::dmul((double)x[i], (double)x[i]);
    const float s = rms_scale(ss, n, eps);
    for (int64_t i = 0; i < n; i++) out[i] = km::fmul(km::fmul(x[i], s), w[i]);
}

// silu(x) = x / (1 + e^-x). (The cpu backend's vector kernels compute the same expression with
// their own exp.)
SPEC_HD float silu(float x) {
#ifdef __CUDA_ARCH__
    return km::fdiv(x, km::fadd(1.0f, expf(-x)));
#else
    return x / (1.0f + std::exp(-x));
#endif
}

// gelu with the tanh approximation (gemma's FFN activation), in float:
// 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))).
// Each operation rounded on its own (no fused multiply-add), in the order the expression reads, on
// both backends; only tanh itself may differ by an ulp between the host's and the device's.
SPEC_HD float gelu_tanh(float x) {
    const float sqrt_2_over_pi = 0.79788456080286535588f;
    const float inner = km::fmul(km::fmul(sqrt_2_over_pi, x), km::fadd(1.0f, km::fmul(km::fmul(0.044715f, x), x)));
#ifdef __CUDA_ARCH__
    const float t = tanhf(inner);
#else
    const float t = std::tanh(inner);
#endif
    return km::fmul(km::fmul(0.5f, x), km::fadd(1.0f, t));
}

// ---------------------------------------------------------------- draft heads (ABI 0.8)
// A Medusa / Hydra residual block per element, as the cpu backend's heads_forward computes it: the
// activation silu(W x + c) (no bias: 0 added), then the sum (RES x + res_bias) + activation, or
// x + activation when the block's residual is the identity.
SPEC_HD float head_activation(float wx, const float *bias, int64_t i) { return silu(km::fadd(wx, bias ? bias[i] : 0.0f)); }
SPEC_HD float head_residual(float res_x, const float *res_bias, int64_t i, float activation) {
    return km::fadd(km::fadd(res_x, res_bias ? res_bias[i] : 0.0f), activation);
}

// Element k of a weight row, exactly: F32, F16, BF16, the GGML blocks of Q8_0 / Q4_0 as the
// matrix products read them (matmul_math.hpp), and the other GGML formats (quant_blocks.hpp). Reads bytes: rows may sit at any address.
SPEC_HD uint16_t load_u16_bytes(const uint8_t *p) { return (uint16_t)(p[0] | (uint16_t)p[1] << 8); }
SPEC_HD float dequant_element(int32_t dtype, const uint8_t *row, int64_t k) {
    switch (dtype) {
    case SPEC_DTYPE_F32: {
        const uint8_t *p = row + 4 * k;
        return km::bits_float((uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24);
    }
    case SPEC_DTYPE_F16: return km::f16_to_f32(load_u16_bytes(row + 2 * k));
    case SPEC_DTYPE_BF16: return km::bf16_to_f32(load_u16_bytes(row + 2 * k));
    case SPEC_DTYPE_Q8_0: {
        const uint8_t *b = row + (k / QK) * Q8_0_BLOCK_BYTES;
        return dequant(q8_0_element(b + 2, (int)(k % QK)), block_scale(b));
    }
    case SPEC_DTYPE_Q4_0: {
        const uint8_t *b = row + (k / QK) * Q4_0_BLOCK_BYTES;
        return dequant(q4_0_element(b + 2, (int)(k % QK)), block_scale(b));
    }
    default: {
        const int elems = qb::block_elems(dtype);
        if (!qb::is_block_decoded(dtype)) return 0.0f;
        return qb::block_element(dtype, row + (k / elems) * qb::block_bytes(dtype), (int)(k % elems));
    }
    }
}

} // namespace specula::mm
