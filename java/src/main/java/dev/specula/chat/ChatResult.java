package dev.specula.chat;

import dev.specula.GenerationResult;
import dev.specula.engine.SpecStats;
import dev.specula.StopReason;
import java.util.List;

/**
 * An answer: its text (tool-call markup removed when it called tools), the tool calls found in it, the rendered
 * prompt it answered, and the generation behind it (tokens, stop reason, cost, speculation statistics).
 */
public record ChatResult(String text, List<ChatMessage.ToolCall> toolCalls, RenderedPrompt prompt, GenerationResult generation) {
    public ChatResult {
        toolCalls = List.copyOf(toolCalls);
    }

    /** The answer as raw generated text, tool-call markup included. */
    public String rawText() {
        return generation.text();
    }

    public StopReason stopReason() {
        return generation.stopReason();
    }

    /** Speculation statistics; null when the answer was decoded plainly. */
    public SpecStats speculation() {
        return generation.speculation();
    }

    /** The answer as an assistant message, to append to the conversation. */
    public ChatMessage asMessage() {
        return new ChatMessage("assistant", toolCalls.isEmpty() || !text.isEmpty() ? text : null, List.of(), toolCalls, null, null);
    }
}
