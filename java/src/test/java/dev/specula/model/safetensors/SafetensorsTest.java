package dev.specula.model.safetensors;

import static org.junit.jupiter.api.Assertions.*;

import dev.specula.model.HfFixture;
import dev.specula.model.ModelFormatException;
import dev.specula.model.gguf.GgmlQuant;
import java.io.IOException;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.MethodSource;

class SafetensorsTest {
    @TempDir
    Path dir;

    private static final float[] VALUES = {1f, -2.5f, 0.333f, 1e-3f, 65504f, -0.0f};

    @Test
    void readsF32F16AndBf16() {
        Path file = new StWriter()
                .add("f32", "F32", new long[] {2, 3}, VALUES)
                .add("f16", "F16", new long[] {6}, VALUES)
                .add("bf16", "BF16", new long[] {3, 2}, VALUES)
                .addRaw("ids", "I64", new long[] {2}, new byte[16])
                .write(dir.resolve("small.safetensors"));
        try (SafetensorsFile f = SafetensorsFile.open(file)) {
            assertEquals("pt", f.metadata().get("format"));
            assertEquals(4, f.tensors().size());
            SafetensorsTensor f32 = f.tensor("f32");
            assertEquals(SafetensorsDtype.F32, f32.dtype());
            assertArrayEquals(new long[] {2, 3}, f32.shape());
            assertEquals(2, f32.rows());
            assertEquals(3, f32.cols());
            float[] back = f32.data().toArray(ValueLayout.JAVA_FLOAT.withOrder(ByteOrder.LITTLE_ENDIAN));
            assertArrayEquals(VALUES, back);

            SafetensorsTensor f16 = f.tensor("f16");
            assertEquals(SafetensorsDtype.F16, f16.dtype());
            assertEquals(1, f16.rows());
            assertEquals(12, f16.data().byteSize());
            for (int i = 0; i < VALUES.length; i++) {
                float v = Float.float16ToFloat(f16.data().get(ValueLayout.JAVA_SHORT_UNALIGNED, 2L * i));
                assertEquals(VALUES[i], v, Math.abs(VALUES[i]) / 1024);
            }
            SafetensorsTensor bf16 = f.tensor("bf16");
            for (int i = 0; i < VALUES.length; i++) {
                float v = GgmlQuant.bf16ToFloat(bf16.data().get(ValueLayout.JAVA_SHORT_UNALIGNED, 2L * i));
                assertEquals(VALUES[i], v, Math.abs(VALUES[i]) / 128);
            }
            assertEquals(SafetensorsDtype.I64, f.tensor("ids").dtype());
            ModelFormatException e = assertThrows(ModelFormatException.class, () -> f.tensor("nope"));
            assertTrue(e.getMessage().contains("small.safetensors: missing tensor 'nope'"), e.getMessage());
        }
    }

    @Test
    void checkpointFolderWithOneFile() throws IOException {
        Path ckpt = new HfFixture().write(dir.resolve("one"), 1);
        try (SafetensorsCheckpoint c = SafetensorsCheckpoint.open(ckpt)) {
            assertEquals(1, c.files().size());
            assertEquals("llama", c.config().get("model_type").getAsString());
            assertTrue(c.hasTensor("model.layers.1.mlp.down_proj.weight"));
            assertArrayEquals(new long[] {16, 32}, c.tensor("model.layers.1.mlp.down_proj.weight").shape());
        }
        // The file itself names the checkpoint too.
        try (SafetensorsCheckpoint c = SafetensorsCheckpoint.open(ckpt.resolve("model.safetensors"))) {
            assertEquals(ckpt.toAbsolutePath(), c.directory());
        }
    }

