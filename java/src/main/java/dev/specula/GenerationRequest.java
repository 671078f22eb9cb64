package dev.specula;

import dev.specula.engine.DraftPolicy;
import dev.specula.sampling.CandidateFilter;
import dev.specula.sampling.RelaxedVerifier;
import dev.specula.sampling.SamplingOptions;
import java.util.List;
import java.util.Optional;
import java.util.Set;

/**
 * One request: the prompt text, how many tokens at most, how to sample, the strings that end it, and how to
 * draft. Immutable; made with {@link #builder(String)}:
 *
 * <pre>{@code
 * GenerationRequest.builder("/** Returns").maxTokens(64).sampling(SamplingOptions.sampled(0.8f, 42))
 *         .stopStrings(List.of("\n\n")).drafter(Drafter.PLD).build();
 * }</pre>
 */
public final class GenerationRequest {
    /** The token budget of a request that names none. */
    public static final int DEFAULT_MAX_TOKENS = 128;

    /**
     * A drafting policy of the caller's own, instead of one of the engine's {@link Drafter}s.
     *
     * @param policy   the drafter for this request (a fresh one where the policy keeps per-sequence state);
     *                 a policy that is AutoCloseable belongs to the request and is closed when it ends
     * @param maxTreeNodes the largest draft tree, root included (1: plain decoding)
     * @param adaptive whether measured step costs may shrink the tree, down to plain decoding
     */
    public record Speculation(DraftPolicy policy, int maxTreeNodes, boolean adaptive) {
        public Speculation {
            if (policy == null) throw new IllegalArgumentException("a speculation needs a policy");
        }
    }

    private final String prompt;
    private final int maxTokens;
    private final SamplingOptions sampling;
    private final List<String> stopStrings;
    private final Optional<Boolean> addBos;
    private final Drafter drafter;
    private final Speculation speculation;
    private final List<CandidateFilter> filters;
    private final RelaxedVerifier relaxed;
    private final int[] promptTokens;
    private final Set<Integer> stopTokens;

    private GenerationRequest(Builder b) {
        if (b.prompt == null) throw new IllegalArgumentException("prompt is null");
        if (b.maxTokens < 0) throw new IllegalArgumentException("maxTokens must be >= 0, got " + b.maxTokens);
        if (b.drafter != null && b.speculation != null)
            throw new IllegalArgumentException("a request names either a drafter or a speculation of its own, not both");
        if (b.relaxed != null && !b.sampling.greedy())
            throw new IllegalArgumentException("relaxed verification (" + b.relaxed.mode() + ") picks tokens greedily; use temperature 0");
        prompt = b.prompt;
        maxTokens = b.maxTokens;
        sampling = b.sampling;
        stopStrings = List.copyOf(b.stopStrings);
        addBos = b.addBos;
        drafter = b.drafter;
        speculation = b.speculation;
        filters = List.copyOf(b.filters);
        relaxed = b.relaxed;
        promptTokens = b.promptTokens == null ? null : b.promptTokens.clone();
        if (promptTokens != null && promptTokens.length == 0) throw new IllegalArgumentException("the prompt has no tokens");
        stopTokens = Set.copyOf(b.stopTokens);
    }

    /** A request for prompt: greedy, {@value #DEFAULT_MAX_TOKENS} tokens, the engine's drafter, until told otherwise. */
    public static Builder builder(String prompt) {
        return new Builder(prompt);
    }

    /** A builder holding this request's settings, to change some. */
    public Builder toBuilder() {
        Builder b = new Builder(prompt);
        b.maxTokens = maxTokens;
        b.sampling = sampling;
        b.stopStrings = stopStrings;
        b.addBos = addBos;
        b.drafter = drafter;
        b.speculation = speculation;
        b.filters = filters;
        b.relaxed = relaxed;
        b.promptTokens = promptTokens;
        b.stopTokens = stopTokens;
        return b;
    }

    public String prompt() {
        return prompt;
    }

    public int maxTokens() {
        return maxTokens;
    }

    public SamplingOptions sampling() {
        return sampling;
    }

