package dev.specula.engine;

import static org.junit.jupiter.api.Assertions.*;

import dev.specula.model.HuggingFaceExport;
import dev.specula.model.LoadedModel;
import dev.specula.model.ModelConfig;
import dev.specula.model.ModelFile;
import dev.specula.model.ModelFormatException;
import dev.specula.model.NativeModels;
import dev.specula.model.TestModelMaker;
import dev.specula.model.gguf.GgmlType;
import dev.specula.model.gguf.GgufFile;
import dev.specula.model.gguf.GgufTensor;
import dev.specula.model.gguf.GgufWriter;
import dev.specula.nativeapi.Context;
import dev.specula.nativeapi.DType;
import dev.specula.nativeapi.DeviceBuffer;
import dev.specula.nativeapi.ForwardArgs;
import dev.specula.nativeapi.KvCache;
import dev.specula.nativeapi.NativeModel;
import dev.specula.nativeapi.Recycler;
import dev.specula.nativeapi.RopeStyle;
import dev.specula.policies.PromptLookupPolicy;
import dev.specula.policies.RecyclingPolicy;
import dev.specula.sampling.SamplingOptions;
import dev.specula.tokenizer.Tokenizer;
import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.function.Supplier;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/**
 * The architectures of ABI 0.8 through the Java layer: qwen3, gemma3 and sliding-window attention. Greedy
 * speculative decoding (trees verified at once) equals plain greedy decoding on models whose window is shorter than
 * the text; a Hugging Face folder holding the same weights as a GGUF file gives the same tokens and logits (bit for
 * bit but for llama's reordered q/k rows; gemma's norms stored as w there, as 1 + w in GGUF); a gemma3 file missing a norm is refused with the file and tensor named.
 * The logits themselves are checked against llama.cpp in {@link LlamaCppParityTest} and against an independent
 * double-precision reference in native/tests/test_forward.cpp.
 */
class ArchitecturesTest {
    static final int VOCAB = TinyModel.VOCAB;
    static final int MAX_TOKENS = 40;

    @TempDir
    static Path temp;
    static Context context;

    @BeforeAll
    static void open() {
        context = Context.cpu();
    }

    @AfterAll
    static void close() {
        context.close();
    }

    /** The shared tiny model's maker, turned into arch with a window of 5 positions (gemma3: 7 layers, layer 5 global). */
    static TestModelMaker maker(String arch) {
        TestModelMaker m = TinyModel.maker(2).arch(arch).slidingWindow(5);
        return switch (arch) {
            case "qwen3" -> m.headDim(24);
            case "gemma3" -> m.layers(7).headDim(32).tied(true).ropeTheta(1000000f);
            default -> m;
        };
    }

    @ParameterizedTest
    @ValueSource(strings = {"llama", "qwen3", "gemma3"})
    void greedySpeculationEqualsPlainGreedyWithASlidingWindow(String arch) {
        Path path = temp.resolve(arch + "-window.gguf");
        maker(arch).write(path);
        try (ModelFile file = ModelFile.open(path); NativeModel model = NativeModels.load(context, file, DType.F32)) {
            assertEquals(5, file.config().slidingWindow());
            List<int[]> prompts = TinyModel.prompts(12, 9);
            List<int[]> expected = new ArrayList<>();
            for (int[] p : prompts) expected.add(ReferenceDecoder.generate(model, TinyModel.CONTEXT, p, MAX_TOKENS, SamplingOptions.GREEDY));
            try (Recycler recycler = Recycler.create(context, VOCAB, Recycler.DEFAULT_K, Recycler.Fill.ZERO)) {
                RecyclingPolicy recycling = new RecyclingPolicy(recycler, Recycler.Template.defaultTemplate());
                long accepted = check(model, prompts, expected, () -> recycling, 81);
                accepted += check(model, prompts, expected, PromptLookupPolicy::new, 16);
                assertTrue(accepted > 0, "speculation accepted no draft token on " + arch);
            }
        }
    }

    /** Runs every prompt through the decode loop with policy (batches of 4) and returns the draft tokens accepted. */
    private static long check(NativeModel model, List<int[]> prompts, List<int[]> expected, Supplier<DraftPolicy> policy, int nodes) {
        long accepted = 0;
        try (DecodeLoop loop = new DecodeLoop(model, nodes, false)) {
            for (int start = 0; start < prompts.size(); start += 4) {
                List<DecodeLoop.Request> requests = new ArrayList<>();
                List<KvCache> caches = new ArrayList<>();
                for (int p = start; p < Math.min(prompts.size(), start + 4); p++) {
                    KvCache kv = model.newKvCache(TinyModel.CONTEXT);
                    caches.add(kv);
                    requests.add(new DecodeLoop.Request(kv, prompts.get(p), MAX_TOKENS, SamplingOptions.GREEDY, policy.get(),
                            t -> false, t -> true, () -> false));
                }
                List<DecodeLoop.Result> results = loop.generateBatch(requests);
                for (int i = 0; i < results.size(); i++) {
                    assertArrayEquals(expected.get(start + i), results.get(i).tokens(), "prompt " + (start + i) + " with " + policy.get().name());
                    accepted += results.get(i).stats().tokens() - results.get(i).stats().steps(); // beyond one per step
                }
                caches.forEach(KvCache::close);
            }
        }
        return accepted;
    }

