package dev.specula.nativeapi;

/**
 * One spec_forward call: new tokens, their tree (null parents = a chain), where the logits go, and the
 * optional early-exit outputs.
 *
 * @param tokens     token ids
 * @param parents    per token, the index of its parent among these tokens, or -1 for a root; null = a chain
 * @param positions  RoPE positions; null = committed length plus depth in the tree
 * @param logitsMode which rows of logits to write
 * @param logits     f32 [rows][n_vocab]; null when logitsMode is NONE
 * @param exitLayer  0 = none; else also write the state after the first exitLayer layers
 * @param exitHidden f32 [n][n_embd] or null
 * @param exitLogits f32 [n][n_vocab] or null
 * @param stopAtExit run only the first exitLayer layers
 * @param logitsOffset byte offset in logits of the first row (to fill one sequence's rows of a batch buffer)
 * @param finalHidden f32 [n][n_embd] from finalHiddenOffset on: each token's state after the output norm (what
 *                    the LM head reads, what draft heads read), or null
 * @param finalHiddenOffset byte offset in finalHidden of the first row
 */
public record ForwardArgs(int[] tokens, int[] parents, int[] positions, LogitsMode logitsMode, DeviceBuffer logits,
                          int exitLayer, DeviceBuffer exitHidden, DeviceBuffer exitLogits, boolean stopAtExit,
                          long logitsOffset, DeviceBuffer finalHidden, long finalHiddenOffset) {

    public enum LogitsMode { NONE, ALL, LAST }

    public ForwardArgs {
        if (tokens == null || tokens.length == 0) throw new IllegalArgumentException("a forward needs at least one token");
        if (parents != null && parents.length != tokens.length)
            throw new IllegalArgumentException("parents has " + parents.length + " entries for " + tokens.length + " tokens");
        if (positions != null && positions.length != tokens.length)
            throw new IllegalArgumentException("positions has " + positions.length + " entries for " + tokens.length + " tokens");
        if ((logitsMode != LogitsMode.NONE) != (logits != null))
            throw new IllegalArgumentException("a logits buffer goes with logits mode ALL or LAST, and only then");
        if (logitsOffset < 0) throw new IllegalArgumentException("logitsOffset must be >= 0, got " + logitsOffset);
        if (finalHiddenOffset < 0 || (finalHidden == null && finalHiddenOffset != 0))
            throw new IllegalArgumentException("finalHiddenOffset must be >= 0 and goes with a finalHidden buffer, got " + finalHiddenOffset);
    }

    /** Without final hidden rows. */
    public ForwardArgs(int[] tokens, int[] parents, int[] positions, LogitsMode logitsMode, DeviceBuffer logits,
                       int exitLayer, DeviceBuffer exitHidden, DeviceBuffer exitLogits, boolean stopAtExit, long logitsOffset) {
        this(tokens, parents, positions, logitsMode, logits, exitLayer, exitHidden, exitLogits, stopAtExit, logitsOffset, null, 0);
    }

    /** These args also writing each token's final hidden state into finalHidden from byte offset on. */
    public ForwardArgs withFinalHidden(DeviceBuffer finalHidden, long offset) {
        return new ForwardArgs(tokens, parents, positions, logitsMode, logits, exitLayer, exitHidden, exitLogits, stopAtExit, logitsOffset,
                finalHidden, offset);
    }

    /** A chain of tokens after the committed prefix, with logits for the last one only. */
    public static ForwardArgs chainLast(int[] tokens, DeviceBuffer logits) {
        return new ForwardArgs(tokens, null, null, LogitsMode.LAST, logits, 0, null, null, false, 0);
    }

    /** A chain with logits for every token. */
    public static ForwardArgs chainAll(int[] tokens, DeviceBuffer logits) {
        return new ForwardArgs(tokens, null, null, LogitsMode.ALL, logits, 0, null, null, false, 0);
    }

    /** A tree (parent indices) with logits for every node. */
    public static ForwardArgs tree(int[] tokens, int[] parents, DeviceBuffer logits) {
        return tree(tokens, parents, logits, 0);
    }

    /** A tree whose logits rows go into logits from byte logitsOffset on. */
    public static ForwardArgs tree(int[] tokens, int[] parents, DeviceBuffer logits, long logitsOffset) {
        return new ForwardArgs(tokens, parents, null, LogitsMode.ALL, logits, 0, null, null, false, logitsOffset);
    }

    public int size() {
        return tokens.length;
    }
}
