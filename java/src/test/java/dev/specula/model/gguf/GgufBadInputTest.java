package dev.specula.model.gguf;

import static org.junit.jupiter.api.Assertions.*;

import dev.specula.model.ModelFormatException;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.SplittableRandom;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.MethodSource;

/**
 * Corrupt GGUF files of every kind must fail with a ModelFormatException that names the file and the problem,
 * never with another exception, an OutOfMemoryError or a hang.
 */
class GgufBadInputTest {
    private static final int F32 = 0;

    @TempDir
    Path dir;

    /** The metadata of the baseline file. */
    private static RawGguf baselineHeaderAndMetadata() {
        return new RawGguf().header(3, 2, 2)
                .kvString("general.architecture", "llama")
                .kvU32("general.alignment", 32);
    }

    /** A valid file: two F32 tensors, a [4] at offset 0 and b [2][8] at offset 32. */
    static byte[] baseline() {
        return baselineHeaderAndMetadata()
                .tensor("a", F32, 0, 4)
                .tensor("b", F32, 32, 8, 2)
                .data(32, 32 + 64)
                .bytes();
    }

    /** A file with the baseline's metadata and one tensor directory entry written by the caller. */
    private static byte[] oneTensor(java.util.function.Consumer<RawGguf> entry, long dataBytes) {
        RawGguf r = new RawGguf().header(3, 1, 1).kvString("general.architecture", "llama");
        entry.accept(r);
        return r.data(32, dataBytes).bytes();
    }

    private static byte[] oneKv(java.util.function.Consumer<RawGguf> kv) {
        RawGguf r = new RawGguf().header(3, 0, 1);
        kv.accept(r);
        return r.bytes();
    }

