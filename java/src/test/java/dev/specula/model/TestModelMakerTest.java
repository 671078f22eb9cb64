package dev.specula.model;

import static org.junit.jupiter.api.Assertions.*;

import dev.specula.model.gguf.GgmlQuant;
import dev.specula.model.gguf.GgmlType;
import dev.specula.model.gguf.GgufFile;
import dev.specula.model.gguf.GgufType;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class TestModelMakerTest {
    @TempDir
    Path dir;

    /** Bytes per block, written out here rather than taken from GgmlType: the exact sizes a memory plan must count. */
    private static long expectedBytes(GgmlType t, long elements) {
        return switch (t) {
            case F32 -> elements * 4;
            case F16 -> elements * 2;
            case Q8_0 -> elements / 32 * 34;
            case Q4_0 -> elements / 32 * 18;
            case Q5_0 -> elements / 32 * 22;
            case Q5_1 -> elements / 32 * 24;
            case Q3_K -> elements / 256 * 110;
            case Q4_K -> elements / 256 * 144;
            case Q5_K -> elements / 256 * 176;
            case Q6_K -> elements / 256 * 210;
            default -> throw new AssertionError(t);
        };
    }

    @Test
    void q4KmFilesAreTypedAsLlamaCppTypesThem() {
        // 8 layers: llama.cpp's "more bits" layers are 0, 3, 6 and 7. ff = 640 is not a multiple of 256, so ffn_down
        // (rows of 640) falls back: Q4_K to Q5_0, Q6_K to Q8_0.
        TestModelMaker.Summary s = new TestModelMaker().dim(256).heads(4).kvHeads(2).ff(640).layers(8).vocab(300)
                .fileType(LlamaFileType.Q4_K_M, false).write(dir.resolve("q4km.gguf"));
        assertEquals("Q4_K_M", s.label());
        try (GgufFile g = GgufFile.open(s.file())) {
            assertEquals(15, g.getInt("general.file_type"));
            assertEquals(2, g.getInt("general.quantization_version"));
            assertEquals(GgmlType.Q6_K, g.tensor("output.weight").type());
            assertEquals(GgmlType.Q4_K, g.tensor("token_embd.weight").type());
            for (int l = 0; l < 8; l++) {
                boolean more = l == 0 || l == 3 || l == 6 || l == 7;
                String b = "blk." + l + ".";
                assertEquals(more ? GgmlType.Q6_K : GgmlType.Q4_K, g.tensor(b + "attn_v.weight").type(), b + "attn_v");
                assertEquals(more ? GgmlType.Q8_0 : GgmlType.Q5_0, g.tensor(b + "ffn_down.weight").type(), b + "ffn_down");
                for (String m : new String[] {"attn_q", "attn_k", "attn_output", "ffn_gate", "ffn_up"}) {
                    assertEquals(GgmlType.Q4_K, g.tensor(b + m + ".weight").type(), b + m);
                }
                assertEquals(GgmlType.F32, g.tensor(b + "attn_norm.weight").type());
            }
            // the weights handed to the core, and so the memory plan, count each type's exact bytes
            long expected = 0;
            for (var t : g.tensors()) expected += expectedBytes(t.type(), t.elementCount());
            long handed = ModelWeights.fromGguf(g, ModelConfig.fromGguf(g)).stream().mapToLong(w -> w.data().byteSize()).sum();
            assertEquals(expected, handed);
        }
    }

    @Test
    void q3KmAndTiedQ5KmFilesFollowTheirRules() {
        TestModelMaker.Summary s = new TestModelMaker().dim(256).heads(4).kvHeads(2).ff(512).layers(4).vocab(300)
                .fileType(LlamaFileType.Q3_K_M, false).write(dir.resolve("q3km.gguf"));
        try (GgufFile g = GgufFile.open(s.file())) {
            assertEquals(12, g.getInt("general.file_type"));
            assertEquals(GgmlType.Q6_K, g.tensor("output.weight").type());
            for (int l = 0; l < 4; l++) {
                String b = "blk." + l + ".";
                assertEquals(l < 2 ? GgmlType.Q5_K : GgmlType.Q4_K, g.tensor(b + "attn_v.weight").type(), b + "attn_v");
                assertEquals(GgmlType.Q4_K, g.tensor(b + "attn_output.weight").type());
                assertEquals(GgmlType.Q4_K, g.tensor(b + "ffn_down.weight").type());
                assertEquals(GgmlType.Q3_K, g.tensor(b + "attn_q.weight").type());
            }
        }
        TestModelMaker.Summary t = new TestModelMaker().dim(256).heads(4).kvHeads(2).ff(512).layers(4).vocab(300).tied(true)
                .fileType(LlamaFileType.Q5_K_M, false).write(dir.resolve("q5km.gguf"));
        try (GgufFile g = GgufFile.open(t.file())) {
            assertEquals(17, g.getInt("general.file_type"));
            assertFalse(g.hasTensor("output.weight"));
            assertEquals(GgmlType.Q6_K, g.tensor("token_embd.weight").type()); // tied: typed as the output
            assertEquals(GgmlType.Q5_K, g.tensor("blk.1.attn_q.weight").type());
            assertEquals(GgmlType.Q6_K, g.tensor("blk.2.ffn_down.weight").type()); // (2 - 0) % 3 == 2
        }
        // a pure k-quant file needs rows of whole super-blocks
        assertThrows(IllegalArgumentException.class, () -> new TestModelMaker().dim(64).type(GgmlType.Q4_K).config());
    }

    @Test
    void sameSeedSameBytesOtherSeedOtherBytes() throws IOException {
        TestModelMaker maker = new TestModelMaker().type(GgmlType.Q8_0).tokenizer(TinyVocab.metadata()).seed(7);
        byte[] a = Files.readAllBytes(maker.write(dir.resolve("a.gguf")).file());
        byte[] b = Files.readAllBytes(maker.write(dir.resolve("b.gguf")).file());
        byte[] c = Files.readAllBytes(maker.seed(8).write(dir.resolve("c.gguf")).file());
        assertArrayEquals(a, b);
        assertEquals(a.length, c.length);
        assertFalse(java.util.Arrays.equals(a, c));
    }

    @Test
    void writesWhatLlamaCppExpects() {
        TestModelMaker.Summary s = new TestModelMaker().arch("llama").dim(64).layers(2).heads(4).kvHeads(2).ff(128)
                .context(1024).type(GgmlType.Q4_0).tokenizer(TinyVocab.metadata()).write(dir.resolve("m.gguf"));
        assertEquals(GgmlType.Q4_0, s.type());
        try (GgufFile g = GgufFile.open(s.file())) {
            assertEquals(s.bytes(), g.fileSize());
            assertEquals("llama", g.getString("general.architecture"));
            for (String key : new String[] {"llama.context_length", "llama.embedding_length", "llama.block_count",
                    "llama.feed_forward_length", "llama.attention.head_count", "llama.attention.head_count_kv",
                    "llama.rope.dimension_count", "general.file_type", "tokenizer.ggml.bos_token_id",
                    "tokenizer.ggml.eos_token_id", "tokenizer.ggml.unknown_token_id"}) {
                assertEquals(GgufType.UINT32, g.valueType(key), key);
            }
            assertEquals(2, g.getInt("general.file_type"));
            assertEquals(GgufType.FLOAT32, g.valueType("llama.attention.layer_norm_rms_epsilon"));
            assertEquals(GgufType.FLOAT32, g.valueType("llama.rope.freq_base"));
            assertEquals(GgufType.INT32, g.arrayElementType("tokenizer.ggml.token_type"));
            assertEquals(GgufType.FLOAT32, g.arrayElementType("tokenizer.ggml.scores"));
            assertEquals(TinyVocab.size(), g.getStringList("tokenizer.ggml.tokens").size());
            assertEquals("<0x41>", g.getStringList("tokenizer.ggml.tokens").get(3 + 0x41));
            assertEquals(GgmlType.Q4_0, g.tensor("blk.1.ffn_down.weight").type());
            assertEquals(GgmlType.F32, g.tensor("blk.1.ffn_norm.weight").type());
            long params = g.tensors().stream().mapToLong(t -> t.elementCount()).sum();
            assertEquals(params, s.parameters());
            assertEquals(1024, s.config().nCtxTrain());
            assertEquals(s.config(), ModelConfig.fromGguf(g));
        }
    }

    @Test
    void weightsHaveTheDocumentedScale() {
        Path file = new TestModelMaker().dim(256).heads(4).kvHeads(4).ff(512).vocab(300).layers(2)
                .write(dir.resolve("scale.gguf")).file();
        try (GgufFile g = GgufFile.open(file)) {
            assertStats(GgmlQuant.decode(g.tensor("blk.0.attn_q.weight")), 0, 1 / Math.sqrt(256));
            assertStats(GgmlQuant.decode(g.tensor("blk.0.ffn_down.weight")), 0, 1 / Math.sqrt(512) / 2);
            assertStats(GgmlQuant.decode(g.tensor("token_embd.weight")), 0, 1 / Math.sqrt(256));
            assertStats(GgmlQuant.decode(g.tensor("blk.1.attn_norm.weight")), 1, 0.02);
        }
    }

    private static void assertStats(float[] x, double mean, double std) {
        double s = 0, s2 = 0;
        for (float v : x) s += v;
        double m = s / x.length;
        for (float v : x) s2 += (v - m) * (v - m);
        double sd = Math.sqrt(s2 / x.length);
        assertEquals(mean, m, 4 * std / Math.sqrt(x.length) + 1e-6);
        assertEquals(std, sd, std * 0.1);
    }

    @Test
    void inconsistentSettingsAreRefused() {
        assertThrows(IllegalArgumentException.class, () -> new TestModelMaker().tokenizer(TinyVocab.metadata()).vocab(999).config());
        assertThrows(IllegalArgumentException.class, () -> new TestModelMaker().vocab(300).dim(48).type(GgmlType.Q8_0).config());
        assertThrows(IllegalArgumentException.class, () -> new TestModelMaker().vocab(300).heads(3).config());
        assertThrows(IllegalArgumentException.class, () -> new TestModelMaker().vocab(300).kvHeads(3).config());
        assertThrows(IllegalArgumentException.class, () -> new TestModelMaker().vocab(300).arch("gpt2").config());
        assertThrows(IllegalArgumentException.class, () -> new TestModelMaker().vocab(300).type(GgmlType.Q4_K).config());
        assertThrows(IllegalArgumentException.class, () -> new TestModelMaker().config()); // no vocab at all
    }
}