    public List<String> stopStrings() {
        return stopStrings;
    }

    /** Whether to put the model's BOS token first; empty: as the model's tokenizer says. */
    public Optional<Boolean> addBos() {
        return addBos;
    }

    /** The engine drafter this request uses; null: the engine's own (or {@link #speculation()} when set). */
    public Drafter drafter() {
        return drafter;
    }

    /** A drafting policy of the caller's own, or null. */
    public Speculation speculation() {
        return speculation;
    }

    /** Constraints on every generated token (empty for none); every drafter gives the same output under them. */
    public List<CandidateFilter> filters() {
        return filters;
    }

    /** Null (lossless), or a LOSSY relaxed verifier for the speculative steps. */
    public RelaxedVerifier relaxed() {
        return relaxed;
    }

    /** The prompt's tokens when the caller tokenized it (then they are used as they are), else empty. */
    public Optional<int[]> promptTokens() {
        return Optional.ofNullable(promptTokens).map(int[]::clone);
    }

    /** Tokens that end generation besides the model's own end-of-generation tokens (empty for none). */
    public Set<Integer> stopTokens() {
        return stopTokens;
    }

    /** Settings of a {@link GenerationRequest}; each has a default. */
    public static final class Builder {
        private final String prompt;
        private int maxTokens = DEFAULT_MAX_TOKENS;
        private SamplingOptions sampling = SamplingOptions.GREEDY;
        private List<String> stopStrings = List.of();
        private Optional<Boolean> addBos = Optional.empty();
        private Drafter drafter;
        private Speculation speculation;
        private List<CandidateFilter> filters = List.of();
        private RelaxedVerifier relaxed;
        private int[] promptTokens;
        private Set<Integer> stopTokens = Set.of();

        private Builder(String prompt) {
            this.prompt = prompt;
        }

        /** The most tokens to generate (default {@value GenerationRequest#DEFAULT_MAX_TOKENS}). */
        public Builder maxTokens(int n) {
            this.maxTokens = n;
            return this;
        }

        /** How to choose tokens (default greedy). */
        public Builder sampling(SamplingOptions s) {
            this.sampling = s == null ? SamplingOptions.GREEDY : s;
            return this;
        }

        /** Strings that end the output; the text stops before the first one. */
        public Builder stopStrings(List<String> stops) {
            this.stopStrings = stops == null ? List.of() : stops;
            return this;
        }

        /** Whether to put the model's BOS token first (default: as the model's tokenizer says). */
        public Builder addBos(boolean add) {
            this.addBos = Optional.of(add);
            return this;
        }

        /** One of the engine's drafters for this request (default: the engine's own); {@link Drafter#NONE} decodes plainly. */
        public Builder drafter(Drafter d) {
            this.drafter = d;
            return this;
        }

        /** A drafting policy of the caller's own instead of an engine drafter. */
        public Builder speculation(Speculation s) {
            this.speculation = s;
            return this;
        }

        /** Constraints on every generated token; plain and speculative decoding give the same output under them. */
        public Builder filters(List<CandidateFilter> f) {
            this.filters = f == null ? List.of() : f;
            return this;
        }

        /**
         * Opts in to LOSSY relaxed verification (needs greedy sampling); null returns to lossless verification.
         * With plain decoding there is nothing to relax and decoding is plain greedy.
         */
        public Builder relaxed(RelaxedVerifier r) {
            this.relaxed = r;
            return this;
        }

        /**
         * The prompt already tokenized (for example a chat template's rendering, its special tokens parsed and the
         * conversation's text not): generation starts from exactly these tokens, BOS included or not as given, and
         * the prompt text is kept for the record only.
         */
        public Builder promptTokens(int[] tokens) {
            this.promptTokens = tokens;
            return this;
        }

        /** Tokens that end generation as the model's EOS does (for example a chat template's end-of-turn marker). */
        public Builder stopTokens(Set<Integer> tokens) {
            this.stopTokens = tokens == null ? Set.of() : tokens;
            return this;
        }

        public GenerationRequest build() {
            return new GenerationRequest(this);
        }
    }
}
