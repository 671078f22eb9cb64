package dev.specula.fuzz;

import static org.junit.jupiter.api.Assertions.assertNotNull;

import com.code_intelligence.jazzer.junit.FuzzTest;
import dev.specula.chat.ChatMessage;
import dev.specula.chat.ToolCallParser;
import java.nio.charset.StandardCharsets;

/**
 * Any text as a model's answer through {@link ToolCallParser#parse}. Contract: never throws, and every call it
 * finds has a name and arguments.
 *
 * <p>Seeds ({@link FuzzSeeds}): answers in the Qwen ({@code <tool_call>} tags) and Llama 3.1 (bare JSON) formats,
 * and near misses: unterminated tags, bad JSON, deep JSON.
 */
class ToolCallFuzzTest {
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
}
