package dev.specula.policies;

import dev.specula.engine.DraftPolicy;
import dev.specula.engine.DraftTree;

/** Plain decoding through the speculative engine: the root alone, every step. Stateless; shareable. */
public final class NoSpeculation implements DraftPolicy {
    @Override
    public String name() {
        return "none";
    }

    @Override
    public DraftTree propose(int[] history, int length, int maxTreeNodes) {
        return DraftTree.rootOnly(history[length - 1]);
    }
}
