package dev.specula.policies;

import dev.specula.engine.DraftPolicy;
import dev.specula.engine.DraftTree;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;

/**
 * Prompt lookup decoding: find the latest earlier occurrence of the sequence's last n tokens (n from
 * maxNgram down to minNgram) and propose what followed it. Several distinct continuations become a small
 * tree (a trie of them, most recent match first). Training-free and stateless, so one instance may be shared.
 */
public final class PromptLookupPolicy implements DraftPolicy {
    private final int maxNgram;
    private final int minNgram;
    private final int maxDraft;
    private final int maxBranches;

    public PromptLookupPolicy(int maxNgram, int minNgram, int maxDraft, int maxBranches) {
        if (minNgram < 1 || maxNgram < minNgram) throw new IllegalArgumentException("need 1 <= minNgram <= maxNgram");
        if (maxDraft < 1 || maxBranches < 1) throw new IllegalArgumentException("maxDraft and maxBranches must be >= 1");
        this.maxNgram = maxNgram;
        this.minNgram = minNgram;
        this.maxDraft = maxDraft;
        this.maxBranches = maxBranches;
    }

    public PromptLookupPolicy() {
        this(3, 1, 8, 3);
    }

    @Override
    public String name() {
        return "pld";
    }

    @Override
    public DraftTree propose(int[] history, int length, int maxTreeNodes) {
        int root = history[length - 1];
        if (maxTreeNodes <= 1) return DraftTree.rootOnly(root);
        for (int n = Math.min(maxNgram, length - 1); n >= minNgram; n--) {
            List<int[]> continuations = continuations(history, length, n, Math.min(maxDraft, maxTreeNodes - 1));
            if (!continuations.isEmpty()) return trie(root, continuations, maxTreeNodes);
        }
        return DraftTree.rootOnly(root);
    }

    /** Up to maxBranches distinct continuations of the last n tokens, latest occurrence first. */
    private List<int[]> continuations(int[] h, int length, int n, int maxLen) {
        List<int[]> out = List.of();
        int tail = length - n;
        for (int start = tail - 1; start >= 0 && out.size() < maxBranches; start--) {
            if (!Arrays.equals(h, start, start + n, h, tail, length)) continue;
            int from = start + n, to = Math.min(length, from + maxLen);
            if (from >= to) continue;
            boolean seen = false;
            for (int[] prev : out) seen |= Arrays.equals(prev, 0, prev.length, h, from, to);
            if (seen) continue;
            if (out.isEmpty()) out = new ArrayList<>(maxBranches);
            out.add(Arrays.copyOfRange(h, from, to));
        }
        return out;
    }

    /** The continuations as a trie under the root, in order, up to maxTreeNodes nodes (primitive arrays: this runs every step). */
    private static DraftTree trie(int root, List<int[]> continuations, int maxTreeNodes) {
        int[] tokens = new int[maxTreeNodes], parents = new int[maxTreeNodes];
        tokens[0] = root;
        parents[0] = -1;
        int size = 1;
        for (int[] c : continuations) {
            int node = 0;
            for (int t : c) {
                int child = -1;
                for (int i = node + 1; i < size; i++) {
                    if (parents[i] == node && tokens[i] == t) {
                        child = i;
                        break;
                    }
                }
                if (child < 0) {
                    if (size >= maxTreeNodes) break;
                    tokens[size] = t;
                    parents[size] = node;
                    child = size++;
                }
                node = child;
            }
        }
        float[] probs = new float[size];
        Arrays.fill(probs, 1f);
        return new DraftTree(Arrays.copyOf(tokens, size), Arrays.copyOf(parents, size), probs);
    }
}
