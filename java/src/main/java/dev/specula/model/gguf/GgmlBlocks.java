package dev.specula.model.gguf;

/**
 * Encoding and decoding of the GGML block formats beyond Q8_0 and Q4_0: the legacy Q4_1, Q5_0 and Q5_1 (blocks
 * of 32) and the k-quants Q2_K to Q6_K (super-blocks of 256 with 16 or 8 sub-block scales), in GGML's byte
 * layouts (native/core/quant_blocks.hpp describes each; the decoders compute the same values bit for bit, since
 * every product in them is exact in float).
 *
 * <p>The quantizers are our own and simple: each sub-block gets the scale (and, for the formats with a min, the
 * offset) that spans its values, the sub-block scales are quantized against the super-block's, and every value
 * is rounded to the nearest level of its sub-block. They need not pick what llama.cpp's quantizers pick; what
 * matters is that llama.cpp and the engine read the same bytes as the same weights.
 */
final class GgmlBlocks {
    private GgmlBlocks() {}

    // ---------------------------------------------------------------- decoding

    /** Decodes one block of type at data[at..] into out[off..off + type.blockSize()). */
    static void decode(GgmlType type, byte[] b, int at, float[] out, int off) {
        switch (type) {
            case Q4_1 -> {
                float d = f16(b, at), m = f16(b, at + 2);
                for (int j = 0; j < 16; j++) {
                    int q = u8(b, at + 4 + j);
                    out[off + j] = (q & 15) * d + m;
                    out[off + j + 16] = (q >>> 4) * d + m;
                }
            }
            case Q5_0 -> {
                float d = f16(b, at);
                for (int j = 0; j < 32; j++) out[off + j] = (q5(b, at + 2, at + 6, j) - 16) * d;
            }
            case Q5_1 -> {
                float d = f16(b, at), m = f16(b, at + 2);
                for (int j = 0; j < 32; j++) out[off + j] = q5(b, at + 4, at + 8, j) * d + m;
            }
            case Q2_K -> {
                float d = f16(b, at + 80), dmin = f16(b, at + 82);
                for (int j = 0; j < 256; j++) {
                    int s = u8(b, at + j / 16);
                    int q = (u8(b, at + 16 + (j >> 7) * 32 + (j & 31)) >>> (2 * ((j >> 5) & 3))) & 3;
                    out[off + j] = d * (s & 15) * q - dmin * (s >>> 4);
                }
            }
            case Q3_K -> {
                float d = f16(b, at + 108);
                for (int j = 0; j < 256; j++) {
                    int half = j >> 7, g = (j >> 5) & 3, l = j & 31;
                    int low = (u8(b, at + 32 + half * 32 + l) >>> (2 * g)) & 3;
                    int high = (u8(b, at + l) >>> (half * 4 + g)) & 1;
                    out[off + j] = d * q3Scale(b, at + 96, j / 16) * (low - (high != 0 ? 0 : 4));
                }
            }
            case Q4_K, Q5_K -> {
                boolean five = type == GgmlType.Q5_K;
                float d = f16(b, at), dmin = f16(b, at + 2);
                int[] sm = new int[2];
                for (int j = 0; j < 256; j++) {
                    int g = j >> 6, hi = (j >> 5) & 1, l = j & 31;
                    k4ScaleMin(b, at + 4, j / 32, sm);
                    int q = (u8(b, at + (five ? 48 : 16) + g * 32 + l) >>> (4 * hi)) & 15;
                    if (five) q |= ((u8(b, at + 16 + l) >>> (j / 32)) & 1) << 4;
                    out[off + j] = d * sm[0] * q - dmin * sm[1];
                }
            }
            case Q6_K -> {
                float d = f16(b, at + 208);
                for (int j = 0; j < 256; j++) {
                    int half = j >> 7, g = (j >> 5) & 3, l = j & 31;
                    int low = (u8(b, at + half * 64 + (g & 1) * 32 + l) >>> (4 * (g >> 1))) & 15;
                    int high = (u8(b, at + 128 + half * 32 + l) >>> (2 * g)) & 3;
                    out[off + j] = d * b[at + 192 + j / 16] * ((low | high << 4) - 32);
                }
            }
            default -> throw new IllegalArgumentException("not a block format of this class: " + type);
        }
    }

    private static int q5(byte[] b, int qhAt, int qsAt, int j) {
        int qh = u8(b, qhAt) | u8(b, qhAt + 1) << 8 | u8(b, qhAt + 2) << 16 | u8(b, qhAt + 3) << 24;
        return ((u8(b, qsAt + (j & 15)) >>> (j < 16 ? 0 : 4)) & 15) | ((qh >>> j) & 1) << 4;
    }

    private static int q3Scale(byte[] b, int at, int s) {
        int low = s < 8 ? u8(b, at + s) & 15 : u8(b, at + s - 8) >>> 4;
        int high = (u8(b, at + 8 + (s & 3)) >>> (2 * (s >> 2))) & 3;
        return (low | high << 4) - 32;
    }

