package dev.specula.engine;

import static org.junit.jupiter.api.Assertions.*;

import dev.specula.model.ModelFile;
import dev.specula.model.ModelWeights;
import dev.specula.model.gguf.GgmlQuant;
import dev.specula.model.gguf.GgufTensor;
import dev.specula.nativeapi.Context;
import dev.specula.nativeapi.DeviceBuffer;
import dev.specula.nativeapi.KvCache;
import dev.specula.nativeapi.NativeModel;
import dev.specula.nativeapi.SamplingParams;
import dev.specula.nativeapi.TreeVerifier;
import dev.specula.nativeapi.VerifyResult;
import dev.specula.policies.PromptLookupPolicy;
import dev.specula.sampling.PredicateFilter;
import dev.specula.sampling.RelaxedVerifier;
import dev.specula.sampling.SamplingOptions;
import dev.specula.sampling.TokenNeighbours;
import dev.specula.sampling.VerifyMode;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.SplittableRandom;
import java.util.function.Supplier;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The LOSSY relaxed modes, checked step by step on the engine's own trees and logits: typical acceptance
 * accepts at least what greedy does and only tokens meeting its criterion; LANTERN's substitutions are
 * neighbours of the greedy token within the TV budget; LANTERN with delta 0 is exactly greedy.
 */
class RelaxedVerificationTest {
    static final int VOCAB = TinyModel.VOCAB;
    static final int PROMPTS = 20;
    static final int MAX_TOKENS = 32;
    static final int MAX_NODES = 81;

    @TempDir
    static Path temp;
    static TinyModel tiny;
    static Context context;
    static ModelFile file;
    static NativeModel model;
    static float[][] embeddings;
    static final List<int[]> prompts = new ArrayList<>();
    static final List<int[]> greedy = new ArrayList<>();

    @BeforeAll
    static void setUp() {
        tiny = TinyModel.open(temp);
        context = tiny.context;
        file = tiny.file;
        model = tiny.model;
        GgufTensor t = file.gguf().orElseThrow().tensor(ModelWeights.GGUF_TOKEN_EMBD);
        float[] flat = GgmlQuant.decode(t);
        int dim = (int) t.cols();
        embeddings = new float[(int) t.rows()][];
        for (int r = 0; r < embeddings.length; r++) embeddings[r] = Arrays.copyOfRange(flat, r * dim, (r + 1) * dim);
        prompts.addAll(TinyModel.prompts(PROMPTS, 17));
        greedy.addAll(tiny.greedy(prompts, MAX_TOKENS));
    }

    @AfterAll
    static void tearDown() {
        tiny.close();
    }

    /** One verified step: the tree, the relaxed result, the target's rows and native greedy's result on them. */
    record Step(DraftTree tree, VerifyResult result, float[][] rows, VerifyResult greedy) {}

    /**
     * Proposes wide random trees (width random children of the root, each with one random child) and records
     * every step's verification with the logits it was made on. Batch 1 only.
     */
    static final class RecordingRandomPolicy implements DraftPolicy {
        final SplittableRandom rng;
        final int width;
        final List<Step> steps = new ArrayList<>();
        DraftTree tree;
        VerifyResult result;

        RecordingRandomPolicy(long seed, int width) {
            rng = new SplittableRandom(seed);
            this.width = width;
        }

        @Override
        public String name() {
            return "random-tree";
        }

        @Override
        public DraftTree propose(int[] history, int length, int maxTreeNodes) {
            int w = Math.min(width, (maxTreeNodes - 1) / 2);
            int[] tokens = new int[1 + 2 * w], parents = new int[1 + 2 * w];
            float[] probs = new float[tokens.length];
            Arrays.fill(probs, 1f);
            tokens[0] = history[length - 1];
            parents[0] = -1;
            for (int i = 1; i <= w; i++) {
                tokens[i] = rng.nextInt(VOCAB);
                tokens[w + i] = rng.nextInt(VOCAB);
                parents[w + i] = i;
            }
            return new DraftTree(tokens, parents, probs);
        }

