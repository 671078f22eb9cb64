package dev.specula.engine;

import java.util.List;

/**
 * One request: the prompt text, how many tokens at most, how to sample, the strings that end it, and how to
 * speculate.
 *
 * @param addBos      whether to put the model's BOS token first (null = what the model's tokenizer says)
 * @param speculation how to draft; null decodes plainly (the only way that supports repetition penalty and min-p)
 */
public record GenerationRequest(String prompt, int maxTokens, SamplingOptions sampling, List<String> stopStrings, Boolean addBos,
                                Speculation speculation) {

    /**
     * @param policy   the drafter for this request (a fresh one where the policy keeps per-sequence state);
     *                 a policy that is AutoCloseable belongs to the request and is closed when it ends
     * @param maxNodes the largest draft tree, root included
     * @param adaptive whether measured step costs may shrink the tree, down to plain decoding
     */
    public record Speculation(DraftPolicy policy, int maxNodes, boolean adaptive) {
        public Speculation {
            if (policy == null) throw new IllegalArgumentException("a speculation needs a policy");
        }
    }

    public GenerationRequest {
        if (prompt == null) throw new IllegalArgumentException("prompt is null");
        if (maxTokens < 0) throw new IllegalArgumentException("maxTokens must be >= 0, got " + maxTokens);
        if (sampling == null) sampling = SamplingOptions.GREEDY;
        stopStrings = stopStrings == null ? List.of() : List.copyOf(stopStrings);
    }

    public static GenerationRequest greedy(String prompt, int maxTokens) {
        return new GenerationRequest(prompt, maxTokens, SamplingOptions.GREEDY, List.of(), null, null);
    }

    public GenerationRequest withSpeculation(Speculation s) {
        return new GenerationRequest(prompt, maxTokens, sampling, stopStrings, addBos, s);
    }
}
