package dev.specula.chat;

import java.util.List;
import java.util.Objects;
import java.util.Set;

/**
 * One message of a conversation, as chat templates see it (Hugging Face's / OpenAI's message format).
 *
 * @param role       system, developer, user, assistant, tool or ipython
 * @param content    the text; null when the message has parts instead, or none (an assistant turn that only calls tools)
 * @param parts      list-of-parts content ({@code [{"type": "text", "text": ...}]}); empty when content is text
 * @param toolCalls  the tools an assistant turn calls; empty for none
 * @param toolCallId for a tool result: the id of the call it answers (may be null)
 * @param name       for a tool result: the tool's name (may be null)
 */
public record ChatMessage(String role, String content, List<Part> parts, List<ToolCall> toolCalls, String toolCallId, String name) {
    /** The roles a message may have. */
    public static final Set<String> ROLES = Set.of("system", "developer", "user", "assistant", "tool", "ipython");

    /** A content part: text, or another kind (an image URL...) that a template may render or ignore. */
    public record Part(String type, String text) {
        public Part {
            Objects.requireNonNull(type, "a content part needs a type");
        }

        public static Part text(String text) {
            return new Part("text", text);
        }
    }

    /**
     * A call of a tool by the assistant.
     *
     * @param id            the call's id (may be null)
     * @param name          the tool's name
     * @param argumentsJson the arguments as a JSON object
     */
    public record ToolCall(String id, String name, String argumentsJson) {
        public ToolCall {
            Objects.requireNonNull(name, "a tool call needs a name");
            if (argumentsJson == null || argumentsJson.isBlank()) argumentsJson = "{}";
        }
    }

    public ChatMessage {
        if (role == null || !ROLES.contains(role))
            throw new ChatTemplateException("unknown message role '" + role + "'; a role is one of " + new java.util.TreeSet<>(ROLES));
        parts = parts == null ? List.of() : List.copyOf(parts);
        toolCalls = toolCalls == null ? List.of() : List.copyOf(toolCalls);
    }

    public static ChatMessage system(String text) {
        return new ChatMessage("system", text, List.of(), List.of(), null, null);
    }

    public static ChatMessage user(String text) {
        return new ChatMessage("user", text, List.of(), List.of(), null, null);
    }

    public static ChatMessage user(List<Part> parts) {
        return new ChatMessage("user", null, parts, List.of(), null, null);
    }

    public static ChatMessage assistant(String text) {
        return new ChatMessage("assistant", text, List.of(), List.of(), null, null);
    }

    public static ChatMessage assistant(String text, List<ToolCall> calls) {
        return new ChatMessage("assistant", text, List.of(), calls, null, null);
    }

    /** The result of a tool call, fed back to the model. */
    public static ChatMessage toolResult(String toolCallId, String name, String text) {
        return new ChatMessage("tool", text, List.of(), List.of(), toolCallId, name);
    }
}
