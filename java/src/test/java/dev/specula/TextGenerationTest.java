package dev.specula;

import static org.junit.jupiter.api.Assertions.*;

import dev.specula.model.TestModelMaker;
import dev.specula.model.gguf.GgmlType;
import dev.specula.policies.PromptLookupPolicy;
import dev.specula.sampling.SamplingOptions;
import dev.specula.tokenizer.VocabTrainer;
import java.nio.file.Path;
import java.util.List;
import java.util.concurrent.atomic.AtomicInteger;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** Text-level generation: streaming, stop strings, cancellation, token budget, speculation through the same door. */
class TextGenerationTest {
    @TempDir
    static Path temp;
    static SpeculaEngine engine;

    @BeforeAll
    static void setUp() {
        Path path = temp.resolve("gen.gguf");
        new TestModelMaker().arch("qwen2").dim(64).layers(2).heads(4).kvHeads(2).ff(160).vocab(600).context(512)
                .type(GgmlType.F16).seed(9).tokenizer(VocabTrainer.ggufMetadata("gpt2", 600, 9)).write(path);
        engine = SpeculaEngine.builder().model(path).drafter(Drafter.NONE).build();
    }

    @AfterAll
    static void tearDown() {
        engine.close();
    }

    static GenerationRequest.Builder request(String prompt, int maxTokens) {
        return GenerationRequest.builder(prompt).maxTokens(maxTokens);
    }

    @Test
    void streamedTextIsTheResultTextAndDecodesTheTokens() {
        StringBuilder streamed = new StringBuilder();
        GenerationResult r = engine.generate(request("int x = 1;", 40).build(), streamed::append, () -> false);
        assertEquals(streamed.toString(), r.text());
        assertEquals(engine.model().tokenizer().decode(r.tokens()), r.text());
        assertEquals(40, r.tokens().length);
        assertEquals(StopReason.MAX_TOKENS, r.stopReason());
        assertNull(r.speculation(), "plain decoding reports no speculation");
        assertTrue(r.stats().generatedTokensPerSecond() > 0 && r.stats().promptTokensPerSecond() > 0);
        assertEquals(512, engine.contextLength(), "the default context, capped to the model's training context");
    }

    @Test
    void aStopStringEndsTheTextBeforeIt() {
        String full = engine.generate(request("int x = 1;", 40).build(), t -> {}, () -> false).text();
        assertTrue(full.length() > 6, full);
        String stop = full.substring(3, 6);
        GenerationResult r = engine.generate(request("int x = 1;", 40).stopStrings(List.of(stop)).build(), t -> {}, () -> false);
        assertEquals(StopReason.STOP_STRING, r.stopReason());
        assertEquals(full.substring(0, full.indexOf(stop)), r.text());
    }

    @Test
    void cancellationStopsPromptly() {
        AtomicInteger pieces = new AtomicInteger();
        GenerationResult r = engine.generate(request("x", 200).build(), t -> pieces.incrementAndGet(), () -> pieces.get() >= 3);
        assertEquals(StopReason.CANCELLED, r.stopReason());
        assertTrue(r.tokens().length < 200);
    }

    @Test
    void speculativeRequestsGiveTheSameTextWithStats() {
        GenerationRequest plain = request("for (int i = 0; i < n; i++) {", 48).build();
        GenerationResult a = engine.generate(plain, t -> {}, () -> false);
        for (Drafter d : List.of(Drafter.RECYCLING, Drafter.PLD, Drafter.EARLY_EXIT)) {
            GenerationResult b = engine.generate(plain.toBuilder().drafter(d).build(), t -> {}, () -> false);
            assertEquals(a.text(), b.text(), d.cliName());
            assertNotNull(b.speculation());
            assertTrue(b.speculation().steps() > 0 && b.speculation().steps() <= 48);
        }
    }

    @Test
    void speculationRefusesOptionsItCannotKeepLossless() {
        GenerationRequest r = request("x", 8).sampling(SamplingOptions.sampled(1f, 1).withMinP(0.1f))
                .speculation(new GenerationRequest.Speculation(new PromptLookupPolicy(), 8, false)).build();
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> engine.generate(r, t -> {}, () -> false));
        assertTrue(e.getMessage().contains("min-p"), e.getMessage());
        GenerationRequest named = request("x", 8).sampling(SamplingOptions.sampled(1f, 1).withRepetitionPenalty(1.2f, 64)).drafter(Drafter.PLD).build();
        e = assertThrows(IllegalArgumentException.class, () -> engine.generate(named, t -> {}, () -> false));
        assertTrue(e.getMessage().contains("drafter none"), e.getMessage());
    }

    @Test
    void repetitionPenaltyAndMinPWorkWithPlainDecoding() {
        SamplingOptions options = SamplingOptions.sampled(0.9f, 7).withMinP(0.05f).withRepetitionPenalty(1.3f, 64);
        GenerationResult r = engine.generate(request("int x = 1;", 24).sampling(options).build(), t -> {}, () -> false);
        assertEquals(24, r.tokens().length);
        GenerationResult again = engine.generate(request("int x = 1;", 24).sampling(options).build(), t -> {}, () -> false);
        assertArrayEquals(r.tokens(), again.tokens(), "the same seed gives the same tokens");
    }

    @Test
    void requestsAreBuiltWithDefaultsAndChecked() {
        GenerationRequest r = GenerationRequest.builder("x").build();
        assertEquals(GenerationRequest.DEFAULT_MAX_TOKENS, r.maxTokens());
        assertEquals(SamplingOptions.GREEDY, r.sampling());
        assertTrue(r.addBos().isEmpty());
        assertNull(r.drafter());
        assertEquals(false, r.toBuilder().addBos(false).build().addBos().orElseThrow());
        assertThrows(IllegalArgumentException.class, () -> GenerationRequest.builder("x").maxTokens(-1).build());
        assertThrows(IllegalArgumentException.class, () -> GenerationRequest.builder(null).build());
    }
}
