package dev.specula.policies;

import static org.junit.jupiter.api.Assertions.*;

import dev.specula.engine.SpecStats;
import dev.specula.model.TestModelMaker;
import dev.specula.nativeapi.NativeModel;
import dev.specula.tokenizer.Tokenizer;
import dev.specula.tokenizer.VocabTrainer;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.SplittableRandom;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** Draft-model speculation (SpS) is lossless, accepts almost everything when draft = target, and learns its length. */
class DraftModelPolicyTest {
    @TempDir
    static Path temp;
    static PolicyFixture fx;
    static NativeModel small;
    static Tokenizer smallTokenizer;
    static NativeModel truncated;

    @BeforeAll
    static void setUp() {
        fx = new PolicyFixture(temp, 4, 24);
        // A smaller, independent random model with the same tokenizer metadata: it agrees with the target by chance only.
        small = fx.model(temp.resolve("draft.gguf"), new TestModelMaker().arch("llama").dim(32).layers(1).heads(2).kvHeads(1).ff(64).seed(11));
        smallTokenizer = fx.tokenizer(1);
        // The maker seeds each tensor by the model seed and the tensor's name, so the target's seed with fewer layers
        // gives the target's first layers and head: a smaller draft that agrees with the target part of the time.
        truncated = fx.model(temp.resolve("truncated.gguf"), new TestModelMaker().arch("llama").dim(64).layers(2).heads(4).kvHeads(2).ff(160).seed(3));
    }

    @AfterAll
    static void tearDown() {
        fx.close();
    }

    @Test
    void smallDraftModelIsLossless() {
        var fixed = DraftModelPolicy.factory(fx.target, fx.tokenizer, small, smallTokenizer, DraftModelPolicy.Options.fixed(4, PolicyFixture.CONTEXT));
        SpecStats s = fx.checkLossless(fixed, 16, false);
        System.out.println("draft model (small, chain of 4): " + PolicyFixture.describe(s));
        assertTrue(s.maxDepthReached() >= 1, "nothing was drafted");

        var tree = DraftModelPolicy.factory(fx.target, fx.tokenizer, small, smallTokenizer,
                DraftModelPolicy.Options.fixed(4, PolicyFixture.CONTEXT).withBranchDepth(2));
        System.out.println("draft model (small, top-2 tree): " + PolicyFixture.describe(fx.checkLossless(tree, 16, false)));

        AcceptancePredictor predictor = new AcceptancePredictor();
        // A random model's distributions are flat (top-1 probability around 0.02), so no confidence floor here.
        var adaptive = DraftModelPolicy.factory(fx.target, fx.tokenizer, small, smallTokenizer,
                DraftModelPolicy.Options.adaptive(predictor, PolicyFixture.CONTEXT).withMinConfidence(0f));
        SpecStats a = fx.checkLossless(adaptive, 16, false);
        System.out.println("draft model (small, SpecDec++): " + PolicyFixture.describe(a) + "; " + predictor);
        assertTrue(a.maxDepthReached() >= 1, "nothing was drafted");
        assertTrue(predictor.updates() > 0, "the predictor never learned");
    }

    @Test
    void aCorrelatedSmallerDraftIsLosslessAndGetsAccepted() {
        Tokenizer t = fx.tokenizer(2);
        SpecStats fixed = fx.checkLossless(DraftModelPolicy.factory(fx.target, fx.tokenizer, truncated, t,
                DraftModelPolicy.Options.fixed(4, PolicyFixture.CONTEXT)), 16, false);
        System.out.println("draft model (first 2 of 4 layers, chain of 4): " + PolicyFixture.describe(fixed));
        SpecStats tree = fx.checkLossless(DraftModelPolicy.factory(fx.target, fx.tokenizer, truncated, t,
                DraftModelPolicy.Options.fixed(4, PolicyFixture.CONTEXT).withBranchDepth(2)), 16, false);
        System.out.println("draft model (first 2 of 4 layers, top-2 tree): " + PolicyFixture.describe(tree));
        AcceptancePredictor predictor = new AcceptancePredictor();
        SpecStats adaptive = fx.checkLossless(DraftModelPolicy.factory(fx.target, fx.tokenizer, truncated, t,
                DraftModelPolicy.Options.adaptive(predictor, PolicyFixture.CONTEXT).withMinConfidence(0f)), 16, false);
        System.out.println("draft model (first 2 of 4 layers, SpecDec++): " + PolicyFixture.describe(adaptive) + "; " + predictor);
        assertTrue(fixed.acceptanceAtDepth(1) > 0.05, "acceptance at depth 1 " + fixed.acceptanceAtDepth(1));
        assertTrue(tree.meanAccepted() >= fixed.meanAccepted(), "the top-2 siblings can only add accepted tokens");
    }

