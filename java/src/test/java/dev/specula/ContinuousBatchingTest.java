package dev.specula;

import static org.junit.jupiter.api.Assertions.*;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import com.google.gson.JsonParser;
import dev.specula.engine.DraftPolicy;
import dev.specula.engine.DraftTree;
import dev.specula.engine.TinyModel;
import dev.specula.oracle.LlamaCppOracle;
import dev.specula.policies.PromptLookupPolicy;
import dev.specula.sampling.PredicateFilter;
import dev.specula.sampling.RelaxedVerifier;
import dev.specula.sampling.SamplingOptions;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.CyclicBarrier;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.function.BooleanSupplier;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/**
 * The engine's continuous batching: many requests in one batch (each with its own drafter and sampling) give each
 * the output it gets alone; requests join and leave between steps; cancellation, the queue's limit and failures
 * stay with their own request; the stats count what happened.
 */
class ContinuousBatchingTest {
    static final Drafter[] DRAFTERS = Arrays.stream(Drafter.values()).filter(d -> !d.needsHeads()).toArray(Drafter[]::new);

    @TempDir
    static Path temp;
    static Path target;
    static Path draft;

    @BeforeAll
    static void writeModels() {
        target = temp.resolve("target.gguf");
        TinyModel.maker(2).write(target);
        draft = temp.resolve("draft.gguf"); // the same tokenizer, a smaller model
        TinyModel.maker(1).dim(32).heads(2).kvHeads(1).ff(64).seed(8).write(draft);
    }

    static SpeculaEngine.Builder tiny() {
        return SpeculaEngine.builder().model(target).draftModel(draft).contextLength(256).threads(2);
    }

    static GenerationRequest greedy(int[] prompt, Drafter d, int maxTokens) {
        return GenerationRequest.builder("").promptTokens(prompt).maxTokens(maxTokens).drafter(d).build();
    }

    /** Runs the requests all at once (released together), each on its own thread; returns the results in order. */
    static List<GenerationResult> concurrently(SpeculaEngine engine, List<GenerationRequest> requests) throws Exception {
        ExecutorService pool = Executors.newFixedThreadPool(requests.size());
        try {
            CyclicBarrier start = new CyclicBarrier(requests.size());
            List<Future<GenerationResult>> futures = new ArrayList<>();
            for (GenerationRequest r : requests) futures.add(pool.submit(() -> {
                start.await();
                return engine.generate(r, t -> {}, () -> false);
            }));
            List<GenerationResult> out = new ArrayList<>();
            for (Future<GenerationResult> f : futures) out.add(f.get(120, TimeUnit.SECONDS));
            return out;
        } finally {
            pool.shutdownNow();
        }
    }

    @ParameterizedTest(name = "adaptive {0}")
    @ValueSource(booleans = {true, false})
    @Timeout(value = 180, unit = TimeUnit.SECONDS)
    void concurrentGreedyRequestsWithDifferentDraftersEqualTheirSoloRunsOnARandomModel(boolean adaptive) throws Exception {
        // Not adaptive: every sequence drafts full trees every step, so batched verification is what is tested.
        List<int[]> prompts = TinyModel.prompts(16, 11);
        try (SpeculaEngine engine = tiny().adaptive(adaptive).batch(8).build()) {
            List<GenerationRequest> requests = new ArrayList<>();
            for (int i = 0; i < prompts.size(); i++) requests.add(greedy(prompts.get(i), DRAFTERS[i % DRAFTERS.length], 24));
            List<int[]> solo = new ArrayList<>();
            for (GenerationRequest r : requests) solo.add(engine.generate(r, t -> {}, () -> false).tokens());
            EngineStats before = engine.stats();
            assertEquals(1.0, before.meanBatchSize(), 1e-9, "requests run one at a time are batches of one");

            List<GenerationResult> together = concurrently(engine, requests);
            for (int i = 0; i < requests.size(); i++)
                assertArrayEquals(solo.get(i), together.get(i).tokens(), "request " + i + " with " + requests.get(i).drafter());
            EngineStats after = engine.stats();
            long steps = after.steps() - before.steps(), sequences = after.stepSequences() - before.stepSequences();
            assertTrue(sequences > steps, "the batch held several sequences at once: " + sequences + " sequences in " + steps + " steps");
            assertEquals(0, after.running());
            assertEquals(0, after.queued());
            assertEquals(8, after.maxBatch());
            assertEquals(2L * requests.size(), after.finished());
            assertEquals(0, after.failed());
            assertFalse(after.speculation().containsKey("none"), "plain steps are not drafts: " + after.speculation());
            if (adaptive) return;
            for (String drafter : List.of("pld", "recycling", "draft-model", "early-exit")) {
                EngineStats.Speculative c = after.speculation().get(drafter);
                assertNotNull(c, drafter + " in " + after.speculation());
                assertTrue(c.drafts() > 0 && c.draftTokens() >= c.acceptedTokens(), c.toString());
                long[] perPosition = c.acceptedPerPosition();
                long sum = 0;
                for (int i = 0; i < perPosition.length; i++) {
                    sum += perPosition[i];
                    assertTrue(perPosition[i] <= (i == 0 ? c.drafts() : perPosition[i - 1]), "position i is accepted only after i - 1: " + c);
                }
                assertEquals(c.acceptedTokens(), sum, "accepted tokens are counted once per position: " + c);
            }
        }
    }

