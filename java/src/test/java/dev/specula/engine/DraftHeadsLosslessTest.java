package dev.specula.engine;

import static org.junit.jupiter.api.Assertions.*;

import dev.specula.StopReason;
import dev.specula.model.DraftHeadsFile;
import dev.specula.model.HeadsFixture;
import dev.specula.nativeapi.KvCache;
import dev.specula.nativeapi.NativeHeads;
import dev.specula.nativeapi.NativeModel;
import dev.specula.policies.DraftHeadsPolicy;
import dev.specula.sampling.SamplingOptions;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Draft heads on a random target with random heads: greedy output equals plain greedy output token for token, for
 * Medusa and Hydra heads (with their own projections and on the target's LM head), alone and batched, with fixed
 * and adaptive trees.
 */
class DraftHeadsLosslessTest {
    static final int PROMPTS = 24;
    static final int MAX_TOKENS = 32;

    @TempDir
    static Path temp;
    static TinyModel tiny;
    static NativeModel model;
    static final List<int[]> prompts = new ArrayList<>();
    static final List<int[]> expected = new ArrayList<>();

    @BeforeAll
    static void setUp() {
        tiny = TinyModel.open(temp);
        model = tiny.model;
        prompts.addAll(TinyModel.prompts(PROMPTS, 11));
        expected.addAll(tiny.greedy(prompts, MAX_TOKENS));
    }

    @AfterAll
    static void tearDown() {
        tiny.close();
    }

    private static void checkHeads(HeadsFixture fixture, DraftHeadsFile.Layout layout, String dir) {
        int e = model.shape().nEmbd(), v = model.shape().nVocab();
        try (DraftHeadsFile file = DraftHeadsFile.open(fixture.write(temp.resolve(dir)), layout, e, v);
             NativeHeads heads = file.load(model)) {
            var factory = DraftHeadsPolicy.factory(layout.cliName(), heads);
            for (int[] run : new int[][] {{DraftHeadsPolicy.LARGEST_TREE, 0, 1}, {DraftHeadsPolicy.LARGEST_TREE, 1, 5}, {3, 0, 3}}) {
                SpecStats stats = new SpecStats();
                try (DecodeLoop loop = new DecodeLoop(model, run[0], run[1] == 1)) {
                    for (int start = 0; start < PROMPTS; start += run[2]) {
                        List<DecodeLoop.Request> requests = new ArrayList<>();
                        List<KvCache> caches = new ArrayList<>();
                        List<DraftHeadsPolicy> policies = new ArrayList<>();
                        for (int p = start; p < Math.min(PROMPTS, start + run[2]); p++) {
                            KvCache kv = model.newKvCache(TinyModel.CONTEXT);
                            DraftHeadsPolicy policy = factory.get();
                            caches.add(kv);
                            policies.add(policy);
                            requests.add(new DecodeLoop.Request(kv, prompts.get(p), MAX_TOKENS, SamplingOptions.GREEDY, policy,
                                    t -> false, t -> true, () -> false));
                        }
                        List<DecodeLoop.Result> results = loop.generateBatch(requests);
                        for (int i = 0; i < results.size(); i++) {
                            assertArrayEquals(expected.get(start + i), results.get(i).tokens(),
                                    "prompt " + (start + i) + " with " + layout.cliName() + " heads, trees of " + run[0] + ", batch " + run[2]);
                            assertEquals(StopReason.MAX_TOKENS, results.get(i).reason());
                            stats.add(results.get(i).stats());
                        }
                        // after a step the policy has a hidden state and drafts a real tree (on a fixed budget: an
                        // adaptive one may have held it plain throughout, the steps skipped, which timing decides)
                        int[] prompt = prompts.get(start);
                        if (run[1] == 0) assertTrue(policies.get(0).propose(prompt, prompt.length, run[0]).size() > 1, "the heads drafted nothing");
                        caches.forEach(KvCache::close);
                        policies.forEach(DraftHeadsPolicy::close);
                    }
                }
                System.out.printf("%s heads (%s), trees of %d, batch %d: %.2f tokens per step%n", layout.cliName(), dir, run[0], run[2],
                        stats.meanAccepted());
            }
        }
    }

    @Test
    void theEngineBudgetsAndServesBothHeadTypesFromOneFolder() {
        int e = model.shape().nEmbd(), v = model.shape().nVocab();
        Path heads = temp.resolve("engine-heads");
        HeadsFixture.medusa(3, 1, e, v, false, "F16", 41).write(heads.resolve("medusa"));
        HeadsFixture.hydra(3, 1, e, v, false, "F16", 42).write(heads.resolve("hydra"));
        var builder = dev.specula.SpeculaEngine.builder().model(tiny.file.path()).heads(heads).contextLength(256).batch(2);
        var plan = builder.drafter(dev.specula.Drafter.HYDRA).plan().budget();
        assertTrue(plan.items().stream().anyMatch(i -> i.component().startsWith("hydra heads weights")), plan.table());
        assertTrue(plan.items().stream().anyMatch(i -> i.component().startsWith("final hidden states (2 x")), plan.table());
        try (var engine = builder.build()) {
            for (String prompt : List.of("the cat", "int x = 1;", "public static void main")) {
                int[] want = null;
                for (var d : List.of(dev.specula.Drafter.NONE, dev.specula.Drafter.MEDUSA, dev.specula.Drafter.HYDRA)) {
                    var r = engine.generate(dev.specula.GenerationRequest.builder(prompt).maxTokens(MAX_TOKENS).drafter(d).build(),
                            t -> {}, () -> false);
                    if (want == null) want = r.tokens();
                    else assertArrayEquals(want, r.tokens(), d + " through the engine, prompt " + prompt);
                }
            }
        }
        var missing = assertThrows(IllegalArgumentException.class,
                () -> dev.specula.SpeculaEngine.builder().model(tiny.file.path()).drafter(dev.specula.Drafter.MEDUSA).plan());
        assertTrue(missing.getMessage().contains("--heads"), missing.getMessage());
    }

    @Test
    void medusaHeadsAreLossless() {
        int e = model.shape().nEmbd(), v = model.shape().nVocab();
        checkHeads(HeadsFixture.medusa(3, 1, e, v, true, "F32", 21), DraftHeadsFile.Layout.MEDUSA, "medusa-own");
        checkHeads(HeadsFixture.medusa(2, 2, e, v, false, "F16", 22), DraftHeadsFile.Layout.MEDUSA, "medusa-lm-head");
    }

    @Test
    void hydraHeadsAreLossless() {
        int e = model.shape().nEmbd(), v = model.shape().nVocab();
        checkHeads(HeadsFixture.hydra(3, 1, e, v, true, "F32", 23), DraftHeadsFile.Layout.HYDRA, "hydra-own");
        checkHeads(HeadsFixture.hydra(4, 2, e, v, false, "BF16", 24), DraftHeadsFile.Layout.HYDRA, "hydra-lm-head");
    }
}