    @Test
    void targetAsItsOwnDraftAcceptsNearlyEverything() {
        var same = DraftModelPolicy.factory(fx.target, fx.tokenizer, fx.target, fx.tokenizer, DraftModelPolicy.Options.fixed(4, PolicyFixture.CONTEXT));
        SpecStats s = fx.checkLossless(same, 16, false);
        System.out.println("draft model (= target, chain of 4): " + PolicyFixture.describe(s));
        assertTrue(s.meanAccepted() > 2, "mean accepted tokens per step " + s.meanAccepted());
        assertTrue(s.acceptanceAtDepth(1) > 0.9, "acceptance at depth 1 " + s.acceptanceAtDepth(1));
    }

    @Test
    void predictorLearnsTheAcceptanceOfTheRealPair() {
        // Draft = target: every token is accepted, so predictions must rise from a cautious start (0.27) toward 1.
        AcceptancePredictor predictor = new AcceptancePredictor(new double[] {-1, 0, 0, 0, 0}, 0.05);
        // A typical drafted token of this random model: flat distribution, top-1 probability a few percent.
        double[] x = AcceptancePredictor.features(0.03, 0.95 * Math.log(PolicyFixture.VOCAB), PolicyFixture.VOCAB, 0.02, 2);
        double before = predictor.predict(x);
        var same = DraftModelPolicy.factory(fx.target, fx.tokenizer, fx.target, fx.tokenizer,
                DraftModelPolicy.Options.adaptive(predictor, PolicyFixture.CONTEXT).withMinConfidence(0f));
        SpecStats s = fx.checkLossless(same, 16, false);
        double after = predictor.predict(x);
        System.out.printf("predictor on draft = target: %.3f -> %.3f after %d updates; %s%n", before, after, predictor.updates(), PolicyFixture.describe(s));
        assertTrue(after > 0.9, "prediction moved from " + before + " to " + after);
        // Learning lengthened the drafts: a second pass over the prompts starts from the learned predictor.
        SpecStats again = fx.checkLossless(same, 16, false);
        System.out.println("second pass: " + PolicyFixture.describe(again));
        assertTrue(again.meanAccepted() > 2, "mean accepted " + again.meanAccepted());
    }

    @Test
    void predictorConvergesToTheObservedRateAndRoundTrips(@TempDir Path dir) throws Exception {
        // Tokens accepted with probability 0.3 whatever their features: the mean prediction must approach 0.3.
        AcceptancePredictor p = new AcceptancePredictor();
        SplittableRandom rng = new SplittableRandom(1);
        List<double[]> xs = new ArrayList<>();
        for (int i = 0; i < 200; i++) xs.add(AcceptancePredictor.features(rng.nextDouble(), rng.nextDouble() * 3, 320, 0, 1 + rng.nextInt(6)));
        double before = mean(p, xs);
        for (int i = 0; i < 20000; i++) p.learn(xs.get(rng.nextInt(xs.size())), rng.nextDouble() < 0.3);
        double after = mean(p, xs);
        System.out.printf("predictor on a constant 0.3 rate: mean prediction %.3f -> %.3f%n", before, after);
        assertTrue(Math.abs(after - 0.3) < 0.05, "mean prediction " + after);
        assertTrue(Math.abs(after - 0.3) < Math.abs(before - 0.3));

        // learnChain: accepted tokens teach 1, the first rejected one 0, the unreached ones nothing.
        AcceptancePredictor q = new AcceptancePredictor();
        q.learnChain(xs.subList(0, 5), 2);
        assertEquals(3, q.updates());

        Path file = dir.resolve("predictor.txt");
        p.save(file);
        AcceptancePredictor loaded = AcceptancePredictor.load(file);
        assertArrayEquals(p.weights(), loaded.weights());
        assertEquals(p.updates(), loaded.updates());
        assertEquals(p.learningRate(), loaded.learningRate());
        assertEquals(p.predict(xs.get(0)), loaded.predict(xs.get(0)));

        java.nio.file.Files.writeString(file, "something else\n");
        assertThrows(java.io.IOException.class, () -> AcceptancePredictor.load(file));
    }

    private static double mean(AcceptancePredictor p, List<double[]> xs) {
        return xs.stream().mapToDouble(p::predict).average().orElseThrow();
    }

    @Test
    void aDifferentTokenizerIsRefused() {
        Tokenizer bigger = Tokenizer.fromGgufMetadata(VocabTrainer.ggufMetadata("llama", PolicyFixture.VOCAB + 10, 3));
        var e = assertThrows(IllegalArgumentException.class, () -> new DraftModelPolicy(fx.target, fx.tokenizer, small, bigger,
                DraftModelPolicy.Options.fixed(4, PolicyFixture.CONTEXT)));
        assertTrue(e.getMessage().contains("330") && e.getMessage().contains("320"), e.getMessage());

        Tokenizer gpt2 = Tokenizer.fromGgufMetadata(VocabTrainer.ggufMetadata("gpt2", PolicyFixture.VOCAB, 3));
        var e2 = assertThrows(IllegalArgumentException.class, () -> DraftModelPolicy.factory(fx.target, fx.tokenizer, small, gpt2,
                DraftModelPolicy.Options.fixed(4, PolicyFixture.CONTEXT)));
        int first = 0;
        while (fx.tokenizer.tokenText(first).equals(gpt2.tokenText(first))) first++;
        assertTrue(e2.getMessage().contains("at token " + first + ":"), e2.getMessage());
        System.out.println("mismatch messages: " + e.getMessage() + " | " + e2.getMessage());
    }