    @Test
    @Timeout(value = 240, unit = TimeUnit.SECONDS)
    void concurrentGreedyRequestsEqualTheirSoloRunsOnTheDemoTarget() throws Exception {
        Path root = LlamaCppOracle.repoRoot();
        Path demo = root.resolve("models/demo-target.gguf"), demoDraft = root.resolve("models/demo-draft.gguf");
        Path prompts = root.resolve("models/demo-prompts.jsonl");
        assumeTrue(Files.isRegularFile(demo) && Files.isRegularFile(prompts), "no demo model here");
        List<String> texts = new ArrayList<>();
        for (String line : Files.readAllLines(prompts)) {
            if (texts.size() == 12) break;
            String turn = JsonParser.parseString(line).getAsJsonObject().getAsJsonArray("turns").get(0).getAsString();
            texts.add(turn.length() > 300 ? turn.substring(turn.length() - 300) : turn);
        }
        Drafter[] drafters = {Drafter.NONE, Drafter.PLD, Drafter.RECYCLING, Drafter.DRAFT_MODEL};
        try (SpeculaEngine engine = SpeculaEngine.builder().model(demo).draftModel(demoDraft).contextLength(512).threads(2).batch(12).build()) {
            List<GenerationRequest> requests = new ArrayList<>();
            for (int i = 0; i < texts.size(); i++)
                requests.add(GenerationRequest.builder(texts.get(i)).maxTokens(24).drafter(drafters[i % drafters.length]).build());
            List<String> solo = new ArrayList<>();
            for (GenerationRequest r : requests) solo.add(engine.generate(r, t -> {}, () -> false).text());
            List<GenerationResult> together = concurrently(engine, requests);
            for (int i = 0; i < requests.size(); i++) assertEquals(solo.get(i), together.get(i).text(), "request " + i + " with " + requests.get(i).drafter());
        }
    }

    @Test
    @Timeout(value = 120, unit = TimeUnit.SECONDS)
    void greedySampledRelaxedAndPenalisedRequestsShareOneBatch() throws Exception {
        List<int[]> prompts = TinyModel.prompts(8, 5);
        try (SpeculaEngine engine = tiny().batch(8).build()) {
            List<GenerationRequest> requests = new ArrayList<>();
            for (int i = 0; i < 8; i++) {
                var b = GenerationRequest.builder("").promptTokens(prompts.get(i)).maxTokens(32);
                switch (i % 4) {
                    case 0 -> b.drafter(Drafter.PLD); // greedy
                    case 1 -> b.drafter(Drafter.RECYCLING).sampling(SamplingOptions.sampled(0.9f, i));
                    case 2 -> b.drafter(Drafter.PLD).relaxed(RelaxedVerifier.typical());
                    default -> b.drafter(Drafter.NONE).sampling(SamplingOptions.sampled(0.8f, i).withRepetitionPenalty(1.3f, 16).withMinP(0.05f));
                }
                requests.add(b.build());
            }
            int[] soloGreedy0 = engine.generate(requests.get(0), t -> {}, () -> false).tokens();
            int[] soloGreedy4 = engine.generate(requests.get(4), t -> {}, () -> false).tokens();
            EngineStats before = engine.stats();
            List<GenerationResult> results = concurrently(engine, requests);
            assertArrayEquals(soloGreedy0, results.get(0).tokens());
            assertArrayEquals(soloGreedy4, results.get(4).tokens());
            for (GenerationResult r : results) {
                assertTrue(r.stopReason() == StopReason.MAX_TOKENS || r.stopReason() == StopReason.END_OF_SEQUENCE, r.stopReason().toString());
                assertTrue(r.tokens().length > 0);
                for (int t : r.tokens()) assertTrue(t >= 0 && t < TinyModel.VOCAB, "token " + t);
            }
            EngineStats after = engine.stats();
            assertTrue(after.stepSequences() - before.stepSequences() > after.steps() - before.steps(), "the settings shared steps");
        }
    }

