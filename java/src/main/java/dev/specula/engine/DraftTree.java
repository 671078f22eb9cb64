package dev.specula.engine;

import java.util.Arrays;

/**
 * A draft proposed by a policy: node 0 is the root, the last token already chosen (not yet in the KV cache);
 * every other node is a guess whose parent comes before it. draftProbs[i] is the probability the drafter
 * gave node i's token (1 for a deterministic drafter); node 0's entry is unused.
 */
public record DraftTree(int[] tokens, int[] parents, float[] draftProbs) {

    public DraftTree {
        if (tokens.length == 0) throw new IllegalArgumentException("a draft tree has at least its root");
        if (parents.length != tokens.length || draftProbs.length != tokens.length)
            throw new IllegalArgumentException("tokens, parents and draftProbs differ in length: "
                    + tokens.length + ", " + parents.length + ", " + draftProbs.length);
        if (parents[0] != -1) throw new IllegalArgumentException("node 0 is the root: its parent must be -1, got " + parents[0]);
        for (int i = 1; i < parents.length; i++) {
            if (parents[i] < 0 || parents[i] >= i)
                throw new IllegalArgumentException("node " + i + " has parent " + parents[i] + ": parents must come earlier (0.." + (i - 1) + ")");
            if (!(draftProbs[i] > 0f && draftProbs[i] <= 1f))
                throw new IllegalArgumentException("node " + i + " has draft probability " + draftProbs[i] + ", outside (0, 1]");
        }
    }

    /** Just the root: a plain decoding step. */
    public static DraftTree rootOnly(int root) {
        return new DraftTree(new int[] {root}, new int[] {-1}, new float[] {1f});
    }

    /** The root followed by a deterministic chain of guesses. */
    public static DraftTree chain(int root, int[] guesses) {
        int n = guesses.length + 1;
        int[] tokens = new int[n], parents = new int[n];
        float[] probs = new float[n];
        tokens[0] = root;
        parents[0] = -1;
        Arrays.fill(probs, 1f);
        for (int i = 1; i < n; i++) {
            tokens[i] = guesses[i - 1];
            parents[i] = i - 1;
        }
        return new DraftTree(tokens, parents, probs);
    }

    public int size() {
        return tokens.length;
    }

    /** Depth of each node; the root has depth 0. */
    public int[] depths() {
        int[] d = new int[tokens.length];
        for (int i = 1; i < d.length; i++) d[i] = d[parents[i]] + 1;
        return d;
    }
}