    /**
     * The folder make-test-model --hf-out writes (HuggingFaceExport) beside its GGUF: the same config, the same
     * tokenizer, the same logits. qwen and gemma keep their q/k rows, so their logits agree bit for bit; llama's are
     * put back from llama.cpp's interleaved order into halves, which reorders each head's q.k sum: there they agree
     * to float rounding, and pick the same tokens.
     */
    @ParameterizedTest
    @ValueSource(strings = {"llama", "qwen2", "qwen3", "gemma3"})
    void aHuggingFaceFolderGivesTheConfigTokensAndLogitsOfTheSameGguf(String arch) throws IOException {
        Path gguf = temp.resolve(arch + "-hf-source.gguf");
        boolean windowed = arch.equals("gemma3") || arch.equals("llama"); // Qwen configs declare no window here; llama as Mistral does
        maker(arch).slidingWindow(windowed ? 5 : 0).write(gguf);
        Path dir = temp.resolve(arch + "-hf");
        ModelConfig c;
        try (GgufFile g = GgufFile.open(gguf)) {
            c = ModelConfig.fromGguf(g);
        }
        HuggingFaceExport.write(gguf, dir);
        try (ModelFile hf = ModelFile.open(dir); ModelFile g = ModelFile.open(gguf)) {
            assertEquals(arch.equals("llama") ? rotatingHalves(c) : c, hf.config(), "the config from config.json");
            Tokenizer fromGguf = LoadedModel.tokenizer(g), fromHf = LoadedModel.tokenizer(hf);
            for (String text : List.of("public static int max(int a, int b) {\n", "the keeper's log, café 日本語 🐈")) {
                assertArrayEquals(fromGguf.encode(text), fromHf.encode(text), text);
                assertEquals(text, fromHf.decode(fromHf.encode(text)));
            }
            assertEquals(fromGguf.bos(), fromHf.bos());
            assertEquals(fromGguf.eos(), fromHf.eos());
            if (fromHf instanceof AutoCloseable closeable) closeable.close();
        } catch (Exception e) {
            throw new AssertionError(e);
        }
        int[] tokens = TinyModel.prompts(1, 4).getFirst();
        float[] fromGguf = logits(gguf, tokens), fromHf = logits(dir, tokens);
        if (!arch.equals("llama")) {
            assertArrayEquals(fromGguf, fromHf);
            return;
        }
        float largest = 0;
        for (int i = 0; i < fromGguf.length; i++) largest = Math.max(largest, Math.abs(fromGguf[i] - fromHf[i]));
        System.out.printf("llama, Hugging Face folder against GGUF: largest logit difference %.3g%n", largest);
        for (int t = 0; t < tokens.length; t++) {
            int top = 0, topHf = 0;
            for (int v = 0; v < VOCAB; v++) {
                int i = t * VOCAB + v;
                assertEquals(fromGguf[i], fromHf[i], 1e-4f * Math.max(1f, Math.abs(fromGguf[i])), "token " + t + ", logit " + v);
                if (fromGguf[i] > fromGguf[t * VOCAB + top]) top = v;
                if (fromHf[i] > fromHf[t * VOCAB + topHf]) topHf = v;
            }
            assertEquals(top, topHf, "the greedy token after " + (t + 1) + " tokens");
        }
    }

    /** c as a Hugging Face folder states it: RoPE rotating halves (its q/k rows are in that order). */
    private static ModelConfig rotatingHalves(ModelConfig c) {
        return new ModelConfig(c.arch(), c.nVocab(), c.nEmbd(), c.nLayer(), c.nHead(), c.nHeadKv(), c.headDim(), c.nFf(), c.nCtxTrain(),
                c.rmsEps(), c.ropeTheta(), RopeStyle.NEOX, c.ropeDims(), c.ropeScaling(), c.ropeFactor(), c.ropeLowFreqFactor(),
                c.ropeHighFreqFactor(), c.ropeOrigCtx(), c.tiedEmbeddings(), c.layerAttention());
    }

    private static float[] logits(Path path, int[] tokens) {
        try (ModelFile file = ModelFile.open(path);
             NativeModel model = NativeModels.load(context, file, DType.F32);
             KvCache kv = model.newKvCache(64);
             DeviceBuffer out = context.allocate((long) tokens.length * VOCAB * Float.BYTES);
             Arena arena = Arena.ofConfined()) {
            model.forward(kv, ForwardArgs.chainAll(tokens, out));
            MemorySegment host = arena.allocate(out.size());
            out.copyToHost(0, host, 0, out.size());
            return host.toArray(ValueLayout.JAVA_FLOAT);
        }
    }

    @Test
    void aGemma3FileMissingANormIsAModelFormatExceptionNamingFileAndTensor() {
        Path whole = temp.resolve("gemma3-whole.gguf"), broken = temp.resolve("gemma3-no-post-ffw-norm.gguf");
        maker("gemma3").write(whole);
        String missing = "blk.3.post_ffw_norm.weight";
        try (GgufFile g = GgufFile.open(whole)) {
            GgufWriter w = new GgufWriter();
            for (String key : g.metadata().keySet()) w.copy(g, key);
            for (GgufTensor t : g.tensors()) {
                if (!t.name().equals(missing)) w.addRawTensor(t.name(), t.type(), t.dims(), t.data());
            }
            w.write(broken);
        }
        ModelFormatException e = assertThrows(ModelFormatException.class, () -> ModelFile.open(broken).close());
        assertTrue(e.getMessage().contains(broken.toString()), e.getMessage());
        assertTrue(e.getMessage().contains("missing tensor '" + missing + "'"), e.getMessage());
    }
}