    /**
     * Plain decoding at most one step per 10 ms, so that a test can act while a request runs: its 4096-token context
     * then takes at least 40 s to fill, far more than any test here needs even on a loaded machine (at 2 ms it took 8 s).
     */
    static final class SlowPlainPolicy implements DraftPolicy {
        @Override
        public String name() {
            return "slow";
        }

        @Override
        public DraftTree propose(int[] history, int length, int maxTreeNodes) {
            try {
                Thread.sleep(10);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
            }
            return DraftTree.rootOnly(history[length - 1]);
        }
    }

    /** A request that runs until cancelled: slow steps, no end-of-sequence token, a long context (at least 40 s). */
    static GenerationRequest endless(int[] prompt) {
        return GenerationRequest.builder("").promptTokens(prompt).maxTokens(1_000_000)
                .speculation(new GenerationRequest.Speculation(new SlowPlainPolicy(), 1, false))
                .filters(List.of(PredicateFilter.ofTokens(t -> t > 2))).build();
    }

    /** The tiny model with a long training context, for requests that run until cancelled. */
    static SpeculaEngine.Builder longContext() {
        Path path = temp.resolve("long.gguf");
        if (!Files.exists(path)) TinyModel.maker(2).context(4096).write(path);
        return SpeculaEngine.builder().model(path).contextLength(4096).threads(2);
    }

    /** Starts a request on a new thread; the future's result is the GenerationResult or the exception. */
    static CompletableResult start(SpeculaEngine engine, GenerationRequest r, BooleanSupplier cancelled, CountDownLatch firstText) {
        CompletableResult out = new CompletableResult();
        Thread t = new Thread(() -> {
            try {
                out.value = engine.generate(r, x -> firstText.countDown(), cancelled);
            } catch (Throwable e) {
                out.value = e;
            } finally {
                out.done.countDown();
            }
        });
        t.setDaemon(true);
        t.start();
        return out;
    }

    static final class CompletableResult {
        volatile Object value;
        final CountDownLatch done = new CountDownLatch(1);

        Object await() throws InterruptedException {
            assertTrue(done.await(60, TimeUnit.SECONDS), "the request ended");
            return value;
        }
    }

    static void awaitQueued(SpeculaEngine engine, int queued) throws InterruptedException {
        long until = System.nanoTime() + TimeUnit.SECONDS.toNanos(30);
        while (engine.stats().queued() != queued) {
            assertTrue(System.nanoTime() < until, "queue depth " + engine.stats().queued() + ", waiting for " + queued);
            Thread.sleep(5);
        }
    }

    @Test
    @Timeout(value = 90, unit = TimeUnit.SECONDS)
    void cancellationStopsARunningRequestAtItsNextStepAndAWaitingOneInTheQueue() throws Exception {
        List<int[]> prompts = TinyModel.prompts(2, 3);
        try (SpeculaEngine engine = longContext().batch(1).build()) {
            AtomicBoolean cancelFirst = new AtomicBoolean();
            CountDownLatch firstText = new CountDownLatch(1);
            CompletableResult first = start(engine, endless(prompts.get(0)), cancelFirst::get, firstText);
            assertTrue(firstText.await(30, TimeUnit.SECONDS));
            // The batch is full: the second waits in the queue, and is cancelled there.
            AtomicBoolean cancelSecond = new AtomicBoolean();
            CompletableResult second = start(engine, endless(prompts.get(1)), cancelSecond::get, new CountDownLatch(1));
            awaitQueued(engine, 1);
            cancelSecond.set(true);
            GenerationResult r2 = (GenerationResult) second.await();
            assertEquals(StopReason.CANCELLED, r2.stopReason());
            assertEquals(0, r2.tokens().length, "it never started");
            assertEquals(1, engine.stats().running(), "the first still runs");
            cancelFirst.set(true);
            GenerationResult r1 = (GenerationResult) first.await();
            assertEquals(StopReason.CANCELLED, r1.stopReason());
            assertTrue(r1.tokens().length > 0 && r1.tokens().length < 4000);
            assertEquals(0, engine.stats().running());
        }
    }

