package dev.specula.engine;

import static org.junit.jupiter.api.Assertions.*;

import dev.specula.model.ModelFile;
import dev.specula.model.NativeModels;
import dev.specula.model.TestModelMaker;
import dev.specula.model.gguf.GgmlType;
import dev.specula.nativeapi.Context;
import dev.specula.nativeapi.DType;
import dev.specula.nativeapi.KvCache;
import dev.specula.nativeapi.NativeModel;
import dev.specula.nativeapi.Recycler;
import dev.specula.policies.DraftModelPolicy;
import dev.specula.policies.EarlyExitPolicy;
import dev.specula.policies.PromptLookupPolicy;
import dev.specula.policies.RecyclingPolicy;
import dev.specula.sampling.SamplingOptions;
import dev.specula.tokenizer.VocabTrainer;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.TreeSet;
import java.util.function.Supplier;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Speculative sampling draws from exactly the distribution of plain sampling. Plain and speculative decoding
 * use their random numbers differently, so only distributions can be compared: the first three generated
 * tokens over many seeds, per position and as (first, second) pairs, by a chi-square test of homogeneity
 * at a fixed seed set. A deliberately different sampler must fail the same test, so the test has teeth.
 */
class SamplingLosslessTest {
    static final int VOCAB = 300; // about the smallest llama-style vocabulary VocabTrainer makes
    static final int RUNS = 3000;
    static final int TOKENS = 3;
    static final SamplingOptions SAMPLING = SamplingOptions.sampled(0.9f, 0).withTopK(20);
    /** Chi-square critical values are taken at this level: a fixed seed set makes the outcome deterministic. */
    static final double Z_ALPHA = 3.0902; // upper 0.001 point of the standard normal

    // A phrase repeated three times: prompt lookup finds continuations to propose.
    static final int[] PROMPT = {1, 17, 42, 99, 250, 17, 42, 99, 250, 17, 42};

    @TempDir
    static Path temp;
    static Context context;
    static ModelFile file;
    static NativeModel model;
    static int[][] plain;

    @BeforeAll
    static void setUp() {
        context = Context.cpu();
        Path path = temp.resolve("sampling.gguf");
        new TestModelMaker().arch("llama").dim(32).layers(1).heads(2).kvHeads(1).ff(64).vocab(VOCAB).context(64)
                .type(GgmlType.F32).seed(21).tokenizer(VocabTrainer.ggufMetadata("llama", VOCAB, 21)).write(path);
        file = ModelFile.open(path);
        model = NativeModels.load(context, file, DType.F32);
        plain = plainRuns(SAMPLING, 0);
    }

    @AfterAll
    static void tearDown() {
        model.close();
        file.close();
        context.close();
    }

    private static int[][] plainRuns(SamplingOptions sampling, long seedBase) {
        int[][] out = new int[RUNS][];
        for (int r = 0; r < RUNS; r++) {
            out[r] = ReferenceDecoder.generate(model, 64, PROMPT, TOKENS, sampling.withSeed(seedBase + r));
            assertEquals(TOKENS, out[r].length);
        }
        return out;
    }

    /** Runs the speculative engine RUNS times; returns the outputs and fills stats. */
    private static int[][] speculativeRuns(Supplier<DraftPolicy> policy, int maxTreeNodes, long seedBase, SpecStats stats) {
        int[][] out = new int[RUNS][];
        try (DecodeLoop engine = new DecodeLoop(model, maxTreeNodes, false); KvCache kv = model.newKvCache(64)) {
            for (int r = 0; r < RUNS; r++) {
                kv.truncate(0);
                DraftPolicy p = policy.get();
                DecodeLoop.Result res = engine.generate(new DecodeLoop.Request(kv, PROMPT, TOKENS,
                        SAMPLING.withSeed(seedBase + r), p, t -> false, t -> true, () -> false));
                if (p instanceof EarlyExitPolicy e) e.close();
                if (p instanceof DraftModelPolicy d) d.close();
                out[r] = res.tokens();
                assertEquals(TOKENS, out[r].length);
                stats.add(res.stats());
            }
        }
        return out;
    }

    @Test
    void promptLookupSamplesLikePlainSampling() {
        SpecStats stats = new SpecStats();
        int[][] spec = speculativeRuns(PromptLookupPolicy::new, 16, 1_000_000, stats);
        report("prompt lookup", stats);
        assertTrue(acceptedDrafts(stats) > 100, "too few drafts were accepted to test anything: " + acceptedDrafts(stats));
        assertSameDistribution(plain, spec, true, "prompt lookup");
    }

