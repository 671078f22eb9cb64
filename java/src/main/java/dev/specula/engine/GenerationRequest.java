package dev.specula.engine;

import java.util.List;

/**
 * One request: the prompt text, how many tokens at most, how to sample, the strings that end it, and how to
 * speculate.
 *
 * @param addBos      whether to put the model's BOS token first (null = what the model's tokenizer says)
 * @param speculation how to draft; null decodes plainly (the only way that supports repetition penalty and min-p)
 * @param filters     constraints on every generated token (empty for none); plain and speculative decoding
 *                    give the same output under the same filters
 * @param relaxed     null (lossless), or a LOSSY relaxed verifier for the speculative steps (needs greedy
 *                    sampling); without speculation it has nothing to relax and decoding is plain greedy
 */
public record GenerationRequest(String prompt, int maxTokens, SamplingOptions sampling, List<String> stopStrings, Boolean addBos,
                                Speculation speculation, List<CandidateFilter> filters, RelaxedVerifier relaxed) {

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
        filters = filters == null ? List.of() : List.copyOf(filters);
        if (relaxed != null && !sampling.greedy())
            throw new IllegalArgumentException("relaxed verification (" + relaxed.mode() + ") picks tokens greedily; use temperature 0");
    }

    /** A request without filters, verified losslessly. */
    public GenerationRequest(String prompt, int maxTokens, SamplingOptions sampling, List<String> stopStrings, Boolean addBos,
                             Speculation speculation) {
        this(prompt, maxTokens, sampling, stopStrings, addBos, speculation, List.of(), null);
    }

    public static GenerationRequest greedy(String prompt, int maxTokens) {
        return new GenerationRequest(prompt, maxTokens, SamplingOptions.GREEDY, List.of(), null, null);
    }

    public GenerationRequest withSpeculation(Speculation s) {
        return new GenerationRequest(prompt, maxTokens, sampling, stopStrings, addBos, s, filters, relaxed);
    }

    public GenerationRequest withFilters(List<CandidateFilter> f) {
        return new GenerationRequest(prompt, maxTokens, sampling, stopStrings, addBos, speculation, f, relaxed);
    }

    /** Opts in to LOSSY relaxed verification; null returns to lossless verification. */
    public GenerationRequest withRelaxedVerifier(RelaxedVerifier r) {
        return new GenerationRequest(prompt, maxTokens, sampling, stopStrings, addBos, speculation, filters, r);
    }
}
