package dev.specula.engine;

import dev.specula.nativeapi.DeviceBuffer;
import dev.specula.nativeapi.KvCache;
import dev.specula.nativeapi.VerifyResult;

/**
 * A drafting policy: proposes a tree of guesses for one sequence and learns from how it was verified.
 * Whether an instance may serve several sequences at once is said by each class.
 */
public interface DraftPolicy {
    /** A short name for tables and the CLI, e.g. "pld". */
    String name();

    /**
     * Proposes a tree rooted at the sequence's last token (history[length - 1]), with at most maxTreeNodes nodes
     * including the root. Returning the root alone means "no speculation this step".
     */
    DraftTree propose(int[] history, int length, int maxTreeNodes);

    /**
     * As {@link #propose(int[], int, int)}, also given the sequence's target KV cache, whose committed prefix is
     * history[0..length-1). A policy that drafts with the target's own layers may run forwards on it (its first
     * layers' KV for the prefix is exactly what such a drafter would compute) but must leave it with that same
     * committed prefix. The engine calls this one.
     */
    default DraftTree propose(int[] history, int length, int maxTreeNodes, KvCache targetKv) {
        return propose(history, length, maxTreeNodes);
    }

    /**
     * Called once per sequence with its prompt, while the target processes it, so a drafter with a model of its
     * own can fill that model's cache then (the time counts as prompt processing). The default does nothing.
     */
    default void prefill(int[] prompt, int length) {}

    /**
     * Called when a sequence that joined a running batch ({@link DecodeLoop#join}) has had prompt[from, to) put in the
     * target's cache, one chunk per step within the step's token budget, before {@link #prefill} at the end. A drafter
     * with a model of its own fills that model's cache with the same chunks, so that a long prompt is not prefilled
     * there in one call that stalls the batch; {@link #prefill} then finds the cache full. The default does nothing.
     */
    default void prefillChunk(int[] prompt, int from, int to) {}

    /**
     * Whether this policy drafts from the target's final hidden states (draft heads): the engine then has each verify
     * forward of its sequence write them, and shows it the accepted node's row through {@link #observeFinalHidden}.
     */
    default boolean readsFinalHidden() {
        return false;
    }

    /**
     * How many steps this policy wants to take part in before it drafts again, when the adaptive budget held it to
     * plain decoding and it skipped those steps (asked for no tree, shown no outcome: see
     * {@link SpeculationBudget.Decision#attends}). A policy that drafts from what it observed (EAGLE's recent
     * features, a head's last hidden state) needs some; one that drafts from the history alone, none (the default).
     * Skipped steps never affect what is generated: after them a policy must accept any history.
     */
    default int observedStepsBeforeDrafting() {
        return 0;
    }

    /**
     * After each step of its sequence, when {@link #readsFinalHidden}: the final hidden state (after the output norm)
     * of the last accepted node, the state whose LM head row chose the next tree's root: n_embd floats at byte offset
     * of rows, valid only during this call.
     */
    default void observeFinalHidden(DeviceBuffer rows, long offset) {}

    /**
     * After each step of its sequence, when {@link #readsFinalHidden}, right after {@link #observeFinalHidden}: the final
     * hidden state of every node of the accepted path (root first), node n's at byte treeOffset + n * n_embd * 4 of
     * rows, valid only during this call. For drafters that extrapolate the whole feature sequence (EAGLE).
     */
    default void observeFinalHiddenPath(DeviceBuffer rows, long treeOffset, int[] path) {}

    /**
     * Whether {@link #prefillFinalHidden} wants the prompt's final hidden states: the engine then has the prompt's
     * forward write them (n_embd floats per prompt token but the last).
     */
    default boolean readsPromptHidden() {
        return false;
    }

    /**
     * After {@link #prefill}, when {@link #readsPromptHidden}: rows holds the final hidden state of prompt[i] at byte
     * i * n_embd * 4 for i below length - 1 (the last prompt token is the first tree's root), valid only during this call.
     */
    default void prefillFinalHidden(int[] prompt, int length, DeviceBuffer rows) {}

    /** Sees the verification of the tree it proposed for one sequence. The default learns nothing. */
    default void observe(DraftTree tree, VerifyResult result) {}

    /**
     * Sees a whole verified batch once per step: every sequence's tree, whichever policy drafted it, and the
     * target's logits, f32 [B][maxTreeNodes][nVocab]. For policies that learn from the target's predictions
     * wherever they come from, such as Token Recycling. The default does nothing.
     */
    default void observeBatch(DraftTree[] trees, DeviceBuffer logits, int maxTreeNodes) {}
}