    @Test
    @Timeout(value = 90, unit = TimeUnit.SECONDS)
    void aFullQueueRefusesWithEngineBusy() throws Exception {
        List<int[]> prompts = TinyModel.prompts(3, 4);
        try (SpeculaEngine engine = longContext().batch(1).maxQueued(1).build()) {
            AtomicBoolean stop = new AtomicBoolean();
            CountDownLatch firstText = new CountDownLatch(1);
            CompletableResult running = start(engine, endless(prompts.get(0)), stop::get, firstText);
            assertTrue(firstText.await(30, TimeUnit.SECONDS));
            CompletableResult waiting = start(engine, endless(prompts.get(1)), stop::get, new CountDownLatch(1));
            awaitQueued(engine, 1);
            EngineBusyException busy = assertThrows(EngineBusyException.class, () -> engine.generate(endless(prompts.get(2)), t -> {}, () -> false));
            assertEquals(1, busy.queued());
            assertEquals(1, busy.running());
            assertTrue(busy.getMessage().contains("busy"), busy.getMessage());
            assertEquals(1, engine.stats().refused());
            stop.set(true);
            assertEquals(StopReason.CANCELLED, ((GenerationResult) running.await()).stopReason());
            assertEquals(StopReason.CANCELLED, ((GenerationResult) waiting.await()).stopReason());
            // Room again: the same request now runs.
            assertEquals(4, engine.generate(greedy(prompts.get(2), Drafter.PLD, 4), t -> {}, () -> false).tokens().length);
        }
    }

    /** Prompt lookup, until its nth proposal, which throws. */
    static final class FailingPolicy implements DraftPolicy {
        final PromptLookupPolicy inner = new PromptLookupPolicy();
        final int failAt;
        int proposals;

        FailingPolicy(int failAt) {
            this.failAt = failAt;
        }

        @Override
        public String name() {
            return "failing";
        }

        @Override
        public DraftTree propose(int[] history, int length, int maxTreeNodes) {
            if (++proposals == failAt) throw new IllegalStateException("the policy broke on purpose");
            return inner.propose(history, length, maxTreeNodes);
        }
    }

    @Test
    @Timeout(value = 120, unit = TimeUnit.SECONDS)
    void aRequestThatFailsInsideTheEngineFailsAloneAndTheOthersFinish() throws Exception {
        List<int[]> prompts = TinyModel.prompts(6, 9);
        try (SpeculaEngine engine = tiny().batch(6).build()) {
            List<GenerationRequest> requests = new ArrayList<>();
            for (int i = 0; i < 5; i++) requests.add(greedy(prompts.get(i), DRAFTERS[i % DRAFTERS.length], 24));
            List<int[]> solo = new ArrayList<>();
            for (GenerationRequest r : requests) solo.add(engine.generate(r, t -> {}, () -> false).tokens());
            requests.add(GenerationRequest.builder("").promptTokens(prompts.get(5)).maxTokens(24)
                    .speculation(new GenerationRequest.Speculation(new FailingPolicy(3), 8, false)).build());
            ExecutorService pool = Executors.newFixedThreadPool(requests.size());
            try {
                CyclicBarrier start = new CyclicBarrier(requests.size());
                List<Future<GenerationResult>> futures = new ArrayList<>();
                for (GenerationRequest r : requests) futures.add(pool.submit(() -> {
                    start.await();
                    return engine.generate(r, t -> {}, () -> false);
                }));
                for (int i = 0; i < 5; i++) assertArrayEquals(solo.get(i), futures.get(i).get(60, TimeUnit.SECONDS).tokens(), "request " + i);
                var e = assertThrows(java.util.concurrent.ExecutionException.class, () -> futures.get(5).get(60, TimeUnit.SECONDS));
                assertInstanceOf(IllegalStateException.class, e.getCause());
                assertEquals("the policy broke on purpose", e.getCause().getMessage());
            } finally {
                pool.shutdownNow();
            }
            assertEquals(1, engine.stats().failed());
            // A listener that throws fails its own request (on its own thread) and no other.
            RuntimeException thrown = assertThrows(RuntimeException.class,
                    () -> engine.generate(requests.get(0), t -> { throw new RuntimeException("listener gave up"); }, () -> false));
            assertEquals("listener gave up", thrown.getMessage());
            assertArrayEquals(solo.get(1), engine.generate(requests.get(1), t -> {}, () -> false).tokens());
        }
    }

