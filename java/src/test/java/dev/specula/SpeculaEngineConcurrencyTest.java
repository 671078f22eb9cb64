package dev.specula;

import static org.junit.jupiter.api.Assertions.*;

import dev.specula.engine.TinyModel;
import dev.specula.sampling.SamplingOptions;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import java.util.Map;
import java.util.SplittableRandom;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.CyclicBarrier;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

/**
 * Many threads on one engine: mixed drafters and sampling, cancellation midway, and a close while requests run.
 * Every request completes, is cancelled, or is refused with "engine closed"; greedy outputs stay the plain ones; the
 * engine frees its native memory only after the last request left it (a use-after-free would crash the JVM here).
 */
class SpeculaEngineConcurrencyTest {
    static final List<String> PROMPTS = List.of("int x = 1;", "for (int i = 0; i < n; i++) {", "class A { void f() {", "return a + b;");
    static final int MAX_TOKENS = 24;

    @TempDir
    static Path temp;
    static Path target;
    static Path draft;
    static Path heads;

    @BeforeAll
    static void writeModels() {
        target = temp.resolve("target.gguf");
        TinyModel.maker(2).write(target);
        draft = temp.resolve("draft.gguf"); // the same tokenizer, a smaller model
        TinyModel.maker(1).dim(32).heads(2).kvHeads(1).ff(64).seed(8).write(draft);
        heads = dev.specula.model.HeadsFixture.writeBoth(temp.resolve("heads"), target);
    }

    static SpeculaEngine.Builder builder() {
        return SpeculaEngine.builder().model(target).draftModel(draft).heads(heads).contextLength(256).threads(2);
    }

    /** What one request ended as. */
    enum Outcome { COMPLETED, CANCELLED, REFUSED }

    @Test
    @Timeout(value = 90, unit = TimeUnit.SECONDS)
    void manyThreadsMixedDraftersCancelAndCloseWhileRunning() throws Exception {
        SpeculaEngine engine = builder().batch(3).build();
        Map<String, int[]> plain = new ConcurrentHashMap<>();
        for (String p : PROMPTS)
            plain.put(p, engine.generate(GenerationRequest.builder(p).maxTokens(MAX_TOKENS).drafter(Drafter.NONE).build(), t -> {}, () -> false).tokens());

        int threads = 10;
        Map<Outcome, AtomicInteger> outcomes = new ConcurrentHashMap<>();
        for (Outcome o : Outcome.values()) outcomes.put(o, new AtomicInteger());
        List<Throwable> failures = Collections.synchronizedList(new ArrayList<>());
        AtomicInteger started = new AtomicInteger();
        CountDownLatch done = new CountDownLatch(threads);
        for (int i = 0; i < threads; i++) {
            long seed = i;
            Thread t = new Thread(() -> {
                SplittableRandom rng = new SplittableRandom(seed);
                try {
                    while (true) {
                        String prompt = PROMPTS.get(rng.nextInt(PROMPTS.size()));
                        Drafter drafter = Drafter.values()[rng.nextInt(Drafter.values().length)];
                        boolean greedy = rng.nextBoolean();
                        SamplingOptions sampling = greedy ? SamplingOptions.GREEDY : SamplingOptions.sampled(0.9f, rng.nextLong());
                        if (drafter == Drafter.NONE && !greedy && rng.nextBoolean()) sampling = sampling.withMinP(0.05f).withRepetitionPenalty(1.2f, 16);
                        int cancelAfter = rng.nextInt(4) == 0 ? 1 + rng.nextInt(4) : Integer.MAX_VALUE;
                        AtomicInteger pieces = new AtomicInteger();
                        GenerationRequest request = GenerationRequest.builder(prompt).maxTokens(MAX_TOKENS).sampling(sampling).drafter(drafter).build();
                        started.incrementAndGet();
                        GenerationResult r;
                        try {
                            r = engine.generate(request, text -> pieces.incrementAndGet(), () -> pieces.get() >= cancelAfter);
                        } catch (IllegalStateException e) {
                            assertEquals("engine closed", e.getMessage());
                            outcomes.get(Outcome.REFUSED).incrementAndGet();
                            return; // the engine is closed: this thread is done
                        }
                        if (r.stopReason() == StopReason.CANCELLED) {
                            outcomes.get(Outcome.CANCELLED).incrementAndGet();
                            continue;
                        }
                        outcomes.get(Outcome.COMPLETED).incrementAndGet();
                        if (greedy) assertArrayEquals(plain.get(prompt), r.tokens(), prompt + " with " + drafter);
                        else assertTrue(r.stopReason() == StopReason.END_OF_SEQUENCE || r.tokens().length == MAX_TOKENS,
                                prompt + " sampled with " + drafter + ": " + r.stopReason() + " after " + r.tokens().length);
                    }
                } catch (Throwable e) {
                    failures.add(e);
                } finally {
                    done.countDown();
                }
            }, "stress-" + i);
            t.setDaemon(true);
            t.start();
        }
        // Let the mix run a while (and at least until a request completed: on a loaded machine the first ones may take
        // longer than the while), then close under it.
        long until = System.nanoTime() + TimeUnit.SECONDS.toNanos(4);
        while ((System.nanoTime() < until || outcomes.get(Outcome.COMPLETED).get() == 0) && outcomes.get(Outcome.COMPLETED).get() < 60
                && failures.isEmpty()) Thread.sleep(20);
        engine.close();
        assertFalse(engine.model().model().isOpen(), "close freed the model");
        assertTrue(done.await(30, TimeUnit.SECONDS), "every thread left the engine after close");
        assertEquals(List.of(), failures);
        assertEquals(threads, outcomes.get(Outcome.REFUSED).get(), "each thread's next request after close was refused: " + outcomes);
        assertTrue(outcomes.get(Outcome.COMPLETED).get() > 0, outcomes.toString());
        System.out.println("concurrency stress: " + started.get() + " requests, " + outcomes);
        // Closed for good, and closing again is harmless.
        var e = assertThrows(IllegalStateException.class, () -> engine.generate("x", 4, t -> {}));
        assertEquals("engine closed", e.getMessage());
        engine.close();
    }

