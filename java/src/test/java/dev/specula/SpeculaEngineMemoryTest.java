package dev.specula;

import static org.junit.jupiter.api.Assertions.*;

import dev.specula.memory.MemoryBudget;
import dev.specula.memory.MemoryBudgetException;
import dev.specula.memory.MemoryPolicy;
import dev.specula.model.TestModelMaker;
import dev.specula.model.gguf.GgmlType;
import dev.specula.tokenizer.VocabTrainer;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collections;
import java.util.List;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** The engine facade checks its memory budget before loading anything, and shrinks losslessly when told to. */
class SpeculaEngineMemoryTest {
    static final int CONTEXT = 512;
    static final List<String> PROMPTS = List.of("class A {", "int x = ", "return max(a, b);", "for (int i = 0; i < n; i++) {");

    @TempDir
    static Path temp;
    static Path model;

    @BeforeAll
    static void writeModel() {
        model = temp.resolve("m.gguf");
        new TestModelMaker().arch("llama").dim(64).layers(2).heads(4).kvHeads(2).ff(160).vocab(400).context(CONTEXT)
                .type(GgmlType.F32).seed(4).tokenizer(VocabTrainer.ggufMetadata("llama", 400, 4)).write(model);
    }

    /** The budget the builder below asks for, at its defaults (batch 4, trees of 81 nodes). */
    static MemoryBudget.Request requested(Drafter drafter) {
        return SpeculaEngine.builder().model(model).drafter(drafter).contextLength(CONTEXT).memoryLimit(1L << 50).plan().requested();
    }

    static SpeculaEngine.Builder builder() {
        return SpeculaEngine.builder().model(model).drafter(Drafter.RECYCLING).contextLength(CONTEXT);
    }

    @Test
    void aTooSmallLimitIsRefusedBeforeAnythingIsLoaded() {
        long total = MemoryBudget.of(requested(Drafter.RECYCLING)).total();
        var e = assertThrows(MemoryBudgetException.class, () -> builder().memoryLimit(total - 1).build());
        assertTrue(e.getMessage().contains("needs " + MemoryBudget.human(total)), e.getMessage());
        assertTrue(e.getMessage().contains("(memory limit) is available"), e.getMessage());
        // Thrown by the budget check itself, with no model, cache or buffer made on the way: nothing native but
        // the context had been created when it was decided.
        List<String> frames = Arrays.stream(e.getStackTrace()).map(f -> f.getClassName() + "." + f.getMethodName()).toList();
        assertTrue(frames.contains("dev.specula.memory.MemoryBudget.fit"), frames.toString());
        for (String f : frames) {
            assertFalse(f.contains("LoadedModel") || f.contains("NativeModel") || f.contains("KvCache") || f.contains("Generator"), f);
        }
        // The same limit is enough with the budget's exact total.
        try (SpeculaEngine engine = builder().memoryLimit(total).build()) {
            assertFalse(engine.memoryBudget().shrunk());
            assertEquals(total, engine.memoryBudget().budget().total());
        }
    }

    @Test
    void shrinkingTheTreeStillGivesPlainGreedyOutput() {
        MemoryBudget.Request r = requested(Drafter.RECYCLING);
        long limit = MemoryBudget.of(r.withMaxTreeNodes(10)).total() + 1; // 81 -> 40 -> 20 -> 10
        try (SpeculaEngine engine = builder().memoryPolicy(MemoryPolicy.SHRINK_TREE).memoryLimit(limit).build()) {
            MemoryBudget.Fit fit = engine.memoryBudget();
            assertTrue(fit.shrunk());
            assertEquals("tree shrunk from 81 to 10 nodes", fit.shrinkNote());
            assertEquals(10, fit.budget().request().maxTreeNodes());
            assertTrue(fit.budget().total() <= limit);
            for (String prompt : PROMPTS) {
                GenerationResult plain = engine.generate(GenerationRequest.builder(prompt).maxTokens(48).drafter(Drafter.NONE).build(), t -> {}, () -> false);
                GenerationResult spec = engine.generate(prompt, 48, t -> {});
                assertNotNull(spec.speculation());
                assertArrayEquals(plain.tokens(), spec.tokens(), prompt);
                assertTrue(spec.speculation().maxDepthReached() <= 9, "trees of at most 10 nodes");
            }
        }
    }

    @Test
    void shrinkingTheBatchLimitsRequestsInFlight() throws Exception {
        MemoryBudget.Request r = requested(Drafter.PLD);
        long limit = MemoryBudget.of(r.withBatch(1)).total() + 1;
        try (SpeculaEngine engine = SpeculaEngine.builder().model(model).drafter(Drafter.PLD).contextLength(CONTEXT)
                .memoryPolicy(MemoryPolicy.SHRINK_BATCH).memoryLimit(limit).build()) {
            assertEquals("batch shrunk from 4 to 1 sequences", engine.memoryBudget().shrinkNote());
            String plain = engine.generate(GenerationRequest.builder(PROMPTS.get(0)).maxTokens(32).drafter(Drafter.NONE).build(), t -> {}, () -> false).text();
            List<String> texts = Collections.synchronizedList(new ArrayList<>());
            List<Throwable> errors = Collections.synchronizedList(new ArrayList<>());
            Thread[] threads = new Thread[3];
            for (int i = 0; i < threads.length; i++) {
                threads[i] = new Thread(() -> {
                    try {
                        texts.add(engine.generate(PROMPTS.get(0), 32, t -> {}).text());
                    } catch (Throwable t) {
                        errors.add(t);
                    }
                });
                threads[i].start();
            }
            for (Thread t : threads) t.join();
            assertEquals(List.of(), errors);
            assertEquals(List.of(plain, plain, plain), texts);
        }
        assertThrows(MemoryBudgetException.class, () -> SpeculaEngine.builder().model(model).drafter(Drafter.PLD).contextLength(CONTEXT)
                .memoryPolicy(MemoryPolicy.SHRINK_BATCH).memoryLimit(limit - 2).build());
    }
}