        @Override
        public void observe(DraftTree t, VerifyResult r) {
            tree = t;
            result = r;
        }

        @Override
        public void observeBatch(DraftTree[] trees, DeviceBuffer logits, int maxTreeNodes) {
            int n = tree.size();
            float[][] rows = new float[n][VOCAB];
            try (Arena arena = Arena.ofConfined()) {
                MemorySegment host = arena.allocate((long) n * VOCAB * 4);
                logits.copyToHost(0, host, 0, host.byteSize());
                for (int i = 0; i < n; i++) MemorySegment.copy(host, ValueLayout.JAVA_FLOAT, (long) i * VOCAB * 4, rows[i], 0, VOCAB);
            }
            VerifyResult[] g = TreeVerifier.verify(context, maxTreeNodes, VOCAB, new int[][] {tree.tokens()}, new int[][] {tree.parents()},
                    new SamplingParams[] {SamplingParams.GREEDY}, logits, null, 0);
            steps.add(new Step(tree, result, rows, g[0]));
        }
    }

    static List<DecodeLoop.Result> run(Supplier<DraftPolicy> policy, RelaxedVerifier relaxed) {
        List<DecodeLoop.Result> out = new ArrayList<>();
        try (DecodeLoop engine = new DecodeLoop(model, MAX_NODES, false)) {
            for (int[] prompt : prompts) {
                try (KvCache kv = model.newKvCache(512)) {
                    out.add(engine.generate(new DecodeLoop.Request(kv, prompt, MAX_TOKENS, SamplingOptions.GREEDY,
                            policy.get(), t -> false, t -> true, () -> false).withRelaxedVerifier(relaxed)));
                }
            }
        }
        return out;
    }

    static double[] probabilities(float[] row) {
        double max = Double.NEGATIVE_INFINITY;
        for (float v : row) max = Math.max(max, v);
        double[] p = new double[row.length];
        double sum = 0;
        for (int i = 0; i < row.length; i++) sum += p[i] = Math.exp(row[i] - max);
        for (int i = 0; i < row.length; i++) p[i] /= sum;
        return p;
    }

    static int argmax(float[] row) {
        int best = 0;
        for (int i = 1; i < row.length; i++) if (row[i] > row[best]) best = i;
        return best;
    }

    /** The k nearest tokens by cosine, brute force, independent of TokenNeighbours. */
    static List<Integer> nearest(int token, int k) {
        Integer[] order = new Integer[VOCAB];
        double[] sim = new double[VOCAB];
        for (int t = 0; t < VOCAB; t++) {
            order[t] = t;
            double dot = 0, na = 0, nb = 0;
            for (int i = 0; i < embeddings[t].length; i++) {
                dot += (double) embeddings[t][i] * embeddings[token][i];
                na += (double) embeddings[t][i] * embeddings[t][i];
                nb += (double) embeddings[token][i] * embeddings[token][i];
            }
            sim[t] = t == token ? Double.NEGATIVE_INFINITY : dot / Math.sqrt(na * nb);
        }
        Arrays.sort(order, (a, b) -> sim[a] != sim[b] ? Double.compare(sim[b], sim[a]) : Integer.compare(a, b));
        return Arrays.asList(order).subList(0, k);
    }

    static void checkCommonShape(Step s) {
        VerifyResult r = s.result();
        assertEquals(r.nAccepted() + 1, r.path().length);
        assertEquals(0, r.path()[0]);
        for (int i = 1; i < r.path().length; i++) assertEquals(r.path()[i - 1], s.tree().parents()[r.path()[i]]);
        assertEquals(r.path()[r.nAccepted()], r.lastNode());
        assertEquals(argmax(s.rows()[r.lastNode()]), r.bonusToken(), "greedy bonus");
        assertEquals(s.tree().size(), r.depthFlags().length);
        for (int d = 1; d <= r.nAccepted(); d++) assertEquals(1, r.depthFlags()[d]);
    }

