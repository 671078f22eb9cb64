package dev.specula.model.gguf;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;

/**
 * Conversions between float values and the GGML encodings the engine computes with: F32, F16, BF16, Q8_0 and
 * Q4_0, whose quantizers follow llama.cpp's reference code (quantize_row_q8_0_ref, quantize_row_q4_0_ref) so a
 * file written here holds the same bytes llama.cpp would write for the same values; and Q4_1, Q5_0, Q5_1 and the
 * k-quants Q2_K to Q6_K, with quantizers of our own ({@link GgmlBlocks}).
 */
public final class GgmlQuant {
    public static final int QK = 32;
    /** The types encode and decode handle, which are the types the engine computes with; the rest (IQ*, TQ*, ...) are refused. */
    public static final String SUPPORTED = "F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K";
    private static final ValueLayout.OfShort LE_SHORT = ValueLayout.JAVA_SHORT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    private static final ValueLayout.OfFloat LE_FLOAT = ValueLayout.JAVA_FLOAT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);

    private GgmlQuant() {}

    /** Whether encode and decode handle this type. */
    public static boolean supports(GgmlType type) {
        return switch (type) {
            case F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K -> true;
            default -> false;
        };
    }

    public static short floatToBf16(float x) {
        int bits = Float.floatToRawIntBits(x);
        if (Float.isNaN(x)) return (short) ((bits >>> 16) | 0x40); // keep it a quiet NaN, as ggml does
        bits += 0x7fff + ((bits >>> 16) & 1); // round to nearest, ties to even
        return (short) (bits >>> 16);
    }

    public static float bf16ToFloat(short h) {
        return Float.intBitsToFloat((h & 0xffff) << 16);
    }

    /**
     * Encodes n values from src[srcOff..] as type into dst[dstOff..]; n must be a multiple of the type's block
     * size. Returns the number of bytes written.
     */
    public static int encode(GgmlType type, float[] src, int srcOff, int n, byte[] dst, int dstOff) {
        if (n % type.blockSize() != 0) {
            throw new IllegalArgumentException(n + " values is not a whole number of " + type + " blocks");
        }
        switch (type) {
            case F32 -> {
                for (int i = 0; i < n; i++) putInt(dst, dstOff + 4 * i, Float.floatToRawIntBits(src[srcOff + i]));
                return 4 * n;
            }
            case F16 -> {
                for (int i = 0; i < n; i++) putShort(dst, dstOff + 2 * i, Float.floatToFloat16(src[srcOff + i]));
                return 2 * n;
            }
            case BF16 -> {
                for (int i = 0; i < n; i++) putShort(dst, dstOff + 2 * i, floatToBf16(src[srcOff + i]));
                return 2 * n;
            }
            case Q8_0 -> {
                for (int b = 0; b < n / QK; b++) quantizeQ8_0Block(src, srcOff + b * QK, dst, dstOff + b * 34);
                return n / QK * 34;
            }
            case Q4_0 -> {
                for (int b = 0; b < n / QK; b++) quantizeQ4_0Block(src, srcOff + b * QK, dst, dstOff + b * 18);
                return n / QK * 18;
            }
            case Q4_1, Q5_0, Q5_1, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K -> {
                int blocks = n / type.blockSize();
                for (int b = 0; b < blocks; b++) {
                    GgmlBlocks.encode(type, src, srcOff + b * type.blockSize(), dst, dstOff + b * type.blockBytes());
                }
                return blocks * type.blockBytes();
            }
            default -> throw new IllegalArgumentException("cannot encode " + type + " (supported: " + SUPPORTED + ")");
        }
    }

    /** Encodes all of values as type into a new array. */
    public static byte[] encode(GgmlType type, float[] values) {
        byte[] out = new byte[Math.toIntExact(type.bytesFor(values.length))];
        encode(type, values, 0, values.length, out, 0);
        return out;
    }

    /** Decodes the first n values of data, which holds type's encoding. */
    public static float[] decode(GgmlType type, MemorySegment data, int n) {
        if (n % type.blockSize() != 0) {
            throw new IllegalArgumentException(n + " values is not a whole number of " + type + " blocks");
        }
        if (type.bytesFor(n) > data.byteSize()) {
            throw new IllegalArgumentException(n + " " + type + " values need " + type.bytesFor(n) + " bytes, the segment has " + data.byteSize());
        }
        float[] out = new float[n];
        switch (type) {
            case F32 -> MemorySegment.copy(data, LE_FLOAT, 0, out, 0, n);
            case F16 -> {
                for (int i = 0; i < n; i++) out[i] = Float.float16ToFloat(data.get(LE_SHORT, 2L * i));
            }
            case BF16 -> {
                for (int i = 0; i < n; i++) out[i] = bf16ToFloat(data.get(LE_SHORT, 2L * i));
            }
            case Q8_0 -> {
                for (int b = 0; b < n / QK; b++) {
                    long at = 34L * b;
                    float d = Float.float16ToFloat(data.get(LE_SHORT, at));
                    for (int j = 0; j < QK; j++) out[b * QK + j] = d * data.get(ValueLayout.JAVA_BYTE, at + 2 + j);
                }
            }
            case Q4_0 -> {
                for (int b = 0; b < n / QK; b++) {
                    long at = 18L * b;
                    float d = Float.float16ToFloat(data.get(LE_SHORT, at));
                    for (int j = 0; j < QK / 2; j++) {
                        int q = data.get(ValueLayout.JAVA_BYTE, at + 2 + j) & 0xff;
                        out[b * QK + j] = d * ((q & 0x0f) - 8);
                        out[b * QK + j + QK / 2] = d * ((q >>> 4) - 8);
                    }
                }
            }
            case Q4_1, Q5_0, Q5_1, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K -> {
                byte[] blk = new byte[type.blockBytes()];
                for (int b = 0; b < n / type.blockSize(); b++) {
                    MemorySegment.copy(data, ValueLayout.JAVA_BYTE, (long) b * type.blockBytes(), blk, 0, blk.length);
                    GgmlBlocks.decode(type, blk, 0, out, b * type.blockSize());
                }
            }
            default -> throw new IllegalArgumentException("cannot decode " + type + " (supported: " + SUPPORTED + ")");
        }
        return out;
    }

    /** Every value of a tensor as floats (a copy on the heap: for small tensors and tests). */
    public static float[] decode(GgufTensor t) {
        return decode(t.type(), t.data(), Math.toIntExact(t.elementCount()));
    }

    // Block: f16 d, then 32 int8 q with x ≈ d * q.
    private static void quantizeQ8_0Block(float[] x, int off, byte[] dst, int at) {
        float amax = 0;
        for (int j = 0; j < QK; j++) amax = Math.max(amax, Math.abs(x[off + j]));
        float d = amax / 127.0f;
        float id = d != 0 ? 1.0f / d : 0.0f;
        putShort(dst, at, Float.floatToFloat16(d));
        for (int j = 0; j < QK; j++) dst[at + 2 + j] = (byte) roundHalfAway(x[off + j] * id);
    }

    // Block: f16 d, then 16 bytes; byte j holds element j in its low nibble and element j + 16 in its high one,
    // with x ≈ d * (q - 8). d is signed so that the value of largest magnitude maps exactly to q = 0.
    private static void quantizeQ4_0Block(float[] x, int off, byte[] dst, int at) {
        float amax = 0, max = 0;
        for (int j = 0; j < QK; j++) {
            float v = x[off + j];
            if (amax < Math.abs(v)) {
                amax = Math.abs(v);
                max = v;
            }
        }
        float d = max / -8;
        float id = d != 0 ? 1.0f / d : 0.0f;
        putShort(dst, at, Float.floatToFloat16(d));
        for (int j = 0; j < QK / 2; j++) {
            int q0 = Math.min(15, (int) (x[off + j] * id + 8.5f));
            int q1 = Math.min(15, (int) (x[off + QK / 2 + j] * id + 8.5f));
            dst[at + 2 + j] = (byte) (q0 | (q1 << 4));
        }
    }

    /** C's roundf: halfway cases go away from zero (Math.round would send -2.5 to -2). */
    static float roundHalfAway(float v) {
        float a = Math.abs(v);
        float r = (float) Math.floor(a);
        if (a - r >= 0.5f) r += 1;
        return Math.copySign(r, v);
    }

    private static void putShort(byte[] b, int at, short v) {
        b[at] = (byte) v;
        b[at + 1] = (byte) (v >> 8);
    }

    private static void putInt(byte[] b, int at, int v) {
        b[at] = (byte) v;
        b[at + 1] = (byte) (v >> 8);
        b[at + 2] = (byte) (v >> 16);
        b[at + 3] = (byte) (v >> 24);
    }
}
