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
