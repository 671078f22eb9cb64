package dev.specula.tokenizer;

import java.nio.charset.StandardCharsets;
import java.util.Arrays;

/**
 * Decodes token ids one at a time into text that can be shown at once.
 *
 * <p>A character's UTF-8 bytes are often split over several tokens (byte-fallback tokens, or
 * byte-level BPE tokens that end inside a character); {@link #accept(int)} returns only complete
 * text and holds back the start of an unfinished character until the tokens that finish it come.
 * {@link #flush()} returns what is left at the end, with any unfinished or invalid bytes as U+FFFD.
 * The concatenation of everything returned equals decoding all the bytes at once.
 *
 * <p>Not thread-safe: one decoder per generated sequence.
 */
public final class StreamingDecoder {

    private final Tokenizer tokenizer;
    private boolean stripLeadingSpace;
    private byte[] pending = new byte[16];
    private int pendingLength;

    /** A decoder for a continuation (for example generated tokens after a prompt): every space is kept. */
    public StreamingDecoder(Tokenizer tokenizer) {
        this(tokenizer, false);
    }

    /**
     * A decoder for ids that start at the beginning of a text ({@code atStartOfText}) or continue
     * one. At the start of a text it removes the space prefix as {@link Tokenizer#decode(int[])}
     * does.
     */
    public StreamingDecoder(Tokenizer tokenizer, boolean atStartOfText) {
        this.tokenizer = tokenizer;
        this.stripLeadingSpace = atStartOfText && tokenizer.stripsLeadingSpace();
    }

    /** Adds one token; returns the text completed by it (possibly empty). */
    public String accept(int id) {
        byte[] piece = tokenizer.tokenBytes(id);
        if (piece.length == 0) {
            return "";
        }
        int from = 0;
        if (stripLeadingSpace && piece[0] == ' ') {
            from = 1;
        }
        stripLeadingSpace = false;
        append(piece, from, piece.length - from);

        int complete = completeLength(pending, pendingLength);
        if (complete == 0) {
            return "";
        }
        String text = new String(pending, 0, complete, StandardCharsets.UTF_8);
        System.arraycopy(pending, complete, pending, 0, pendingLength - complete);
        pendingLength -= complete;
        return text;
    }

    /** Adds several tokens; returns the text completed by them. */
    public String accept(int... ids) {
        StringBuilder text = new StringBuilder();
        for (int id : ids) {
            text.append(accept(id));
        }
        return text.toString();
    }

    /** Returns what is held back (unfinished characters as U+FFFD) and empties the decoder. */
    public String flush() {
        String text = new String(pending, 0, pendingLength, StandardCharsets.UTF_8);
        pendingLength = 0;
        return text;
    }

    /** Whether bytes of an unfinished character are being held back. */
    public boolean hasPending() {
        return pendingLength > 0;
    }

    private void append(byte[] bytes, int from, int length) {
        if (pendingLength + length > pending.length) {
            pending = Arrays.copyOf(pending, Math.max(pending.length * 2, pendingLength + length));
        }
        System.arraycopy(bytes, from, pending, pendingLength, length);
        pendingLength += length;
    }

    /**
     * How many leading bytes can be decoded now: all of them, unless they end with the start of a
     * multi-byte character (a lead byte followed by fewer continuation bytes than it announces).
     */
    static int completeLength(byte[] bytes, int length) {
        // A character has at most 4 bytes, so look at most 3 bytes back for its lead byte.
        for (int back = 1; back <= Math.min(3, length); back++) {
            int b = bytes[length - back] & 0xFF;
            if ((b & 0xC0) == 0x80) {
                continue; // a continuation byte: keep looking for the lead byte
            }
            int needed = b >= 0xF0 && b <= 0xF7 ? 4 : b >= 0xE0 && b <= 0xEF ? 3 : b >= 0xC0 && b <= 0xDF ? 2 : 1;
            return back < needed ? length - back : length;
        }
        return length;
    }
}
