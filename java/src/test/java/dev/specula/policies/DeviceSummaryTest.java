package dev.specula.policies;

import static org.junit.jupiter.api.Assertions.*;

import com.google.gson.Gson;
import com.google.gson.JsonObject;
import dev.specula.engine.DecodeLoop;
import dev.specula.engine.DraftPolicy;
import dev.specula.engine.ReferenceDecoder;
import dev.specula.engine.SpecStats;
import dev.specula.model.LoadedModel;
import dev.specula.model.TestModelMaker;
import dev.specula.nativeapi.Context;
import dev.specula.nativeapi.DType;
import dev.specula.nativeapi.DeviceBuffer;
import dev.specula.nativeapi.KvCache;
import dev.specula.nativeapi.LogitsSummary;
import dev.specula.nativeapi.NativeModel;
import dev.specula.nativeapi.SpeculaException;
import dev.specula.nativeapi.Status;
import dev.specula.oracle.LlamaCppOracle;
import dev.specula.sampling.SamplingOptions;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.SplittableRandom;
import java.util.function.Function;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Drafters reading their logits as device summaries (spec_logits_summarize; forced here on the cpu backend,
 * where the host path is otherwise taken) draft exactly what the host path drafts: the same greedy output and
 * the same speculation statistics, for the draft-model and early-exit policies on a random model and on the
 * demo models. Summaries equal {@link TopTokens#of(float[], int)} on random rows, and bad arguments come back
 * as SpeculaException with the native message.
 */
class DeviceSummaryTest {
    @TempDir
    static Path temp;
    static PolicyFixture fx;
    static NativeModel small;

    @BeforeAll
    static void setUp() {
        fx = new PolicyFixture(temp, 4, 6);
        small = fx.model(temp.resolve("draft.gguf"), new TestModelMaker().arch("llama").dim(32).layers(1).heads(2).kvHeads(1).ff(64).seed(11));
    }

    @AfterAll
    static void tearDown() {
        fx.close();
    }

    @Test
    void summariesEqualTheHostReadingOfRandomRows() {
        SplittableRandom rng = new SplittableRandom(17);
        int rows = 9, stride = 700, limit = 650;
        float[] data = new float[rows * stride + 5];
        for (int i = 0; i < data.length; i++) {
            // Rows 0-2 of few values (ties), the others continuous; some NaN and -inf; 1e9 past the limit.
            int r = Math.max(0, (i - 5) / stride);
            data[i] = r < 3 ? (rng.nextInt(12) - 6) * 0.5f : (float) (rng.nextGaussian() * 3);
            if (rng.nextInt(60) == 0) data[i] = Float.NaN;
            if (rng.nextInt(90) == 0) data[i] = Float.NEGATIVE_INFINITY;
        }
        for (int r = 0; r < rows; r++) for (int i = limit; i < stride; i++) data[5 + r * stride + i] = 1e9f;
        for (int i = 0; i < limit; i++) data[5 + 3 * stride + i] = Float.NaN; // a row of only NaN
        data[5 + 4 * stride + 10] = Float.POSITIVE_INFINITY;                // two +inf share the mass
        data[5 + 4 * stride + 99] = Float.POSITIVE_INFINITY;
        try (DeviceBuffer buf = fx.context.allocate((long) data.length * Float.BYTES); Arena arena = Arena.ofConfined()) {
            buf.copyFromHost(arena.allocateFrom(ValueLayout.JAVA_FLOAT, data), 0, 0, buf.size());
            LogitsSummary[] all = LogitsSummary.summarize(buf, 5L * Float.BYTES, rows, stride, limit, LogitsSummary.MAX_K);
            for (int r = 0; r < rows; r++) {
                float[] row = Arrays.copyOfRange(data, 5 + r * stride, 5 + r * stride + stride);
                TopTokens want = TopTokens.of(row, limit);
                TopTokens got = TopTokens.of(all[r], limit);
                String what = "row " + r;
                assertEquals(want.first(), got.first(), what + ": first");
                assertEquals(want.second(), got.second(), what + ": second");
                assertEquals(want.vocab(), got.vocab(), what + ": vocab");
                assertEquals(want.p1(), got.p1(), 1e-6 * Math.max(1, want.p1()), what + ": p1");
                assertEquals(want.p2(), got.p2(), 1e-6 * Math.max(1, want.p2()), what + ": p2");
                assertEquals(want.entropy(), got.entropy(), 1e-6 * Math.max(1, want.entropy()), what + ": entropy");
                // All eight ranks: the order verification uses (logit, ties to the lower id, NaN as -inf).
                Integer[] ids = new Integer[limit];
                for (int i = 0; i < limit; i++) ids[i] = i;
                Arrays.sort(ids, (a, b) -> Double.compare(rank(row[b]), rank(row[a]))); // stable: lower id first on ties
                for (int j = 0; j < LogitsSummary.MAX_K; j++) assertEquals(ids[j], all[r].top()[j], what + ": rank " + j);
            }
            assertEquals(1f, all[3].prob()[0], "row 3: only NaN, a point mass at its first id");
            assertEquals(0.5f, all[4].prob()[0], 1e-7f);
            assertEquals(Math.log(2), all[4].entropy(), 1e-6);
            // The reader the policies use: one row, and a run of rows, on both paths.
            TopTokenReader device = new TopTokenReader(buf, stride, limit, true), host = new TopTokenReader(buf, stride, limit, false);
            TopTokens[] d = device.rows(1, rows - 1), h = host.rows(1, rows - 1); // rows from the buffer's start, no offset
            for (int r = 0; r < rows - 1; r++) {
                assertEquals(h[r].first(), d[r].first(), "reader row " + (r + 1));
                assertEquals(h[r].second(), d[r].second(), "reader row " + (r + 1));
                assertEquals(h[r].entropy(), d[r].entropy(), 1e-6 * Math.max(1, h[r].entropy()), "reader row " + (r + 1));
            }
            assertEquals(host.row(0).first(), device.row(0).first());
            device.close();
            host.close();
        }
    }

    private static double rank(float x) {
        return Float.isNaN(x) ? Double.NEGATIVE_INFINITY : x;
    }

    @Test
    void badArgumentsComeBackWithTheNativeMessage() {
        try (DeviceBuffer buf = fx.context.allocate(40 * Float.BYTES)) {
            var e = assertThrows(SpeculaException.class, () -> LogitsSummary.summarize(buf, 0, 4, 10, 11, 2));
            assertEquals(Status.INVALID_ARGUMENT, e.status());
            assertTrue(e.getMessage().contains("spec_logits_summarize: limit = 11 is out of range (1..10 = row_stride)"), e.getMessage());
            e = assertThrows(SpeculaException.class, () -> LogitsSummary.summarize(buf, 4, 4, 10, 10, 2));
            assertEquals(Status.OUT_OF_RANGE, e.status());
            assertTrue(e.getMessage().contains("need 164 bytes, the logits buffer holds 160"), e.getMessage());
            e = assertThrows(SpeculaException.class, () -> LogitsSummary.summarize(buf, 0, 1, 10, 10, 9));
            assertTrue(e.getMessage().contains("k = 9 is out of range (1..8)"), e.getMessage());
            e = assertThrows(SpeculaException.class, () -> LogitsSummary.summarize(buf, 0, 0, 10, 10, 2));
            assertTrue(e.getMessage().contains("rows = 0 is out of range"), e.getMessage());
            e = assertThrows(SpeculaException.class, () -> LogitsSummary.summarize(buf, 0, Integer.MAX_VALUE, 10, 10, 2));
            assertTrue(e.getMessage().contains("rows = 2147483647 is out of range"), e.getMessage());
            e = assertThrows(SpeculaException.class, () -> LogitsSummary.summarize(buf, 2, 1, 10, 10, 2));
            assertTrue(e.getMessage().contains("offset_bytes = 2 is not a multiple of 4"), e.getMessage());
        }
    }

    @Test
    void draftModelDraftsTheSameOnBothPathsOnARandomModel() {
        DraftModelPolicy.Options options = DraftModelPolicy.Options.fixed(4, PolicyFixture.CONTEXT).withBranchDepth(2).withMinConfidence(0.02f);
        // A poor drafter (a small random model) and a perfect one (the target itself): both paths must agree on each.
        for (NativeModel draft : new NativeModel[] {small, fx.target}) {
            String host = PolicyFixture.describe(fx.checkLossless(() -> new DraftModelPolicy(fx.target, draft, options, false), 16, false));
            String device = PolicyFixture.describe(fx.checkLossless(() -> new DraftModelPolicy(fx.target, draft, options, true), 16, false));
            System.out.println("draft model" + (draft == small ? " (small)" : " (the target)") + ", device summaries: " + device);
            assertEquals(host, device);
        }
    }

    @Test
    void earlyExitDraftsTheSameOnBothPathsOnARandomModel() {
        // Dynamic choice with exact and windowed shadow passes; fixed exits, the last being the whole model.
        List<EarlyExitPolicy.Options> all = List.of(
                new EarlyExitPolicy.Options(new int[] {1, 2, 3}, 6, 0, 2, 0, PolicyFixture.CONTEXT),
                new EarlyExitPolicy.Options(new int[] {1, 2, 3}, 6, 0, 2, 16, PolicyFixture.CONTEXT),
                EarlyExitPolicy.Options.fixed(3, 3, PolicyFixture.CONTEXT), EarlyExitPolicy.Options.fixed(4, 4, PolicyFixture.CONTEXT));
        for (EarlyExitPolicy.Options options : all) {
            Function<Boolean, String> run = onDevice -> PolicyFixture.describe(
                    fx.checkLossless(() -> new EarlyExitPolicy(fx.target, options, null, onDevice), 16, false));
            String host = run.apply(false), device = run.apply(true);
            String what = "exits " + Arrays.toString(options.exitLayers()) + " shadow window " + options.shadowWindow();
            System.out.println("early exit (" + what + "), device summaries: " + device);
            assertEquals(host, device, what);
        }
    }

    @Test
    void bothDraftersMatchOnTheDemoModels() throws Exception {
        Path models = LlamaCppOracle.repoRoot().resolve("models");
        Path targetFile = models.resolve("demo-target.gguf"), draftFile = models.resolve("demo-draft.gguf");
        assertTrue(Files.isRegularFile(targetFile) && Files.isRegularFile(draftFile), "the demo models are missing in " + models);
        try (Context ctx = Context.cpu(); LoadedModel target = LoadedModel.open(ctx, targetFile, DType.F32);
             LoadedModel draft = LoadedModel.open(ctx, draftFile, DType.F32)) {
            List<int[]> prompts = new ArrayList<>();
            Gson gson = new Gson();
            for (String line : Files.readAllLines(models.resolve("demo-prompts.jsonl")).subList(0, 4)) {
                String text = gson.fromJson(line, JsonObject.class).getAsJsonArray("turns").get(0).getAsString();
                int[] tokens = target.tokenizer().encode(text, true);
                prompts.add(Arrays.copyOf(tokens, Math.min(tokens.length, 64)));
            }
            NativeModel t = target.model(), d = draft.model();
            int layers = t.shape().nLayer();
            DraftModelPolicy.Options dm = DraftModelPolicy.Options.fixed(5, 512).withBranchDepth(1);
            EarlyExitPolicy.Options ee = EarlyExitPolicy.Options.dynamic(layers, 512);
            for (boolean earlyExit : new boolean[] {false, true}) {
                List<String> stats = new ArrayList<>();
                for (boolean onDevice : new boolean[] {false, true}) {
                    SpecStats total = new SpecStats();
                    try (DecodeLoop engine = new DecodeLoop(t, 16, false)) {
                        for (int[] prompt : prompts) {
                            DraftPolicy policy = earlyExit ? new EarlyExitPolicy(t, ee, null, onDevice) : new DraftModelPolicy(t, d, dm, onDevice);
                            try (KvCache kv = t.newKvCache(512)) {
                                DecodeLoop.Result r = engine.generate(new DecodeLoop.Request(kv, prompt, 48, SamplingOptions.GREEDY,
                                        policy, x -> false, x -> true, () -> false));
                                int[] want = ReferenceDecoder.generate(t, 512, prompt, 48, SamplingOptions.GREEDY);
                                assertArrayEquals(want, r.tokens(), (earlyExit ? "early exit" : "draft model") + (onDevice ? " on device" : " on host"));
                                total.add(r.stats());
                            } finally {
                                ((AutoCloseable) policy).close();
                            }
                        }
                    }
                    stats.add(PolicyFixture.describe(total));
                }
                System.out.println("demo models, " + (earlyExit ? "early exit" : "draft model") + ", device summaries: " + stats.get(1));
                assertEquals(stats.get(0), stats.get(1), earlyExit ? "early exit" : "draft model");
            }
        }
    }
}
