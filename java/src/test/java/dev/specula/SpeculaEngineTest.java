package dev.specula;

import static org.junit.jupiter.api.Assertions.*;

import dev.specula.model.TestModelMaker;
import dev.specula.model.gguf.GgmlType;
import dev.specula.tokenizer.VocabTrainer;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class SpeculaEngineTest {
    @TempDir
    Path temp;

    @Test
    void builtEngineGeneratesTheSameTextFromManyThreads() throws Exception {
        Path path = temp.resolve("m.gguf");
        new TestModelMaker().arch("llama").dim(64).layers(2).heads(4).kvHeads(2).ff(160).vocab(400).context(512)
                .type(GgmlType.F32).seed(4).tokenizer(VocabTrainer.ggufMetadata("llama", 400, 4)).write(path);
        try (SpeculaEngine engine = SpeculaEngine.builder().model(path).drafter(Drafter.RECYCLING).contextLength(512).build()) {
            // Plain decoding (drafter none) through the same engine.
            String plain = engine.generate(GenerationRequest.builder("class A {").maxTokens(48).drafter(Drafter.NONE).build(), t -> {}, () -> false).text();
            List<String> texts = Collections.synchronizedList(new ArrayList<>());
            List<Throwable> errors = Collections.synchronizedList(new ArrayList<>());
            Thread[] threads = new Thread[4];
            for (int i = 0; i < threads.length; i++) {
                threads[i] = new Thread(() -> {
                    try {
                        GenerationResult r = engine.generate("class A {", 48, t -> {});
                        assertNotNull(r.speculation());
                        texts.add(r.text());
                    } catch (Throwable e) {
                        errors.add(e);
                    }
                });
                threads[i].start();
            }
            for (Thread t : threads) t.join();
            assertEquals(List.of(), errors);
            assertEquals(4, texts.size());
            for (String t : texts) assertEquals(plain, t);
        }
        var unknown = assertThrows(IllegalArgumentException.class, () -> Drafter.parse("magic"));
        assertTrue(unknown.getMessage().contains("none, pld, recycling, draft-model, early-exit"), unknown.getMessage());
        assertThrows(IllegalArgumentException.class, () -> SpeculaEngine.builder().build());
    }
}
