package dev.specula.policies;

/**
 * What a drafter's next-token distribution says, in the few numbers drafting decisions use: its two most
 * likely tokens, their probabilities (softmax at temperature 1) and the distribution's entropy in nats.
 */
record TopTokens(int first, double p1, int second, double p2, double entropy, int vocab) {

    /** Reads logits[0..limit): ids at and past limit (padding the target cannot verify) never become drafts. */
    static TopTokens of(float[] logits, int limit) {
        int n = Math.min(limit, logits.length);
        int first = 0, second = -1;
        for (int i = 1; i < n; i++) {
            if (logits[i] > logits[first]) {
                second = first;
                first = i;
            } else if (second < 0 || logits[i] > logits[second]) {
                second = i;
            }
        }
        double max = logits[first];
        double sum = 0, weighted = 0;
        for (int i = 0; i < n; i++) {
            double z = logits[i] - max;
            double e = Math.exp(z);
            sum += e;
            weighted += e * z;
        }
        // H = -sum p log p with p = e^z / S: H = log S - (sum e^z z) / S.
        double entropy = Math.max(0, Math.log(sum) - weighted / sum);
        double p1 = 1 / sum;
        double p2 = second < 0 ? 0 : Math.exp(logits[second] - max) / sum;
        return new TopTokens(first, p1, second, p2, entropy, n);
    }
}
