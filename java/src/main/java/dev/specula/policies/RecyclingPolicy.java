package dev.specula.policies;

import dev.specula.engine.DraftPolicy;
import dev.specula.engine.DraftTree;
import dev.specula.nativeapi.DeviceBuffer;
import dev.specula.nativeapi.Recycler;
import java.util.Arrays;

/**
 * Token Recycling (arXiv 2408.08696): drafts by expanding a static tree template over the adjacency matrix
 * of candidate next tokens, and after every verification writes the target's top-k at every node back
 * into the matrix. Training-free. The matrix is shared by every sequence using this policy and outlives
 * requests; save and load it through {@link #recycler()}. Thread-safe.
 */
public final class RecyclingPolicy implements DraftPolicy {
    private final Recycler recycler;
    private final Recycler.Template template;

    public RecyclingPolicy(Recycler recycler, Recycler.Template template) {
        if (template.maxRank() >= recycler.k())
            throw new IllegalArgumentException("the template uses candidate rank " + template.maxRank()
                    + ", but the matrix keeps only k = " + recycler.k());
        this.recycler = recycler;
        this.template = template;
    }

    public Recycler recycler() {
        return recycler;
    }

    @Override
    public String name() {
        return "recycling";
    }

    @Override
    public DraftTree propose(int[] history, int length, int maxTreeNodes) {
        int root = history[length - 1];
        int n = Math.min(maxTreeNodes, template.size());
        if (n <= 1) return DraftTree.rootOnly(root);
        // A breadth-first template's first n nodes are themselves a tree.
        Recycler.Template cut = n == template.size() ? template
                : new Recycler.Template(Arrays.copyOf(template.parents(), n), Arrays.copyOf(template.ranks(), n));
        int[] tokens = recycler.draft(cut, new int[] {root})[0];
        float[] probs = new float[n];
        Arrays.fill(probs, 1f);
        return new DraftTree(tokens, cut.parents().clone(), probs);
    }

    /** Every sequence's tree counts, whichever policy drafted it: the target's top-k is what the matrix learns. */
    @Override
    public void observeBatch(DraftTree[] trees, DeviceBuffer logits, int maxTreeNodes) {
        int[][] tokens = new int[trees.length][];
        for (int b = 0; b < trees.length; b++) tokens[b] = trees[b].tokens();
        recycler.update(maxTreeNodes, tokens, logits);
    }
}
