package dev.specula;

/** Receives generated text as soon as it is final (whole UTF-8 characters, never part of a stop string). */
@FunctionalInterface
public interface TextListener {
    void onText(String text);
}