    @Test
    void typicalAcceptsAtLeastGreedyAndOnlyTypicalTokens() {
        RecordingRandomPolicy policy = new RecordingRandomPolicy(1, 40);
        RelaxedVerifier typical = RelaxedVerifier.typical();
        run(() -> policy, typical);
        long relaxed = 0, exact = 0;
        for (Step s : policy.steps) {
            checkCommonShape(s);
            VerifyResult r = s.result();
            assertTrue(r.nAccepted() >= s.greedy().nAccepted(), "typical accepted fewer tokens than greedy on the same tree");
            for (int i = 1; i <= r.nAccepted(); i++) {
                double[] p = probabilities(s.rows()[r.path()[i - 1]]);
                double h = 0;
                for (double v : p) if (v > 0) h -= v * Math.log(v);
                double threshold = Math.min(0.09, 0.3 * Math.exp(-h));
                int x = s.tree().tokens()[r.path()[i]];
                assertTrue(p[x] > threshold, "accepted token " + x + " has p " + p[x] + " <= threshold " + threshold);
            }
            relaxed += r.nAccepted();
            exact += s.greedy().nAccepted();
        }
        assertTrue(policy.steps.size() >= PROMPTS);
        assertTrue(relaxed > exact, "typical acceptance accepted " + relaxed + " tokens, greedy " + exact);

        // End to end with a real drafter: at least as many tokens per step on average as greedy verification.
        SpecStats t = new SpecStats(), g = new SpecStats();
        run(PromptLookupPolicy::new, typical).forEach(res -> t.add(res.stats()));
        run(PromptLookupPolicy::new, null).forEach(res -> g.add(res.stats()));
        assertTrue(t.meanAccepted() >= g.meanAccepted(), "typical " + t.meanAccepted() + " < greedy " + g.meanAccepted());
    }

    @Test
    void lanternSubstitutesOnlyNeighboursWithinTheTvBudget() {
        double delta = 0.1;
        int k = 8;
        RecordingRandomPolicy policy = new RecordingRandomPolicy(2, 40);
        RelaxedVerifier lantern = RelaxedVerifier.lantern(new TokenNeighbours(embeddings, k), delta);
        run(() -> policy, lantern);
        int substitutions = 0;
        for (Step s : policy.steps) {
            checkCommonShape(s);
            VerifyResult r = s.result();
            assertTrue(r.nAccepted() >= s.greedy().nAccepted());
            for (int i = 1; i <= r.nAccepted(); i++) {
                float[] row = s.rows()[r.path()[i - 1]];
                double[] p = probabilities(row);
                int y = argmax(row), x = s.tree().tokens()[r.path()[i]];
                if (x == y) continue;
                substitutions++;
                assertTrue(nearest(y, k).contains(x), x + " is not among the " + k + " neighbours of " + y);
                // The emitted point mass at x is the greedy choice of p with x and y exchanged; its TV distance to p:
                double[] swapped = p.clone();
                swapped[x] = p[y];
                swapped[y] = p[x];
                double tv = 0;
                for (int j = 0; j < p.length; j++) tv += Math.abs(p[j] - swapped[j]);
                tv /= 2;
                assertTrue(tv <= delta + 1e-12, "step moved " + tv + " > delta " + delta);
                assertEquals(p[y] - p[x], tv, 1e-12);
                assertEquals(x, argmax(toFloat(swapped)), "x is the mode of the swapped distribution");
            }
        }
        assertTrue(substitutions > 0, "no LANTERN substitution happened; the test proves nothing");
    }

    static float[] toFloat(double[] d) {
        float[] f = new float[d.length];
        for (int i = 0; i < d.length; i++) f[i] = (float) d[i];
        return f;
    }