    private static void k4ScaleMin(byte[] b, int at, int s, int[] sm) {
        if (s < 4) {
            sm[0] = u8(b, at + s) & 63;
            sm[1] = u8(b, at + s + 4) & 63;
        } else {
            sm[0] = (u8(b, at + s + 4) & 15) | (u8(b, at + s - 4) >>> 6) << 4;
            sm[1] = (u8(b, at + s + 4) >>> 4) | (u8(b, at + s) >>> 6) << 4;
        }
    }

    // ---------------------------------------------------------------- encoding

    /** Encodes one block of type from x[off..off + type.blockSize()) into dst[at..]. */
    static void encode(GgmlType type, float[] x, int off, byte[] dst, int at) {
        java.util.Arrays.fill(dst, at, at + type.blockBytes(), (byte) 0);
        switch (type) {
            case Q4_1 -> encodeMin32(x, off, dst, at, 15, at + 4, -1);
            case Q5_1 -> encodeMin32(x, off, dst, at, 31, at + 8, at + 4);
            case Q5_0 -> {
                float max = signedMax(x, off, 32);
                float d = max / -16;
                putF16(dst, at, d);
                float id = d != 0 ? 1 / d : 0;
                int qh = 0;
                for (int j = 0; j < 32; j++) {
                    int q = clamp(Math.round(x[off + j] * id) + 16, 0, 31);
                    dst[at + 6 + (j & 15)] |= (byte) ((q & 15) << (j < 16 ? 0 : 4));
                    qh |= (q >>> 4) << j;
                }
                putI32(dst, at + 2, qh);
            }
            case Q2_K -> encodeMinK(x, off, dst, at, 16, 3, 15);
            case Q4_K -> encodeMinK(x, off, dst, at, 32, 15, 63);
            case Q5_K -> encodeMinK(x, off, dst, at, 32, 31, 63);
            case Q3_K -> encodeSignedK(x, off, dst, at, 4, 32);
            case Q6_K -> encodeSignedK(x, off, dst, at, 32, 128);
            default -> throw new IllegalArgumentException("not a block format of this class: " + type);
        }
    }

    // Q4_1 / Q5_1: x ≈ q * d + m with q in [0, levels], m the block's minimum.
    private static void encodeMin32(float[] x, int off, byte[] dst, int at, int levels, int qsAt, int qhAt) {
        float min = Float.POSITIVE_INFINITY, max = Float.NEGATIVE_INFINITY;
        for (int j = 0; j < 32; j++) {
            min = Math.min(min, x[off + j]);
            max = Math.max(max, x[off + j]);
        }
        float d = (max - min) / levels;
        putF16(dst, at, d);
        putF16(dst, at + 2, min);
        float dq = Float.float16ToFloat(Float.floatToFloat16(d)), mq = Float.float16ToFloat(Float.floatToFloat16(min));
        float id = dq != 0 ? 1 / dq : 0;
        int qh = 0;
        for (int j = 0; j < 32; j++) {
            int q = clamp(Math.round((x[off + j] - mq) * id), 0, levels);
            dst[qsAt + (j & 15)] |= (byte) ((q & 15) << (j < 16 ? 0 : 4));
            qh |= (q >>> 4) << j;
        }
        if (qhAt >= 0) putI32(dst, qhAt, qh);
    }

    // Q2_K / Q4_K / Q5_K: x ≈ d*sc*q - dmin*m over sub-blocks of sub elements, q in [0, levels], sc and m
    // in [0, scaleLevels] (4 bits for Q2_K, 6 for the others).
    private static void encodeMinK(float[] x, int off, byte[] dst, int at, int sub, int levels, int scaleLevels) {
        int n = 256 / sub;
        float[] scale = new float[n], negMin = new float[n];
        for (int s = 0; s < n; s++) {
            float min = 0, max = 0; // the min is subtracted, so it is never positive; a scale never negative
            for (int j = 0; j < sub; j++) {
                min = Math.min(min, x[off + s * sub + j]);
                max = Math.max(max, x[off + s * sub + j]);
            }
            scale[s] = (max - min) / levels;
            negMin[s] = -min;
        }
        float maxScale = 0, maxMin = 0;
        for (int s = 0; s < n; s++) {
            maxScale = Math.max(maxScale, scale[s]);
            maxMin = Math.max(maxMin, negMin[s]);
        }
        boolean q2 = scaleLevels == 15;
        int dAt = q2 ? at + 80 : at, dminAt = q2 ? at + 82 : at + 2;
        putF16(dst, dAt, maxScale / scaleLevels);
        putF16(dst, dminAt, maxMin / scaleLevels);
        float d = f16(dst, dAt), dmin = f16(dst, dminAt);
        int[] sc = new int[n], mn = new int[n];
        for (int s = 0; s < n; s++) {
            sc[s] = d != 0 ? clamp(Math.round(scale[s] / d), 0, scaleLevels) : 0;
            mn[s] = dmin != 0 ? clamp(Math.round(negMin[s] / dmin), 0, scaleLevels) : 0;
            // a sub-block with values above its min needs a nonzero scale to reach them
            if (sc[s] == 0 && scale[s] > 0 && d != 0) sc[s] = 1;
        }
        if (q2) {
            for (int s = 0; s < 16; s++) dst[at + s] = (byte) (sc[s] | mn[s] << 4);
        } else {
            for (int s = 0; s < 8; s++) {
                if (s < 4) {
                    dst[at + 4 + s] |= (byte) sc[s];
                    dst[at + 4 + s + 4] |= (byte) mn[s];
                } else {
                    dst[at + 4 + s + 4] |= (byte) ((sc[s] & 15) | (mn[s] & 15) << 4);
                    dst[at + 4 + s - 4] |= (byte) ((sc[s] >>> 4) << 6);
                    dst[at + 4 + s] |= (byte) ((mn[s] >>> 4) << 6);
                }
            }
        }
        for (int j = 0; j < 256; j++) {
            int s = j / sub;
            float ds = d * sc[s], ms = dmin * mn[s];
            int q = ds != 0 ? clamp(Math.round((x[off + j] + ms) / ds), 0, levels) : 0;
            if (q2) {
                dst[at + 16 + (j >> 7) * 32 + (j & 31)] |= (byte) (q << (2 * ((j >> 5) & 3)));
            } else if (levels == 15) {
                dst[at + 16 + (j >> 6) * 32 + (j & 31)] |= (byte) (q << (4 * ((j >> 5) & 1)));
            } else {
                dst[at + 48 + (j >> 6) * 32 + (j & 31)] |= (byte) ((q & 15) << (4 * ((j >> 5) & 1)));
                dst[at + 16 + (j & 31)] |= (byte) ((q >>> 4) << (j / 32));
            }
        }
    }

