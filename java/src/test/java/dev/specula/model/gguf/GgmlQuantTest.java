package dev.specula.model.gguf;

import static org.junit.jupiter.api.Assertions.*;

import java.lang.foreign.MemorySegment;
import java.util.SplittableRandom;
import org.junit.jupiter.api.Test;

class GgmlQuantTest {

    private static float[] ramp() {
        float[] x = new float[32];
        for (int j = 0; j < 32; j++) x[j] = j - 16;
        return x;
    }

    @Test
    void q8_0MatchesLlamaCppReferenceBytes() {
        byte[] b = GgmlQuant.encode(GgmlType.Q8_0, ramp());
        assertEquals(34, b.length);
        float d = 16f / 127f;
        short dBits = (short) ((b[0] & 0xff) | (b[1] & 0xff) << 8);
        assertEquals(Float.floatToFloat16(d), dBits);
        float id = 1 / d;
        for (int j = 0; j < 32; j++) {
            assertEquals((int) GgmlQuant.roundHalfAway((j - 16) * id), b[2 + j], "element " + j);
        }
        assertEquals(-127, b[2]);
    }

    @Test
    void q4_0MatchesLlamaCppReferenceBytes() {
        // max |x| is x[0] = -16, so d = -16 / -8 = 2 and q = min(15, (int) (x / 2 + 8.5)).
        byte[] b = GgmlQuant.encode(GgmlType.Q4_0, ramp());
        assertEquals(18, b.length);
        assertEquals(Float.floatToFloat16(2f), (short) ((b[0] & 0xff) | (b[1] & 0xff) << 8));
        for (int j = 0; j < 16; j++) {
            int lo = Math.min(15, (int) ((j - 16) / 2f + 8.5f));
            int hi = Math.min(15, (int) ((j + 16 - 16) / 2f + 8.5f));
            assertEquals(lo | hi << 4, b[2 + j] & 0xff, "byte " + j);
        }
        assertEquals(0x80, b[2] & 0xff); // element 0 -> 0 (low nibble), element 16 -> 8 (high nibble)
        float[] back = GgmlQuant.decode(GgmlType.Q4_0, MemorySegment.ofArray(b), 32);
        assertEquals(-16f, back[0]);
        assertEquals(14f, back[31]); // 15.0 clamps to q = 15, i.e. 2 * (15 - 8)
    }

    @Test
    void quantizationErrorStaysWithinItsBound() {
        SplittableRandom random = new SplittableRandom(7);
        int n = 32 * 200;
        float[] x = new float[n];
        for (int i = 0; i < n; i++) x[i] = (float) ((random.nextDouble() - 0.5) * Math.pow(10, random.nextInt(-3, 3)));
        float[] q8 = GgmlQuant.decode(GgmlType.Q8_0, MemorySegment.ofArray(GgmlQuant.encode(GgmlType.Q8_0, x)), n);
        float[] q4 = GgmlQuant.decode(GgmlType.Q4_0, MemorySegment.ofArray(GgmlQuant.encode(GgmlType.Q4_0, x)), n);
        double sq8 = 0, sq4 = 0, sx = 0;
        for (int b = 0; b < n / 32; b++) {
            float amax = 0;
            for (int j = 0; j < 32; j++) amax = Math.max(amax, Math.abs(x[b * 32 + j]));
            for (int j = 0; j < 32; j++) {
                int i = b * 32 + j;
                // Q8_0: half a step, plus the f16 rounding of the scale times |q| <= 127.
                assertTrue(Math.abs(x[i] - q8[i]) <= amax / 127 * (0.5 + 127.0 / 2048) + 1e-9, "q8_0 element " + i);
                // Q4_0: a full step at worst (the value opposite the extreme clamps to q = 15), plus scale rounding.
                assertTrue(Math.abs(x[i] - q4[i]) <= amax / 8 * (1 + 8.0 / 2048) + 1e-9, "q4_0 element " + i);
                sq8 += Math.pow(x[i] - q8[i], 2);
                sq4 += Math.pow(x[i] - q4[i], 2);
                sx += Math.pow(x[i], 2);
            }
        }
        assertTrue(Math.sqrt(sq8 / sx) < 0.01, "q8_0 relative RMS error " + Math.sqrt(sq8 / sx));
        assertTrue(Math.sqrt(sq4 / sx) < 0.15, "q4_0 relative RMS error " + Math.sqrt(sq4 / sx));
    }