    @Test
    @Timeout(value = 60, unit = TimeUnit.SECONDS)
    void requestsJoinAndLeaveBetweenSteps() throws Exception {
        List<int[]> prompts = TinyModel.prompts(3, 21);
        try (SpeculaEngine engine = longContext().batch(4).build()) {
            int[] shortSolo = engine.generate(greedy(prompts.get(1), Drafter.RECYCLING, 16), t -> {}, () -> false).tokens();
            AtomicBoolean stop = new AtomicBoolean();
            CountDownLatch longText = new CountDownLatch(1);
            CompletableResult longRunning = start(engine, endless(prompts.get(0)), stop::get, longText);
            assertTrue(longText.await(30, TimeUnit.SECONDS));
            // Joins a running batch, leaves it while the long one goes on.
            assertArrayEquals(shortSolo, engine.generate(greedy(prompts.get(1), Drafter.RECYCLING, 16), t -> {}, () -> false).tokens());
            assertEquals(1, engine.stats().running());
            AtomicInteger pieces = new AtomicInteger();
            engine.generate(greedy(prompts.get(2), Drafter.PLD, 8), t -> pieces.incrementAndGet(), () -> false);
            assertEquals(1, engine.stats().running());
            stop.set(true);
            assertEquals(StopReason.CANCELLED, ((GenerationResult) longRunning.await()).stopReason());
        }
    }

    @Test
    @Timeout(value = 120, unit = TimeUnit.SECONDS)
    void aSeededSampledRequestGivesTheSameTextAloneAndInAnyBatch() throws Exception {
        // Fixed trees of deterministic drafters, so the request drafts the same trees alone and batched; then only
        // the random stream could tell the runs apart, and it is keyed by the request's seed and position.
        List<int[]> prompts = TinyModel.prompts(6, 31);
        try (SpeculaEngine engine = tiny().adaptive(false).batch(6).build()) {
            List<GenerationRequest> requests = new ArrayList<>();
            for (int i = 0; i < 6; i++) {
                Drafter d = i % 2 == 0 ? Drafter.DRAFT_MODEL : Drafter.PLD;
                SamplingOptions sampling = i < 4 ? SamplingOptions.sampled(0.9f, 1000 + i) : SamplingOptions.GREEDY;
                requests.add(GenerationRequest.builder("").promptTokens(prompts.get(i)).maxTokens(32).drafter(d).sampling(sampling).build());
            }
            List<int[]> solo = new ArrayList<>();
            for (GenerationRequest r : requests) solo.add(engine.generate(r, t -> {}, () -> false).tokens());
            for (int i = 0; i < 4; i++)
                assertArrayEquals(solo.get(i), engine.generate(requests.get(i), t -> {}, () -> false).tokens(), "request " + i + " alone again");
            List<GenerationResult> together = concurrently(engine, requests);
            for (int i = 0; i < requests.size(); i++)
                assertArrayEquals(solo.get(i), together.get(i).tokens(), "request " + i + " batched (" + requests.get(i).drafter() + ")");
            // Another mix: the sampled ones with each other only, in reverse order.
            List<GenerationResult> reversed = concurrently(engine, List.of(requests.get(3), requests.get(2), requests.get(1), requests.get(0)));
            for (int i = 0; i < 4; i++) assertArrayEquals(solo.get(3 - i), reversed.get(i).tokens(), "request " + (3 - i) + " in the second mix");
            // A different seed is a different stream.
            GenerationRequest other = GenerationRequest.builder("").promptTokens(prompts.get(0)).maxTokens(32).drafter(Drafter.DRAFT_MODEL)
                    .sampling(SamplingOptions.sampled(0.9f, 7)).build();
            assertFalse(Arrays.equals(solo.get(0), engine.generate(other, t -> {}, () -> false).tokens()), "seed 7 against seed 1000");
        }
    }

    /** Prompt lookup that counts its proposals (one per step of its sequence) and tells when its prompt is in place. */
    static final class ObservedPld implements DraftPolicy {
        final PromptLookupPolicy inner = new PromptLookupPolicy();
        final AtomicInteger proposals;
        final Runnable onPrefill;
        final boolean slow;