    static Stream<Arguments> corruptFiles() {
        byte[] base = baseline();
        int metadataEnd = baselineHeaderAndMetadata().size();
        List<Arguments> cases = new ArrayList<>();
        cases.add(Arguments.of("empty", new byte[0], "truncated: the magic number needs 4 bytes"));
        cases.add(Arguments.of("three-bytes", new byte[] {'G', 'G', 'U'}, "truncated"));
        cases.add(Arguments.of("wrong-magic", new RawGguf().raw("GGML".getBytes()).u32(3).u64(0).u64(0).bytes(), "wrong magic 0x47474d4c"));
        cases.add(Arguments.of("version-99", new RawGguf().header(99, 0, 0).bytes(), "unsupported GGUF version 99"));
        cases.add(Arguments.of("version-1", new RawGguf().header(1, 0, 0).bytes(), "unsupported GGUF version 1 "));
        cases.add(Arguments.of("big-endian", new RawGguf().header(0x03000000L, 0, 0).bytes(), "big-endian GGUF files are not supported"));
        cases.add(Arguments.of("truncated-header", Arrays.copyOf(base, 12), "truncated: the tensor count needs 8 bytes at offset 8"));
        cases.add(Arguments.of("tensor-count-huge", new RawGguf().header(3, 1L << 40, 0).bytes(), "absurd tensor count 1099511627776"));
        cases.add(Arguments.of("tensor-count-negative", new RawGguf().header(3, -1, 0).bytes(), "absurd tensor count 18446744073709551615"));
        cases.add(Arguments.of("kv-count-huge", new RawGguf().header(3, 0, 1L << 40).bytes(), "absurd metadata entry count"));
        cases.add(Arguments.of("key-length-huge", oneKv(r -> r.u64(1L << 50).raw(new byte[32])),
                "string length 1125899906842624 of the key of metadata entry #0"));
        cases.add(Arguments.of("string-length-past-eof", oneKv(r -> r.str("k").u32(GgufType.STRING.id()).u64(1000).raw("abc".getBytes())),
                "string length 1000 of the value of metadata key 'k'"));
        cases.add(Arguments.of("string-length-negative", oneKv(r -> r.str("k").u32(GgufType.STRING.id()).u64(-1)),
                "string length 18446744073709551615"));
        cases.add(Arguments.of("array-length-past-eof",
                oneKv(r -> r.str("k").u32(GgufType.ARRAY.id()).u32(GgufType.INT32.id()).u64(1_000_000).u32(1)),
                "array length 1000000 of metadata key 'k' (INT32) runs past the end of the file (4 bytes remain)"));
        cases.add(Arguments.of("string-array-length-huge",
                oneKv(r -> r.str("k").u32(GgufType.ARRAY.id()).u32(GgufType.STRING.id()).u64(Long.MAX_VALUE)),
                "array length 9223372036854775807 of metadata key 'k'"));
        cases.add(Arguments.of("unknown-value-type", oneKv(r -> r.str("k").u32(99).u32(0)), "metadata key 'k' has unknown value type 99"));
        cases.add(Arguments.of("unknown-array-element-type", oneKv(r -> r.str("k").u32(GgufType.ARRAY.id()).u32(77).u64(0)),
                "the elements of metadata key 'k' has unknown value type 77"));
        cases.add(Arguments.of("arrays-nested-too-deep", oneKv(r -> {
            r.str("k").u32(GgufType.ARRAY.id());
            for (int i = 0; i < 20; i++) r.u32(GgufType.ARRAY.id()).u64(1);
            r.u32(GgufType.INT32.id()).u64(0);
        }), "nests arrays deeper than 8 levels"));
        cases.add(Arguments.of("duplicate-key", new RawGguf().header(3, 0, 2).kvString("x", "1").kvString("x", "2").bytes(),
                "duplicate metadata key 'x'"));
        cases.add(Arguments.of("truncated-in-metadata", Arrays.copyOf(base, 24 + 20), "truncated"));
        cases.add(Arguments.of("truncated-in-tensor-infos", Arrays.copyOf(base, metadataEnd + 12), "truncated: the n_dims of tensor 'a'"));
        cases.add(Arguments.of("truncated-in-data", Arrays.copyOf(base, base.length - 10),
                "data of tensor 'b' (bytes 224 to 288) runs past the end of the file (278 bytes)"));
        cases.add(Arguments.of("unknown-tensor-type", oneTensor(r -> r.tensor("a", 1234, 0, 4), 16), "tensor 'a' has unknown tensor type 1234"));
        cases.add(Arguments.of("removed-tensor-type", oneTensor(r -> r.tensor("a", 4, 0, 32), 18), "unknown tensor type 4"));
        cases.add(Arguments.of("n-dims-9", oneTensor(r -> r.tensor("a", F32, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1), 4), "tensor 'a' has n_dims 9 (must be 1 to 4)"));
        cases.add(Arguments.of("n-dims-0", oneTensor(r -> r.tensor("a", F32, 0), 4), "tensor 'a' has n_dims 0"));
        cases.add(Arguments.of("dim-zero", oneTensor(r -> r.tensor("a", F32, 0, 4, 0), 16), "tensor 'a' has dimension 1 = 0 (must be positive)"));
        cases.add(Arguments.of("dim-negative", oneTensor(r -> r.tensor("a", F32, 0, -5), 16), "dimension 0 = 18446744073709551611 (must be positive)"));
        cases.add(Arguments.of("element-count-overflow", oneTensor(r -> r.tensor("a", F32, 0, 1L << 32, 1L << 32), 16),
                "element count of tensor 'a' overflows"));
        cases.add(Arguments.of("byte-size-overflow", oneTensor(r -> r.tensor("a", F32, 0, 1L << 31, 1L << 31), 16),
                "byte size of tensor 'a' overflows"));
        cases.add(Arguments.of("tensor-offset-past-end", oneTensor(r -> r.tensor("a", F32, 1 << 20, 4), 16),
                "data of tensor 'a' (bytes"));
        cases.add(Arguments.of("tensor-offset-huge", oneTensor(r -> r.tensor("a", F32, 1L << 62, 4), 16), "runs past the end of the file"));
        cases.add(Arguments.of("tensor-offset-negative", oneTensor(r -> r.tensor("a", F32, -32, 4), 16), "absurd data offset"));
        cases.add(Arguments.of("huge-tensor-past-end", oneTensor(r -> r.tensor("a", F32, 0, 1L << 20, 1L << 20), 16), "runs past the end of the file"));
        cases.add(Arguments.of("misaligned-offset", oneTensor(r -> r.tensor("a", F32, 4, 4), 32), "misaligned data offset 4 (alignment 32)"));
        cases.add(Arguments.of("duplicate-tensor-name",
                new RawGguf().header(3, 2, 0).tensor("a", F32, 0, 4).tensor("a", F32, 32, 4).data(32, 64).bytes(),
                "duplicate tensor name 'a'"));
        cases.add(Arguments.of("row-not-whole-blocks", oneTensor(r -> r.tensor("a", GgmlType.Q8_0.id(), 0, 33), 64),
                "not a multiple of the Q8_0 block size 32"));
        // k-quant super-blocks: a row of 300 (not a multiple of 256); one super-block short of the tensor's bytes
        cases.add(Arguments.of("kquant-row-not-whole-super-blocks", oneTensor(r -> r.tensor("blk.0.attn_q.weight", GgmlType.Q4_K.id(), 0, 300, 2), 1024),
                "tensor 'blk.0.attn_q.weight' has rows of 300 elements, not a multiple of the Q4_K block size 256"));
        cases.add(Arguments.of("kquant-truncated-super-blocks", oneTensor(r -> r.tensor("blk.0.ffn_down.weight", GgmlType.Q6_K.id(), 0, 512, 2), 3 * 210),
                "data of tensor 'blk.0.ffn_down.weight' (bytes 160 to 1000) runs past the end of the file"));
        cases.add(Arguments.of("unknown-type-id-past-the-known", oneTensor(r -> r.tensor("output.weight", 40, 0, 256), 256),
                "tensor 'output.weight' has unknown tensor type 40"));
        cases.add(Arguments.of("alignment-not-power-of-two", new RawGguf().header(3, 0, 1).kvU32("general.alignment", 48).bytes(),
                "general.alignment 48 is not a power of two"));
        cases.add(Arguments.of("alignment-zero", new RawGguf().header(3, 0, 1).kvU32("general.alignment", 0).bytes(),
                "general.alignment 0 is not a power of two"));
        cases.add(Arguments.of("alignment-wrong-type", new RawGguf().header(3, 0, 1).kvString("general.alignment", "32").bytes(),
                "metadata key 'general.alignment' is a STRING, expected a u32"));
        cases.add(Arguments.of("overlapping-tensors",
                new RawGguf().header(3, 2, 0).tensor("a", F32, 0, 16).tensor("b", F32, 32, 4).data(32, 64).bytes(),
                "tensor 'b' at offset 32 overlaps tensor 'a'"));
        cases.add(Arguments.of("data-section-past-eof", new RawGguf().header(3, 1, 0).tensor("a", F32, 0, 1).bytes(),
                "truncated: the data section would start at byte"));
        return cases.stream();
    }

