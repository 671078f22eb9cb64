package dev.specula;

import static org.junit.jupiter.api.Assertions.*;

import dev.specula.engine.DraftPolicy;
import dev.specula.engine.DraftTree;
import dev.specula.engine.TinyModel;
import java.nio.file.Path;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicReference;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

/**
 * Callbacks that call back into the engine from inside a request: a text listener (the caller's thread) or a cancel
 * check or draft policy (the scheduler's thread) that closes the engine, cancels, interrupts or starts a request.
 * Each ends with a clear outcome or a clear error, never a hang. The timeouts run on their own thread, so a hang
 * in close (which keeps waiting through interrupts) fails the test instead of stalling the run.
 */
@Timeout(value = 60, unit = TimeUnit.SECONDS, threadMode = Timeout.ThreadMode.SEPARATE_THREAD)
class EngineCallbackReentryTest {
    /** Long enough that the request is still running when its callback acts. */
    static final int LONG = 100_000;
    /**
     * Each step of a long request waits this long, so that its 256-token context takes seconds to fill: a text
     * listener acts on the caller's thread while the scheduler goes on, and on a loaded machine that thread may get
     * no core for a while. A request that still ran to its context's end (a callback that did not stop it) ends
     * CONTEXT_FULL and fails the test.
     */
    static final long STEP_MILLIS = 40;

    @TempDir
    static Path temp;
    static Path target;

    @BeforeAll
    static void writeModel() {
        target = temp.resolve("target.gguf");
        TinyModel.maker(2).write(target);
    }

    static SpeculaEngine engine() {
        return SpeculaEngine.builder().model(target).drafter(Drafter.PLD).contextLength(256).threads(1).batch(2).build();
    }

    static GenerationRequest longRequest() {
        return GenerationRequest.builder("int x = 1;").maxTokens(LONG).speculation(new GenerationRequest.Speculation(new PacedPlain(), 1, false)).build();
    }

    /** Plain decoding, one step per {@link #STEP_MILLIS} at most. */
    static final class PacedPlain implements DraftPolicy {
        @Override
        public String name() {
            return "paced";
        }

        @Override
        public DraftTree propose(int[] history, int length, int maxTreeNodes) {
            try {
                Thread.sleep(STEP_MILLIS);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
            }
            return DraftTree.rootOnly(history[length - 1]);
        }
    }

    static void assertClosedAndFreed(SpeculaEngine engine) {
        assertFalse(engine.model().model().isOpen(), "the engine freed its model once the request left");
        var e = assertThrows(IllegalStateException.class, () -> engine.generate("x", 4, t -> {}));
        assertEquals("engine closed", e.getMessage());
        engine.close(); // idempotent
    }

    @Test
    void aListenerThatClosesTheEngineEndsItsRequestAndTheEngineIsFreedWhenItReturns() {
        SpeculaEngine engine = engine();
        AtomicInteger calls = new AtomicInteger();
        GenerationResult r = engine.generate(longRequest(), text -> {
            calls.incrementAndGet();
            engine.close(); // returns at once: the request stops at its next step
        }, () -> false);
        assertTrue(r.stopReason() == StopReason.CANCELLED, String.valueOf(r.stopReason()));
        assertTrue(calls.get() >= 1);
        assertTrue(r.tokens().length < LONG);
        assertClosedAndFreed(engine);
    }

    @Test
    void aListenerThatClosesTheEngineStopsTheOtherRequestsToo() throws Exception {
        SpeculaEngine engine = engine();
        AtomicReference<Object> other = new AtomicReference<>();
        AtomicBoolean otherStarted = new AtomicBoolean();
        Thread t = new Thread(() -> {
            try {
                other.set(engine.generate(longRequest(), text -> otherStarted.set(true), () -> false).stopReason());
            } catch (Throwable e) {
                other.set(e);
            }
        });
        t.start();
        while (!otherStarted.get()) Thread.sleep(1);
        GenerationResult r = engine.generate(longRequest(), text -> engine.close(), () -> false);
        assertEquals(StopReason.CANCELLED, r.stopReason());
        t.join();
        assertEquals(StopReason.CANCELLED, other.get());
        assertClosedAndFreed(engine);
    }

