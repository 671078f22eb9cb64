package dev.specula.tokenizer;

import java.nio.charset.StandardCharsets;
import java.util.List;
import java.util.PriorityQueue;

/**
 * SentencePiece-style tokenizer ({@code tokenizer.ggml.model = "llama"}), a port of llama.cpp's
 * {@code llm_tokenizer_spm}.
 *
 * <p>Encoding a text fragment: a space is put in front when {@code add_space_prefix} is set and
 * the fragment starts the input or follows a special token; every {@code ' '} becomes
 * {@code '▁'} (U+2581); the text is split into characters; then, over and over, the adjacent pair
 * whose concatenation is a vocabulary token with the highest score is merged (leftmost on ties),
 * using a priority queue exactly as llama.cpp does; finally each symbol becomes its token, or,
 * when it is not in the vocabulary, one {@code <0xXX>} byte token per UTF-8 byte (the unknown
 * token when the vocabulary has no byte tokens either, where llama.cpp would fail).
 *
 * <p>Decoding: {@code '▁'} becomes {@code ' '}, byte tokens give their byte, and when decoding
 * from the start of a text one leading space is removed from the first token that produces text
 * (see {@link Tokenizer#decode(int[])}). llama.cpp's {@code llama_detokenize} removes it only
 * when the very first id is not BOS; this class also removes it after a leading BOS so that
 * {@code decode(encode(s, true)) == s}.
 */
public final class SentencePieceTokenizer extends GgufTokenizer {

    private static final char SPACE_MARK = '\u2581';

    /** The token for each byte value, used for byte fallback (-1 where there is none). */
    private final int[] byteTokens = new int[256];

    SentencePieceTokenizer(GgufVocabulary vocab) {
        super(vocab);
        for (int b = 0; b < 256; b++) {
            byteTokens[b] = findByteToken((byte) b);
        }
    }

    @Override
    void encodeFragments(List<Fragment> fragments, IntList out) {
        boolean previousWasSpecial = true; // the start of the input counts as "after a special"
        for (Fragment fragment : fragments) {
            if (fragment.isText()) {
                String text = fragment.text();
                if (vocab.addSpacePrefix() && previousWasSpecial) {
                    text = " " + text;
                }
                tokenize(text.replace(' ', SPACE_MARK), out);
                previousWasSpecial = false;
            } else {
                out.add(fragment.token());
                previousWasSpecial = true;
            }
        }
    }

    /** One symbol of the text being merged: a span of chars in a doubly linked list. */
    private static final class Symbol {
        int start;
        int length; // in chars; 0 once merged into its left neighbour
        int prev;
        int next;
    }

    /** A candidate merge of two adjacent symbols. */
    private record Bigram(int left, int right, float score, int length) {}

    /** llama.cpp's llm_tokenizer_spm_session::tokenize on already escaped text. */
    void tokenize(String text, IntList out) {
        if (text.isEmpty()) {
            return;
        }
        // Split into characters (code points).
        int count = text.codePointCount(0, text.length());
        Symbol[] symbols = new Symbol[count];
        int offset = 0;
        for (int i = 0; i < count; i++) {
            int charCount = Character.charCount(text.codePointAt(offset));
            Symbol symbol = new Symbol();
            symbol.start = offset;
            symbol.length = charCount;
            symbol.prev = i - 1;
            symbol.next = i + 1 < count ? i + 1 : -1;
            symbols[i] = symbol;
            offset += charCount;
        }

        // Highest score first; on equal scores the leftmost pair.
        PriorityQueue<Bigram> queue = new PriorityQueue<>((a, b) -> {
            int byScore = Float.compare(b.score(), a.score());
            return byScore != 0 ? byScore : Integer.compare(a.left(), b.left());
        });
        for (int i = 1; i < count; i++) {
            tryAddBigram(text, symbols, i - 1, i, queue);
        }

        while (!queue.isEmpty()) {
            Bigram bigram = queue.poll();
            Symbol left = symbols[bigram.left()];
            Symbol right = symbols[bigram.right()];
            // Skip pairs whose symbols changed since the pair was queued.
            if (left.length == 0 || right.length == 0 || left.length + right.length != bigram.length()) {
                continue;
            }
            left.length += right.length;
            right.length = 0;
            left.next = right.next;
            if (right.next >= 0) {
                symbols[right.next].prev = bigram.left();
            }
            tryAddBigram(text, symbols, left.prev, bigram.left(), queue);
            tryAddBigram(text, symbols, bigram.left(), left.next, queue);
        }

        for (int i = 0; i != -1; i = symbols[i].next) {
            Symbol symbol = symbols[i];
            String piece = text.substring(symbol.start, symbol.start + symbol.length);
            int id = vocab.idOf(piece);
            if (id >= 0) {
                out.add(id);
            } else {
                // A merged symbol is always a vocabulary token, so only single characters get
                // here (llama.cpp's rev_merge resegmentation never applies to them).
                for (byte b : piece.getBytes(StandardCharsets.UTF_8)) {
                    out.add(byteToToken(b));
                }
            }
        }
    }

    private void tryAddBigram(String text, Symbol[] symbols, int left, int right, PriorityQueue<Bigram> queue) {
        if (left == -1 || right == -1) {
            return;
        }
        int start = symbols[left].start;
        int length = symbols[left].length + symbols[right].length;
        int id = vocab.idOf(text.substring(start, start + length));
        if (id < 0) {
            return;
        }
        queue.add(new Bigram(left, right, vocab.score(id), length));
    }

    private int byteToToken(byte b) {
        int id = byteTokens[b & 0xFF];
        if (id >= 0) {
            return id;
        }
        throw new IllegalStateException(String.format(
                "vocabulary has no token for byte 0x%02X and no unknown token", b & 0xFF));
    }

    /** The {@code <0xXX>} token for a byte; else the one-byte token; else the unknown token. */
    private int findByteToken(byte b) {
        int id = vocab.idOf(String.format("<0x%02X>", b & 0xFF));
        if (id >= 0) {
            return id;
        }
        id = vocab.idOf(new String(new byte[] {b}, StandardCharsets.ISO_8859_1));
        if (id >= 0 && (b & 0xFF) < 0x80) {
            return id;
        }
        return vocab.unk();
    }

    @Override
    byte[] normalTokenBytes(String text) {
        return text.replace(SPACE_MARK, ' ').getBytes(StandardCharsets.UTF_8);
    }
}
