package dev.specula.tokenizer;

import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.Map;
import java.util.Set;

/**
 * Turns text into token ids and back.
 *
 * <p>Two families are built from GGUF metadata and follow llama.cpp's {@code llama-vocab.cpp}
 * token for token: SentencePiece-style ({@code tokenizer.ggml.model = "llama"}, see
 * {@link SentencePieceTokenizer}) and GPT-2 byte-level BPE ({@code "gpt2"}, see
 * {@link BytePairTokenizer}). A third wraps a Hugging Face {@code tokenizer.json} through DJL
 * (see {@link HuggingFaceTokenizer}).
 *
 * <p>Plain text: {@link #encode(String, boolean)} treats control tokens written in the text (for
 * example {@code "<s>"} or {@code "<|eot_id|>"}) as ordinary characters, as llama.cpp does when
 * {@code parse_special} is false. Use {@link #encode(String, boolean, boolean)} with
 * {@code parseSpecial = true} to turn them into their ids (chat templates need that).
 *
 * <p>The GGUF tokenizers are immutable and safe to share between threads; decoding a stream of
 * generated tokens goes through a {@link StreamingDecoder}, one per sequence.
 */
public interface Tokenizer {

    /**
     * Tokenizes {@code text}; prepends the BOS token when {@code addBos} is true (and the vocabulary
     * has one). Never appends EOS. Control tokens in the text are plain text.
     */
    default int[] encode(String text, boolean addBos) {
        return encode(text, addBos, false);
    }

    /**
     * Tokenizes {@code text} the way the model asks for by default: BOS first when the model's
     * {@code add_bos_token} flag (or the tokenizer family's default) says so, EOS last when its
     * {@code add_eos_token} flag says so. This is llama.cpp's {@code add_special = true}.
     */
    int[] encode(String text);

    /**
     * Tokenizes {@code text}; with {@code parseSpecial} control tokens written in the text become
     * their ids (llama.cpp's {@code parse_special}). User-defined tokens are always matched as a
     * whole, as in llama.cpp.
     */
    int[] encode(String text, boolean addBos, boolean parseSpecial);

    /**
     * Tokenizes a rendered chat prompt: control tokens written in the text become their ids, as
     * with {@code parseSpecial}, except where their text overlaps a character of {@code plainChars}
     * (text a user typed, which stays plain text). Where no such overlap exists this is exactly
     * {@code encode(text, addBos, true)}. This default cuts the text inside each overlapping
     * occurrence and encodes the pieces separately (tokenizers that cannot keep special text plain
     * otherwise); the GGUF tokenizers override it to partition exactly as llama.cpp does.
     */
    default int[] encode(String text, boolean addBos, java.util.BitSet plainChars) {
        java.util.List<Integer> cuts = new java.util.ArrayList<>();
        if (plainChars != null && !plainChars.isEmpty()) {
            for (int id = 0; id < vocabSize(); id++) {
                if (!isControl(id)) continue;
                String needle = tokenText(id);
                if (needle == null || needle.length() < 2) continue;
                for (int at = text.indexOf(needle); at >= 0; at = text.indexOf(needle, at + 1)) {
                    int plain = plainChars.nextSetBit(at);
                    if (plain >= 0 && plain < at + needle.length()) cuts.add(at + needle.length() / 2);
                }
            }
        }
        if (cuts.isEmpty()) return encode(text, addBos, true);
        java.util.Collections.sort(cuts);
        IntList out = new IntList(text.length() / 2 + 4);
        int from = 0;
        boolean bos = addBos;
        for (int cut : cuts) {
            if (cut <= from) continue;
            for (int id : encode(text.substring(from, cut), bos, true)) out.add(id);
            bos = false;
            from = cut;
        }
        for (int id : encode(text.substring(from), bos, true)) out.add(id);
        return out.toArray();
    }

