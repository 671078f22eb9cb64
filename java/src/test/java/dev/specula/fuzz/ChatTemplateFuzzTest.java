package dev.specula.fuzz;

import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.code_intelligence.jazzer.junit.FuzzTest;
import dev.specula.chat.ChatJson;
import dev.specula.chat.ChatMessage;
import dev.specula.chat.ChatTemplate;
import dev.specula.chat.ChatTemplateException;
import dev.specula.chat.RenderedPrompt;
import dev.specula.chat.ToolCallParser;
import java.io.IOException;
import java.io.InputStream;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.time.LocalDateTime;
import java.util.Arrays;
import java.util.List;

/**
 * The chat package (our own Jinja engine) on arbitrary text, in three targets:
 * <ul>
 *   <li>{@link #renderTemplate}: any text as a chat template, parsed and rendered over a small fixed conversation,
 *       without and with tools. Contract: a rendered prompt within the output bound, or a
 *       {@link ChatTemplateException} with a message; never another exception, never a {@link StackOverflowError}
 *       (deep nesting is refused), and a render that stops near its time limit.</li>
 *   <li>{@link #renderConversation}: messages JSON, then optionally a NUL and tools JSON, through
 *       {@link ChatJson#parseMessages}/{@link ChatJson#parseTools} and rendered with a Qwen-style template.
 *       Contract: a rendered prompt or a {@link ChatTemplateException}/{@link IllegalArgumentException} with a
 *       message.</li>
 *   <li>{@link #parseToolCalls}: any text as a model's answer through {@link ToolCallParser#parse}: never throws,
 *       and each call has a name.</li>
 * </ul>
 *
 * <p>Seeds ({@link FuzzSeeds}): the test templates in {@code src/test/resources/chat/}, deep nesting, huge ranges,
 * recursion through macros, unterminated tags and unusual Unicode; OpenAI-style conversations and tools; tool-call
 * answers in the Qwen and Llama 3.1 formats.
 */
class ChatTemplateFuzzTest {
    /** Render bounds for fuzzing: small, so that a runaway template costs little. */
    private static final long TIME_LIMIT_MILLIS = 200;
    private static final long MAX_OUTPUT_CHARS = 1 << 16;
    /** How far past its time limit a render may stop: the time-limit check must be reached often, not only in loops. */
    private static final long TIME_SLACK_MILLIS = 3_000;
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
    private static final ChatTemplate QWEN = bounded(resource("/chat/qwen-style.jinja"));

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

    @FuzzTest
    void renderConversation(byte[] data) {
        int nul = indexOf(data, 0);
        String messagesJson = new String(nul < 0 ? data : Arrays.copyOf(data, nul), StandardCharsets.UTF_8);
        String toolsJson = nul < 0 ? null : new String(Arrays.copyOfRange(data, nul + 1, data.length), StandardCharsets.UTF_8);
        try {
            List<ChatMessage> messages = ChatJson.parseMessages(messagesJson);
            List<Object> tools = toolsJson == null ? List.of() : ChatJson.parseTools(toolsJson);
            render(QWEN, () -> QWEN.render(messages, tools, true, "", "<|im_end|>"));
        } catch (ChatTemplateException | IllegalArgumentException e) {
            checkMessage(e);
        }
    }

    @FuzzTest
    void parseToolCalls(byte[] data) {
        String answer = new String(data, StandardCharsets.UTF_8);
        ToolCallParser.Parsed parsed = ToolCallParser.parse(answer);
        assertNotNull(parsed.text());
        for (ChatMessage.ToolCall call : parsed.calls()) {
            assertNotNull(call.name(), "a tool call without a name");
            assertNotNull(call.argumentsJson(), "a tool call without arguments");
        }
    }

    private static ChatTemplate bounded(String source) {
        return ChatTemplate.of(source).withLimits(TIME_LIMIT_MILLIS, MAX_OUTPUT_CHARS).withClock(() -> FIXED_NOW);
    }

    /** One render: a prompt within the output bound, found in about the time limit, or a refusal with a message. */
    private static void render(ChatTemplate template, java.util.function.Supplier<RenderedPrompt> render) {
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
    private static void checkMessage(RuntimeException e) {
        assertNotNull(e.getMessage(), () -> e.getClass().getName() + " without a message");
    }

    private static int indexOf(byte[] data, int value) {
        for (int i = 0; i < data.length; i++) if (data[i] == value) return i;
        return -1;
    }

    private static String resource(String name) {
        try (InputStream in = ChatTemplateFuzzTest.class.getResourceAsStream(name)) {
            if (in == null) throw new IllegalStateException("missing test resource " + name);
            return new String(in.readAllBytes(), StandardCharsets.UTF_8);
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }
}
