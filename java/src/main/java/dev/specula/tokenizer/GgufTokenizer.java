package dev.specula.tokenizer;

import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.BitSet;
import java.util.List;
import java.util.Set;

/**
 * What the GGUF tokenizers share: the vocabulary ({@code tokenizer.ggml.*}), special-token
 * partitioning of the input (llama.cpp's {@code tokenizer_st_partition}), BOS/EOS handling and
 * decoding. Built by {@link Tokenizer#fromGgufMetadata(java.util.Map)}.
 */
public abstract sealed class GgufTokenizer implements Tokenizer permits SentencePieceTokenizer, BytePairTokenizer {

    protected final GgufVocabulary vocab;

    GgufTokenizer(GgufVocabulary vocab) {
        this.vocab = vocab;
    }

    /** A piece of the input: either raw text or one special token that was found in it. */
    record Fragment(String text, int token) {
        static Fragment ofText(String text) {
            return new Fragment(text, -1);
        }

        static Fragment ofToken(int token) {
            return new Fragment(null, token);
        }

        boolean isText() {
            return text != null;
        }
    }

    /** Appends the tokens for the fragments (BOS, if any, is already in {@code out}). */
    abstract void encodeFragments(List<Fragment> fragments, IntList out);

    @Override
    public int[] encode(String text) {
        int[] ids = encode(text, vocab.addBos(), false);
        if (vocab.addEos() && vocab.eos() >= 0) {
            int[] withEos = Arrays.copyOf(ids, ids.length + 1);
            withEos[ids.length] = vocab.eos();
            return withEos;
        }
        return ids;
    }

    @Override
    public int[] encode(String text, boolean addBos, boolean parseSpecial) {
        IntList out = new IntList(text.length() / 2 + 4);
        boolean withBos = addBos && vocab.bos() >= 0;
        if (withBos) {
            out.add(vocab.bos());
        }
        if (!text.isEmpty()) {
            encodeFragments(partition(text, parseSpecial), out);
        }
        return out.toArray();
    }

    @Override
    public int[] encode(String text, boolean addBos, BitSet plainChars) {
        IntList out = new IntList(text.length() / 2 + 4);
        if (addBos && vocab.bos() >= 0) {
            out.add(vocab.bos());
        }
        if (!text.isEmpty()) {
            encodeFragments(partition(text, true, plainChars), out);
        }
        return out.toArray();
    }

    /**
     * Splits the text around special tokens, longest token text first, each occurrence left to
     * right; a control or unknown token's text is split out only where it overlaps no character of
     * {@code plainChars} (text a user typed stays text).
     */
    List<Fragment> partition(String text, boolean parseSpecial, BitSet plainChars) {
        if (plainChars == null || plainChars.isEmpty()) {
            return partition(text, parseSpecial);
        }
        List<int[]> spans = new ArrayList<>(); // {start, end, token or -1}
        spans.add(new int[] {0, text.length(), -1});
        for (int special : vocab.specialTokens()) {
            boolean control = vocab.hasAttr(special, GgufVocabulary.ATTR_CONTROL | GgufVocabulary.ATTR_UNKNOWN);
            if (!parseSpecial && control) {
                continue;
            }
            String needle = vocab.text(special);
            if (needle.isEmpty()) {
                continue;
            }
            List<int[]> next = new ArrayList<>(spans.size() + 2);
            for (int[] span : spans) {
                if (span[2] >= 0) {
                    next.add(span);
                    continue;
                }
                int from = span[0];
                int at = text.indexOf(needle, from);
                while (at >= 0 && at + needle.length() <= span[1]) {
                    int end = at + needle.length();
                    int plain = plainChars.nextSetBit(at);
                    if (control && plain >= 0 && plain < end) {
                        at = text.indexOf(needle, at + 1);
                        continue;
                    }
                    if (at > from) {
                        next.add(new int[] {from, at, -1});
                    }
                    next.add(new int[] {at, end, special});
                    from = end;
                    at = text.indexOf(needle, from);
                }
                if (from < span[1]) {
                    next.add(new int[] {from, span[1], -1});
                }
            }
            spans = next;
        }
        List<Fragment> fragments = new ArrayList<>(spans.size());
        for (int[] span : spans) {
            fragments.add(span[2] >= 0 ? Fragment.ofToken(span[2]) : Fragment.ofText(text.substring(span[0], span[1])));
        }
        return fragments;
    }

