package dev.specula;

import dev.specula.engine.SpecStats;

/**
 * What a generation produced: the prompt's tokens, the generated tokens and text, why it stopped, its cost,
 * and (for speculative requests, else null) the speculation statistics.
 */
public record GenerationResult(int[] promptTokens, int[] tokens, String text, StopReason stopReason, GenerationStats stats,
                               SpecStats speculation) {}
