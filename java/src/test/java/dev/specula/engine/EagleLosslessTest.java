package dev.specula.engine;

import static org.junit.jupiter.api.Assertions.*;

import dev.specula.Drafter;
import dev.specula.GenerationRequest;
import dev.specula.SpeculaEngine;
import dev.specula.StopReason;
import dev.specula.model.EagleFixture;
import dev.specula.model.EagleLayerFile;
import dev.specula.nativeapi.DType;
import dev.specula.nativeapi.DeviceBuffer;
import dev.specula.nativeapi.ForwardArgs;
import dev.specula.nativeapi.KvCache;
import dev.specula.nativeapi.LogitsSummary;
import dev.specula.nativeapi.NativeModel;
import dev.specula.nativeapi.SpeculaException;
import dev.specula.policies.EagleDraftPolicy;
import dev.specula.sampling.SamplingOptions;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * An EAGLE layer on a random target with random weights: greedy output equals plain greedy output token for token,
 * alone and batched, with fixed and adaptive trees and through the engine; the layer's forward is the same whether its
 * rows run at once, in pieces with commits, or as a tree; and the ABI refuses what it must.
 */
class EagleLosslessTest {
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

    static NativeModel loadLayer(EagleLayerFile file) {
        return file.load(model.context(), tiny.file.weights(), DType.F32);
    }

    private static void checkLayer(EagleFixture fixture, String dir) {
        try (EagleLayerFile file = EagleLayerFile.open(fixture.write(temp.resolve(dir)), model.shape()); NativeModel layer = loadLayer(file)) {
            // {tree nodes, adaptive budget, batch, expand every node}. The adaptive budget decides from measured step times
            // whether to draft at all (a batch of 24 on a loaded machine may rightly decode plainly), so only its output is
            // checked; drafting itself is required where the budget is off. A random layer's candidates are rarely likely
            // enough to pass the default expansion floor, so two runs expand every beam node (deep trees, many extensions).
            for (int[] run : new int[][] {{EagleDraftPolicy.LARGEST_TREE, 0, 1, 0}, {EagleDraftPolicy.LARGEST_TREE, 0, 1, 1}, {EagleDraftPolicy.LARGEST_TREE, 1, 5, 0},
                    {3, 0, 3, 0}, {9, 0, 8, 1}, {9, 1, 24, 0}}) {
                var factory = EagleDraftPolicy.factory("eagle", layer, TinyModel.CONTEXT, run[3] == 1 ? 0 : EagleDraftPolicy.MIN_EXPAND_SCORE);
                SpecStats stats = new SpecStats();
                long drafted = 0;
                try (DecodeLoop loop = new DecodeLoop(model, run[0], run[1] == 1)) {
                    for (int start = 0; start < PROMPTS; start += run[2]) {
                        List<DecodeLoop.Request> requests = new ArrayList<>();
                        List<KvCache> caches = new ArrayList<>();
                        List<EagleDraftPolicy> policies = new ArrayList<>();
                        List<Counting> counted = new ArrayList<>();
                        for (int p = start; p < Math.min(PROMPTS, start + run[2]); p++) {
                            KvCache kv = model.newKvCache(TinyModel.CONTEXT);
                            EagleDraftPolicy policy = factory.get();
                            caches.add(kv);
                            policies.add(policy);
                            Counting counting = new Counting(policy);
                            counted.add(counting);
                            requests.add(new DecodeLoop.Request(kv, prompts.get(p), MAX_TOKENS, SamplingOptions.GREEDY, counting,
                                    t -> false, t -> true, () -> false));
                        }
                        List<DecodeLoop.Result> results = loop.generateBatch(requests);
                        for (int i = 0; i < results.size(); i++) {
                            assertArrayEquals(expected.get(start + i), results.get(i).tokens(),
                                    "prompt " + (start + i) + " with an EAGLE layer (" + dir + "), trees of " + run[0] + ", batch " + run[2]);
                            assertEquals(StopReason.MAX_TOKENS, results.get(i).reason());
                            stats.add(results.get(i).stats());
                        }
                        for (Counting c : counted) drafted += c.drafted;
                        caches.forEach(KvCache::close);
                        policies.forEach(EagleDraftPolicy::close);
                    }
                }
                if (run[1] == 0) assertTrue(drafted > 0, "the layer drafted nothing (" + dir + ", trees of " + run[0] + ", batch " + run[2] + ")");
                System.out.printf("eagle (%s), trees of %d, batch %d%s: %.2f tokens per step%n", dir, run[0], run[2], run[3] == 1 ? ", every node expanded" : "",
                        stats.meanAccepted());
            }
        }
    }

