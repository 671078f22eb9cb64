package dev.specula.chat;

import dev.specula.Drafter;
import dev.specula.sampling.SamplingOptions;
import java.util.List;

/**
 * How to answer a conversation.
 *
 * @param maxTokens   the most tokens the answer may have
 * @param sampling    greedy (default) or sampled
 * @param drafter     the drafter for this answer; null uses the engine's
 * @param tools       tool definitions (OpenAI JSON schema objects as maps, see {@link ChatJson#parseTools}) the
 *                    template renders; empty for none
 * @param stopStrings texts that end the answer besides the model's end-of-turn tokens
 */
public record ChatOptions(int maxTokens, SamplingOptions sampling, Drafter drafter, List<Object> tools, List<String> stopStrings) {
    public static final int DEFAULT_MAX_TOKENS = 512;

    public ChatOptions {
        if (maxTokens < 0) throw new IllegalArgumentException("maxTokens must be >= 0, got " + maxTokens);
        if (sampling == null) sampling = SamplingOptions.GREEDY;
        tools = tools == null ? List.of() : List.copyOf(tools);
        stopStrings = stopStrings == null ? List.of() : List.copyOf(stopStrings);
    }

    /** Greedy, the engine's drafter, no tools, {@link #DEFAULT_MAX_TOKENS}. */
    public static ChatOptions defaults() {
        return new ChatOptions(DEFAULT_MAX_TOKENS, SamplingOptions.GREEDY, null, List.of(), List.of());
    }

    public ChatOptions withMaxTokens(int n) {
        return new ChatOptions(n, sampling, drafter, tools, stopStrings);
    }

    public ChatOptions withSampling(SamplingOptions s) {
        return new ChatOptions(maxTokens, s, drafter, tools, stopStrings);
    }

    public ChatOptions withDrafter(Drafter d) {
        return new ChatOptions(maxTokens, sampling, d, tools, stopStrings);
    }

    public ChatOptions withTools(List<Object> t) {
        return new ChatOptions(maxTokens, sampling, drafter, t, stopStrings);
    }

    public ChatOptions withStopStrings(List<String> s) {
        return new ChatOptions(maxTokens, sampling, drafter, tools, s);
    }
}