    // Q3_K / Q6_K: x ≈ d*sc*q over 16 sub-blocks of 16, q in [-half, half - 1], sc in [-scaleHalf, scaleHalf - 1]
    // (6 bits stored as sc + 32 for Q3_K, an int8 for Q6_K). Each sign is chosen so that a sub-block's value of
    // largest magnitude lands on -half, the level without a mirror.
    private static void encodeSignedK(float[] x, int off, byte[] dst, int at, int half, int scaleHalf) {
        boolean q3 = half == 4;
        float[] scale = new float[16];
        float big = 0;
        for (int s = 0; s < 16; s++) {
            scale[s] = signedMax(x, off + s * 16, 16) / -half;
            if (Math.abs(scale[s]) > Math.abs(big)) big = scale[s];
        }
        int dAt = q3 ? at + 108 : at + 208;
        putF16(dst, dAt, big / -scaleHalf);
        float d = f16(dst, dAt);
        int[] sc = new int[16];
        for (int s = 0; s < 16; s++) {
            sc[s] = d != 0 ? clamp(Math.round(scale[s] / d), -scaleHalf, scaleHalf - 1) : 0;
            if (q3) {
                int v = sc[s] + 32;
                if (s < 8) dst[at + 96 + s] |= (byte) (v & 15);
                else dst[at + 96 + s - 8] |= (byte) ((v & 15) << 4);
                dst[at + 96 + 8 + (s & 3)] |= (byte) ((v >>> 4) << (2 * (s >> 2)));
            } else {
                dst[at + 192 + s] = (byte) sc[s];
            }
        }
        for (int j = 0; j < 256; j++) {
            float ds = d * sc[j / 16];
            int q = ds != 0 ? clamp(Math.round(x[off + j] / ds), -half, half - 1) : 0;
            int hv = j >> 7, g = (j >> 5) & 3, l = j & 31;
            int u = q + half; // 0 .. 2*half - 1
            if (q3) {
                dst[at + 32 + hv * 32 + l] |= (byte) ((u & 3) << (2 * g));
                dst[at + l] |= (byte) ((u >>> 2) << (hv * 4 + g));
            } else {
                dst[at + hv * 64 + (g & 1) * 32 + l] |= (byte) ((u & 15) << (4 * (g >> 1)));
                dst[at + 128 + hv * 32 + l] |= (byte) ((u >>> 4) << (2 * g));
            }
        }
    }

    // ---------------------------------------------------------------- helpers

    /** The value of largest magnitude, with its sign (0 for an all-zero range). */
    private static float signedMax(float[] x, int off, int n) {
        float amax = 0, max = 0;
        for (int j = 0; j < n; j++) {
            if (Math.abs(x[off + j]) > amax) {
                amax = Math.abs(x[off + j]);
                max = x[off + j];
            }
        }
        return max;
    }

    private static int clamp(int v, int lo, int hi) {
        return Math.max(lo, Math.min(hi, v));
    }

    private static int u8(byte[] b, int at) {
        return b[at] & 0xff;
    }

    private static float f16(byte[] b, int at) {
        return Float.float16ToFloat((short) (u8(b, at) | u8(b, at + 1) << 8));
    }

    private static void putF16(byte[] b, int at, float v) {
        short h = Float.floatToFloat16(v);
        b[at] = (byte) h;
        b[at + 1] = (byte) (h >> 8);
    }

    private static void putI32(byte[] b, int at, int v) {
        for (int i = 0; i < 4; i++) b[at + i] = (byte) (v >>> (8 * i));
    }
}
