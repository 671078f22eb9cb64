package dev.specula.server;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.openai.client.OpenAIClient;
import com.openai.client.okhttp.OpenAIOkHttpClient;
import com.openai.core.http.StreamResponse;
import com.openai.models.chat.completions.ChatCompletion;
import com.openai.models.chat.completions.ChatCompletionChunk;
import com.openai.models.chat.completions.ChatCompletionCreateParams;
import com.openai.models.chat.completions.ChatCompletionStreamOptions;
import com.openai.models.completions.Completion;
import com.openai.models.completions.CompletionCreateParams;
import com.openai.models.completions.CompletionUsage;
import dev.specula.GenerationRequest;
import dev.specula.GenerationResult;
import dev.specula.chat.ChatMessage;
import dev.specula.chat.ChatOptions;
import dev.specula.chat.ChatResult;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/**
 * The server as a client nobody here wrote sees it: the official OpenAI Java SDK, non-streamed and streamed, text
 * and chat completions, on the demo target. Greedy answers must be the engine's own text for the same request.
 */
class OpenAiSdkTest {
    static final String KEY = "sk-test-0123456789";
    static final String PROMPT = "public static int max(int a, int b) {\n";
    static final int TOKENS = 24;

    static DemoServer demo;
    static OpenAIClient client;

    @BeforeAll
    static void start() throws Exception {
        demo = new DemoServer(KEY, 2, b -> b);
        client = OpenAIOkHttpClient.builder().baseUrl(demo.server.uri() + "/v1").apiKey(KEY).timeout(Duration.ofSeconds(120)).maxRetries(0).build();
    }

    @AfterAll
    static void stop() {
        if (client != null) client.close();
        if (demo != null) demo.close();
    }

    /** What the engine itself answers for the prompt, greedily. */
    static GenerationResult direct(String prompt, int tokens) {
        return demo.engine.generate(GenerationRequest.builder(prompt).maxTokens(tokens).build(), t -> { }, () -> false);
    }

    static ChatResult directChat(String user, int tokens) {
        return dev.specula.chat.Chat.of(demo.engine, "chatml").chat(List.of(ChatMessage.user(user)), ChatOptions.defaults().withMaxTokens(tokens), t -> { }, () -> false);
    }

    @Test
    void listsTheModel() {
        var models = client.models().list().data();
        assertEquals(1, models.size());
        assertEquals(demo.server.modelName(), models.getFirst().id());
    }

    @Test
    void completion() {
        Completion c = client.completions().create(CompletionCreateParams.builder().model(demo.server.modelName()).prompt(PROMPT)
                .maxTokens(TOKENS).temperature(0.0).build());
        GenerationResult expected = direct(PROMPT, TOKENS);
        assertEquals(expected.text(), c.choices().getFirst().text());
        CompletionUsage usage = c.usage().orElseThrow();
        assertEquals(expected.promptTokens().length, usage.promptTokens());
        assertEquals(expected.tokens().length, usage.completionTokens());
        assertEquals(usage.promptTokens() + usage.completionTokens(), usage.totalTokens());
        assertEquals(expected.tokens().length == TOKENS ? "length" : "stop", c.choices().getFirst().finishReason().asString());
    }

    @Test
    void streamedCompletion() {
        StringBuilder text = new StringBuilder();
        List<CompletionUsage> usages = new ArrayList<>();
        try (StreamResponse<Completion> stream = client.completions().createStreaming(CompletionCreateParams.builder()
                .model(demo.server.modelName()).prompt(PROMPT).maxTokens(TOKENS).temperature(0.0)
                .streamOptions(ChatCompletionStreamOptions.builder().includeUsage(true).build()).build())) {
            stream.stream().forEach(chunk -> {
                chunk.choices().forEach(choice -> text.append(choice.text()));
                chunk.usage().ifPresent(usages::add);
            });
        }
        GenerationResult expected = direct(PROMPT, TOKENS);
        assertEquals(expected.text(), text.toString());
        assertEquals(1, usages.size(), "one usage chunk, at the end");
        assertEquals(expected.tokens().length, usages.getFirst().completionTokens());
    }

    @Test
    void chatCompletion() {
        String user = "Write a method that returns the larger of two ints.";
        ChatCompletion c = client.chat().completions().create(ChatCompletionCreateParams.builder().model(demo.server.modelName())
                .addUserMessage(user).maxCompletionTokens(TOKENS).temperature(0.0).build());
        ChatResult expected = directChat(user, TOKENS);
        assertEquals(expected.rawText(), c.choices().getFirst().message().content().orElse(""));
        assertEquals(expected.generation().promptTokens().length, c.usage().orElseThrow().promptTokens());
        assertEquals(expected.generation().tokens().length, c.usage().orElseThrow().completionTokens());
    }

    @Test
    void streamedChatCompletion() {
        String user = "Write a for loop over an array.";
        StringBuilder text = new StringBuilder();
        List<String> finishReasons = new ArrayList<>();
        boolean[] sawRole = {false};
        try (StreamResponse<ChatCompletionChunk> stream = client.chat().completions().createStreaming(ChatCompletionCreateParams.builder()
                .model(demo.server.modelName()).addUserMessage(user).maxTokens(TOKENS).temperature(0.0).build())) {
            stream.stream().forEach(chunk -> {
                assertFalse(chunk.usage().isPresent(), "no usage without stream_options.include_usage");
                for (ChatCompletionChunk.Choice choice : chunk.choices()) {
                    if (choice.delta().role().isPresent()) sawRole[0] = true;
                    choice.delta().content().ifPresent(text::append);
                    choice.finishReason().ifPresent(r -> finishReasons.add(r.asString()));
                }
            });
        }
        assertTrue(sawRole[0], "the first chunk names the assistant role");
        assertEquals(directChat(user, TOKENS).rawText(), text.toString());
        assertEquals(1, finishReasons.size(), "one finish reason, in the last chunk");
    }

    @Test
    void sampledRequest() {
        // The sampled text depends on the drafts (the recycling matrix learns across requests), so only its shape is checked.
        Completion c = client.completions().create(CompletionCreateParams.builder().model(demo.server.modelName()).prompt(PROMPT).maxTokens(TOKENS)
                .temperature(0.8).topP(0.95).seed(42L).build());
        long n = c.usage().orElseThrow().completionTokens();
        assertTrue(n >= 1 && n <= TOKENS, "completion tokens " + n);
    }
}