    @Test
    void shardedCheckpointThroughItsIndex() throws IOException {
        HfFixture fx = new HfFixture();
        fx.dtype = "BF16";
        Path ckpt = fx.write(dir.resolve("sharded"), 3);
        try (SafetensorsCheckpoint c = SafetensorsCheckpoint.open(ckpt)) {
            assertEquals(3, c.files().size());
            assertEquals(fx.shapes().size(), c.tensorNames().size());
            for (String name : fx.shapes().keySet()) assertTrue(c.hasTensor(name), name);
            assertNotEquals(c.tensor("model.embed_tokens.weight").file(), c.tensor("model.norm.weight").file());
            assertEquals(SafetensorsDtype.BF16, c.tensor("model.norm.weight").dtype());
        }
    }

    // ---------------------------------------------------------------- bad input

    private static byte[] withHeaderLength(byte[] file, long length) {
        byte[] b = file.clone();
        for (int i = 0; i < 8; i++) b[i] = (byte) (length >>> (8 * i));
        return b;
    }

    static Stream<Arguments> corruptFiles() {
        StWriter good = new StWriter().add("w", "F32", new long[] {2, 2}, new float[] {1, 2, 3, 4});
        byte[] base = good.bytes();
        String okTensor = "\"w\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[0,16]}";
        List<Arguments> cases = new ArrayList<>();
        cases.add(Arguments.of("empty", new byte[0], "truncated: the 8-byte header length"));
        cases.add(Arguments.of("header-length-past-eof", withHeaderLength(base, 1L << 40), "header length 1099511627776 runs past the end of the file"));
        cases.add(Arguments.of("header-length-negative", withHeaderLength(base, -1), "header length 18446744073709551615 runs past the end of the file"));
        cases.add(Arguments.of("truncated-data", java.util.Arrays.copyOf(base, base.length - 4), "data_offsets [0, 16] outside the file's data section (12 bytes)"));
        cases.add(Arguments.of("bad-json", good.bytes("{\"w\": {\"dtype\": \"F32\", "), "bad JSON header"));
        cases.add(Arguments.of("json-not-object", good.bytes("[1, 2]"), "bad JSON header: it is not an object"));
        cases.add(Arguments.of("offsets-outside", good.bytes("{\"w\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[100,116]}}"),
                "tensor 'w' has data_offsets [100, 116] outside the file's data section (16 bytes)"));
        cases.add(Arguments.of("offsets-reversed", good.bytes("{\"w\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[16,0]}}"),
                "outside the file's data section"));
        cases.add(Arguments.of("offsets-negative", good.bytes("{\"w\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[-16,0]}}"),
                "data_offsets of tensor 'w' is negative"));
        cases.add(Arguments.of("size-mismatch", good.bytes("{\"w\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,16]}}"),
                "tensor 'w' spans 16 bytes but F32 [2, 3] needs 24"));
        cases.add(Arguments.of("unknown-dtype", good.bytes("{\"w\":{\"dtype\":\"Q9\",\"shape\":[2,2],\"data_offsets\":[0,16]}}"),
                "tensor 'w' has unknown dtype 'Q9'"));
        cases.add(Arguments.of("negative-shape", good.bytes("{\"w\":{\"dtype\":\"F32\",\"shape\":[-2,2],\"data_offsets\":[0,16]}}"),
                "dimension 0 of tensor 'w' is negative"));
        cases.add(Arguments.of("fractional-shape", good.bytes("{\"w\":{\"dtype\":\"F32\",\"shape\":[1.5,2],\"data_offsets\":[0,16]}}"),
                "dimension 0 of tensor 'w' is not a whole number"));
        cases.add(Arguments.of("shape-overflow", good.bytes("{\"w\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296],\"data_offsets\":[0,16]}}"),
                "element count of tensor 'w' overflows"));
        cases.add(Arguments.of("missing-offsets", good.bytes("{\"w\":{\"dtype\":\"F32\",\"shape\":[2,2]}}"), "tensor 'w' has no data_offsets array"));
        cases.add(Arguments.of("duplicate-tensor", good.bytes("{" + okTensor + "," + okTensor + "}"), "duplicate tensor name 'w'"));
        cases.add(Arguments.of("overlapping", good.bytes("{" + okTensor + ",\"v\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,16]}}"),
                "overlaps tensor"));
        return cases.stream();
    }