    @Test
    void tokenRecyclingSamplesLikePlainSampling() {
        try (Recycler recycler = Recycler.create(context, VOCAB, Recycler.DEFAULT_K, Recycler.Fill.ZERO)) {
            RecyclingPolicy shared = new RecyclingPolicy(recycler, Recycler.Template.defaultTemplate());
            SpecStats stats = new SpecStats();
            int[][] spec = speculativeRuns(() -> shared, 81, 2_000_000, stats);
            report("token recycling", stats);
            assertTrue(acceptedDrafts(stats) > 100, "too few drafts were accepted to test anything: " + acceptedDrafts(stats));
            assertSameDistribution(plain, spec, true, "token recycling");
        }
    }

    @Test
    void draftModelSamplesLikePlainSampling() {
        // The target as its own draft model: its argmax chains are accepted with the target's probability of them.
        var tokenizer = dev.specula.tokenizer.Tokenizer.fromGgufMetadata(file.gguf().orElseThrow().metadata());
        var factory = DraftModelPolicy.factory(model, tokenizer, model, tokenizer, DraftModelPolicy.Options.fixed(3, 64));
        SpecStats stats = new SpecStats();
        int[][] spec = speculativeRuns(factory::get, 8, 5_000_000, stats);
        report("draft model (= target)", stats);
        assertTrue(acceptedDrafts(stats) > 100, "too few drafts were accepted to test anything: " + acceptedDrafts(stats));
        assertSameDistribution(plain, spec, true, "draft model");
    }

    @Test
    void earlyExitSamplesLikePlainSampling() {
        // Exit after the model's only layer: the full model drafts greedy chains through the early-exit path.
        var factory = EarlyExitPolicy.factory(model, EarlyExitPolicy.Options.fixed(1, 3, 64));
        SpecStats stats = new SpecStats();
        int[][] spec = speculativeRuns(factory::get, 8, 6_000_000, stats);
        report("early exit (layer 1 of 1)", stats);
        assertTrue(acceptedDrafts(stats) > 100, "too few drafts were accepted to test anything: " + acceptedDrafts(stats));
        assertSameDistribution(plain, spec, true, "early exit");
    }

    /** Heads of a layout written into the temp folder, over this model (blocks random, projection the target's LM head). */
    private static void headsSampleLikePlainSampling(dev.specula.model.HeadsFixture fixture, dev.specula.model.DraftHeadsFile.Layout layout,
                                                     long seedBase) {
        int e = model.shape().nEmbd(), v = model.shape().nVocab();
        try (var heads = dev.specula.model.DraftHeadsFile.open(fixture.write(temp.resolve(layout.cliName())), layout, e, v);
             var loaded = heads.load(model)) {
            var factory = dev.specula.policies.DraftHeadsPolicy.factory(layout.cliName(), loaded);
            SpecStats stats = new SpecStats();
            List<dev.specula.policies.DraftHeadsPolicy> made = new ArrayList<>();
            int[][] spec = speculativeRuns(() -> {
                var p = factory.get();
                made.add(p);
                return p;
            }, dev.specula.policies.DraftHeadsPolicy.LARGEST_TREE, seedBase, stats);
            made.forEach(dev.specula.policies.DraftHeadsPolicy::close);
            report(layout.cliName() + " heads", stats);
            assertTrue(acceptedDrafts(stats) > 100, "too few drafts were accepted to test anything: " + acceptedDrafts(stats));
            assertSameDistribution(plain, spec, true, layout.cliName() + " heads");
        }
    }

    @Test
    void medusaHeadsSampleLikePlainSampling() {
        int e = model.shape().nEmbd(), v = model.shape().nVocab();
        headsSampleLikePlainSampling(dev.specula.model.HeadsFixture.medusa(3, 1, e, v, false, "F32", 31),
                dev.specula.model.DraftHeadsFile.Layout.MEDUSA, 7_000_000);
    }

    @Test
    void hydraHeadsSampleLikePlainSampling() {
        int e = model.shape().nEmbd(), v = model.shape().nVocab();
        headsSampleLikePlainSampling(dev.specula.model.HeadsFixture.hydra(3, 1, e, v, false, "F32", 32),
                dev.specula.model.DraftHeadsFile.Layout.HYDRA, 8_000_000);
    }

