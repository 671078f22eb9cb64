package dev.specula.fuzz;

import com.code_intelligence.jazzer.junit.FuzzTest;
import dev.specula.chat.ChatJson;
import dev.specula.chat.ChatMessage;
import dev.specula.chat.ChatTemplate;
import dev.specula.chat.ChatTemplateException;
import java.nio.charset.StandardCharsets;
import java.util.Arrays;
import java.util.List;

/**
 * A conversation in OpenAI's JSON format on arbitrary bytes: messages JSON, then optionally a NUL and tools JSON,
 * through {@link ChatJson#parseMessages} and {@link ChatJson#parseTools}, rendered with a Qwen-style template (the
 * test resource {@code chat/qwen-style.jinja}). Contract: a rendered prompt, or a {@link ChatTemplateException}
 * or {@link IllegalArgumentException} with a message.
 *
 * <p>Seeds ({@link FuzzSeeds}): conversations with tool calls and tool results, content parts, tools, deep JSON,
 * wrong types, template syntax inside content.
 */
class ChatConversationFuzzTest {
    private static final ChatTemplate QWEN = ChatTemplateFuzzTest.bounded(ChatTemplateFuzzTest.resource("/chat/qwen-style.jinja"));

    @FuzzTest
    void renderConversation(byte[] data) {
        int nul = indexOf(data, 0);
        String messagesJson = new String(nul < 0 ? data : Arrays.copyOf(data, nul), StandardCharsets.UTF_8);
        String toolsJson = nul < 0 ? null : new String(Arrays.copyOfRange(data, nul + 1, data.length), StandardCharsets.UTF_8);
        try {
            List<ChatMessage> messages = ChatJson.parseMessages(messagesJson);
            List<Object> tools = toolsJson == null ? List.of() : ChatJson.parseTools(toolsJson);
            ChatTemplateFuzzTest.render(QWEN, () -> QWEN.render(messages, tools, true, "", "<|im_end|>"));
        } catch (ChatTemplateException | IllegalArgumentException e) {
            ChatTemplateFuzzTest.checkMessage(e);
        }
    }

    private static int indexOf(byte[] data, int value) {
        for (int i = 0; i < data.length; i++) if (data[i] == value) return i;
        return -1;
    }
}
