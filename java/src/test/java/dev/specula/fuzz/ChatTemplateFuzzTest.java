package dev.specula.fuzz;

import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.code_intelligence.jazzer.junit.FuzzTest;
import dev.specula.chat.ChatJson;
import dev.specula.chat.ChatMessage;
import dev.specula.chat.ChatTemplate;
import dev.specula.chat.ChatTemplateException;
import dev.specula.chat.RenderedPrompt;
import java.io.IOException;
import java.io.InputStream;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.time.LocalDateTime;
import java.util.List;

/**
 * Any text as a chat template (our own Jinja engine, {@code dev.specula.chat}), parsed and rendered over a small
 * fixed conversation, without and with tools. Contract: a rendered prompt within the output bound, or a
 * {@link ChatTemplateException} with a message; never another exception, never a {@link StackOverflowError} (deep
 * nesting is refused), and a render that stops near its time limit. Also holds what the other chat targets
 * ({@link ChatConversationFuzzTest}, {@link ToolCallFuzzTest}) share.
 *
 * <p>Seeds ({@link FuzzSeeds}): the test templates in {@code src/test/resources/chat/}, deep nesting, huge ranges,
 * recursion through macros, unterminated tags and unusual Unicode.
 */
class ChatTemplateFuzzTest {
    /** Render bounds for fuzzing: small, so that a runaway template costs little. */
    private static final long TIME_LIMIT_MILLIS = 200;
    private static final long MAX_OUTPUT_CHARS = 1 << 16;
    /**
     * How far past its time limit a render may stop: the time-limit check must be reached often, not only in loops.
     * Generous, because a loaded machine stalls threads for seconds; a render that never checks runs for minutes.
     */
    private static final long TIME_SLACK_MILLIS = 15_000;
    private static final LocalDateTime FIXED_NOW = LocalDateTime.of(2026, 1, 2, 3, 4, 5);

    private static final List<ChatMessage> CONVERSATION = List.of(
            ChatMessage.system("You are terse."),
            ChatMessage.user("What is 2+2? é → 😀"),
            ChatMessage.assistant("", List.of(new ChatMessage.ToolCall("call_0", "add", "{\"a\": 2, \"b\": 2}"))),
            new ChatMessage("tool", "4", List.of(), List.of(), "call_0", "add"),
            ChatMessage.assistant("4"),
            ChatMessage.user("Thanks {{ and }} {% raw %}"));
    private static final List<Object> TOOLS = ChatJson.parseTools("""
            [{"type": "function", "function": {"name": "add", "description": "Adds two numbers",
              "parameters": {"type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "number"}},
                             "required": ["a", "b"]}}}]""");

    @FuzzTest
    void renderTemplate(byte[] data) {
        String source = new String(data, StandardCharsets.UTF_8);
        ChatTemplate template;
        try {
            template = bounded(source);
        } catch (ChatTemplateException e) {
            checkMessage(e);
            return;
        }
        render(template, () -> template.render(CONVERSATION, List.of(), true, "<s>", "</s>"));
        render(template, () -> template.render(CONVERSATION.subList(0, 2), TOOLS, false, "", ""));
    }

    static ChatTemplate bounded(String source) {
        return ChatTemplate.of(source).withLimits(TIME_LIMIT_MILLIS, MAX_OUTPUT_CHARS).withClock(() -> FIXED_NOW);
    }

    /** One render: a prompt within the output bound, found in about the time limit, or a refusal with a message. */
    static void render(ChatTemplate template, java.util.function.Supplier<RenderedPrompt> render) {
        long start = System.nanoTime();
        try {
            RenderedPrompt p = render.get();
            assertTrue(p.text().length() <= MAX_OUTPUT_CHARS, () -> "rendered " + p.text().length() + " characters, past the bound");
        } catch (ChatTemplateException e) {
            checkMessage(e);
        }
        long millis = (System.nanoTime() - start) / 1_000_000;
        assertTrue(millis <= TIME_LIMIT_MILLIS + TIME_SLACK_MILLIS, () -> "a render took " + millis + " ms, its limit is " + TIME_LIMIT_MILLIS);
    }

    /** The template's own raise_exception may say nothing; every other refusal says something. */
    static void checkMessage(RuntimeException e) {
        assertNotNull(e.getMessage(), () -> e.getClass().getName() + " without a message");
    }

    static String resource(String name) {
        try (InputStream in = ChatTemplateFuzzTest.class.getResourceAsStream(name)) {
            if (in == null) throw new IllegalStateException("missing test resource " + name);
            return new String(in.readAllBytes(), StandardCharsets.UTF_8);
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }
}