    /** A policy counting the drafted nodes it proposes, else its delegate. */
    static class Counting implements DraftPolicy {
        final DraftPolicy p;
        long drafted;

        Counting(DraftPolicy p) {
            this.p = p;
        }

        public String name() {
            return p.name();
        }

        public DraftTree propose(int[] history, int length, int maxTreeNodes) {
            DraftTree t = p.propose(history, length, maxTreeNodes);
            drafted += t.size() - 1;
            return t;
        }

        public boolean readsFinalHidden() {
            return p.readsFinalHidden();
        }

        public void observeFinalHidden(DeviceBuffer rows, long offset) {
            p.observeFinalHidden(rows, offset);
        }

        public void observeFinalHiddenPath(DeviceBuffer rows, long treeOffset, int[] path) {
            p.observeFinalHiddenPath(rows, treeOffset, path);
        }

        public boolean readsPromptHidden() {
            return p.readsPromptHidden();
        }

        public void prefillFinalHidden(int[] prompt, int length, DeviceBuffer rows) {
            p.prefillFinalHidden(prompt, length, rows);
        }

        public void observe(DraftTree tree, dev.specula.nativeapi.VerifyResult result) {
            p.observe(tree, result);
        }
    }

    /**
     * A request that joins a running loop (the engine's scheduler path) still gives the layer the prompt's features:
     * chunked prefill keeps no hidden states, so such a policy's prompt goes in at once, and its output stays greedy.
     */
    @Test
    void aJoinedRequestGivesTheLayerThePromptsFeatures() {
        EagleFixture fixture = EagleFixture.forModel(tiny.file.path(), "F32", 63);
        try (EagleLayerFile file = EagleLayerFile.open(fixture.write(temp.resolve("eagle-joined")), model.shape());
                NativeModel layer = loadLayer(file);
                // A fixed budget: an adaptive one decides from measured step times whether the layer drafts at all.
                DecodeLoop loop = new DecodeLoop(model, EagleDraftPolicy.LARGEST_TREE, false)) {
            var factory = EagleDraftPolicy.factory("eagle", layer, TinyModel.CONTEXT);
            int[] prompt = prompts.get(3);
            int[] promptFeatures = {-1};
            try (KvCache kv = model.newKvCache(TinyModel.CONTEXT); EagleDraftPolicy policy = factory.get()) {
                Counting recording = new Counting(policy) {
                    @Override
                    public void prefillFinalHidden(int[] p, int length, DeviceBuffer rows) {
                        promptFeatures[0] = length;
                        super.prefillFinalHidden(p, length, rows);
                    }
                };
                var s = loop.join(new DecodeLoop.Request(kv, prompt, MAX_TOKENS, SamplingOptions.GREEDY, recording,
                        t -> false, t -> true, () -> false), null);
                while (s.refresh()) loop.step(List.of(s), StepPlanner.NONE, 4);
                assertEquals(prompt.length, promptFeatures[0], "the layer was given the prompt's features");
                assertArrayEquals(expected.get(3), s.result().tokens(), "joined, with an EAGLE layer");
                assertTrue(recording.drafted > 0, "the layer drafted");
            }
        }
    }

