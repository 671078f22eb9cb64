package dev.specula.memory;

/**
 * What to do when a configuration's {@link MemoryBudget} does not fit the memory available: refuse, or give up
 * tree size or batch (halving, down to 1) until it fits. Either way the decision is made before anything is
 * allocated, and a shrink is reported, never silent.
 */
public enum MemoryPolicy {
    /** Throw {@link MemoryBudgetException}, naming what is needed, what is available and the largest items. */
    REFUSE,
    /** Halve the largest draft tree (down to 1 node: plain decoding) until the budget fits. */
    SHRINK_TREE,
    /** Halve the batch (down to 1 sequence) until the budget fits. */
    SHRINK_BATCH;

    /** Parses refuse, shrink-tree or shrink-batch (the command line's spelling; case and _/- do not matter). */
    public static MemoryPolicy parse(String s) {
        String n = s.trim().toUpperCase(java.util.Locale.ROOT).replace('-', '_');
        for (MemoryPolicy p : values()) if (p.name().equals(n)) return p;
        throw new IllegalArgumentException("unknown memory policy '" + s + "': refuse, shrink-tree or shrink-batch");
    }
}
