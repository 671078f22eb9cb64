package dev.specula.engine;

import static org.junit.jupiter.api.Assertions.*;

import dev.specula.model.TestModelMaker;
import dev.specula.model.gguf.GgmlType;
import dev.specula.nativeapi.Context;
import dev.specula.nativeapi.Recycler;
import dev.specula.policies.RecyclingPolicy;
import dev.specula.tokenizer.VocabTrainer;
import java.nio.file.Path;
import java.util.List;
import java.util.concurrent.atomic.AtomicInteger;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** Text-level generation: streaming, stop strings, cancellation, token budget, speculation through the same door. */
class GeneratorTest {
    @TempDir
    static Path temp;
    static Context context;
    static LoadedModel model;

    @BeforeAll
    static void setUp() {
        context = Context.cpu();
        Path path = temp.resolve("gen.gguf");
        new TestModelMaker().arch("qwen2").dim(64).layers(2).heads(4).kvHeads(2).ff(160).vocab(600).context(512)
                .type(GgmlType.F16).seed(9).tokenizer(VocabTrainer.ggufMetadata("gpt2", 600, 9)).write(path);
        model = LoadedModel.open(context, path);
    }

    @AfterAll
    static void tearDown() {
        model.close();
        context.close();
    }

    @Test
    void streamedTextIsTheResultTextAndDecodesTheTokens() {
        StringBuilder streamed = new StringBuilder();
        GenerationResult r = model.generator(512).generate(GenerationRequest.greedy("int x = 1;", 40), streamed::append, () -> false);
        assertEquals(streamed.toString(), r.text());
        assertEquals(model.tokenizer().decode(r.tokens()), r.text());
        assertEquals(40, r.tokens().length);
        assertEquals(StopReason.MAX_TOKENS, r.stopReason());
        assertTrue(r.stats().generatedTokensPerSecond() > 0 && r.stats().promptTokensPerSecond() > 0);
    }

    @Test
    void aStopStringEndsTheTextBeforeIt() {
        Generator g = model.generator(512);
        String full = g.generate(GenerationRequest.greedy("int x = 1;", 40), t -> {}, () -> false).text();
        assertTrue(full.length() > 6, full);
        String stop = full.substring(3, 6);
        GenerationResult r = g.generate(new GenerationRequest("int x = 1;", 40, SamplingOptions.GREEDY, List.of(stop), null, null),
                t -> {}, () -> false);
        assertEquals(StopReason.STOP_STRING, r.stopReason());
        assertEquals(full.substring(0, full.indexOf(stop)), r.text());
    }

    @Test
    void cancellationStopsPromptly() {
        AtomicInteger pieces = new AtomicInteger();
        GenerationResult r = model.generator(512).generate(GenerationRequest.greedy("x", 200), t -> pieces.incrementAndGet(),
                () -> pieces.get() >= 3);
        assertEquals(StopReason.CANCELLED, r.stopReason());
        assertTrue(r.tokens().length < 200);
    }

    @Test
    void speculativeRequestsGiveTheSameTextWithStats() {
        Generator g = model.generator(512);
        GenerationRequest plain = GenerationRequest.greedy("for (int i = 0; i < n; i++) {", 48);
        GenerationResult a = g.generate(plain, t -> {}, () -> false);
        try (Recycler matrix = Recycler.create(context, 600, Recycler.DEFAULT_K, Recycler.Fill.ZERO)) {
            var policy = new RecyclingPolicy(matrix, Recycler.Template.defaultTemplate());
            GenerationResult b = g.generate(plain.withSpeculation(new GenerationRequest.Speculation(policy, 81, true)), t -> {}, () -> false);
            assertEquals(a.text(), b.text());
            assertNotNull(b.speculation());
            assertTrue(b.speculation().steps() > 0 && b.speculation().steps() <= 48);
        }
    }

    @Test
    void speculationRefusesOptionsItCannotKeepLossless() {
        GenerationRequest r = new GenerationRequest("x", 8, SamplingOptions.sampled(1f, 1).withMinP(0.1f), List.of(), null,
                new GenerationRequest.Speculation(new dev.specula.policies.PromptLookupPolicy(), 8, false));
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> model.generator(512).generate(r, t -> {}, () -> false));
        assertTrue(e.getMessage().contains("min-p"), e.getMessage());
    }
}