    @ParameterizedTest(name = "{0}")
    @MethodSource("corruptFiles")
    void corruptFileIsAClearError(String name, byte[] bytes, String phrase) throws IOException {
        Path file = dir.resolve(name + ".gguf");
        Files.write(file, bytes);
        ModelFormatException e = assertThrows(ModelFormatException.class, () -> GgufFile.open(file).close());
        assertTrue(e.getMessage().startsWith(file.toString() + ": "), e.getMessage());
        assertTrue(e.getMessage().contains(phrase), "expected '" + phrase + "' in: " + e.getMessage());
        assertEquals(file, e.file());
    }

    @Test
    void baselineIsValid() throws IOException {
        Path file = dir.resolve("baseline.gguf");
        Files.write(file, baseline());
        try (GgufFile g = GgufFile.open(file)) {
            assertEquals("llama", g.getString("general.architecture"));
            assertEquals(2, g.tensors().size());
            assertEquals(64, g.tensor("b").byteSize());
        }
    }

    @Test
    void everyTruncationIsAClearError() throws IOException {
        byte[] base = baseline();
        Path file = dir.resolve("cut.gguf");
        for (int n = 0; n < base.length; n++) {
            Files.write(file, Arrays.copyOf(base, n));
            int cut = n;
            ModelFormatException e = assertThrows(ModelFormatException.class, () -> GgufFile.open(file).close(), "cut at " + cut);
            assertTrue(e.getMessage().contains("cut.gguf"), e.getMessage());
            assertTrue(e.getMessage().contains("truncated") || e.getMessage().contains("past the end of the file"),
                    "cut at " + cut + ": " + e.getMessage());
        }
    }

    @Test
    void randomCorruptionNeverEscapesAsAnotherError() throws IOException {
        byte[] base = baseline();
        Path file = dir.resolve("fuzz.gguf");
        SplittableRandom random = new SplittableRandom(2024);
        int failures = 0;
        for (int round = 0; round < 1000; round++) {
            byte[] b = base.clone();
            int flips = 1 + random.nextInt(4);
            for (int i = 0; i < flips; i++) {
                int at = random.nextInt(b.length);
                b[at] = switch (random.nextInt(3)) {
                    case 0 -> (byte) random.nextInt(256);
                    case 1 -> (byte) 0xff;
                    default -> (byte) (b[at] ^ (1 << random.nextInt(8)));
                };
            }
            Files.write(file, b);
            try (GgufFile g = GgufFile.open(file)) {
                for (GgufTensor t : g.tensors()) t.data().get(java.lang.foreign.ValueLayout.JAVA_BYTE, t.byteSize() - 1);
            } catch (ModelFormatException e) {
                assertTrue(e.getMessage().contains("fuzz.gguf"), e.getMessage());
                failures++;
            }
        }
        assertTrue(failures > 0);
    }

    @Test
    void missingFileAndFolderAreClearErrors() throws IOException {
        Path missing = dir.resolve("nope.gguf");
        ModelFormatException e = assertThrows(ModelFormatException.class, () -> GgufFile.open(missing));
        assertTrue(e.getMessage().contains("nope.gguf") && e.getMessage().contains("cannot read the file"), e.getMessage());
        Path folder = Files.createDirectory(dir.resolve("folder.gguf"));
        e = assertThrows(ModelFormatException.class, () -> GgufFile.open(folder));
        assertTrue(e.getMessage().contains("folder.gguf") && e.getMessage().contains("cannot read the file"), e.getMessage());
    }
}
