package dev.specula.policies;

import dev.specula.nativeapi.DeviceBuffer;
import dev.specula.nativeapi.ForwardArgs;
import dev.specula.nativeapi.KvCache;
import dev.specula.nativeapi.NativeModel;
import java.util.Arrays;

/**
 * A drafter's own KV cache for one sequence, kept equal to a prefix of that sequence, and the chain forwards
 * a drafter runs on it. The drafter is either a whole model (exitLayer 0: its logits) or the first exitLayer
 * layers of a model (early exit: stop_at_exit, its exit logits). Such a cache is only valid for the exit
 * layer it was filled with: its positions hold KV for those layers only.
 *
 * <p>The cache remembers which tokens it holds. Each step {@link #advanceTo} compares them with the sequence:
 * positions past the common prefix (drafts the target rejected) are truncated away, the tokens the cache
 * lacks (accepted drafts, the bonus token, the new root) are forwarded as one chain and committed. Drafted
 * tokens are committed too ({@link #append}), so the next draft step attends to them; the next advanceTo
 * drops whichever of them the target did not accept. Not thread-safe: one per sequence.
 *
 * <p>What it returns of the drafter's logits is {@link TopTokens}: read on the device (a summary per row) or on
 * the host (the row copied), as its {@link TopTokenReader} was told.
 */
final class DraftCache implements AutoCloseable {

    private final NativeModel model;
    private final int exitLayer;
    private final KvCache kv;
    private final int rows; // logits rows the buffer holds (exit logits need one row per forwarded token)
    private final int vocab;
    private final DeviceBuffer logits;
    private final TopTokenReader reader;
    private int[] tokens = new int[64];
    private int length;

    /**
     * @param exitLayer 0 to run the whole model; else run layers [0, exitLayer) and read the exit logits
     * @param rows      the most tokens one forward may ask logits of (only matters with an exit layer)
     * @param limit     ids below it count in what the cache returns (at most the model's vocabulary)
     * @param onDevice  summarize logits rows on the device rather than copy them to the host
     */
    DraftCache(NativeModel model, int exitLayer, int capacity, int rows, int limit, boolean onDevice) {
        this.model = model;
        this.exitLayer = exitLayer;
        this.rows = logitsRows(exitLayer, rows);
        this.vocab = model.shape().nVocab();
        if (limit < 1 || limit > vocab) throw new IllegalArgumentException("limit " + limit + " must be in 1.." + vocab);
        this.kv = model.newKvCache(capacity);
        try {
            this.logits = model.context().allocate((long) this.rows * vocab * Float.BYTES);
        } catch (RuntimeException e) {
            kv.close();
            throw e;
        }
        this.reader = new TopTokenReader(logits, vocab, limit, onDevice);
    }

    /** Rows of logits a cache keeps on the device: one for a whole model, rows for an exit layer. */
    static int logitsRows(int exitLayer, int rows) {
        return exitLayer == 0 ? 1 : Math.max(1, rows);
    }

    int length() {
        return length;
    }

    int capacity() {
        return kv.capacity();
    }

    KvCache kv() {
        return kv;
    }

    /**
     * Makes the cache hold exactly history[0..length) and returns what the drafter's logits after
     * history[length-1] say (its distribution for the next token).
     */
    TopTokens advanceTo(int[] history, int length) {
        // At least the last token is forwarded again: its logits are what the caller wants.
        int common = keepCommonPrefix(history, length, length - 1);
        // The first part of the catch-up needs no logits; the last (at most `rows` tokens) gives them.
        // Long catch-ups (the prompt) go in one call: the native backends slice long inputs themselves.
        int withLogits = exitLayer == 0 ? length - common : Math.min(length - common, rows);
        int split = length - withLogits;
        if (split > common) forward(Arrays.copyOfRange(history, common, split), false);
        forward(Arrays.copyOfRange(history, split, length), true);
        return lastRow(withLogits);
    }

    /**
     * Makes the cache hold exactly history[0..length), forwarding what it lacks as one chain without logits (a
     * prompt, a chunk at a time).
     */
    void fill(int[] history, int length) {
        int common = keepCommonPrefix(history, length, length);
        if (length > common) forward(Arrays.copyOfRange(history, common, length), false);
    }

    /**
     * Truncates the cache to what it shares with history[0..upTo), at most cap positions, and returns that length:
     * the tokens before it need no forward.
     */
    private int keepCommonPrefix(int[] history, int upTo, int cap) {
        int common = 0;
        int limit = Math.min(this.length, upTo);
        while (common < limit && tokens[common] == history[common]) common++;
        common = Math.min(common, cap);
        if (common < this.length) {
            kv.truncate(common);
            this.length = common;
        }
        return common;
    }

    /** Forwards one drafted token after the cache's contents, commits it and returns what its logits say. */
    TopTokens append(int token) {
        forward(new int[] {token}, true);
        return lastRow(1);
    }

    /** Receives the drafter's distribution after history[nextIndex - 1], i.e. its prediction of history[nextIndex]. */
    interface Predictions {
        void accept(int nextIndex, TopTokens prediction);
    }

    /**
     * Makes the cache hold exactly history[0..upTo) (exit-layer drafters only), like {@link #advanceTo} but
     * without a root to draft from, and shows the drafter's prediction of history[next] for every next in
     * [scoreFrom, length) whose predecessor is newly forwarded. Tokens before that are forwarded without
     * logits, in one call. For shadow estimates that see the full context.
     */
    void catchUp(int[] history, int upTo, int length, int scoreFrom, Predictions predictions) {
        if (exitLayer == 0) throw new IllegalStateException("catchUp needs an exit layer");
        int common = keepCommonPrefix(history, upTo, upTo);
        // history[i] predicts history[i + 1]: logits are needed from i = scoreFrom - 1 on.
        int quiet = Math.max(common, Math.min(upTo, scoreFrom - 1));
        if (quiet > common) forward(Arrays.copyOfRange(history, common, quiet), false);
        for (int start = quiet; start < upTo; start += rows) {
            int end = Math.min(upTo, start + rows);
            forward(Arrays.copyOfRange(history, start, end), true);
            // The chunk's scored rows are contiguous: one read (one native call on the device path).
            int from = Math.max(start, scoreFrom - 1), to = Math.min(end, length - 1);
            if (from >= to) continue;
            TopTokens[] read = reader.rows(from - start, to - from);
            for (int i = from; i < to; i++) predictions.accept(i + 1, read[i - from]);
        }
    }

    private void forward(int[] chain, boolean wantLogits) {
        ForwardArgs args;
        if (exitLayer == 0) {
            args = new ForwardArgs(chain, null, null, wantLogits ? ForwardArgs.LogitsMode.LAST : ForwardArgs.LogitsMode.NONE,
                    wantLogits ? logits : null, 0, null, null, false, 0);
        } else {
            args = new ForwardArgs(chain, null, null, ForwardArgs.LogitsMode.NONE, null, exitLayer, null,
                    wantLogits ? logits : null, true, 0);
        }
        model.forward(kv, args);
        kv.commitChain(chain.length);
        if (length + chain.length > tokens.length) tokens = Arrays.copyOf(tokens, Math.max(tokens.length * 2, length + chain.length));
        System.arraycopy(chain, 0, tokens, length, chain.length);
        length += chain.length;
    }

    /** What the logits after the last of the n tokens just forwarded say. */
    private TopTokens lastRow(int n) {
        return reader.row(exitLayer == 0 ? 0 : n - 1);
    }

    @Override
    public void close() {
        reader.close();
        logits.close();
        kv.close();
    }
}