    @Test
    void lanternWithZeroDeltaIsExactlyGreedy() {
        RelaxedVerifier lantern = RelaxedVerifier.lantern(new TokenNeighbours(embeddings, 8), 0);
        RecordingRandomPolicy policy = new RecordingRandomPolicy(3, 40);
        List<DecodeLoop.Result> random = run(() -> policy, lantern);
        List<DecodeLoop.Result> pld = run(PromptLookupPolicy::new, lantern);
        for (int p = 0; p < PROMPTS; p++) {
            assertArrayEquals(greedy.get(p), random.get(p).tokens(), "prompt " + p + " (random trees)");
            assertArrayEquals(greedy.get(p), pld.get(p).tokens(), "prompt " + p + " (prompt lookup)");
        }
        // One batch mixing relaxed (host) and lossless (native) verification, with a filter on some requests.
        try (DecodeLoop engine = new DecodeLoop(model, MAX_NODES, false)) {
            List<KvCache> caches = new ArrayList<>();
            List<DecodeLoop.Request> requests = new ArrayList<>();
            for (int p = 0; p < PROMPTS; p++) {
                KvCache kv = model.newKvCache(512);
                caches.add(kv);
                var r = new DecodeLoop.Request(kv, prompts.get(p), MAX_TOKENS, SamplingOptions.GREEDY,
                        new PromptLookupPolicy(), t -> false, t -> true, () -> false);
                if (p % 2 == 0) r = r.withRelaxedVerifier(lantern);
                if (p % 3 == 0) r = r.withFilters(List.of(PredicateFilter.ofTokens(t -> true)));
                requests.add(r);
            }
            List<DecodeLoop.Result> batch = engine.generateBatch(requests);
            for (int p = 0; p < PROMPTS; p++) assertArrayEquals(greedy.get(p), batch.get(p).tokens(), "prompt " + p + " (mixed batch)");
            caches.forEach(KvCache::close);
        }
        for (Step s : policy.steps) {
            assertArrayEquals(s.greedy().path(), s.result().path());
            assertEquals(s.greedy().bonusToken(), s.result().bonusToken());
            assertArrayEquals(s.greedy().depthFlags(), s.result().depthFlags());
        }
    }

    @Test
    void neighboursOfASmallMatrix() {
        float[][] m = {{1, 0}, {0.9f, 0.1f}, {0, 1}, {-1, 0}, {0.7f, 0.7f}};
        TokenNeighbours nb = new TokenNeighbours(m, 2);
        assertArrayEquals(new int[] {1, 4}, nb.of(0));
        assertArrayEquals(new int[] {4, 1}, nb.of(2));
        assertTrue(nb.contains(0, 1));
        assertFalse(nb.contains(0, 3));
        assertFalse(nb.contains(0, 0));
    }

    @Test
    void relaxedModesNeedGreedySampling() {
        try (KvCache kv = model.newKvCache(64)) {
            var request = new DecodeLoop.Request(kv, new int[] {1, 2}, 4, SamplingOptions.sampled(1f, 1),
                    new PromptLookupPolicy(), t -> false, t -> true, () -> false);
            assertEquals(VerifyMode.SAMPLE, request.verifyMode());
            assertThrows(IllegalArgumentException.class, () -> request.withRelaxedVerifier(RelaxedVerifier.typical()));
            var greedyRequest = new DecodeLoop.Request(kv, new int[] {1, 2}, 4, SamplingOptions.GREEDY,
                    new PromptLookupPolicy(), t -> false, t -> true, () -> false);
            assertEquals(VerifyMode.TYPICAL, greedyRequest.withRelaxedVerifier(RelaxedVerifier.typical()).verifyMode());
            assertTrue(VerifyMode.TYPICAL.lossy() && VerifyMode.LANTERN.lossy() && !VerifyMode.GREEDY.lossy());
        }
    }
}
