package dev.specula.model;

import static org.junit.jupiter.api.Assertions.*;

import dev.specula.model.ModelWeights.Weight;
import dev.specula.model.gguf.GgmlType;
import dev.specula.model.gguf.GgufFile;
import dev.specula.model.gguf.GgufTensor;
import dev.specula.model.gguf.GgufWriter;
import dev.specula.model.safetensors.SafetensorsCheckpoint;
import dev.specula.nativeapi.DType;
import dev.specula.nativeapi.WeightRole;
import dev.specula.nativeapi.WeightShape;
import java.io.IOException;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import java.util.function.Function;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class ModelWeightsTest {
    @TempDir
    Path dir;

    private record Loaded(ModelConfig config, List<Weight> weights) {
        Weight get(WeightRole role, int layer) {
            return weights.stream().filter(w -> w.role() == role && w.layer() == layer).findFirst().orElseThrow();
        }
    }

    private Loaded load(Path file) {
        try (GgufFile g = GgufFile.open(file)) {
            ModelConfig c = ModelConfig.fromGguf(g);
            List<Weight> w = ModelWeights.fromGguf(g, c);
            for (Weight x : w) assertTrue(x.nbytes() > 0); // reachable while the file is open
            return new Loaded(c, w);
        }
    }

    @Test
    void llamaMapsEveryRoleWithTheCoreShapes() {
        Path file = new TestModelMaker().dim(64).layers(2).heads(4).kvHeads(2).ff(96).tokenizer(TinyVocab.metadata())
                .write(dir.resolve("llama.gguf")).file();
        Loaded m = load(file);
        assertEquals(3 + 9 * 2, m.weights().size());
        int v = TinyVocab.size();
        assertShape(m.get(WeightRole.TOKEN_EMBD, 0), v, 64, DType.F32, "token_embd.weight");
        assertShape(m.get(WeightRole.OUTPUT_NORM, 0), 1, 64, DType.F32, "output_norm.weight");
        assertShape(m.get(WeightRole.OUTPUT, 0), v, 64, DType.F32, "output.weight");
        for (int l = 0; l < 2; l++) {
            assertShape(m.get(WeightRole.ATTN_NORM, l), 1, 64, DType.F32, "blk." + l + ".attn_norm.weight");
            assertShape(m.get(WeightRole.ATTN_Q, l), 64, 64, DType.F32, "blk." + l + ".attn_q.weight");
            assertShape(m.get(WeightRole.ATTN_K, l), 32, 64, DType.F32, "blk." + l + ".attn_k.weight");
            assertShape(m.get(WeightRole.ATTN_V, l), 32, 64, DType.F32, "blk." + l + ".attn_v.weight");
            assertShape(m.get(WeightRole.ATTN_OUT, l), 64, 64, DType.F32, "blk." + l + ".attn_output.weight");
            assertShape(m.get(WeightRole.FFN_NORM, l), 1, 64, DType.F32, "blk." + l + ".ffn_norm.weight");
            assertShape(m.get(WeightRole.FFN_GATE, l), 96, 64, DType.F32, "blk." + l + ".ffn_gate.weight");
            assertShape(m.get(WeightRole.FFN_UP, l), 96, 64, DType.F32, "blk." + l + ".ffn_up.weight");
            assertShape(m.get(WeightRole.FFN_DOWN, l), 64, 96, DType.F32, "blk." + l + ".ffn_down.weight");
        }
        for (Weight w : m.weights()) {
            WeightShape expected = m.config().weightShape(w.role(), w.layer());
            assertEquals(expected.rows() * expected.cols() * 4, w.nbytes(), w.toString());
        }
    }

    private static void assertShape(Weight w, long rows, long cols, DType dtype, String tensor) {
        assertEquals(rows, w.rows(), w.toString());
        assertEquals(cols, w.cols(), w.toString());
        assertEquals(dtype, w.dtype(), w.toString());
        assertEquals(tensor, w.tensorName());
    }

    @Test
    void tiedOutputSharesTheEmbeddingMemory() {
        Path file = new TestModelMaker().vocab(300).tied(true).write(dir.resolve("tied.gguf")).file();
        try (GgufFile g = GgufFile.open(file)) {
            List<Weight> w = ModelWeights.fromGguf(g, ModelConfig.fromGguf(g));
            Weight embd = w.stream().filter(x -> x.role() == WeightRole.TOKEN_EMBD).findFirst().orElseThrow();
            Weight out = w.stream().filter(x -> x.role() == WeightRole.OUTPUT).findFirst().orElseThrow();
            assertEquals(embd.data().address(), out.data().address());
            assertEquals("token_embd.weight", out.tensorName());
        }
    }

    @Test
    void qwen2HasBiasesAndQuantizedMatrices() {
        for (GgmlType type : new GgmlType[] {GgmlType.F16, GgmlType.BF16, GgmlType.Q8_0, GgmlType.Q4_0}) {
            Path file = new TestModelMaker().arch("qwen2").type(type).vocab(300).layers(2)
                    .write(dir.resolve("qwen2-" + type + ".gguf")).file();
            Loaded m = load(file);
            assertEquals(3 + 12 * 2, m.weights().size());
            DType dtype = switch (type) {
                case F16 -> DType.F16;
                case BF16 -> DType.BF16;
                case Q8_0 -> DType.Q8_0;
                default -> DType.Q4_0;
            };
            assertEquals(dtype, m.get(WeightRole.ATTN_Q, 1).dtype());
            assertEquals(dtype, m.get(WeightRole.TOKEN_EMBD, 0).dtype());
            assertEquals(DType.F32, m.get(WeightRole.ATTN_NORM, 1).dtype());
            Weight kBias = m.get(WeightRole.ATTN_K_BIAS, 1);
            assertEquals(1, kBias.rows());
            assertEquals(32, kBias.cols());
            assertEquals("blk.1.attn_k.bias", kBias.tensorName());
            assertEquals(type.bytesFor(300L * 64), m.get(WeightRole.OUTPUT, 0).nbytes());
        }
    }

    /** Copies a GGUF file, letting edit replace or drop tensors (null) and change metadata. */
    private Path rewrite(Path from, String name, Function<GgufTensor, GgufTensor> edit, Map<String, Object> meta) {
        return rewrite(from, name, edit, meta, w -> {});
    }

    private Path rewrite(Path from, String name, Function<GgufTensor, GgufTensor> edit, Map<String, Object> meta,
                         java.util.function.Consumer<GgufWriter> extra) {
        Path to = dir.resolve(name);
        try (GgufFile g = GgufFile.open(from)) {
            GgufWriter w = new GgufWriter();
            for (String key : g.metadata().keySet()) {
                if (meta.containsKey(key)) w.put(key, meta.get(key));
                else w.copy(g, key);
            }
            for (GgufTensor t : g.tensors()) {
                GgufTensor e = edit.apply(t);
                if (e != null) w.addRawTensor(e.name(), e.type(), e.dims(), e.data());
            }
            extra.accept(w);
            w.write(to);
        }
        return to;
    }

    private void assertFails(Path file, String... phrases) {
        ModelFormatException e = assertThrows(ModelFormatException.class, () -> load(file));
        assertTrue(e.getMessage().startsWith(file + ": "), e.getMessage());
        for (String phrase : phrases) assertTrue(e.getMessage().contains(phrase), "expected '" + phrase + "' in: " + e.getMessage());
    }

    @Test
    void missingTensorsAreNamed() {
        Path base = new TestModelMaker().arch("qwen2").vocab(300).layers(2).write(dir.resolve("base.gguf")).file();
        Path broken = rewrite(base, "missing.gguf",
                t -> t.name().equals("blk.1.ffn_up.weight") || t.name().equals("blk.0.attn_v.bias") ? null : t, Map.of());
        assertFails(broken, "missing tensors 'blk.0.attn_v.bias', 'blk.1.ffn_up.weight'");
    }

    @Test
    void shapeMismatchIsNamed() {
        Path base = new TestModelMaker().vocab(300).layers(2).ff(192).write(dir.resolve("base.gguf")).file();
        Path broken = rewrite(base, "mismatch.gguf", t -> t, Map.of("llama.feed_forward_length", 128));
        assertFails(broken, "6 problems: shape mismatch: tensor 'blk.0.ffn_gate.weight' has dims [64, 192], the config needs [64, 128]");
    }

    @Test
    void unsupportedTensorTypesAreNamed() {
        Path base = new TestModelMaker().dim(256).heads(4).kvHeads(4).ff(256).vocab(300).layers(1)
                .write(dir.resolve("base.gguf")).file();
        // IQ and TQ types are refused by name, with the tensor that has them; k-quants load (ABI 0.7).
        Path iq = rewrite(base, "iq2.gguf", t -> !t.name().equals("blk.0.attn_q.weight") ? t
                : new GgufTensor(t.name(), GgmlType.IQ2_XS, t.dims(), 0, java.lang.foreign.MemorySegment.ofArray(new byte[256 * 74])), Map.of());
        assertFails(iq, "tensor 'blk.0.attn_q.weight' has type IQ2_XS, which the engine does not support");
        Path tq = rewrite(base, "tq1.gguf", t -> !t.name().equals("blk.0.ffn_down.weight") ? t
                : new GgufTensor(t.name(), GgmlType.TQ1_0, t.dims(), 0, java.lang.foreign.MemorySegment.ofArray(new byte[256 * 54])), Map.of());
        assertFails(tq, "tensor 'blk.0.ffn_down.weight' has type TQ1_0, which the engine does not support");
        // Every other GGML type the README's table lists as refused (IQ*, TQ*, MXFP4, Q8_1, Q8_K, F64, I8..I64) is refused
        // by name too: the loader accepts exactly the README's supported list (GgmlQuant.SUPPORTED).
        java.util.Set<String> supported = java.util.Set.of(dev.specula.model.gguf.GgmlQuant.SUPPORTED.split(", "));
        for (GgmlType type : GgmlType.values()) {
            if (supported.contains(type.name())) continue;
            byte[] bytes = new byte[256 * (256 / type.blockSize()) * type.blockBytes()];
            Path refused = rewrite(base, "refused-" + type + ".gguf", t -> !t.name().equals("blk.0.attn_k.weight") ? t
                    : new GgufTensor(t.name(), type, t.dims(), 0, java.lang.foreign.MemorySegment.ofArray(bytes)), Map.of());
            assertFails(refused, "tensor 'blk.0.attn_k.weight' has type " + type + ", which the engine does not support");
        }
        Path q4k = rewrite(base, "q4k.gguf", t -> !t.name().equals("blk.0.attn_q.weight") ? t
                : new GgufTensor(t.name(), GgmlType.Q4_K, t.dims(), 0, java.lang.foreign.MemorySegment.ofArray(new byte[256 * 144])), Map.of());
        Loaded loaded = load(q4k);
        assertEquals(DType.Q4_K, loaded.get(WeightRole.ATTN_Q, 0).dtype());

        Path qnorm = rewrite(base, "qnorm.gguf", t -> !t.name().equals("output_norm.weight") ? t
                : new GgufTensor(t.name(), GgmlType.Q8_0, t.dims(), 0, java.lang.foreign.MemorySegment.ofArray(new byte[8 * 34])), Map.of());
        assertFails(qnorm, "tensor 'output_norm.weight' is a vector of type Q8_0; norms and biases must be F32, F16 or BF16");
    }

    @Test
    void llamaBiasesMustComeAsASet() {
        Path base = new TestModelMaker().vocab(300).layers(1).write(dir.resolve("base.gguf")).file();
        // A llama file that carries q/k/v biases uses them (the core accepts them for llama) ...
        Path withBias = rewrite(base, "llama-bias.gguf", t -> t, Map.of(), w -> w
                .addTensor("blk.0.attn_q.bias", GgmlType.F32, new long[] {64}, new float[64])
                .addTensor("blk.0.attn_k.bias", GgmlType.F32, new long[] {32}, new float[32])
                .addTensor("blk.0.attn_v.bias", GgmlType.F32, new long[] {32}, new float[32]));
        Loaded m = load(withBias);
        assertEquals(3 + 12, m.weights().size());
        assertEquals(64, m.get(WeightRole.ATTN_Q_BIAS, 0).cols());
        // ... but not a partial set.
        Path partial = rewrite(withBias, "llama-partial.gguf", t -> t.name().equals("blk.0.attn_k.bias") ? null : t, Map.of());
        assertFails(partial, "missing tensor 'blk.0.attn_k.bias'");
    }

    // ---------------------------------------------------------------- Hugging Face

    @Test
    void hfCheckpointsMapToTheSameRoles() throws IOException {
        HfFixture fx = new HfFixture();
        fx.modelType = "qwen2";
        fx.dtype = "F16";
        try (SafetensorsCheckpoint c = SafetensorsCheckpoint.open(fx.write(dir.resolve("qwen"), 2))) {
            ModelConfig config = ModelConfig.fromHf(c);
            List<Weight> w = ModelWeights.fromHf(c, config);
            assertEquals(3 + 12 * 2, w.size());
            Weight q = w.stream().filter(x -> x.role() == WeightRole.ATTN_Q && x.layer() == 1).findFirst().orElseThrow();
            assertEquals("model.layers.1.self_attn.q_proj.weight", q.tensorName());
            assertEquals(16, q.rows());
            assertEquals(16, q.cols());
            assertEquals(DType.F16, q.dtype());
            Weight down = w.stream().filter(x -> x.role() == WeightRole.FFN_DOWN && x.layer() == 0).findFirst().orElseThrow();
            assertEquals(16, down.rows());
            assertEquals(32, down.cols());
            Weight out = w.stream().filter(x -> x.role() == WeightRole.OUTPUT).findFirst().orElseThrow();
            assertEquals("lm_head.weight", out.tensorName());
        }

        HfFixture tied = new HfFixture();
        tied.tied = true;
        tied.dtype = "BF16";
        try (SafetensorsCheckpoint c = SafetensorsCheckpoint.open(tied.write(dir.resolve("tied"), 1))) {
            List<Weight> w = ModelWeights.fromHf(c, ModelConfig.fromHf(c));
            assertEquals(3 + 9 * 2, w.size());
            Weight out = w.stream().filter(x -> x.role() == WeightRole.OUTPUT).findFirst().orElseThrow();
            assertEquals("model.embed_tokens.weight", out.tensorName());
            assertEquals(DType.BF16, out.dtype());
        }
    }

    @Test
    void hfProblemsAreNamed() throws IOException {
        HfFixture missing = new HfFixture();
        missing.omit.add("lm_head.weight");
        Path ckpt = missing.write(dir.resolve("nohead"), 1);
        try (SafetensorsCheckpoint c = SafetensorsCheckpoint.open(ckpt)) {
            ModelFormatException e = assertThrows(ModelFormatException.class, () -> ModelWeights.fromHf(c, ModelConfig.fromHf(c)));
            assertTrue(e.getMessage().startsWith(ckpt.resolve("model.safetensors") + ": missing tensor 'lm_head.weight'"), e.getMessage());
        }

        HfFixture reshaped = new HfFixture();
        reshaped.reshape.put("model.layers.0.self_attn.k_proj.weight", new long[] {16, 16});
        Path ckpt2 = reshaped.write(dir.resolve("reshaped"), 2);
        try (SafetensorsCheckpoint c = SafetensorsCheckpoint.open(ckpt2)) {
            ModelFormatException e = assertThrows(ModelFormatException.class, () -> ModelWeights.fromHf(c, ModelConfig.fromHf(c)));
            assertTrue(e.getMessage().startsWith(ckpt2 + ": shape mismatch: tensor 'model.layers.0.self_attn.k_proj.weight'"), e.getMessage());
            assertTrue(e.getMessage().contains("has shape [16, 16], the config needs [8, 16] for attn_k"), e.getMessage());
        }

        HfFixture ints = new HfFixture();
        Path ckpt3 = ints.write(dir.resolve("f32"), 1);
        // Same checkpoint, but its config claims more layers than it has.
        java.nio.file.Files.writeString(ckpt3.resolve("config.json"), ints.config().toString().replace("\"num_hidden_layers\":2", "\"num_hidden_layers\":3"));
        try (SafetensorsCheckpoint c = SafetensorsCheckpoint.open(ckpt3)) {
            ModelFormatException e = assertThrows(ModelFormatException.class, () -> ModelWeights.fromHf(c, ModelConfig.fromHf(c)));
            assertTrue(e.getMessage().contains("missing tensors 'model.layers.2.input_layernorm.weight'"), e.getMessage());
        }
    }
}
