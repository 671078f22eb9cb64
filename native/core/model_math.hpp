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

// The softmax scale of q.k.
inline float attention_scale(const spec_model_config &c) {
    return c.attn_scale > 0.0f ? c.attn_scale : 1.0f / std::sqrt((float)c.head_dim);
}

// ---------------------------------------------------------------- elementwise

// The factor rmsnorm multiplies a row by, from its sum of squares (accumulated in double).
SPEC_HD float rms_scale(double sum_squares, int64_t n, float eps) {
    return (float)(1.0 / sqrt(sum_squares / (double)n + (double)eps));
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
inline float gelu_tanh(float x) {
    const float sqrt_2_over_pi = 0.79788456080286535588f;
    return 0.5f * x * (1.0f + std::tanh(sqrt_2_over_pi * x * (1.0f + 0.044715f * x * x)));
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