    @Test
    void eagleLayerSamplesLikePlainSampling() {
        // a random EAGLE-1 layer over this model's embedding and LM head, its own KV cache per run
        var fixture = dev.specula.model.EagleFixture.forModel(file.path(), "F32", 33);
        try (var layerFile = dev.specula.model.EagleLayerFile.open(fixture.write(temp.resolve("eagle")), model.shape());
             var layer = layerFile.load(context, file.weights(), DType.F32)) {
            var factory = dev.specula.policies.EagleDraftPolicy.factory("eagle", layer, 64);
            SpecStats stats = new SpecStats();
            List<dev.specula.policies.EagleDraftPolicy> made = new ArrayList<>();
            int[][] spec = speculativeRuns(() -> {
                var p = factory.get();
                made.add(p);
                return p;
            }, dev.specula.policies.EagleDraftPolicy.LARGEST_TREE, 9_000_000, stats);
            made.forEach(dev.specula.policies.EagleDraftPolicy::close);
            report("eagle layer", stats);
            assertTrue(acceptedDrafts(stats) > 100, "too few drafts were accepted to test anything: " + acceptedDrafts(stats));
            assertSameDistribution(plain, spec, true, "eagle layer");
        }
    }

    @Test
    void theTestTellsDifferentSamplersApart() {
        // Temperature 1.2 instead of 0.9: a real but modest change the test must catch.
        int[][] hotter = plainRuns(SamplingOptions.sampled(1.2f, 0).withTopK(20), 3_000_000);
        assertFalse(assertSameDistribution(plain, hotter, false, "temperature 1.2 against 0.9"),
                "the chi-square test did not notice a different temperature");
        // And plain against plain with other seeds passes.
        assertTrue(assertSameDistribution(plain, plainRuns(SAMPLING, 4_000_000), false, "plain against plain"));
    }

    private static long acceptedDrafts(SpecStats s) {
        long[] h = s.acceptedLengthHistogram();
        long n = 0;
        for (int i = 1; i < h.length; i++) n += i * h[i];
        return n;
    }

    private static void report(String label, SpecStats s) {
        System.out.printf(Locale.ROOT, "%s: %d runs, %d steps, %d accepted drafts, mean accepted %.3f, acceptance at depth 1 %.3f%n",
                label, RUNS, s.steps(), acceptedDrafts(s), s.meanAccepted(), s.acceptanceAtDepth(1));
    }

    /**
     * Chi-square homogeneity tests of a against b: each position's token, and (first, second) pairs. Returns
     * whether all pass; with fail, asserts it.
     */
    private static boolean assertSameDistribution(int[][] a, int[][] b, boolean fail, String label) {
        boolean all = true;
        for (int pos = 0; pos < TOKENS; pos++) {
            int p = pos;
            all &= chiSquare(a, b, t -> String.valueOf(t[p]), fail, label + ", token " + (pos + 1));
        }
        all &= chiSquare(a, b, t -> t[0] + "," + t[1], fail, label + ", tokens 1 and 2");
        return all;
    }

    /** Categories with fewer than MIN_COUNT draws in both samples together are pooled into one. */
    static final int MIN_COUNT = 20;

    private static boolean chiSquare(int[][] a, int[][] b, java.util.function.Function<int[], String> category, boolean fail, String label) {
        Map<String, long[]> counts = new HashMap<>();
        for (int[] t : a) counts.computeIfAbsent(category.apply(t), k -> new long[2])[0]++;
        for (int[] t : b) counts.computeIfAbsent(category.apply(t), k -> new long[2])[1]++;
        List<long[]> cells = new ArrayList<>();
        long[] pooled = new long[2];
        for (String k : new TreeSet<>(counts.keySet())) {
            long[] c = counts.get(k);
            if (c[0] + c[1] >= MIN_COUNT) cells.add(c);
            else {
                pooled[0] += c[0];
                pooled[1] += c[1];
            }
        }
        if (pooled[0] + pooled[1] > 0) cells.add(pooled);
        double na = a.length, nb = b.length, n = na + nb;
        double x2 = 0;
        for (long[] c : cells) {
            double total = c[0] + c[1];
            double ea = na * total / n, eb = nb * total / n;
            x2 += (c[0] - ea) * (c[0] - ea) / ea + (c[1] - eb) * (c[1] - eb) / eb;
        }
        int df = cells.size() - 1;
        double critical = df < 1 ? Double.POSITIVE_INFINITY : wilsonHilferty(df, Z_ALPHA);
        boolean pass = x2 <= critical;
        System.out.printf(Locale.ROOT, "  %s: chi-square %.3f, %d categories (df %d), critical %.1f at 0.001: %s%n",
                label, x2, cells.size(), df, critical, pass ? "same" : "DIFFERENT");
        if (fail) assertTrue(pass, label + ": chi-square " + x2 + " above " + critical + " with " + df + " degrees of freedom");
        return pass;
    }

    /** The chi-square quantile with df degrees of freedom at upper-tail normal point z (Wilson-Hilferty). */
    static double wilsonHilferty(int df, double z) {
        double h = 2.0 / (9 * df);
        double c = 1 - h + z * Math.sqrt(h);
        return df * c * c * c;
    }
}