    /**
     * Splits the text around special tokens, longest token text first, each occurrence left to
     * right. User-defined tokens are always split out; control and unknown tokens only when
     * {@code parseSpecial} is set.
     */
    List<Fragment> partition(String text, boolean parseSpecial) {
        List<Fragment> fragments = new ArrayList<>();
        fragments.add(Fragment.ofText(text));
        for (int special : vocab.specialTokens()) {
            if (!parseSpecial && vocab.hasAttr(special, GgufVocabulary.ATTR_CONTROL | GgufVocabulary.ATTR_UNKNOWN)) {
                continue;
            }
            String needle = vocab.text(special);
            List<Fragment> next = new ArrayList<>(fragments.size() + 2);
            for (Fragment fragment : fragments) {
                if (!fragment.isText()) {
                    next.add(fragment);
                    continue;
                }
                String raw = fragment.text();
                int from = 0;
                int at;
                while ((at = raw.indexOf(needle, from)) >= 0) {
                    if (at > from) {
                        next.add(Fragment.ofText(raw.substring(from, at)));
                    }
                    next.add(Fragment.ofToken(special));
                    from = at + needle.length();
                }
                if (from < raw.length()) {
                    next.add(from == 0 ? fragment : Fragment.ofText(raw.substring(from)));
                }
            }
            fragments = next;
        }
        return fragments;
    }

    @Override
    public byte[] tokenBytes(int id, boolean includeControl) {
        vocab.checkId(id);
        int attr = vocab.attr(id);
        if ((attr & (GgufVocabulary.ATTR_UNKNOWN | GgufVocabulary.ATTR_CONTROL)) != 0) {
            return includeControl ? vocab.text(id).getBytes(StandardCharsets.UTF_8) : new byte[0];
        }
        if ((attr & GgufVocabulary.ATTR_USER_DEFINED) != 0) {
            return vocab.text(id).getBytes(StandardCharsets.UTF_8);
        }
        if ((attr & GgufVocabulary.ATTR_NORMAL) != 0) {
            return normalTokenBytes(vocab.text(id));
        }
        if ((attr & GgufVocabulary.ATTR_BYTE) != 0) {
            return new byte[] {byteOfToken(vocab.text(id))};
        }
        return new byte[0]; // unused and undefined tokens, as in llama.cpp
    }

    /** The bytes a normal token stands for. */
    abstract byte[] normalTokenBytes(String text);

    /** Whether text is {@code <0xXX>} with two ASCII hex digits. */
    static boolean isByteToken(String text) {
        return text.length() == 6 && text.startsWith("<0x") && text.endsWith(">")
                && hexDigit(text.charAt(3)) >= 0 && hexDigit(text.charAt(4)) >= 0;
    }

    /** The byte of a {@code <0xXX>} token. */
    static byte byteOfToken(String text) {
        if (isByteToken(text)) {
            return (byte) (hexDigit(text.charAt(3)) << 4 | hexDigit(text.charAt(4)));
        }
        throw new IllegalArgumentException("byte token '" + text + "' is not of the form <0xXX>");
    }

    private static int hexDigit(char c) {
        if (c >= '0' && c <= '9') return c - '0';
        if (c >= 'a' && c <= 'f') return c - 'a' + 10;
        if (c >= 'A' && c <= 'F') return c - 'A' + 10;
        return -1;
    }

    @Override
    public int vocabSize() {
        return vocab.size();
    }

    @Override
    public int bos() {
        return vocab.bos();
    }

    @Override
    public int eos() {
        return vocab.eos();
    }

    @Override
    public boolean addBos() {
        return vocab.addBos();
    }

    /** Whether {@link #encode(String)} appends EOS (the model's add_eos flag). */
    public boolean addEos() {
        return vocab.addEos();
    }

    /** The unknown token id, or -1. */
    public int unk() {
        return vocab.unk();
    }

    @Override
    public Set<Integer> stopTokens() {
        return vocab.stopTokens();
    }

    @Override
    public boolean isControl(int id) {
        vocab.checkId(id);
        return vocab.hasAttr(id, GgufVocabulary.ATTR_CONTROL);
    }

    @Override
    public String tokenText(int id) {
        vocab.checkId(id);
        return vocab.text(id);
    }

    /** The token's score (SentencePiece log-probability or rank; 0 when the GGUF has none). */
    public float score(int id) {
        vocab.checkId(id);
        return vocab.score(id);
    }

    /** The id whose vocabulary text is exactly {@code text}, or -1. */
    public int tokenId(String text) {
        return vocab.idOf(text);
    }

    @Override
    public boolean stripsLeadingSpace() {
        return vocab.addSpacePrefix();
    }
}
