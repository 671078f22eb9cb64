package dev.specula;

/** What one generation cost: prompt processing and token generation, timed separately. */
public record GenerationStats(int promptTokens, int generatedTokens, double promptSeconds, double generateSeconds) {

    public double promptTokensPerSecond() {
        return promptSeconds > 0 ? promptTokens / promptSeconds : 0;
    }

    public double generatedTokensPerSecond() {
        return generateSeconds > 0 ? generatedTokens / generateSeconds : 0;
    }
}
