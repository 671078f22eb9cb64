package dev.specula.model.gguf;

import static org.junit.jupiter.api.Assertions.*;

import dev.specula.model.ModelFormatException;
import java.io.IOException;
import java.lang.foreign.ValueLayout;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.SplittableRandom;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class GgufRoundTripTest {
    @TempDir
    Path dir;

    @Test
    void everyMetadataTypeRoundTrips() {
        Path file = dir.resolve("meta.gguf");
        new GgufWriter()
                .putUInt8("u8", 200)
                .putInt8("i8", -100)
                .putUInt16("u16", 60000)
                .putInt16("i16", -30000)
                .putUInt32("u32.small", 7)
                .putUInt32("u32.big", 4_000_000_000L)
                .putInt32("i32", -123456)
                .putUInt64("u64", Long.MAX_VALUE)
                .putInt64("i64", -5_000_000_000L)
                .putFloat32("f32", 1.5f)
                .putFloat64("f64", Math.PI)
                .putBool("bool.t", true)
                .putBool("bool.f", false)
                .putString("str", "héllo ▁wörld")
                .putString("str.empty", "")
                .putArray("arr.str", GgufType.STRING, List.of("a", "", "ß"))
                .putArray("arr.u8", GgufType.UINT8, new int[] {0, 255, 128})
                .putArray("arr.i8", GgufType.INT8, new int[] {-128, 127})
                .putArray("arr.u16", GgufType.UINT16, new int[] {65535, 1})
                .putArray("arr.i16", GgufType.INT16, new int[] {-32768, 32767})
                .putArray("arr.u32", GgufType.UINT32, new int[] {1, -1})
                .putArray("arr.i32", GgufType.INT32, new int[] {Integer.MIN_VALUE, 0, Integer.MAX_VALUE})
                .putArray("arr.u64", GgufType.UINT64, new long[] {-1L, 3})
                .putArray("arr.i64", GgufType.INT64, new long[] {Long.MIN_VALUE})
                .putArray("arr.f32", GgufType.FLOAT32, new float[] {0.25f, -2f})
                .putArray("arr.f64", GgufType.FLOAT64, new double[] {1e300, -0.0})
                .putArray("arr.bool", GgufType.BOOL, new boolean[] {true, false, true})
                .putArray("arr.empty", GgufType.INT32, new int[0])
                .put("arr.nested", List.of(new int[] {1, 2}, List.of("x", "y"), new float[] {3f}))
                .put("inferred.int", 5)
                .put("tokenizer.ggml.bos_token_id", 1)
                .write(file);

        try (GgufFile g = GgufFile.open(file)) {
            assertEquals(3, g.version());
            assertEquals(0, g.tensors().size());
            assertEquals(200, g.get("u8"));
            assertEquals(-100, g.get("i8"));
            assertEquals(60000, g.get("u16"));
            assertEquals(-30000, g.get("i16"));
            assertEquals(7, g.get("u32.small"));
            assertEquals(4_000_000_000L, g.get("u32.big"));
            assertEquals(-123456, g.get("i32"));
            assertEquals(Long.MAX_VALUE, g.get("u64"));
            assertEquals(-5_000_000_000L, g.get("i64"));
            assertEquals(1.5f, g.get("f32"));
            assertEquals(Math.PI, g.get("f64"));
            assertEquals(true, g.get("bool.t"));
            assertEquals(false, g.get("bool.f"));
            assertEquals("héllo ▁wörld", g.get("str"));
            assertEquals("", g.get("str.empty"));
            assertEquals(List.of("a", "", "ß"), g.get("arr.str"));
            assertArrayEquals(new int[] {0, 255, 128}, (int[]) g.get("arr.u8"));
            assertArrayEquals(new int[] {-128, 127}, (int[]) g.get("arr.i8"));
            assertArrayEquals(new int[] {65535, 1}, (int[]) g.get("arr.u16"));
            assertArrayEquals(new int[] {-32768, 32767}, (int[]) g.get("arr.i16"));
            assertArrayEquals(new int[] {1, -1}, (int[]) g.get("arr.u32"));
            assertArrayEquals(new int[] {Integer.MIN_VALUE, 0, Integer.MAX_VALUE}, (int[]) g.get("arr.i32"));
            assertArrayEquals(new long[] {-1L, 3}, (long[]) g.get("arr.u64"));
            assertArrayEquals(new long[] {Long.MIN_VALUE}, (long[]) g.get("arr.i64"));
            assertArrayEquals(new float[] {0.25f, -2f}, (float[]) g.get("arr.f32"));
            assertArrayEquals(new double[] {1e300, -0.0}, (double[]) g.get("arr.f64"));
            assertArrayEquals(new boolean[] {true, false, true}, (boolean[]) g.get("arr.bool"));
            assertArrayEquals(new int[0], (int[]) g.get("arr.empty"));
            List<?> nested = (List<?>) g.get("arr.nested");
            assertEquals(3, nested.size());
            assertArrayEquals(new int[] {1, 2}, (int[]) nested.get(0));
            assertEquals(List.of("x", "y"), nested.get(1));
            assertArrayEquals(new float[] {3f}, (float[]) nested.get(2));

            // Stored types: explicit ones exactly, inferred ones by the documented rule.
            assertEquals(GgufType.UINT16, g.valueType("u16"));
            assertEquals(GgufType.ARRAY, g.valueType("arr.u8"));
            assertEquals(GgufType.UINT8, g.arrayElementType("arr.u8"));
            assertEquals(GgufType.ARRAY, g.arrayElementType("arr.nested"));
            assertEquals(GgufType.INT32, g.valueType("inferred.int"));
            assertEquals(GgufType.UINT32, g.valueType("tokenizer.ggml.bos_token_id"));

            // Typed getters.
            assertEquals(200, g.getInt("u8"));
            assertEquals(4_000_000_000L, g.getLong("u32.big"));
            assertEquals(-5_000_000_000L, g.getLong("i64"));
            assertEquals(1.5f, g.getFloat("f32"));
            assertEquals(Math.PI, g.getDouble("f64"));
            assertEquals((float) Math.PI, g.getFloat("f64"));
            assertTrue(g.getBoolean("bool.t"));
            assertEquals("héllo ▁wörld", g.getString("str"));
            assertEquals(List.of("a", "", "ß"), g.getStringList("arr.str"));
            assertArrayEquals(new float[] {0.25f, -2f}, g.getFloatArray("arr.f32"));
            assertArrayEquals(new long[] {Long.MIN_VALUE}, g.getLongArray("arr.i64"));
            assertTrue(g.findString("nope").isEmpty());
            assertEquals(10000, g.findInt("nope").orElse(10000));
            assertEquals(7, g.findInt("u32.small").orElseThrow());
        }
    }

    @Test
    void gettersNameTheFileAndTheProblem() {
        Path file = dir.resolve("getters.gguf");
        new GgufWriter().putString("s", "x").putUInt32("big", 4_000_000_000L).putUInt64("huge", -1L).write(file);
        try (GgufFile g = GgufFile.open(file)) {
            assertMessage(assertThrows(ModelFormatException.class, () -> g.getString("absent")), "missing metadata key 'absent'");
            assertMessage(assertThrows(ModelFormatException.class, () -> g.getInt("s")), "metadata key 's' is a STRING, expected an integer");
            assertMessage(assertThrows(ModelFormatException.class, () -> g.getFloat("s")), "is a STRING, expected a number");
            assertEquals(4e9f, g.getFloat("big"));
            assertMessage(assertThrows(ModelFormatException.class, () -> g.getString("big")), "is a UINT32, expected a string");
            assertMessage(assertThrows(ModelFormatException.class, () -> g.getInt("big")), "does not fit in a 32-bit int");
            assertMessage(assertThrows(ModelFormatException.class, () -> g.getLong("huge")), "does not fit in a 64-bit signed long");
            assertMessage(assertThrows(ModelFormatException.class, () -> g.getIntArray("s")), "expected an array of 8- to 32-bit integers");
            assertMessage(assertThrows(ModelFormatException.class, () -> g.tensor("w")), "missing tensor 'w'");
        }
    }

    private void assertMessage(ModelFormatException e, String phrase) {
        assertTrue(e.getMessage().contains("getters.gguf"), e.getMessage());
        assertTrue(e.getMessage().contains(phrase), e.getMessage());
    }

    @Test
    void everyTensorTypeRoundTrips() throws IOException {
        SplittableRandom random = new SplittableRandom(1);
        float[] values = new float[64 * 3];
        for (int i = 0; i < values.length; i++) values[i] = (float) (random.nextDouble() * 2 - 1);
        byte[] q4k = new byte[144 * 2];
        random.nextBytes(q4k);
        Path file = dir.resolve("tensors.gguf");
        new GgufWriter()
                .putString("general.architecture", "test")
                .addTensor("f32", GgmlType.F32, new long[] {64, 3}, values)
                .addTensor("f16", GgmlType.F16, new long[] {64, 3}, values)
                .addTensor("bf16", GgmlType.BF16, new long[] {64, 3}, values)
                .addTensor("q8_0", GgmlType.Q8_0, new long[] {64, 3}, values)
                .addTensor("q4_0", GgmlType.Q4_0, new long[] {64, 3}, values)
                .addTensor("vec", GgmlType.F32, new long[] {5}, new float[] {1, 2, 3, 4, 5})
                .addTensor("4d", GgmlType.F32, new long[] {2, 3, 4, 2}, new float[48])
                .addRawTensor("q4_k", GgmlType.Q4_K, new long[] {256, 2}, q4k)
                .write(file);

        try (GgufFile g = GgufFile.open(file)) {
            assertEquals(8, g.tensors().size());
            assertEquals(List.of("f32", "f16", "bf16", "q8_0", "q4_0", "vec", "4d", "q4_k"),
                    g.tensors().stream().map(GgufTensor::name).toList());
            GgufTensor f32 = g.tensor("f32");
            assertArrayEquals(new long[] {64, 3}, f32.dims());
            assertArrayEquals(new long[] {3, 64}, f32.shape());
            assertEquals(64, f32.cols());
            assertEquals(3, f32.rows());
            assertEquals(64 * 3 * 4, f32.byteSize());
            assertArrayEquals(values, GgmlQuant.decode(f32));
            assertEquals(64 * 3 * 2, g.tensor("f16").byteSize());
            assertEquals(6 * 34, g.tensor("q8_0").byteSize());
            assertEquals(6 * 18, g.tensor("q4_0").byteSize());

            float[] f16 = GgmlQuant.decode(g.tensor("f16"));
            float[] bf16 = GgmlQuant.decode(g.tensor("bf16"));
            float[] q8 = GgmlQuant.decode(g.tensor("q8_0"));
            float[] q4 = GgmlQuant.decode(g.tensor("q4_0"));
            for (int i = 0; i < values.length; i++) {
                assertEquals(values[i], f16[i], Math.abs(values[i]) / 1024 + 1e-7);
                assertEquals(values[i], bf16[i], Math.abs(values[i]) / 128);
                assertEquals(values[i], q8[i], 1.0 / 127 * 0.6); // |x| < 1: d <= 1/127
                assertEquals(values[i], q4[i], 1.0 / 8 * 1.01);  // d <= 1/8
            }
            assertArrayEquals(new float[] {1, 2, 3, 4, 5}, GgmlQuant.decode(g.tensor("vec")));
            assertEquals(4, g.tensor("4d").nDims());
            assertEquals(24, g.tensor("4d").rows());
            GgufTensor k = g.tensor("q4_k");
            assertEquals(GgmlType.Q4_K, k.type());
            assertArrayEquals(q4k, k.data().toArray(ValueLayout.JAVA_BYTE));

            for (GgufTensor t : g.tensors()) {
                assertEquals(0, t.offset() % 32, t.name());
                assertEquals(0, (g.dataOffset() + t.offset()) % 32, t.name());
            }
        }
    }

    @Test
    void customAlignmentIsWrittenAndHonoured() {
        Path file = dir.resolve("align.gguf");
        new GgufWriter().alignment(64)
                .addTensor("a", GgmlType.F32, new long[] {3}, new float[] {1, 2, 3})
                .addTensor("b", GgmlType.F32, new long[] {1}, new float[] {4})
                .write(file);
        try (GgufFile g = GgufFile.open(file)) {
            assertEquals(64, g.alignment());
            assertEquals(GgufType.UINT32, g.valueType("general.alignment"));
            assertEquals(0, g.dataOffset() % 64);
            assertEquals(64, g.tensor("b").offset());
            assertArrayEquals(new float[] {4}, GgmlQuant.decode(g.tensor("b")));
        }
    }

    @Test
    void versionTwoFilesAreRead() throws IOException {
        Path file = dir.resolve("v2.gguf");
        new GgufWriter().putString("k", "v").addTensor("t", GgmlType.F32, new long[] {2}, new float[] {7, 8}).write(file);
        byte[] bytes = Files.readAllBytes(file);
        ByteBuffer.wrap(bytes).order(ByteOrder.LITTLE_ENDIAN).putInt(4, 2);
        Files.write(file, bytes);
        try (GgufFile g = GgufFile.open(file)) {
            assertEquals(2, g.version());
            assertEquals("v", g.getString("k"));
            assertArrayEquals(new float[] {7, 8}, GgmlQuant.decode(g.tensor("t")));
        }
    }

    @Test
    void streamedTensorsAreAskedForInOrderChunks() {
        Path file = dir.resolve("stream.gguf");
        long n = 32L * 5000; // more than one writer chunk
        long[] next = {0};
        new GgufWriter().addTensor("big", GgmlType.Q8_0, new long[] {32, 5000}, (start, chunk) -> {
            assertEquals(next[0], start);
            for (int i = 0; i < chunk.length; i++) chunk[i] = ((start + i) % 32) - 16;
            next[0] += chunk.length;
        }).write(file);
        assertEquals(n, next[0]);
        try (GgufFile g = GgufFile.open(file)) {
            float[] back = GgmlQuant.decode(g.tensor("big"));
            for (int i = 0; i < back.length; i++) assertEquals((i % 32) - 16, back[i], 16 / 127.0 * 0.6);
        }
    }

    @Test
    void writerRefusesBadRequests() {
        GgufWriter w = new GgufWriter();
        assertThrows(IllegalArgumentException.class, () -> w.putUInt8("x", 256));
        assertThrows(IllegalArgumentException.class, () -> w.putUInt32("x", -1));
        assertThrows(IllegalArgumentException.class, () -> w.putArray("x", GgufType.INT8, new int[] {200}));
        assertThrows(IllegalArgumentException.class, () -> w.put("x", new Object()));
        assertThrows(IllegalArgumentException.class, () -> w.addTensor("t", GgmlType.Q8_0, new long[] {31}, new float[31]));
        assertThrows(IllegalArgumentException.class, () -> w.addTensor("t", GgmlType.F32, new long[] {4}, new float[3]));
        assertThrows(IllegalArgumentException.class, () -> w.addTensor("t", GgmlType.IQ2_XS, new long[] {256}, new float[256]));
        assertThrows(IllegalArgumentException.class, () -> w.addTensor("t", GgmlType.Q4_K, new long[] {255}, new float[255]));
        assertThrows(IllegalArgumentException.class, () -> w.addTensor("t", GgmlType.F32, new long[] {1, 1, 1, 1, 1}, new float[1]));
        assertThrows(IllegalArgumentException.class, () -> w.addRawTensor("t", GgmlType.F32, new long[] {4}, new byte[15]));
        w.addTensor("t", GgmlType.F32, new long[] {1}, new float[1]);
        assertThrows(IllegalArgumentException.class, () -> w.addTensor("t", GgmlType.F32, new long[] {1}, new float[1]));
        assertThrows(IllegalArgumentException.class, () -> w.alignment(48));
    }

    @Test
    void metadataCopiesKeepTheirTypes() {
        Path a = dir.resolve("a.gguf"), b = dir.resolve("b.gguf");
        new GgufWriter().putUInt16("x", 5).putArray("y", GgufType.UINT8, new int[] {1, 2}).write(a);
        try (GgufFile g = GgufFile.open(a)) {
            new GgufWriter().copy(g, "x").copy(g, "y").write(b);
        }
        try (GgufFile g = GgufFile.open(b)) {
            assertEquals(GgufType.UINT16, g.valueType("x"));
            assertEquals(GgufType.UINT8, g.arrayElementType("y"));
        }
    }
}
