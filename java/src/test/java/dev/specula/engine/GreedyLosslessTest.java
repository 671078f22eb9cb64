package dev.specula.engine;

import static org.junit.jupiter.api.Assertions.*;

import dev.specula.StopReason;
import dev.specula.model.ModelFile;
import dev.specula.nativeapi.Context;
import dev.specula.nativeapi.KvCache;
import dev.specula.nativeapi.NativeModel;
import dev.specula.nativeapi.Recycler;
import dev.specula.policies.NoSpeculation;
import dev.specula.policies.PromptLookupPolicy;
import dev.specula.policies.RecyclingPolicy;
import dev.specula.sampling.SamplingOptions;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.function.Supplier;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** Greedy speculative output equals plain greedy output, token for token, for every policy, alone and batched. */
class GreedyLosslessTest {
    static final int VOCAB = TinyModel.VOCAB;
    static final int PROMPTS = 50;
    static final int MAX_TOKENS = 40;

    @TempDir
    static Path temp;
    static TinyModel tiny;
    static Context context;
    static ModelFile file;
    static NativeModel model;
    static final List<int[]> prompts = new ArrayList<>();
    static final List<int[]> expected = new ArrayList<>();

    @BeforeAll
    static void setUp() {
        tiny = TinyModel.open(temp);
        context = tiny.context;
        file = tiny.file;
        model = tiny.model;
        prompts.addAll(TinyModel.prompts(PROMPTS, 5));
        expected.addAll(tiny.greedy(prompts, MAX_TOKENS));
    }

    @AfterAll
    static void tearDown() {
        tiny.close();
    }

    private static void checkPolicy(Supplier<DraftPolicy> policy, int maxTreeNodes, boolean adaptive, int batch) {
        try (DecodeLoop engine = new DecodeLoop(model, maxTreeNodes, adaptive)) {
            for (int start = 0; start < PROMPTS; start += batch) {
                List<DecodeLoop.Request> requests = new ArrayList<>();
                List<KvCache> caches = new ArrayList<>();
                for (int p = start; p < Math.min(PROMPTS, start + batch); p++) {
                    KvCache kv = model.newKvCache(512);
                    caches.add(kv);
                    requests.add(new DecodeLoop.Request(kv, prompts.get(p), MAX_TOKENS, SamplingOptions.GREEDY,
                            policy.get(), t -> false, t -> true, () -> false));
                }
                List<DecodeLoop.Result> results = engine.generateBatch(requests);
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
             DecodeLoop engine = new DecodeLoop(model, 81, false)) {
            RecyclingPolicy policy = new RecyclingPolicy(recycler, Recycler.Template.defaultTemplate());
            SpecStats total = new SpecStats();
            for (int p = 0; p < 10; p++) {
                try (KvCache kv = model.newKvCache(512)) {
                    total.add(engine.generate(new DecodeLoop.Request(kv, prompts.get(p), MAX_TOKENS, SamplingOptions.GREEDY,
                            policy, t -> false, t -> true, () -> false)).stats());
                }
            }
            assertTrue(total.meanAccepted() > 1.2, "mean accepted tokens per step " + total.meanAccepted());
        }
    }
}
