package dev.specula.tokenizer;

import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.PriorityQueue;

/**
 * GPT-2 style byte-level BPE ({@code tokenizer.ggml.model = "gpt2"}), a port of llama.cpp's
 * {@code llm_tokenizer_bpe}.
 *
 * <p>Encoding a text fragment: the pre-tokenizer named by {@code tokenizer.ggml.pre} splits it
 * into words (see {@link PreTokenizer}); each word's UTF-8 bytes are written with GPT-2's
 * byte-to-unicode characters; then, over and over, the adjacent pair with the lowest merge rank
 * ({@code tokenizer.ggml.merges}, leftmost on ties) is merged, with a priority queue as in
 * llama.cpp; finally each symbol becomes its token (a symbol that is not a token becomes its
 * single-byte tokens). Llama 3 style pre-tokenizers take a word found whole in the vocabulary
 * without merging ({@code ignore_merges}).
 *
 * <p>Decoding maps each character of a token back to its byte. llama.cpp's
 * {@code llama_detokenize} also "cleans up" spaces before punctuation for some pre-tokenizers
 * ({@code clean_spaces}); this class does not, so decoding is lossless and equals llama.cpp's
 * token-by-token {@code token_to_piece} output.
 */
public final class BytePairTokenizer extends GgufTokenizer {

    private final PreTokenizer preTokenizer;
    /** Merge rank by {@code left + ' ' + right}. */
    private final Map<String, Integer> ranks;

    BytePairTokenizer(GgufVocabulary vocab, Map<String, Object> metadata) {
        super(vocab);
        this.preTokenizer = PreTokenizer.forName(vocab.pre());
        List<String> merges = GgufVocabulary.stringList(metadata, "merges");
        if (merges == null) {
            throw new IllegalArgumentException("cannot find tokenizer merges (tokenizer.ggml.merges)");
        }
        this.ranks = new HashMap<>(merges.size() * 2);
        for (int i = 0; i < merges.size(); i++) {
            String merge = merges.get(i);
            int space = merge.indexOf(' ', 1);
            String key = space < 0 ? " " : merge.substring(0, space) + " " + merge.substring(space + 1);
            ranks.putIfAbsent(key, i);
        }
    }

    /** The name of the pre-tokenizer ({@code tokenizer.ggml.pre}). */
    public String preTokenizerName() {
        return preTokenizer.name();
    }

    @Override
    void encodeFragments(List<Fragment> fragments, IntList out) {
        for (Fragment fragment : fragments) {
            if (fragment.isText()) {
                for (String word : preTokenizer.split(fragment.text())) {
                    encodeWord(ByteLevel.encode(word), out);
                }
            } else {
                out.add(fragment.token());
            }
        }
    }

    /** A candidate merge of two adjacent symbols. */
    private record Bigram(int left, int right, String text, int rank) {}

    /** Runs BPE on one byte-encoded word; every char of it is one initial symbol. */
    void encodeWord(String word, IntList out) {
        if (word.isEmpty()) {
            return;
        }
        if (preTokenizer.ignoreMerges()) {
            int id = vocab.idOf(word);
            if (id >= 0) {
                out.add(id);
                return;
            }
        }
        int n = word.length();
        int[] start = new int[n];
        int[] length = new int[n];
        int[] prev = new int[n];
        int[] next = new int[n];
        for (int i = 0; i < n; i++) {
            start[i] = i;
            length[i] = 1;
            prev[i] = i - 1;
            next[i] = i + 1 < n ? i + 1 : -1;
        }

        // Lowest rank first; on equal ranks the leftmost pair.
        PriorityQueue<Bigram> queue = new PriorityQueue<>((a, b) -> a.rank() != b.rank()
                ? Integer.compare(a.rank(), b.rank()) : Integer.compare(a.left(), b.left()));
        for (int i = 1; i < n; i++) {
            addBigram(word, start, length, i - 1, i, queue);
        }
        while (!queue.isEmpty()) {
            Bigram bigram = queue.poll();
            int left = bigram.left();
            int right = bigram.right();
            if (length[left] == 0 || length[right] == 0) {
                continue;
            }
            // Skip the pair if either symbol changed since it was queued.
            String leftText = word.substring(start[left], start[left] + length[left]);
            String rightText = word.substring(start[right], start[right] + length[right]);
            if (!(leftText + rightText).equals(bigram.text())) {
                continue;
            }
            length[left] += length[right];
            length[right] = 0;
            next[left] = next[right];
            if (next[right] >= 0) {
                prev[next[right]] = left;
            }
            addBigram(word, start, length, prev[left], left, queue);
            addBigram(word, start, length, left, next[left], queue);
        }

        for (int i = 0; i != -1; i = next[i]) {
            if (length[i] == 0) {
                continue;
            }
            String symbol = word.substring(start[i], start[i] + length[i]);
            int id = vocab.idOf(symbol);
            if (id >= 0) {
                out.add(id);
            } else {
                // Only in an inconsistent vocabulary. llama.cpp then looks up each UTF-8 byte of
                // the symbol as a one-byte token, which can only succeed for ASCII characters.
                for (int j = 0; j < symbol.length(); j++) {
                    char ch = symbol.charAt(j);
                    int single = ch < 0x80 ? vocab.idOf(String.valueOf(ch)) : -1;
                    if (single >= 0) {
                        out.add(single);
                    }
                }
            }
        }
    }

    private void addBigram(String word, int[] start, int[] length, int left, int right, PriorityQueue<Bigram> queue) {
        if (left == -1 || right == -1) {
            return;
        }
        String leftText = word.substring(start[left], start[left] + length[left]);
        String rightText = word.substring(start[right], start[right] + length[right]);
        Integer rank = ranks.get(leftText + " " + rightText);
        if (rank == null) {
            return;
        }
        queue.add(new Bigram(left, right, leftText + rightText, rank));
    }

    @Override
    byte[] normalTokenBytes(String text) {
        return ByteLevel.decode(text);
    }
}
