package dev.specula.langchain4j;

import dev.langchain4j.model.chat.response.ChatResponseMetadata;
import java.util.Arrays;
import java.util.Objects;

/**
 * Response metadata with Specula's speculation statistics: the drafter, verification steps, mean tokens accepted
 * per step, and the accepted-length histogram. For a plainly decoded answer the drafter is "none" and the
 * speculation figures are zero.
 */
public final class SpeculaChatResponseMetadata extends ChatResponseMetadata {
    private final String drafter;
    private final long steps;
    private final double meanAcceptedTokens;
    private final long[] acceptedLengthHistogram;
    private final double generatedTokensPerSecond;

    private SpeculaChatResponseMetadata(Builder b) {
        super(b);
        this.drafter = b.drafter;
        this.steps = b.steps;
        this.meanAcceptedTokens = b.meanAcceptedTokens;
        this.acceptedLengthHistogram = b.acceptedLengthHistogram == null ? new long[0] : b.acceptedLengthHistogram.clone();
        this.generatedTokensPerSecond = b.generatedTokensPerSecond;
    }

    public String drafter() {
        return drafter;
    }

    /** Verification steps (target-model passes) the answer took; 0 when decoded plainly. */
    public long steps() {
        return steps;
    }

    /** Tokens produced per verification step; 0 when decoded plainly. */
    public double meanAcceptedTokens() {
        return meanAcceptedTokens;
    }

    public long[] acceptedLengthHistogram() {
        return acceptedLengthHistogram.clone();
    }

    public double generatedTokensPerSecond() {
        return generatedTokensPerSecond;
    }

    public static Builder speculaBuilder() {
        return new Builder();
    }

    @Override
    public boolean equals(Object o) {
        return o instanceof SpeculaChatResponseMetadata m && super.equals(o) && Objects.equals(drafter, m.drafter) && steps == m.steps
                && meanAcceptedTokens == m.meanAcceptedTokens && Arrays.equals(acceptedLengthHistogram, m.acceptedLengthHistogram);
    }

    @Override
    public int hashCode() {
        return Objects.hash(super.hashCode(), drafter, steps, meanAcceptedTokens);
    }

    @Override
    public String toString() {
        return "SpeculaChatResponseMetadata{" + super.toString() + ", drafter=" + drafter + ", steps=" + steps
                + ", meanAcceptedTokens=" + meanAcceptedTokens + "}";
    }

    public static final class Builder extends ChatResponseMetadata.Builder<Builder> {
        private String drafter;
        private long steps;
        private double meanAcceptedTokens;
        private long[] acceptedLengthHistogram;
        private double generatedTokensPerSecond;

        public Builder drafter(String name) {
            this.drafter = name;
            return this;
        }

        public Builder steps(long n) {
            this.steps = n;
            return this;
        }

        public Builder meanAcceptedTokens(double x) {
            this.meanAcceptedTokens = x;
            return this;
        }

        public Builder acceptedLengthHistogram(long[] h) {
            this.acceptedLengthHistogram = h;
            return this;
        }

        public Builder generatedTokensPerSecond(double x) {
            this.generatedTokensPerSecond = x;
            return this;
        }

        @Override
        public SpeculaChatResponseMetadata build() {
            return new SpeculaChatResponseMetadata(this);
        }
    }
}