    /**
     * Decodes ids that start at the beginning of a text: control tokens produce nothing, byte tokens
     * their byte, and where the tokenizer adds a space prefix when encoding ({@link
     * #stripsLeadingSpace()}) the one leading space of the first token that produces text is
     * removed, so {@code decode(encode(s, addBos)) == s}. Invalid UTF-8 becomes U+FFFD. To decode
     * a continuation (generated tokens after a prompt) use a {@link StreamingDecoder}, which keeps
     * every space.
     */
    default String decode(int[] ids) {
        return new String(decodeBytes(ids), StandardCharsets.UTF_8);
    }

    /** The bytes {@link #decode(int[])} turns into a string. */
    default byte[] decodeBytes(int[] ids) {
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        boolean strip = stripsLeadingSpace();
        for (int id : ids) {
            byte[] piece = tokenBytes(id);
            if (piece.length == 0) {
                continue;
            }
            int from = 0;
            if (strip && piece[0] == ' ') {
                from = 1;
            }
            strip = false;
            out.write(piece, from, piece.length - from);
        }
        return out.toByteArray();
    }

    /** The raw bytes token {@code id} stands for; control, unknown and unused tokens give none. */
    default byte[] tokenBytes(int id) {
        return tokenBytes(id, false);
    }

    /**
     * The raw bytes token {@code id} stands for; with {@code includeControl} control and unknown
     * tokens give their text (for example {@code "<s>"}) instead of nothing.
     */
    byte[] tokenBytes(int id, boolean includeControl);

    /** Number of token ids, including special tokens. */
    int vocabSize();

    /** The beginning-of-sequence token id, or -1 when there is none. */
    int bos();

    /** The end-of-sequence token id, or -1 when there is none. */
    int eos();

    /** Whether {@link #encode(String)} prepends BOS (the model's add_bos flag). */
    boolean addBos();

    /**
     * Token ids that end generation: EOS, EOT and EOM (from {@code tokenizer.ggml.eot_token_id},
     * {@code eom_token_id}) and tokens such as {@code <|eot_id|>}, {@code <|im_end|>},
     * {@code <|endoftext|>} found by their text, as llama.cpp's {@code special_eog_ids}.
     */
    Set<Integer> stopTokens();

    /** Whether {@code id} is a control token (BOS, EOS, chat markers...). */
    boolean isControl(int id);

    /** The token's text as stored in the vocabulary (for example {@code "▁the"}, {@code "Ġthe"}). */
    String tokenText(int id);

    /**
     * Whether decoding from the start of a text removes one leading space from the first token,
     * undoing the space prefix added when encoding (SentencePiece with {@code add_space_prefix}).
     */
    boolean stripsLeadingSpace();

    /**
     * Builds a tokenizer from GGUF metadata: strings as {@link String}, string arrays as
     * {@code List<String>}, i32/u32 arrays as {@code int[]}, f32 arrays as {@code float[]}, integer
     * scalars as {@link Integer} (any {@link Number} is accepted), booleans as {@link Boolean}. Only
     * {@code tokenizer.ggml.*} keys are read.
     *
     * @throws IllegalArgumentException for an unsupported tokenizer model or pre-tokenizer, or an
     *     inconsistent vocabulary
     */
    static Tokenizer fromGgufMetadata(Map<String, Object> metadata) {
        GgufVocabulary vocab = GgufVocabulary.fromMetadata(metadata);
        return switch (vocab.model()) {
            case "llama" -> new SentencePieceTokenizer(vocab);
            case "gpt2" -> new BytePairTokenizer(vocab, metadata);
            default -> throw new IllegalArgumentException(
                    "unsupported tokenizer.ggml.model '" + vocab.model()
                            + "' (supported: llama, gpt2)");
        };
    }

    /**
     * Loads a Hugging Face {@code tokenizer.json} (or a folder holding one and, optionally,
     * {@code tokenizer_config.json}) through DJL's bundled native tokenizers library.
     *
     * @throws IOException when a file cannot be read
     * @throws IllegalArgumentException naming the file when its content is not a usable tokenizer
     */
    static Tokenizer fromHuggingFace(Path tokenizerJson) throws IOException {
        return HuggingFaceTokenizer.load(tokenizerJson);
    }
}