    @Test
    void aCancelCheckThatClosesTheEngineOnTheSchedulerThreadDoesNotHang() {
        SpeculaEngine engine = engine();
        AtomicInteger checks = new AtomicInteger();
        GenerationResult r = engine.generate(longRequest(), text -> {}, () -> {
            if (checks.incrementAndGet() == 5) engine.close(); // on the scheduler thread
            return false;
        });
        assertEquals(StopReason.CANCELLED, r.stopReason());
        assertClosedAndFreed(engine);
    }

    @Test
    void aDraftPolicyThatClosesTheEngineDoesNotHang() {
        SpeculaEngine engine = engine();
        AtomicInteger proposals = new AtomicInteger();
        DraftPolicy closing = new DraftPolicy() {
            @Override
            public String name() {
                return "closes-the-engine";
            }

            @Override
            public DraftTree propose(int[] history, int length, int maxTreeNodes) {
                if (proposals.incrementAndGet() == 3) engine.close();
                return DraftTree.rootOnly(history[length - 1]);
            }
        };
        GenerationRequest request = GenerationRequest.builder("int x = 1;").maxTokens(LONG)
                .speculation(new GenerationRequest.Speculation(closing, 4, false)).build();
        GenerationResult r = engine.generate(request, text -> {}, () -> false);
        assertEquals(StopReason.CANCELLED, r.stopReason());
        assertClosedAndFreed(engine);
    }

    @Test
    void aCancelCheckThatStartsARequestIsRefusedClearly() {
        try (SpeculaEngine engine = engine()) {
            AtomicReference<Throwable> refused = new AtomicReference<>();
            GenerationResult r = engine.generate(longRequest(), text -> {}, () -> {
                if (refused.get() != null) return true;
                try {
                    engine.generate("x", 4, t -> {}); // would wait for the thread that runs it
                } catch (Throwable e) {
                    refused.set(e);
                }
                return refused.get() != null;
            });
            assertEquals(StopReason.CANCELLED, r.stopReason());
            assertInstanceOf(IllegalStateException.class, refused.get());
            assertTrue(refused.get().getMessage().contains("scheduler thread"), refused.get().getMessage());
            assertEquals(4, engine.generate("int y = 2;", 4, t -> {}).tokens().length, "the engine still serves");
        }
    }

    @Test
    void aListenerThatCancelsEndsItsRequestAndTheEngineServesOn() {
        try (SpeculaEngine engine = engine()) {
            AtomicBoolean cancel = new AtomicBoolean();
            GenerationResult r = engine.generate(longRequest(), text -> cancel.set(true), cancel::get);
            assertEquals(StopReason.CANCELLED, r.stopReason());
            assertEquals(4, engine.generate("int y = 2;", 4, t -> {}).tokens().length);
        }
    }

    @Test
    void aListenerThatInterruptsItsThreadCancelsAndKeepsTheInterrupt() {
        try (SpeculaEngine engine = engine()) {
            GenerationResult r = engine.generate(longRequest(), text -> Thread.currentThread().interrupt(), () -> false);
            assertEquals(StopReason.CANCELLED, r.stopReason());
            assertTrue(Thread.interrupted(), "the interrupt is kept for the caller (and cleared here)");
            assertEquals(4, engine.generate("int y = 2;", 4, t -> {}).tokens().length);
        }
    }

    @Test
    void aListenerThatStartsANestedRequestGetsItsAnswer() {
        try (SpeculaEngine engine = engine()) {
            AtomicReference<GenerationResult> nested = new AtomicReference<>();
            AtomicBoolean cancel = new AtomicBoolean();
            GenerationResult r = engine.generate(longRequest(), text -> {
                if (nested.get() == null) nested.set(engine.generate("int y = 2;", 4, t -> {}));
                cancel.set(true);
            }, cancel::get);
            assertEquals(StopReason.CANCELLED, r.stopReason());
            assertEquals(4, nested.get().tokens().length);
        }
    }
}