    @ParameterizedTest(name = "{0}")
    @MethodSource("corruptFiles")
    void corruptFileIsAClearError(String name, byte[] bytes, String phrase) throws IOException {
        Path file = dir.resolve(name + ".safetensors");
        Files.write(file, bytes);
        ModelFormatException e = assertThrows(ModelFormatException.class, () -> SafetensorsFile.open(file).close());
        assertTrue(e.getMessage().startsWith(file + ": "), e.getMessage());
        assertTrue(e.getMessage().contains(phrase), "expected '" + phrase + "' in: " + e.getMessage());
    }

    @Test
    void badConfigJsonNamesTheConfig() throws IOException {
        Path ckpt = new HfFixture().write(dir.resolve("badcfg"), 1);
        Files.writeString(ckpt.resolve("config.json"), "{\"model_type\": \"llama\",");
        ModelFormatException e = assertThrows(ModelFormatException.class, () -> SafetensorsCheckpoint.open(ckpt));
        assertTrue(e.getMessage().startsWith(ckpt.resolve("config.json") + ": bad JSON"), e.getMessage());
    }

    @Test
    void missingConfigJsonIsNamed() throws IOException {
        Path ckpt = new HfFixture().write(dir.resolve("nocfg"), 1);
        Files.delete(ckpt.resolve("config.json"));
        ModelFormatException e = assertThrows(ModelFormatException.class, () -> SafetensorsCheckpoint.open(ckpt));
        assertTrue(e.getMessage().contains("config.json: cannot read the file"), e.getMessage());
    }

    @Test
    void indexProblemsNameTheIndex() throws IOException {
        Path ckpt = new HfFixture().write(dir.resolve("idx"), 2);
        Path index = ckpt.resolve("model.safetensors.index.json");
        String good = Files.readString(index);

        Files.writeString(index, good.replace(HfFixture.shardName(1, 2), "model-00009-of-00002.safetensors"));
        ModelFormatException e = assertThrows(ModelFormatException.class, () -> SafetensorsCheckpoint.open(ckpt));
        assertTrue(e.getMessage().startsWith(index + ": lists shard 'model-00009-of-00002.safetensors', which does not exist"), e.getMessage());

        Files.writeString(index, good.replace(HfFixture.shardName(1, 2), "../elsewhere.safetensors"));
        e = assertThrows(ModelFormatException.class, () -> SafetensorsCheckpoint.open(ckpt));
        assertTrue(e.getMessage().contains("not a file in the checkpoint folder"), e.getMessage());

        Files.writeString(index, good.replace("\"model.norm.weight\":\"" + HfFixture.shardName(1, 2),
                "\"model.norm.weight\":\"" + HfFixture.shardName(0, 2)));
        e = assertThrows(ModelFormatException.class, () -> SafetensorsCheckpoint.open(ckpt));
        assertTrue(e.getMessage().contains("maps tensor 'model.norm.weight' to shard '" + HfFixture.shardName(0, 2)
                + "', which has no such tensor"), e.getMessage());

        Files.writeString(index, "{\"metadata\": {}}");
        e = assertThrows(ModelFormatException.class, () -> SafetensorsCheckpoint.open(ckpt));
        assertTrue(e.getMessage().startsWith(index + ": has no weight_map object"), e.getMessage());
    }

    @Test
    void folderWithoutWeightsIsNamed() throws IOException {
        Path empty = Files.createDirectories(dir.resolve("empty"));
        Files.writeString(empty.resolve("config.json"), "{}");
        ModelFormatException e = assertThrows(ModelFormatException.class, () -> SafetensorsCheckpoint.open(empty));
        assertTrue(e.getMessage().contains("holds neither model.safetensors nor model.safetensors.index.json"), e.getMessage());
    }
}