    @Test
    void aPromptJoiningARunningLoopFillsTheDraftCacheInTheTargetsChunksAndGivesTheSameTokens() {
        // Regression: a joined request's prompt went into the target's cache a chunk per step, but into the draft
        // model's cache in one call at the end, stalling the batch for the whole prompt's draft forward.
        SplittableRandom rng = new SplittableRandom(21);
        int[] prompt = new int[300];
        prompt[0] = 1;
        for (int i = 1; i < prompt.length; i++) prompt[i] = 3 + rng.nextInt(PolicyFixture.VOCAB - 3);
        int maxTokens = 24, stepTokens = 16;
        int[] plain = dev.specula.engine.ReferenceDecoder.generate(fx.target, PolicyFixture.CONTEXT, prompt, maxTokens,
                dev.specula.sampling.SamplingOptions.GREEDY);
        var policies = DraftModelPolicy.factory(fx.target, fx.tokenizer, truncated, fx.tokenizer(2),
                DraftModelPolicy.Options.fixed(4, PolicyFixture.CONTEXT));
        try (dev.specula.engine.DecodeLoop loop = new dev.specula.engine.DecodeLoop(fx.target, 8, false)) {
            // Alone: the prompt goes into both caches in one call each.
            try (DraftModelPolicy policy = policies.get(); dev.specula.nativeapi.KvCache kv = fx.target.newKvCache(PolicyFixture.CONTEXT)) {
                int[] alone = loop.generate(new dev.specula.engine.DecodeLoop.Request(kv, prompt, maxTokens,
                        dev.specula.sampling.SamplingOptions.GREEDY, policy, t -> false, t -> true, () -> false)).tokens();
                assertArrayEquals(plain, alone, "alone");
            }
            // Joined: steps of at most 16 rows prefill the target's cache, and the draft cache follows chunk by chunk.
            try (DraftModelPolicy inner = policies.get(); dev.specula.nativeapi.KvCache kv = fx.target.newKvCache(PolicyFixture.CONTEXT)) {
                List<int[]> chunks = new ArrayList<>();
                int[] atPrefill = {-1};
                dev.specula.engine.DraftPolicy recording = new dev.specula.engine.DraftPolicy() {
                    @Override
                    public String name() {
                        return inner.name();
                    }

                    @Override
                    public dev.specula.engine.DraftTree propose(int[] history, int length, int maxTreeNodes) {
                        return inner.propose(history, length, maxTreeNodes);
                    }

                    @Override
                    public void observe(dev.specula.engine.DraftTree tree, dev.specula.nativeapi.VerifyResult result) {
                        inner.observe(tree, result);
                    }

                    @Override
                    public void prefillChunk(int[] p, int from, int to) {
                        inner.prefillChunk(p, from, to);
                        chunks.add(new int[] {from, to});
                        assertEquals(to, inner.draftCacheLength(), "the draft cache holds the prompt up to the target's chunk");
                    }

                    @Override
                    public void prefill(int[] p, int length) {
                        atPrefill[0] = inner.draftCacheLength();
                        inner.prefill(p, length);
                    }
                };
                var s = loop.join(new dev.specula.engine.DecodeLoop.Request(kv, prompt, maxTokens, dev.specula.sampling.SamplingOptions.GREEDY,
                        recording, t -> false, t -> true, () -> false), null);
                while (s.refresh()) loop.step(List.of(s), dev.specula.engine.StepPlanner.NONE, stepTokens);
                assertArrayEquals(plain, s.result().tokens(), "joined, prefilled in chunks");
                assertTrue(s.result().stats().maxDepthReached() >= 1, "the draft model drafted");
                assertEquals((prompt.length - 1 + stepTokens - 1) / stepTokens, chunks.size(), "one chunk per step");
                int next = 0;
                for (int[] c : chunks) {
                    assertEquals(next, c[0], "chunks follow each other");
                    assertTrue(c[1] - c[0] >= 1 && c[1] - c[0] <= stepTokens, (c[1] - c[0]) + " tokens in a chunk");
                    next = c[1];
                }
                assertEquals(prompt.length - 1, next, "every prompt token but the first root");
                assertEquals(prompt.length - 1, atPrefill[0], "prefill found the draft cache already full");
            }
        }
    }
}
