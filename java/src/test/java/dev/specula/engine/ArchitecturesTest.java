package dev.specula.engine;

import static org.junit.jupiter.api.Assertions.*;

import dev.specula.model.HuggingFaceExport;
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
import dev.specula.policies.PromptLookupPolicy;
import dev.specula.policies.RecyclingPolicy;
import dev.specula.sampling.SamplingOptions;
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
 * the text; a Hugging Face folder holding the same weights as a GGUF file gives the same logits bit for bit (gemma's
 * norms stored as w there, as 1 + w in GGUF); a gemma3 file missing a norm is refused with the file and tensor named.
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

    /** The folder make-test-model --hf-out writes (HuggingFaceExport) beside its GGUF. */
    @ParameterizedTest
    @ValueSource(strings = {"qwen2", "qwen3", "gemma3"})
    void aHuggingFaceFolderGivesTheLogitsOfTheSameGgufBitForBit(String arch) throws IOException {
        Path gguf = temp.resolve(arch + "-hf-source.gguf");
        maker(arch).slidingWindow(arch.equals("gemma3") ? 5 : 0).write(gguf); // Qwen configs declare no window here
        Path dir = temp.resolve(arch + "-hf");
        ModelConfig c;
        try (GgufFile g = GgufFile.open(gguf)) {
            c = ModelConfig.fromGguf(g);
        }
        HuggingFaceExport.write(gguf, dir);
        int[] tokens = TinyModel.prompts(1, 4).getFirst();
        float[] fromGguf = logits(gguf, tokens), fromHf = logits(dir, tokens);
        try (ModelFile hf = ModelFile.open(dir)) {
            assertEquals(c, hf.config(), "the config from config.json");
        }
        assertArrayEquals(fromGguf, fromHf);
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
