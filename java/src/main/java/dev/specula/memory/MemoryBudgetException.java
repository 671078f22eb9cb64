package dev.specula.memory;

/**
 * A configuration whose memory budget does not fit (after any shrinking its {@link MemoryPolicy} allowed). Thrown
 * before anything is allocated; the message names the total needed, what is available and the largest items.
 */
public final class MemoryBudgetException extends IllegalStateException {
    private static final long serialVersionUID = 1L;
    private final transient MemoryBudget budget;
    private final transient MemoryBudget.Limit limit;

    MemoryBudgetException(String message, MemoryBudget budget, MemoryBudget.Limit limit) {
        super(message);
        this.budget = budget;
        this.limit = limit;
    }

    /** The smallest configuration tried (the requested one under REFUSE). */
    public MemoryBudget budget() {
        return budget;
    }

    public MemoryBudget.Limit limit() {
        return limit;
    }
}