    /**
     * Held to plain decoding for longer than the rows it keeps, the layer gives up its cache instead of running every
     * committed token through it; when drafting resumes, the first step drafts from the rows kept (in step with the
     * sequence: no start-over), and the output stays greedy. The stretch ends at each of as many lengths as there are
     * steps between two give-ups, so one of them resumes right after one.
     */
    @Test
    void aLayerHeldPlainKeepsOnlyRecentRowsAndDraftsAtOnceWhenItResumes() {
        int plainFrom = 8, rows = EagleDraftPolicy.HELD_PLAIN_ROWS;
        int[] prompt = prompts.get(5);
        int[] want = tiny.greedy(List.of(prompt), plainFrom + 3 * rows + 8).get(0);
        EagleFixture fixture = EagleFixture.forModel(tiny.file.path(), "F32", 64);
        try (EagleLayerFile file = EagleLayerFile.open(fixture.write(temp.resolve("eagle-held")), model.shape());
                NativeModel layer = loadLayer(file);
                DecodeLoop loop = new DecodeLoop(model, 9, false)) {
            for (int plainTo = plainFrom + 2 * rows; plainTo <= plainFrom + 3 * rows; plainTo++) {
                int end = plainTo;
                try (KvCache kv = model.newKvCache(TinyModel.CONTEXT);
                        EagleDraftPolicy policy = EagleDraftPolicy.factory("eagle", layer, TinyModel.CONTEXT).get()) {
                    int[] firstAfter = {-1};
                    Counting heldPlain = new Counting(policy) {
                        @Override
                        public DraftTree propose(int[] history, int length, int maxTreeNodes) {
                            int generated = length - prompt.length;
                            boolean held = generated >= plainFrom && generated < end;
                            DraftTree t = super.propose(history, length, held ? 1 : maxTreeNodes);
                            if (generated >= end && firstAfter[0] < 0) firstAfter[0] = t.size();
                            return t;
                        }
                    };
                    var results = loop.generateBatch(List.of(new DecodeLoop.Request(kv, prompt, end + 8, SamplingOptions.GREEDY, heldPlain,
                            t -> false, t -> true, () -> false)));
                    assertArrayEquals(Arrays.copyOf(want, end + 8), results.get(0).tokens(), "held plain up to token " + end + ", with an EAGLE layer");
                    assertTrue(firstAfter[0] > 1, "the first step after a plain stretch up to token " + end + " drafted: " + firstAfter[0] + " nodes");
                }
            }
        }
    }

    @Test
    void randomLayersAreLossless() {
        checkLayer(EagleFixture.forModel(tiny.file.path(), "F32", 61), "eagle-f32");
        checkLayer(EagleFixture.forModel(tiny.file.path(), "F16", 62), "eagle-f16");
    }

