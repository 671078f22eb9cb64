package dev.specula.bench;

import dev.specula.engine.DraftPolicy;
import dev.specula.engine.DraftTree;
import java.util.Arrays;
import java.util.SplittableRandom;

/**
 * A drafter with a chosen acceptance rate, to measure the speculation machinery apart from drafter quality: it
 * knows the plain greedy continuation of the prompt (computed beforehand with plain decoding) and proposes it,
 * each token replaced by a different random one with probability 1 − alpha. A chain of up to maxTreeNodes − 1
 * guesses; with siblings &gt; 0 every depth also gets that many random tokens beside the oracle's (a tree whose
 * extra nodes cost verify time and, on a random model, are almost never accepted).
 *
 * <p>One sequence at a time (it keeps a seeded random stream); bench code only.
 */
final class OracleDrafter implements DraftPolicy {
    private final int[] expected;
    private final double alpha;
    private final int siblings;
    private final int vocab;
    private final SplittableRandom rng;

    /**
     * @param expected the prompt's tokens followed by the plain greedy continuation, as plain decoding saw them
     * @param alpha    the probability that each oracle token is proposed unchanged
     * @param siblings random tokens beside the oracle's at every depth (0: a chain)
     * @param vocab    the model's vocabulary size, for the corrupting and sibling tokens
     * @param seed     the seed of the corruption
     */
    OracleDrafter(int[] expected, double alpha, int siblings, int vocab, long seed) {
        if (!(alpha >= 0 && alpha <= 1)) throw new IllegalArgumentException("alpha must be in [0, 1], got " + alpha);
        this.expected = expected.clone();
        this.alpha = alpha;
        this.siblings = siblings;
        this.vocab = vocab;
        this.rng = new SplittableRandom(seed);
    }

    @Override
    public String name() {
        return "oracle";
    }

    @Override
    public DraftTree propose(int[] history, int length, int maxTreeNodes) {
        int perDepth = 1 + siblings;
        int depth = Math.min((maxTreeNodes - 1) / perDepth, expected.length - length);
        if (depth <= 0) return DraftTree.rootOnly(history[length - 1]);
        int n = 1 + depth * perDepth;
        int[] tokens = new int[n], parents = new int[n];
        float[] probs = new float[n];
        Arrays.fill(probs, 1f);
        tokens[0] = history[length - 1];
        parents[0] = -1;
        int parent = 0, node = 1;
        for (int d = 0; d < depth; d++) {
            int truth = expected[length + d];
            int oracleNode = node;
            tokens[node] = rng.nextDouble() < alpha ? truth : otherThan(truth);
            parents[node++] = parent;
            for (int s = 0; s < siblings; s++) {
                tokens[node] = otherThan(truth, tokens[oracleNode]);
                parents[node++] = parent;
            }
            parent = oracleNode;
        }
        return new DraftTree(tokens, parents, probs);
    }

    /** A uniformly random token that is not the given one. */
    private int otherThan(int token) {
        int t = rng.nextInt(vocab - 1);
        return t >= token ? t + 1 : t;
    }

    /** A random token that is neither a nor b (siblings never duplicate the truth or the oracle's node). */
    private int otherThan(int a, int b) {
        int t;
        do t = rng.nextInt(vocab); while (t == a || t == b);
        return t;
    }
}
