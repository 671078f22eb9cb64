package dev.specula.langchain4j;

import dev.specula.Drafter;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.langchain4j.data.message.UserMessage;
import dev.langchain4j.model.chat.request.ChatRequest;
import dev.langchain4j.model.chat.response.ChatResponse;
import dev.langchain4j.model.chat.response.PartialResponse;
import dev.langchain4j.model.chat.response.PartialResponseContext;
import dev.langchain4j.model.chat.response.StreamingChatResponseHandler;
import dev.langchain4j.model.output.FinishReason;
import dev.langchain4j.service.AiServices;
import dev.specula.SpeculaEngine;
import dev.specula.chat.ChatMessage;
import dev.specula.chat.ChatOptions;
import dev.specula.model.TestModelMaker;
import dev.specula.model.gguf.GgmlType;
import dev.specula.tokenizer.VocabTrainer;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** Plain chat through the adapters on a REAL small model (random weights, its own chat template in the GGUF). */
class RealModelTest {
    static final String TEMPLATE = "{% for m in messages %}### {{ m.role }}:\n{{ m.content }}\n{% endfor %}"
            + "{% if add_generation_prompt %}### assistant:\n{% endif %}";

    @TempDir
    static Path dir;
    static SpeculaEngine engine;

    @BeforeAll
    static void engine() {
        Map<String, Object> tokenizer = new LinkedHashMap<>(VocabTrainer.ggufMetadata("gpt2", 400, 3));
        tokenizer.put("tokenizer.chat_template", TEMPLATE);
        Path model = dir.resolve("chat.gguf");
        new TestModelMaker().arch("llama").dim(64).layers(2).heads(4).kvHeads(2).ff(160).vocab(400).context(512)
                .type(GgmlType.F32).seed(5).tokenizer(tokenizer).write(model);
        engine = SpeculaEngine.builder().model(model).drafter(Drafter.RECYCLING).contextLength(512).batch(2).build();
    }

    @AfterAll
    static void close() {
        engine.close();
    }

    interface Assistant {
        String chat(String message);
    }

    @Test
    void aiServicesChatsWithTheRealModel() {
        String expected = engine.chat().chat(List.of(ChatMessage.user("public static int max(int a, int b) {")),
                ChatOptions.defaults().withMaxTokens(16), t -> { }, () -> false).text();
        Assistant assistant = AiServices.builder(Assistant.class)
                .chatModel(SpeculaChatModel.builder().engine(engine).maxTokens(16).build()).build();
        assertEquals(expected, assistant.chat("public static int max(int a, int b) {"));
    }

    @Test
    void responsesCarrySpeculationStats() {
        ChatResponse r = SpeculaChatModel.builder().engine(engine).maxTokens(16).build()
                .chat(ChatRequest.builder().messages(UserMessage.from("for (int i = 0; i < n; i++) {")).build());
        SpeculaChatResponseMetadata meta = assertInstanceOf(SpeculaChatResponseMetadata.class, r.metadata());
        assertEquals("engine default", meta.drafter());
        assertTrue(meta.steps() > 0);
        assertTrue(meta.meanAcceptedTokens() >= 1.0);
        assertTrue(r.tokenUsage().outputTokenCount() <= 16);
        assertNotNull(r.finishReason());
        ChatResponse plain = SpeculaChatModel.builder().engine(engine).drafter(Drafter.NONE).maxTokens(16).build()
                .chat(ChatRequest.builder().messages(UserMessage.from("for (int i = 0; i < n; i++) {")).build());
        assertEquals(r.aiMessage().text(), plain.aiMessage().text(), "lossless: the same answer without speculation");
        assertEquals("none", ((SpeculaChatResponseMetadata) plain.metadata()).drafter());
    }

    static void sleepMillis(long ms) {
        try {
            Thread.sleep(ms);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
    }

    /** Collects a streamed answer; cancels through the handle after cancelAfter partial responses (0: never). */
    static final class Collector implements StreamingChatResponseHandler {
        final StringBuilder partials = new StringBuilder();
        final CompletableFuture<ChatResponse> done = new CompletableFuture<>();
        final int cancelAfter;
        int count;

        Collector(int cancelAfter) {
            this.cancelAfter = cancelAfter;
        }

        @Override
        public void onPartialResponse(PartialResponse partial, PartialResponseContext context) {
            partials.append(partial.text());
            if (++count == cancelAfter) context.streamingHandle().cancel();
        }

        @Override
        public void onCompleteResponse(ChatResponse response) {
            done.complete(response);
        }

        @Override
        public void onError(Throwable error) {
            done.completeExceptionally(error);
        }
    }

    @Test
    void streamingDeliversPartialsAndCancels() throws Exception {
        ChatRequest request = ChatRequest.builder().messages(UserMessage.from("class A {")).maxOutputTokens(40).build();
        var model = SpeculaStreamingChatModel.builder().engine(engine).build();
        Collector all = new Collector(0);
        model.chat(request, all);
        ChatResponse r = all.done.get(60, TimeUnit.SECONDS);
        assertEquals(r.aiMessage().text(), all.partials.toString());
        assertTrue(all.count > 0);
        // Cancelled after its first piece: the handle's cancel comes from the handler's thread while the engine goes
        // on, so each step of this generation waits up to 25 ms for it and 400 tokens take seconds, however long
        // that thread waits for a core.
        ChatBackend chat = ChatBackend.of(engine.chat());
        var paced = SpeculaStreamingChatModel.builder().backend((messages, options, listener, isCancelled) -> chat.chat(messages, options, listener, () -> {
            for (int i = 0; i < 5 && !isCancelled.getAsBoolean(); i++) sleepMillis(5);
            return isCancelled.getAsBoolean();
        })).build();
        Collector cancelled = new Collector(1);
        paced.chat(ChatRequest.builder().messages(UserMessage.from("class A {")).maxOutputTokens(400).build(), cancelled);
        ChatResponse c = cancelled.done.get(60, TimeUnit.SECONDS);
        assertEquals(FinishReason.OTHER, c.finishReason(), "cancelled");
        assertTrue(c.tokenUsage().outputTokenCount() < 400);
        Collector failed = new Collector(0);
        model.chat(ChatRequest.builder().messages(UserMessage.from("x")).maxOutputTokens(-1).build(), failed);
        Exception e = org.junit.jupiter.api.Assertions.assertThrows(Exception.class, () -> failed.done.get(60, TimeUnit.SECONDS));
        assertNotNull(e.getCause());
    }
}