    /** f32 rows [rows][n] of a buffer. */
    static float[] read(DeviceBuffer b, long offset, int floats) {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment m = a.allocate((long) floats * 4);
            b.copyToHost(offset, m, 0, (long) floats * 4);
            return m.toArray(ValueLayout.JAVA_FLOAT);
        }
    }

    @Test
    void theLayersRowsAreTheSameAtOnceInPiecesAndInATree() {
        int e = model.shape().nEmbd(), v = model.shape().nVocab(), n = 20;
        try (EagleLayerFile file = EagleLayerFile.open(EagleFixture.forModel(tiny.file.path(), "F32", 63).write(temp.resolve("pieces")), model.shape());
             NativeModel layer = loadLayer(file);
             KvCache targetKv = model.newKvCache(64); KvCache a = layer.newKvCache(64); KvCache b = layer.newKvCache(64);
             DeviceBuffer features = model.context().allocate((long) n * e * 4);
             DeviceBuffer outA = model.context().allocate((long) n * e * 4); DeviceBuffer outB = model.context().allocate((long) n * e * 4);
             DeviceBuffer logitsA = model.context().allocate((long) n * v * 4); DeviceBuffer logitsB = model.context().allocate((long) n * v * 4)) {
            int[] tokens = prompts.get(3).length >= n + 1 ? prompts.get(3) : expected.get(3);
            int[] seq = new int[n + 1];
            for (int i = 0; i <= n; i++) seq[i] = i < prompts.get(3).length ? prompts.get(3)[i] : expected.get(3)[i - prompts.get(3).length];
            model.forward(targetKv, new ForwardArgs(java.util.Arrays.copyOf(seq, n), null, null, ForwardArgs.LogitsMode.NONE, null, 0, null, null,
                    false, 0).withFinalHidden(features, 0));
            int[] rowTokens = java.util.Arrays.copyOfRange(seq, 1, n + 1);
            // all at once
            layer.eagleForward(a, ForwardArgs.chainAll(rowTokens, logitsA).withFinalHidden(outA, 0), features, 0, null);
            // 8 rows committed, then a tree whose branch 0 -> 2 -> 3 -> ... continues the chain, features by row index
            layer.eagleForward(b, new ForwardArgs(java.util.Arrays.copyOf(rowTokens, 8), null, null, ForwardArgs.LogitsMode.NONE, null, 0, null,
                    null, false, 0), features, 0, null);
            b.commitChain(8);
            int m = n - 8;
            int[] treeTokens = new int[m + 1], parents = new int[m + 1], fRows = new int[m + 1];
            treeTokens[0] = rowTokens[8];
            parents[0] = -1;
            fRows[0] = 8;
            treeTokens[1] = (rowTokens[9] + 7) % v; // a sibling branch that must not disturb the chain
            parents[1] = -1;
            fRows[1] = 3;
            for (int j = 2; j <= m; j++) {
                treeTokens[j] = rowTokens[7 + j];
                parents[j] = j == 2 ? 0 : j - 1;
                fRows[j] = 7 + j;
            }
            layer.eagleForward(b, ForwardArgs.tree(treeTokens, parents, logitsB).withFinalHidden(outB, 0), features, 0, fRows);
            float[] la = read(logitsA, 0, n * v), lb = read(logitsB, 0, (m + 1) * v);
            float[] oa = read(outA, 0, n * e), ob = read(outB, 0, (m + 1) * e);
            for (int j = 0; j <= m; j++) {
                if (j == 1) continue;
                int row = j == 0 ? 8 : 7 + j;
                for (int k = 0; k < v; k++) assertEquals(la[row * v + k], lb[j * v + k], 0f, "logit " + k + " of row " + row);
                for (int k = 0; k < e; k++) assertEquals(oa[row * e + k], ob[j * e + k], 0f, "output " + k + " of row " + row);
            }
            assertNotNull(tokens);

            // ABI 0.10: the same tree grown one call per depth (eagleExtend), each row run once: the same numbers bit
            // for bit; then the chain's first three rows are accepted (the sibling and the deeper rows rejected) and
            // the next rows, run over what was kept, equal the all-at-once rows too
            try (KvCache c = layer.newKvCache(64)) {
                layer.eagleForward(c, new ForwardArgs(java.util.Arrays.copyOf(rowTokens, 8), null, null, ForwardArgs.LogitsMode.NONE, null, 0,
                        null, null, false, 0), features, 0, null);
                c.commitChain(8);
                for (int j = 0; j <= m; j = j == 0 ? 2 : j + 1) {
                    int[] callTokens = j == 0 ? new int[] {treeTokens[0], treeTokens[1]} : new int[] {treeTokens[j]};
                    int[] callParents = j == 0 ? new int[] {-1, -1} : new int[] {parents[j]};
                    int[] callRows = j == 0 ? new int[] {fRows[0], fRows[1]} : new int[] {fRows[j]};
                    layer.eagleExtend(c, ForwardArgs.tree(callTokens, callParents, logitsB).withFinalHidden(outB, 0), features, 0, callRows);
                    int row = j == 0 ? 8 : 7 + j;
                    float[] lc = read(logitsB, 0, v), oc = read(outB, 0, e);
                    for (int k = 0; k < v; k++) assertEquals(la[row * v + k], lc[k], 0f, "extended: logit " + k + " of row " + row);
                    for (int k = 0; k < e; k++) assertEquals(oa[row * e + k], oc[k], 0f, "extended: output " + k + " of row " + row);
                }
                c.commit(new int[] {0, 2, 3});
                assertEquals(11, c.length());
                int[] next = java.util.Arrays.copyOfRange(rowTokens, 11, 14);
                layer.eagleForward(c, ForwardArgs.chainAll(next, logitsB).withFinalHidden(outB, 0), features, 11L * e * 4, null);
                float[] lc = read(logitsB, 0, 3 * v), oc = read(outB, 0, 3 * e);
                for (int k = 0; k < 3 * v; k++) assertEquals(la[11 * v + k], lc[k], 0f, "after the commit: logit " + k);
                for (int k = 0; k < 3 * e; k++) assertEquals(oa[11 * e + k], oc[k], 0f, "after the commit: output " + k);
                var bad = assertThrows(SpeculaException.class, () -> layer.eagleExtend(c, ForwardArgs.tree(new int[] {1}, new int[] {3}, logitsB),
                        features, 0, new int[] {0}));
                assertTrue(bad.getMessage().contains("earlier pending token"), bad.getMessage());
            }
        }
    }

    /** ABI 0.11: an extension that summarizes its rows gives the rows of a plain extension and their LogitsSummary, id for id. */
    @Test
    void theSummarizingExtensionGivesTheTopKOfItsLogits() {
        int e = model.shape().nEmbd(), v = model.shape().nVocab(), n = 12;
        try (EagleLayerFile file = EagleLayerFile.open(EagleFixture.forModel(tiny.file.path(), "F32", 65).write(temp.resolve("fused")), model.shape());
             NativeModel layer = loadLayer(file);
             KvCache targetKv = model.newKvCache(64); KvCache plain = layer.newKvCache(64); KvCache fused = layer.newKvCache(64);
             DeviceBuffer features = model.context().allocate((long) n * e * 4); DeviceBuffer out = model.context().allocate(4L * e * 4);
             DeviceBuffer logitsPlain = model.context().allocate(4L * v * 4); DeviceBuffer logitsFused = model.context().allocate(4L * v * 4)) {
            int[] seq = new int[n];
            for (int i = 0; i < n; i++) seq[i] = i < prompts.get(2).length ? prompts.get(2)[i] : expected.get(2)[i - prompts.get(2).length];
            model.forward(targetKv, new ForwardArgs(java.util.Arrays.copyOf(seq, n), null, null, ForwardArgs.LogitsMode.NONE, null, 0, null, null,
                    false, 0).withFinalHidden(features, 0));
            int[] chain = java.util.Arrays.copyOfRange(seq, 1, 7);
            for (KvCache c : new KvCache[] {plain, fused}) {
                layer.eagleForward(c, new ForwardArgs(chain, null, null, ForwardArgs.LogitsMode.NONE, null, 0, null, null, false, 0), features, 0, null);
                c.commitChain(chain.length);
            }
            // three depths: 3 roots, 2 children of roots 0 and 2, a grandchild; features by row index as a drafter's
            int[][] tokens = {{seq[7], seq[8], seq[9]}, {seq[10], seq[11]}, {seq[3]}};
            int[][] parents = {{-1, -1, -1}, {0, 2}, {3}};
            int[][] rows = {{6, 7, 8}, {9, 10}, {11}};
            for (int d = 0; d < 3; d++) {
                if (d == 1) { // a refusal runs nothing: the tree grows on as if it had not been made
                    int dd = d;
                    var bad = assertThrows(SpeculaException.class, () -> layer.eagleExtendSummarized(fused, ForwardArgs.tree(tokens[dd], parents[dd], logitsFused),
                            features, 0, rows[dd], 0));
                    assertTrue(bad.getMessage().contains("k = 0"), bad.getMessage());
                    var notAll = assertThrows(SpeculaException.class, () -> layer.eagleExtendSummarized(fused, new ForwardArgs(tokens[dd], parents[dd], null,
                            ForwardArgs.LogitsMode.LAST, logitsFused, 0, null, null, false, 0), features, 0, rows[dd], 8));
                    assertTrue(notAll.getMessage().contains("SPEC_LOGITS_ALL"), notAll.getMessage());
                }
                int r = tokens[d].length;
                layer.eagleExtend(plain, ForwardArgs.tree(tokens[d], parents[d], logitsPlain).withFinalHidden(out, 0), features, 0, rows[d]);
                float[] outPlain = read(out, 0, r * e);
                LogitsSummary[] got = layer.eagleExtendSummarized(fused, ForwardArgs.tree(tokens[d], parents[d], logitsFused).withFinalHidden(out, 0), features, 0,
                        rows[d], 8);
                assertArrayEquals(read(logitsPlain, 0, r * v), read(logitsFused, 0, r * v), 0f, "depth " + d + ": the logits rows");
                assertArrayEquals(outPlain, read(out, 0, r * e), 0f, "depth " + d + ": the predicted features");
                LogitsSummary[] want = LogitsSummary.summarize(logitsPlain, 0, r, v, v, 8);
                assertEquals(r, got.length);
                for (int j = 0; j < r; j++) {
                    assertArrayEquals(want[j].top(), got[j].top(), "depth " + d + ", row " + j + ": the top ids");
                    assertArrayEquals(want[j].prob(), got[j].prob(), 0f, "depth " + d + ", row " + j + ": their probabilities");
                    assertEquals(want[j].entropy(), got[j].entropy(), 0f);
                }
            }
        }
    }

    @Test
    void theAbiRefusesWhatItMust() {
        int e = model.shape().nEmbd();
        try (EagleLayerFile file = EagleLayerFile.open(EagleFixture.forModel(tiny.file.path(), "F32", 64).write(temp.resolve("abi")), model.shape());
             NativeModel layer = loadLayer(file); KvCache kv = layer.newKvCache(16); KvCache targetKv = model.newKvCache(16);
             DeviceBuffer features = model.context().allocate(4L * e * 4); DeviceBuffer out = model.context().allocate(4L * e * 4)) {
            var plain = assertThrows(SpeculaException.class, () -> layer.forward(kv, ForwardArgs.chainLast(new int[] {1, 2}, out)));
            assertTrue(plain.getMessage().contains("spec_eagle_forward"), plain.getMessage());
            var notEagle = assertThrows(SpeculaException.class, () -> model.eagleForward(targetKv,
                    new ForwardArgs(new int[] {1}, null, null, ForwardArgs.LogitsMode.NONE, null, 0, null, null, false, 0), features, 0, null));
            assertTrue(notEagle.getMessage().contains("not an EAGLE layer"), notEagle.getMessage());
            ForwardArgs two = new ForwardArgs(new int[] {1, 2}, null, null, ForwardArgs.LogitsMode.NONE, null, 0, null, null, false, 0);
            var past = assertThrows(SpeculaException.class, () -> layer.eagleForward(kv, two, features, 0, new int[] {0, 4}));
            assertTrue(past.getMessage().contains("runs past the features buffer"), past.getMessage());
            var negative = assertThrows(SpeculaException.class, () -> layer.eagleForward(kv, two, features, 0, new int[] {-1, 0}));
            assertTrue(negative.getMessage().contains("negative"), negative.getMessage());
            var overlap = assertThrows(SpeculaException.class, () -> layer.eagleForward(kv, two.withFinalHidden(features, 2L * e * 4), features, 0,
                    new int[] {0, 2}));
            assertTrue(overlap.getMessage().contains("overlaps"), overlap.getMessage());
            layer.eagleForward(kv, two.withFinalHidden(features, 2L * e * 4), features, 0, new int[] {0, 1}); // beside it: fine
            var finished = assertThrows(SpeculaException.class, () -> layer.makeEagle(true));
            assertTrue(finished.getMessage().contains("finalized"), finished.getMessage());
        }
        // a layer missing its fc cannot be finished
        NativeModel bare = NativeModel.create(model.context(), EagleLayerFile.open(temp.resolve("abi"), model.shape()).config(), DType.F32);
        try (bare) {
            bare.makeEagle(false);
            var missing = assertThrows(SpeculaException.class, bare::finish);
            assertTrue(missing.getMessage().contains("missing weight"), missing.getMessage());
        }
    }

    @Test
    void theEngineBudgetsAndServesTheLayer() {
        Path heads = temp.resolve("engine-heads");
        EagleFixture.forModel(tiny.file.path(), "F16", 65).write(heads.resolve(EagleLayerFile.FOLDER));
        var builder = SpeculaEngine.builder().model(tiny.file.path()).heads(heads).contextLength(256).batch(2);
        var plan = builder.drafter(Drafter.EAGLE).plan().budget();
        assertTrue(plan.items().stream().anyMatch(i -> i.component().startsWith("final hidden states (2 x")), plan.table());
        assertTrue(plan.table().toLowerCase(java.util.Locale.ROOT).contains("eagle"), plan.table());
        try (var engine = builder.build()) {
            for (String prompt : List.of("the cat", "int x = 1;", "public static void main")) {
                int[] want = null;
                for (var d : List.of(Drafter.NONE, Drafter.EAGLE)) {
                    var r = engine.generate(GenerationRequest.builder(prompt).maxTokens(MAX_TOKENS).drafter(d).build(), t -> {}, () -> false);
                    if (want == null) want = r.tokens();
                    else assertArrayEquals(want, r.tokens(), d + " through the engine, prompt " + prompt);
                }
            }
        }
        var missing = assertThrows(IllegalArgumentException.class,
                () -> SpeculaEngine.builder().model(tiny.file.path()).drafter(Drafter.EAGLE).plan());
        assertTrue(missing.getMessage().contains("--heads"), missing.getMessage());
    }
}
