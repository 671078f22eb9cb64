package dev.specula.engine;

/** Receives generated tokens as soon as they are final. */
@FunctionalInterface
public interface TokenSink {
    /** Returns false to stop the generation after this token (for example on a stop string). */
    boolean accept(int token);
}
