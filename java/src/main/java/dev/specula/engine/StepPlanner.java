package dev.specula.engine;

/**
 * Decides, before each step of a batch, how many tree nodes each sequence may use, and sees what the step cost
 * and gave. {@link DecodeLoop} asks each sequence's {@link SpeculationBudget} first (what its policy would use
 * alone); the planner may only lower those allowances, down to 1 (plain decoding).
 */
public interface StepPlanner {
    /** No trimming: every sequence uses what its budget chose. */
    StepPlanner NONE = new StepPlanner() {};

    /**
     * @param policies the sequences' policy names, in batch order
     * @param allowed  each sequence's allowance in tree nodes (root included, at least 1), lowered in place
     * @param adaptive per sequence, whether measured costs may shrink its trees (false: only the token budget may)
     */
    default void plan(String[] policies, int[] allowed, boolean[] adaptive) {}

    /** Sees a finished step. */
    default void observe(Outcome outcome) {}

    /**
     * One step as it ran.
     *
     * @param seconds  the step's wall time, drafting to acceptance
     * @param rows     tree nodes run through the target, all sequences together
     * @param policies per sequence, its policy's name
     * @param allowed  per sequence, the nodes it was allowed
     * @param nodes    per sequence, the nodes its tree had
     * @param accepted per sequence, the draft tokens accepted (-1 where the sequence failed in the step)
     */
    record Outcome(double seconds, int rows, String[] policies, int[] allowed, int[] nodes, int[] accepted) {
        public int sequences() {
            return policies.length;
        }
    }
}