        ObservedPld(AtomicInteger proposals, Runnable onPrefill, boolean slow) {
            this.proposals = proposals;
            this.onPrefill = onPrefill;
            this.slow = slow;
        }

        @Override
        public String name() {
            return "pld";
        }

        @Override
        public void prefill(int[] prompt, int length) {
            if (onPrefill != null) onPrefill.run();
            inner.prefill(prompt, length);
        }

        @Override
        public DraftTree propose(int[] history, int length, int maxTreeNodes) {
            if (proposals != null) proposals.incrementAndGet();
            if (slow) { // three runners, 3 ms each: a step takes at least 9 ms, so they run for seconds before their contexts fill
                try {
                    Thread.sleep(3);
                } catch (InterruptedException e) {
                    Thread.currentThread().interrupt();
                }
            }
            return inner.propose(history, length, maxTreeNodes);
        }
    }

    static GenerationRequest observed(int[] prompt, int maxTokens, DraftPolicy policy) {
        return GenerationRequest.builder("").promptTokens(prompt).maxTokens(maxTokens)
                .speculation(new GenerationRequest.Speculation(policy, 8, false)).filters(List.of(PredicateFilter.ofTokens(t -> t > 2))).build();
    }

    @Test
    @Timeout(value = 120, unit = TimeUnit.SECONDS)
    void aLongPromptJoiningARunningBatchIsPrefilledInChunksWithinTheStepBudget() throws Exception {
        java.util.SplittableRandom rng = new java.util.SplittableRandom(77);
        int[] longPrompt = new int[700];
        longPrompt[0] = 1;
        for (int i = 1; i < longPrompt.length; i++) longPrompt[i] = 3 + rng.nextInt(TinyModel.VOCAB - 3);
        List<int[]> prompts = TinyModel.prompts(3, 41);
        int stepTokens = 16;
        try (SpeculaEngine alone = longContext().batch(1).stepTokens(4096).build();
             SpeculaEngine engine = longContext().batch(4).stepTokens(stepTokens).build()) {
            // The reference: alone, its prompt prefilled in one call.
            int[] longSolo = alone.generate(observed(longPrompt, 24, new ObservedPld(null, null, false)), t -> {}, () -> false).tokens();
            // Three runners generate (slowly, until stopped) while the long prompt joins.
            AtomicInteger runnerSteps = new AtomicInteger();
            AtomicBoolean stop = new AtomicBoolean();
            List<CompletableResult> runners = new ArrayList<>();
            List<CountDownLatch> firstTexts = new ArrayList<>();
            for (int[] p : prompts) {
                CountDownLatch first = new CountDownLatch(1);
                firstTexts.add(first);
                runners.add(start(engine, observed(p, 1_000_000, new ObservedPld(runnerSteps, null, true)), stop::get, first));
            }
            for (CountDownLatch first : firstTexts) assertTrue(first.await(30, TimeUnit.SECONDS), "the runners are generating");
            EngineStats before = engine.stats();
            int atJoin = runnerSteps.get();
            AtomicInteger atPrefilled = new AtomicInteger(-1);
            GenerationResult joined = engine.generate(observed(longPrompt, 24, new ObservedPld(null, () -> atPrefilled.set(runnerSteps.get()), false)),
                    t -> {}, () -> false);
            EngineStats after = engine.stats();
            stop.set(true);
            assertArrayEquals(longSolo, joined.tokens(), "the long prompt's output, chunked and batched, equals its run alone");
            // Its 699 prompt tokens took steps of at most 16 rows (13 once the runners' roots are in), and the
            // runners went on generating in those steps.
            assertTrue(atPrefilled.get() - atJoin >= 3 * 699 / 13, "runner steps while the long prompt was prefilled: " + (atPrefilled.get() - atJoin));
            long steps = after.steps() - before.steps(), rows = after.stepRows() - before.stepRows();
            assertTrue(rows >= 699 && rows <= (long) stepTokens * steps, rows + " rows in " + steps + " steps of at most " + stepTokens);
            for (int i = 0; i < prompts.size(); i++) {
                GenerationResult r = (GenerationResult) runners.get(i).await();
                assertEquals(StopReason.CANCELLED, r.stopReason());
                int[] solo = alone.generate(observed(prompts.get(i), r.tokens().length, new ObservedPld(null, null, false)), t -> {}, () -> false).tokens();
                assertArrayEquals(solo, r.tokens(), "runner " + i);
            }
        }
    }
}
