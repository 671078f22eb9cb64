package dev.specula.model;

import static org.junit.jupiter.api.Assertions.*;

import com.google.gson.JsonObject;
import com.google.gson.JsonParser;
import dev.specula.model.gguf.GgmlType;
import dev.specula.model.gguf.GgufFile;
import dev.specula.model.gguf.GgufWriter;
import dev.specula.model.safetensors.SafetensorsCheckpoint;
import dev.specula.nativeapi.Arch;
import dev.specula.nativeapi.RopeScaling;
import dev.specula.nativeapi.RopeStyle;
import java.io.IOException;
import java.nio.file.Path;
import java.util.function.Consumer;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class ModelConfigTest {
    @TempDir
    Path dir;

    private ModelConfig ggufConfig(TestModelMaker maker, String name) {
        Path file = maker.write(dir.resolve(name)).file();
        try (GgufFile g = GgufFile.open(file)) {
            return ModelConfig.fromGguf(g);
        }
    }

    @Test
    void llamaFromGguf() {
        ModelConfig c = ggufConfig(new TestModelMaker().arch("llama").dim(64).layers(3).heads(8).kvHeads(2).ff(96)
                .context(512).ropeTheta(500000f).tokenizer(TinyVocab.metadata()), "llama.gguf");
        assertEquals(Arch.LLAMA, c.arch());
        assertEquals(TinyVocab.size(), c.nVocab());
        assertEquals(64, c.nEmbd());
        assertEquals(3, c.nLayer());
        assertEquals(8, c.nHead());
        assertEquals(2, c.nHeadKv());
        assertEquals(8, c.headDim());
        assertEquals(96, c.nFf());
        assertEquals(512, c.nCtxTrain());
        assertEquals(1e-5f, c.rmsEps());
        assertEquals(500000f, c.ropeTheta());
        assertEquals(RopeStyle.NORM, c.ropeStyle());
        assertEquals(8, c.ropeDims());
        assertEquals(RopeScaling.NONE, c.ropeScaling());
        assertFalse(c.tiedEmbeddings());
        assertFalse(c.requiresQkvBias());
        assertEquals(0, c.arch().code());
        assertTrue(c.describe().startsWith("llama: vocab 264, embd 64, layers 3"), c.describe());
    }

    @Test
    void qwen2FromGgufIsNeoxWithBiases() {
        ModelConfig c = ggufConfig(new TestModelMaker().arch("qwen2").vocab(300).tied(true), "qwen2.gguf");
        assertEquals(Arch.QWEN2, c.arch());
        assertEquals(RopeStyle.NEOX, c.ropeStyle());
        assertEquals(1, c.ropeStyle().code());
        assertTrue(c.requiresQkvBias());
        assertTrue(c.tiedEmbeddings());
        assertEquals(300, c.nVocab());
        assertEquals(1e-6f, c.rmsEps());
    }

    @Test
    void tiedMeansNoOutputTensor() {
        assertTrue(ggufConfig(new TestModelMaker().vocab(280).tied(true), "tied.gguf").tiedEmbeddings());
        assertFalse(ggufConfig(new TestModelMaker().vocab(280).tied(false), "untied.gguf").tiedEmbeddings());
    }

    /** A minimal GGUF with the given architecture's keys, adjusted by the caller. */
    private Path minimal(String name, String arch, Consumer<GgufWriter> adjust) {
        GgufWriter w = new GgufWriter().putString("general.architecture", arch)
                .putUInt32(arch + ".context_length", 4096)
                .putUInt32(arch + ".embedding_length", 256)
                .putUInt32(arch + ".block_count", 2)
                .putUInt32(arch + ".feed_forward_length", 512)
                .putUInt32(arch + ".attention.head_count", 2)
                .putFloat32(arch + ".attention.layer_norm_rms_epsilon", 1e-5f)
                .addTensor("token_embd.weight", GgmlType.F32, new long[] {256, 10}, new float[2560]);
        adjust.accept(w);
        Path file = dir.resolve(name);
        w.write(file);
        return file;
    }

    private ModelConfig read(Path file) {
        try (GgufFile g = GgufFile.open(file)) {
            return ModelConfig.fromGguf(g);
        }
    }

    private void assertFails(Path file, String phrase) {
        ModelFormatException e = assertThrows(ModelFormatException.class, () -> read(file));
        assertTrue(e.getMessage().startsWith(file + ": "), e.getMessage());
        assertTrue(e.getMessage().contains(phrase), "expected '" + phrase + "' in: " + e.getMessage());
    }

    @Test
    void defaultsAndFallbacks() {
        ModelConfig c = read(minimal("mistral.gguf", "mistral", w -> {}));
        assertEquals(Arch.LLAMA, c.arch());
        assertEquals(10, c.nVocab()); // token_embd rows
        assertEquals(2, c.nHeadKv()); // = head_count
        assertEquals(128, c.headDim()); // n_embd / n_head
        assertEquals(128, c.ropeDims());
        assertEquals(10000f, c.ropeTheta());
        assertTrue(c.tiedEmbeddings());

        c = read(minimal("perlayer.gguf", "llama", w -> w.putArray("llama.attention.head_count_kv",
                dev.specula.model.gguf.GgufType.UINT32, new int[] {1, 1}).putUInt32("llama.attention.key_length", 64)));
        assertEquals(1, c.nHeadKv());
        assertEquals(64, c.headDim());
    }

    @Test
    void linearScaling() {
        ModelConfig c = read(minimal("linear.gguf", "llama", w -> w.putString("llama.rope.scaling.type", "linear")
                .putFloat32("llama.rope.scaling.factor", 4f)));
        assertEquals(RopeScaling.LINEAR, c.ropeScaling());
        assertEquals(4f, c.ropeFactor());
    }

    @Test
    void llama3ScalingIsRecoveredFromRopeFreqs() {
        for (float factor : new float[] {8f, 32f}) {
            float[] freqs = ModelConfig.llama3Factors(500000f, 128, factor, 1f, 4f, 8192);
            ModelConfig c = read(minimal("llama3-" + factor + ".gguf", "llama", w -> w
                    .putFloat32("llama.rope.freq_base", 500000f)
                    .addTensor(ModelConfig.ROPE_FREQS_TENSOR, GgmlType.F32, new long[] {64}, freqs)));
            assertEquals(RopeScaling.LLAMA3, c.ropeScaling());
            assertEquals(factor, c.ropeFactor());
            assertEquals(1f, c.ropeLowFreqFactor(), 1e-3);
            assertEquals(4f, c.ropeHighFreqFactor(), 1e-3);
            assertEquals(8192, c.ropeOrigCtx());
            assertArrayEquals(freqs, ModelConfig.llama3Factors(c.ropeTheta(), 128, c.ropeFactor(), c.ropeLowFreqFactor(),
                    c.ropeHighFreqFactor(), c.ropeOrigCtx()), 1e-4f);
        }
        // All ones: no scaling at all.
        float[] ones = new float[64];
        java.util.Arrays.fill(ones, 1f);
        assertEquals(RopeScaling.NONE, read(minimal("ones.gguf", "llama", w -> w
                .addTensor(ModelConfig.ROPE_FREQS_TENSOR, GgmlType.F32, new long[] {64}, ones))).ropeScaling());
    }

    @Test
    void unsupportedThingsAreClearErrors() {
        assertFails(minimal("gpt2.gguf", "gpt2", w -> {}), "unsupported architecture 'gpt2' (supported: llama, mistral, qwen2, qwen3, gemma3)");
        assertFails(minimal("yarn.gguf", "llama", w -> w.putString("llama.rope.scaling.type", "yarn")),
                "unsupported rope scaling 'yarn'");
        float[] odd = new float[64];
        for (int i = 0; i < 64; i++) odd[i] = 1 + (i % 3);
        assertFails(minimal("oddfreqs.gguf", "llama", w -> w.addTensor(ModelConfig.ROPE_FREQS_TENSOR, GgmlType.F32, new long[] {64}, odd)),
                "not Llama 3 scaling");
        assertFails(minimal("badfreqs.gguf", "llama", w -> w.addTensor(ModelConfig.ROPE_FREQS_TENSOR, GgmlType.F32, new long[] {3}, new float[3])),
                "rope_freqs.weight has dims [3], expected [64]");
        assertFails(minimal("nolayers.gguf", "llama", w -> w.putUInt32("llama.block_count", 0)), "n_layer = 0 is out of range");
        assertFails(minimal("badkv.gguf", "llama", w -> w.putUInt32("llama.attention.head_count_kv", 3)),
                "n_head 2 is not a multiple of n_head_kv 3");
        assertFails(minimal("wrongtype.gguf", "llama", w -> w.putString("llama.block_count", "two")),
                "metadata key 'llama.block_count' is a STRING, expected an integer");
        assertFails(minimal("noff.gguf", "qwen2", w -> w.putString("qwen2.context_length", "x")), "qwen2.context_length");
        Path noArch = dir.resolve("noarch.gguf");
        new GgufWriter().write(noArch);
        assertFails(noArch, "missing metadata key 'general.architecture'");
    }

    // ---------------------------------------------------------------- Hugging Face

    @Test
    void llamaFromHfConfigIsNeox() throws IOException {
        Path ckpt = new HfFixture().write(dir.resolve("hf"), 1);
        try (SafetensorsCheckpoint c = SafetensorsCheckpoint.open(ckpt)) {
            ModelConfig m = ModelConfig.fromHf(c);
            assertEquals(Arch.LLAMA, m.arch());
            assertEquals(RopeStyle.NEOX, m.ropeStyle());
            assertEquals(40, m.nVocab());
            assertEquals(16, m.nEmbd());
            assertEquals(2, m.nLayer());
            assertEquals(4, m.nHead());
            assertEquals(2, m.nHeadKv());
            assertEquals(4, m.headDim());
            assertEquals(32, m.nFf());
            assertEquals(128, m.nCtxTrain());
            assertEquals(500000f, m.ropeTheta());
            assertEquals(1e-5f, m.rmsEps());
            assertFalse(m.tiedEmbeddings());
        }
    }

    private static JsonObject hf(String json) {
        return JsonParser.parseString(json).getAsJsonObject();
    }

    private static final String LLAMA32 = """
            {"model_type": "llama", "hidden_size": 2048, "intermediate_size": 8192, "num_hidden_layers": 16,
             "num_attention_heads": 32, "num_key_value_heads": 8, "head_dim": 64, "rms_norm_eps": 1e-05,
             "rope_theta": 500000.0, "max_position_embeddings": 131072, "vocab_size": 128256,
             "tie_word_embeddings": true,
             "rope_scaling": {"factor": 32.0, "high_freq_factor": 4.0, "low_freq_factor": 1.0,
                              "original_max_position_embeddings": 8192, "rope_type": "llama3"}}
            """;

    @Test
    void llama3ScalingFromHfConfig() {
        ModelConfig m = ModelConfig.fromHf(Path.of("config.json"), hf(LLAMA32));
        assertEquals(RopeScaling.LLAMA3, m.ropeScaling());
        assertEquals(32f, m.ropeFactor());
        assertEquals(1f, m.ropeLowFreqFactor());
        assertEquals(4f, m.ropeHighFreqFactor());
        assertEquals(8192, m.ropeOrigCtx());
        assertEquals(64, m.headDim());
        assertTrue(m.tiedEmbeddings());
        assertEquals(2, m.ropeScaling().code());
    }

    @Test
    void qwen2FromHfConfig() {
        ModelConfig m = ModelConfig.fromHf(Path.of("config.json"), hf("""
                {"model_type": "qwen2", "hidden_size": 896, "intermediate_size": 4864, "num_hidden_layers": 24,
                 "num_attention_heads": 14, "num_key_value_heads": 2, "rms_norm_eps": 1e-06, "rope_theta": 1000000.0,
                 "max_position_embeddings": 32768, "vocab_size": 151936, "tie_word_embeddings": true,
                 "rope_scaling": null, "sliding_window": 32768, "use_sliding_window": false}
                """));
        assertEquals(Arch.QWEN2, m.arch());
        assertEquals(64, m.headDim());
        assertEquals(RopeStyle.NEOX, m.ropeStyle());
        assertEquals(RopeScaling.NONE, m.ropeScaling());
        assertTrue(m.tiedEmbeddings());
    }

    // The fields of Qwen3-0.6B's and gemma-3-1b-it's config.json that the engine reads (values as published).
    private static final String QWEN3 = """
            {"model_type": "qwen3", "hidden_size": 1024, "intermediate_size": 3072, "num_hidden_layers": 28,
             "num_attention_heads": 16, "num_key_value_heads": 8, "head_dim": 128, "rms_norm_eps": 1e-06,
             "rope_theta": 1000000, "max_position_embeddings": 40960, "vocab_size": 151936, "tie_word_embeddings": true,
             "rope_scaling": null, "sliding_window": null, "use_sliding_window": false, "max_window_layers": 28}
            """;
    private static final String GEMMA3 = """
            {"model_type": "gemma3_text", "hidden_size": 1152, "intermediate_size": 6912, "num_hidden_layers": 26,
             "num_attention_heads": 4, "num_key_value_heads": 1, "head_dim": 256, "rms_norm_eps": 1e-06,
             "rope_theta": 1000000, "rope_local_base_freq": 10000, "max_position_embeddings": 32768, "vocab_size": 262144,
             "sliding_window": 512, "sliding_window_pattern": 6, "query_pre_attn_scalar": 256,
             "final_logit_softcapping": null, "attn_logit_softcapping": null, "rope_scaling": null,
             "hidden_activation": "gelu_pytorch_tanh"}
            """;

    @Test
    void qwen3AndGemma3AndMistralWindowsFromHfConfig() {
        ModelConfig q = ModelConfig.fromHf(Path.of("config.json"), hf(QWEN3));
        assertEquals(Arch.QWEN3, q.arch());
        assertEquals(128, q.headDim()); // not hidden_size / heads = 64
        assertEquals(ModelConfig.LayerAttention.NONE, q.layerAttention()); // sliding_window without use_sliding_window

        ModelConfig g = ModelConfig.fromHf(Path.of("config.json"), hf(GEMMA3));
        assertEquals(Arch.GEMMA3, g.arch());
        assertEquals(RopeStyle.NEOX, g.ropeStyle());
        assertTrue(g.tiedEmbeddings()); // transformers' default for gemma3
        assertEquals(new ModelConfig.LayerAttention(512, 6, 10000f, 0f), g.layerAttention());
        assertEquals(262144, g.nVocab());
        ModelConfig scaled = ModelConfig.fromHf(Path.of("config.json"), hf(GEMMA3.replace("\"query_pre_attn_scalar\": 256", "\"query_pre_attn_scalar\": 168")));
        assertEquals((float) (1 / Math.sqrt(168)), scaled.attnScale());

        ModelConfig m = ModelConfig.fromHf(Path.of("config.json"), hf(LLAMA32.replace("\"llama\"", "\"mistral\", \"sliding_window\": 4096")));
        assertEquals(ModelConfig.LayerAttention.window(4096), m.layerAttention());
        assertTrue(m.describe().contains("sliding window 4096 (every layer)"), m.describe());
    }

    @Test
    void badHfConfigsNameTheFile() {
        Path file = Path.of("some", "config.json");
        String[][] cases = {
                {LLAMA32.replace("\"llama\"", "\"gemma\""), "unsupported model_type 'gemma'"},
                {LLAMA32.replace("\"rope_type\": \"llama3\"", "\"rope_type\": \"yarn\""), "unsupported rope scaling 'yarn'"},
                {LLAMA32.replace("\"hidden_size\": 2048,", ""), "missing 'hidden_size'"},
                {LLAMA32.replace("\"num_hidden_layers\": 16", "\"num_hidden_layers\": 1.5"), "'num_hidden_layers' is not a 32-bit whole number"},
                {LLAMA32.replace("\"vocab_size\": 128256", "\"vocab_size\": \"many\""), "'vocab_size' is not a 32-bit whole number"},
                {LLAMA32.replace("\"num_key_value_heads\": 8", "\"num_key_value_heads\": 5"), "n_head 32 is not a multiple of n_head_kv 5"},
                {LLAMA32.replace("\"low_freq_factor\": 1.0", "\"low_freq_factor\": 5.0"), "llama3 rope scaling needs"},
                {QWEN3.replace("\"use_sliding_window\": false", "\"use_sliding_window\": true"), "use_sliding_window is true"},
                {GEMMA3.replace("\"final_logit_softcapping\": null", "\"final_logit_softcapping\": 30.0"), "final_logit_softcapping is set"},
                {GEMMA3.replace("\"gemma3_text\"", "\"gemma3\", \"text_config\": {}"), "a multimodal gemma3 checkpoint"},
                {GEMMA3.replace("\"sliding_window_pattern\": 6", "\"layer_types\": [\"full_attention\"]"), "'layer_types' is not a list of 26"},
        };
        for (String[] c : cases) {
            ModelFormatException e = assertThrows(ModelFormatException.class, () -> ModelConfig.fromHf(file, hf(c[0])), c[1]);
            assertTrue(e.getMessage().startsWith(file + ": "), e.getMessage());
            assertTrue(e.getMessage().contains(c[1]), "expected '" + c[1] + "' in: " + e.getMessage());
        }
    }
}
