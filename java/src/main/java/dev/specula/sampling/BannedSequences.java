package dev.specula.sampling;

import dev.specula.tokenizer.Tokenizer;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;

/**
 * A generation-time guard (GUARD-style): a list of banned token sequences. A candidate token that would
 * complete a banned sequence (the context ends with all of the sequence but its last token, and the candidate
 * is that last token) is masked, so the output never contains a banned sequence, including one that would
 * start inside the prompt. A banned sequence of one token bans that token outright.
 */
public final class BannedSequences implements CandidateFilter {
    private final List<int[]> sequences;

    /** @param sequences the banned token sequences, each non-empty */
    public BannedSequences(List<int[]> sequences) {
        List<int[]> copy = new ArrayList<>();
        for (int[] s : sequences) {
            if (s.length == 0) throw new IllegalArgumentException("a banned sequence is empty");
            copy.add(s.clone());
        }
        this.sequences = List.copyOf(copy);
    }

    /**
     * Bans strings by their token sequences: each is encoded with {@code tokenizer} (no BOS, control tokens
     * not parsed). Where the encoding starts with a token the text does not need (SentencePiece's dummy
     * space prefix: the rest alone decodes to the same string), the sequence without it is banned too, so
     * the string is caught in the middle of a line as well as after a space.
     *
     * <p>Limit: only those tokenizations are banned. The same text can come out as other token sequences
     * (split differently, or merged with neighbouring characters into one token, e.g. "foo" inside
     * "foobar"), and those are not caught; ban such variants explicitly where that matters.
     */
    public static BannedSequences ofStrings(Tokenizer tokenizer, List<String> banned) {
        List<int[]> seqs = new ArrayList<>();
        for (String s : banned) {
            int[] ids = tokenizer.encode(s, false);
            if (ids.length == 0) throw new IllegalArgumentException("the banned string '" + s + "' has no tokens");
            seqs.add(ids);
            int[] tail = Arrays.copyOfRange(ids, 1, ids.length);
            if (tail.length > 0 && tokenizer.decode(tail).equals(s)) seqs.add(tail);
        }
        return new BannedSequences(seqs);
    }

    /** The banned sequences (copies). */
    public List<int[]> sequences() {
        return sequences.stream().map(int[]::clone).toList();
    }

    /** Whether tokens[0..length) contains a banned sequence anywhere. */
    public boolean occursIn(int[] tokens, int length) {
        for (int end = 1; end <= length; end++)
            for (int[] s : sequences)
                if (s.length <= end && Arrays.equals(tokens, end - s.length, end, s, 0, s.length)) return true;
        return false;
    }

    @Override
    public void mask(int[] context, int length, float[] logitsRow) {
        for (int[] s : sequences) {
            int prefix = s.length - 1;
            if (prefix > length) continue;
            if (Arrays.equals(context, length - prefix, length, s, 0, prefix)) {
                int t = s[prefix];
                if (t >= 0 && t < logitsRow.length) logitsRow[t] = Float.NEGATIVE_INFINITY;
            }
        }
    }

    @Override
    public String toString() {
        return "BannedSequences(" + sequences.size() + ")";
    }
}