    @Test
    @Timeout(value = 60, unit = TimeUnit.SECONDS)
    void closeStopsRunningRequestsAndWaitsForThem() throws Exception {
        SpeculaEngine engine = builder().drafter(Drafter.PLD).batch(2).build();
        int threads = 6; // more than the batch: some wait for a turn when the engine closes
        CountDownLatch generating = new CountDownLatch(2);
        List<Object> results = Collections.synchronizedList(new ArrayList<>());
        List<Thread> running = new ArrayList<>();
        for (int i = 0; i < threads; i++) {
            Thread t = new Thread(() -> {
                try {
                    // Long requests, so close comes while they run: paced, their 256-token contexts take seconds to
                    // fill, however long the closing thread waits for a core.
                    GenerationRequest longRequest = GenerationRequest.builder("x").maxTokens(100_000)
                            .speculation(new GenerationRequest.Speculation(new EngineCallbackReentryTest.PacedPlain(), 1, false)).build();
                    results.add(engine.generate(longRequest, text -> generating.countDown(), () -> false).stopReason());
                } catch (Throwable e) {
                    results.add(e);
                }
            });
            t.start();
            running.add(t);
        }
        assertTrue(generating.await(30, TimeUnit.SECONDS));
        engine.close(); // returns only once every request has left
        for (Thread t : running) {
            t.join(TimeUnit.SECONDS.toMillis(30));
            assertFalse(t.isAlive());
        }
        assertEquals(threads, results.size());
        for (Object r : results) {
            boolean ok = r == StopReason.CANCELLED || r == StopReason.CONTEXT_FULL
                    || (r instanceof IllegalStateException e && e.getMessage().equals("engine closed"));
            assertTrue(ok, String.valueOf(r));
        }
        assertTrue(results.contains(StopReason.CANCELLED), results.toString());
    }

    @Test
    @Timeout(value = 60, unit = TimeUnit.SECONDS)
    void racingFirstRequestsOpenTheDraftModelOnce() throws Exception {
        try (SpeculaEngine engine = builder().drafter(Drafter.NONE).batch(4).build()) {
            assertEquals(0, engine.draftModelOpens(), "the engine's drafter is none: nothing opened yet");
            int threads = 6;
            CyclicBarrier start = new CyclicBarrier(threads);
            List<Object> texts = Collections.synchronizedList(new ArrayList<>());
            List<Thread> all = new ArrayList<>();
            for (int i = 0; i < threads; i++) {
                Thread t = new Thread(() -> {
                    try {
                        start.await();
                        texts.add(engine.generate(GenerationRequest.builder(PROMPTS.get(0)).maxTokens(16).drafter(Drafter.DRAFT_MODEL).build(),
                                x -> {}, () -> false).text());
                    } catch (Throwable e) {
                        texts.add(e);
                    }
                });
                t.start();
                all.add(t);
            }
            for (Thread t : all) t.join();
            String plain = engine.generate(GenerationRequest.builder(PROMPTS.get(0)).maxTokens(16).drafter(Drafter.NONE).build(), x -> {}, () -> false).text();
            assertEquals(Collections.nCopies(threads, plain), texts);
            assertEquals(1, engine.draftModelOpens());
        }
    }
}
