package dev.specula.langchain4j;

import dev.specula.chat.Chat;
import dev.specula.chat.ChatMessage;
import dev.specula.chat.ChatOptions;
import dev.specula.chat.ChatResult;
import dev.specula.TextListener;
import java.util.List;
import java.util.function.BooleanSupplier;

/**
 * What the adapters answer with: a {@link Chat} on a Specula engine, or (in tests) anything else that answers a
 * conversation the same way. The adapters read the answer's raw text and find tool calls in it themselves.
 */
@FunctionalInterface
public interface ChatBackend {
    ChatResult chat(List<ChatMessage> messages, ChatOptions options, TextListener listener, BooleanSupplier cancelled);

    static ChatBackend of(Chat chat) {
        return chat::chat;
    }
}
