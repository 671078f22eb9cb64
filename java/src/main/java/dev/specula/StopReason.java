package dev.specula;

/** Why a generation ended. */
public enum StopReason {
    /** The model produced an end-of-sequence or end-of-turn token. */
    END_OF_SEQUENCE,
    /** The output reached the requested maximum number of tokens. */
    MAX_TOKENS,
    /** The text produced a stop string. */
    STOP_STRING,
    /** The KV cache ran out of positions. */
    CONTEXT_FULL,
    /** The caller cancelled. */
    CANCELLED
}
