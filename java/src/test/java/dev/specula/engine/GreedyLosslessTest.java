package dev.specula.engine;

import static org.junit.jupiter.api.Assertions.*;

import dev.specula.model.ModelFile;
import dev.specula.model.TestModelMaker;
import dev.specula.model.gguf.GgmlType;
import dev.specula.nativeapi.Context;
import dev.specula.nativeapi.DType;
import dev.specula.nativeapi.KvCache;
import dev.specula.nativeapi.NativeModel;
import dev.specula.nativeapi.Recycler;
import dev.specula.policies.NoSpeculation;
import dev.specula.policies.PromptLookupPolicy;
import dev.specula.policies.RecyclingPolicy;
import dev.specula.tokenizer.VocabTrainer;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.SplittableRandom;
import java.util.function.Supplier;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** Greedy speculative output equals plain greedy output, token for token, for every policy, alone and batched. */
class GreedyLosslessTest {
    static final int VOCAB = 320;
    static final int PROMPTS = 50;
    static final int MAX_TOKENS = 40;

    @TempDir
    static Path temp;
    static Context context;
    static ModelFile file;
    static NativeModel model;
    static List<int[]> prompts = new ArrayList<>();
    static List<int[]> expected = new ArrayList<>();

    @BeforeAll
    static void setUp() {
        context = Context.cpu();
        Path path = temp.resolve("lossless.gguf");
        new TestModelMaker().arch("llama").dim(64).layers(2).heads(4).kvHeads(2).ff(160).vocab(VOCAB).context(512)
                .type(GgmlType.F32).seed(3).tokenizer(VocabTrainer.ggufMetadata("llama", VOCAB, 3)).write(path);
        file = ModelFile.open(path);
        model = NativeModels.load(context, file, DType.F32);
        SplittableRandom rng = new SplittableRandom(5);
        for (int p = 0; p < PROMPTS; p++) {
            // Half the prompts repeat a phrase, so prompt lookup has something to find.
            int len = 4 + rng.nextInt(24);
            int[] prompt = new int[len];
            prompt[0] = 1;
            for (int i = 1; i < len; i++) prompt[i] = p % 2 == 0 && i > 6 ? prompt[i - 5] : 3 + rng.nextInt(VOCAB - 3);
            prompts.add(prompt);
        }
        try (PlainDecoder plain = new PlainDecoder(model)) {
            for (int[] prompt : prompts) {
                try (KvCache kv = model.newKvCache(512)) {
                    expected.add(plain.generate(kv, prompt, MAX_TOKENS, SamplingOptions.GREEDY, t -> false, t -> true, () -> false).tokens());
                }
            }
        }
    }

    @AfterAll
    static void tearDown() {
        model.close();
        file.close();
        context.close();
    }

    private static void checkPolicy(Supplier<DraftPolicy> policy, int maxNodes, boolean adaptive, int batch) {
        try (SpeculativeEngine engine = new SpeculativeEngine(model, maxNodes, adaptive)) {
            for (int start = 0; start < PROMPTS; start += batch) {
                List<SpeculativeEngine.Request> requests = new ArrayList<>();
                List<KvCache> caches = new ArrayList<>();
                for (int p = start; p < Math.min(PROMPTS, start + batch); p++) {
                    KvCache kv = model.newKvCache(512);
                    caches.add(kv);
                    requests.add(new SpeculativeEngine.Request(kv, prompts.get(p), MAX_TOKENS, SamplingOptions.GREEDY,
                            policy.get(), t -> false, t -> true, () -> false));
                }
                List<SpeculativeEngine.Result> results = engine.generateBatch(requests);
                for (int i = 0; i < results.size(); i++) {
                    assertArrayEquals(expected.get(start + i), results.get(i).tokens(),
                            "prompt " + (start + i) + " with " + policy.get().name() + " (batch " + batch + ")");
                    assertEquals(StopReason.MAX_TOKENS, results.get(i).reason());
                }
                caches.forEach(KvCache::close);
            }
        }
    }

    @Test
    void noSpeculationEqualsPlainDecoding() {
        checkPolicy(NoSpeculation::new, 1, false, 1);
    }

    @Test
    void promptLookupIsLossless() {
        checkPolicy(PromptLookupPolicy::new, 16, false, 1);
        checkPolicy(PromptLookupPolicy::new, 16, true, 7);
    }

    @Test
    void tokenRecyclingIsLosslessAndLearns() {
        try (Recycler recycler = Recycler.create(context, VOCAB, Recycler.DEFAULT_K, Recycler.Fill.ZERO)) {
            RecyclingPolicy shared = new RecyclingPolicy(recycler, Recycler.Template.defaultTemplate());
            checkPolicy(() -> shared, 81, false, 1);
            checkPolicy(() -> shared, 81, true, 5);
            // The matrix learned something: rows are no longer all zero.
            int[] m = recycler.save();
            long nonZero = java.util.Arrays.stream(m).filter(v -> v != 0).count();
            assertTrue(nonZero > VOCAB, "the recycling matrix did not learn: " + nonZero + " non-zero entries");
        }
    }

    @Test
    void speculationAcceptsTokensOnRepetitiveText() {
        // A random model's greedy text loops; recycling then guesses most of it.
        try (Recycler recycler = Recycler.create(context, VOCAB, Recycler.DEFAULT_K, Recycler.Fill.ZERO);
             SpeculativeEngine engine = new SpeculativeEngine(model, 81, false)) {
            RecyclingPolicy policy = new RecyclingPolicy(recycler, Recycler.Template.defaultTemplate());
            SpecStats total = new SpecStats();
            for (int p = 0; p < 10; p++) {
                try (KvCache kv = model.newKvCache(512)) {
                    total.add(engine.generate(new SpeculativeEngine.Request(kv, prompts.get(p), MAX_TOKENS, SamplingOptions.GREEDY,
                            policy, t -> false, t -> true, () -> false)).stats());
                }
            }
            assertTrue(total.meanAccepted() > 1.2, "mean accepted tokens per step " + total.meanAccepted());
        }
    }
}
