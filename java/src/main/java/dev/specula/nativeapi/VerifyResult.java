package dev.specula.nativeapi;

/**
 * One sequence's verification: path[0] is the root (node 0), then the accepted nodes; bonusToken follows the
 * path and is the next step's root. depthFlags[d] is 1 (accepted), 0 (all children at depth d rejected) or
 * -1 (not reached) for d >= 1.
 */
public record VerifyResult(int nAccepted, int lastNode, int bonusToken, int[] path, int[] depthFlags) {}