    /**
     * Our quantizers for Q4_1, Q5_0, Q5_1 and the k-quants: on normal weights of several scales, the relative RMS
     * error of a round trip stays near what each format's bits allow, and an all-zero block comes back zero.
     * (The bytes themselves are checked where it matters: the engine's and llama.cpp's forward passes on files of
     * these types agree, LlamaCppParityTest.)
     */
    @org.junit.jupiter.params.ParameterizedTest
    @org.junit.jupiter.params.provider.CsvSource({"Q4_1, 0.12", "Q5_0, 0.06", "Q5_1, 0.06", "Q2_K, 0.45", "Q3_K, 0.25",
        "Q4_K, 0.12", "Q5_K, 0.06", "Q6_K, 0.03"})
    void otherTypesRoundTripWithinTheirBits(GgmlType type, double bound) {
        SplittableRandom random = new SplittableRandom(9);
        int n = 256 * 40;
        float[] x = new float[n];
        for (int i = 0; i < n; i++) {
            double scale = Math.pow(10, (i / 256) % 5 - 3); // 1e-3 .. 10, one scale per super-block
            double g = 0;
            for (int k = 0; k < 4; k++) g += random.nextDouble() - 0.5;
            x[i] = (float) (g * scale);
        }
        byte[] bytes = GgmlQuant.encode(type, x);
        assertEquals(type.bytesFor(n), bytes.length);
        float[] y = GgmlQuant.decode(type, MemorySegment.ofArray(bytes), n);
        double err = 0, sum = 0;
        for (int b = 0; b < n / 256; b++) { // relative per super-block, so the large scales do not hide the small
            double e = 0, s = 0;
            for (int j = 0; j < 256; j++) {
                e += Math.pow(x[b * 256 + j] - y[b * 256 + j], 2);
                s += Math.pow(x[b * 256 + j], 2);
            }
            err += e / s;
            sum += 1;
        }
        double rel = Math.sqrt(err / sum);
        System.out.printf("%s round trip: relative RMS error %.4f%n", type, rel);
        assertTrue(rel < bound, type + " relative RMS error " + rel + " >= " + bound);
        float[] zeros = new float[256];
        float[] back = GgmlQuant.decode(type, MemorySegment.ofArray(GgmlQuant.encode(type, zeros)), 256);
        for (float v : back) assertEquals(0f, v, 0f, type + ": zeros decode to " + v);
    }

    @Test
    void zeroBlocksQuantizeToZero() {
        // Q4_0's scale is then -0.0 (max / -8), as in llama.cpp, so the values may be negative zeros.
        float[] zeros = new float[32];
        assertArrayEquals(zeros, GgmlQuant.decode(GgmlType.Q8_0, MemorySegment.ofArray(GgmlQuant.encode(GgmlType.Q8_0, zeros)), 32), 0f);
        assertArrayEquals(zeros, GgmlQuant.decode(GgmlType.Q4_0, MemorySegment.ofArray(GgmlQuant.encode(GgmlType.Q4_0, zeros)), 32), 0f);
    }

    @Test
    void halfPrecisionConversionsRoundToNearestEven() {
        assertEquals(1f, GgmlQuant.bf16ToFloat(GgmlQuant.floatToBf16(1f)));
        // 1 + 2^-8 is halfway between two bf16 values: ties go to the even one, 1.0.
        assertEquals(1f, GgmlQuant.bf16ToFloat(GgmlQuant.floatToBf16(1f + 0x1p-8f)));
        assertEquals(1f + 0x1p-7f, GgmlQuant.bf16ToFloat(GgmlQuant.floatToBf16(1f + 0x1p-8f + 0x1p-20f)));
        assertTrue(Float.isNaN(GgmlQuant.bf16ToFloat(GgmlQuant.floatToBf16(Float.NaN))));
        assertEquals(Float.POSITIVE_INFINITY, GgmlQuant.bf16ToFloat(GgmlQuant.floatToBf16(Float.POSITIVE_INFINITY)));
        assertEquals(-3f, GgmlQuant.roundHalfAway(-2.5f));
        assertEquals(3f, GgmlQuant.roundHalfAway(2.5f));
        assertEquals(0f, GgmlQuant.roundHalfAway(0.49999997f));
    }
}
