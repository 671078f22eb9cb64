package dev.specula.tokenizer;

import com.google.gson.GsonBuilder;
import com.google.gson.JsonArray;
import com.google.gson.JsonElement;
import com.google.gson.JsonObject;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.List;
import java.util.Map;

/**
 * Writes a GGUF vocabulary ({@code tokenizer.ggml.*} metadata) as Hugging Face's {@code tokenizer.json} and
 * {@code tokenizer_config.json}, laid out as Hugging Face's own converters write these families, so that
 * {@link HuggingFaceTokenizer} (the Rust tokenizers library) encodes as {@link Tokenizer#fromGgufMetadata} does:
 * <ul>
 *   <li>{@code llama} (SentencePiece BPE with byte fallback), as transformers converts Llama 2: a '▁' prepended
 *   (with add_space_prefix) and spaces as '▁', a BPE model whose merges are every split of a token into two tokens,
 *   ranked by the merged token's score (what llama.cpp merges by), {@code <0xXX>} byte fallback;</li>
 *   <li>{@code gpt2} with a Llama 3 family pre-tokenizer ({@code llama-bpe}, ...): Llama 3's regex split, byte-level
 *   BPE with the file's merges, whole words in the vocabulary taken as they are (ignore_merges).</li>
 * </ul>
 * Control, user-defined and unknown tokens become added tokens. BOS and EOS are added by a TemplateProcessing
 * post-processor when the GGUF says so. Other tokenizer models and pre-tokenizers are refused by name.
 */
public final class HuggingFaceTokenizerWriter {
    private HuggingFaceTokenizerWriter() {}

    /** The tokenizer file's name in a Hugging Face folder. */
    public static final String TOKENIZER_JSON = "tokenizer.json";
    /** The tokenizer config's name in a Hugging Face folder (BOS, EOS, the chat template). */
    public static final String TOKENIZER_CONFIG = "tokenizer_config.json";

    private static final String SPACE_MARK = "\u2581";

    /**
     * Writes tokenizer.json and tokenizer_config.json for the GGUF tokenizer metadata md into dir (which exists).
     *
     * @throws UnsupportedOperationException for a tokenizer model or pre-tokenizer written by no rule here
     * @throws IllegalArgumentException      for metadata that is not a vocabulary
     */
    public static void write(Map<String, Object> md, Path dir) {
        String json = tokenizerJson(md);
        String config = toJson(tokenizerConfig(md));
        try {
            Files.writeString(dir.resolve(TOKENIZER_JSON), json, StandardCharsets.UTF_8);
            Files.writeString(dir.resolve(TOKENIZER_CONFIG), config, StandardCharsets.UTF_8);
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }

    /** The tokenizer.json text for the GGUF tokenizer metadata md. */
    public static String tokenizerJson(Map<String, Object> md) {
        GgufVocabulary v = GgufVocabulary.fromMetadata(md);
        JsonObject root = new JsonObject();
        root.addProperty("version", "1.0");
        root.add("truncation", null);
        root.add("padding", null);
        root.add("added_tokens", addedTokens(v));
        switch (v.model()) {
            case "llama" -> sentencePiece(v, root);
            case "gpt2" -> bytePair(v, md, root);
            default -> throw new UnsupportedOperationException("no tokenizer.json is written for tokenizer.ggml.model '" + v.model()
                    + "' (llama and gpt2 only)");
        }
        return toJson(root);
    }

    /** tokenizer_config.json: BOS, EOS, whether they are added, and the chat template when the GGUF has one. */
    static JsonObject tokenizerConfig(Map<String, Object> md) {
        GgufVocabulary v = GgufVocabulary.fromMetadata(md);
        JsonObject config = new JsonObject();
        if (v.bos() >= 0) config.addProperty("bos_token", v.text(v.bos()));
        if (v.eos() >= 0) config.addProperty("eos_token", v.text(v.eos()));
        if (v.unk() >= 0) config.addProperty("unk_token", v.text(v.unk()));
        config.addProperty("add_bos_token", v.addBos());
        config.addProperty("add_eos_token", v.addEos());
        config.addProperty("clean_up_tokenization_spaces", false);
        if (md.get("tokenizer.chat_template") instanceof String template) config.addProperty("chat_template", template);
        return config;
    }

    private static boolean isAdded(GgufVocabulary v, int id) {
        return v.hasAttr(id, GgufVocabulary.ATTR_CONTROL) || v.hasAttr(id, GgufVocabulary.ATTR_USER_DEFINED)
                || v.hasAttr(id, GgufVocabulary.ATTR_UNKNOWN);
    }

    private static JsonArray addedTokens(GgufVocabulary v) {
        JsonArray added = new JsonArray();
        for (int id = 0; id < v.size(); id++) {
            if (!isAdded(v, id)) continue;
            JsonObject token = new JsonObject();
            token.addProperty("id", id);
            token.addProperty("content", v.text(id));
            token.addProperty("single_word", false);
            token.addProperty("lstrip", false);
            token.addProperty("rstrip", false);
            token.addProperty("normalized", false);
            token.addProperty("special", !v.hasAttr(id, GgufVocabulary.ATTR_USER_DEFINED));
            added.add(token);
        }
        return added;
    }

    private static JsonObject vocabulary(GgufVocabulary v) {
        JsonObject vocab = new JsonObject();
        for (int id = 0; id < v.size(); id++) vocab.addProperty(v.text(id), id);
        return vocab;
    }

    private static JsonObject bpeModel(GgufVocabulary v, JsonArray merges, boolean byteFallback, boolean ignoreMerges) {
        JsonObject model = new JsonObject();
        model.addProperty("type", "BPE");
        model.add("dropout", null);
        if (byteFallback && v.unk() >= 0) model.addProperty("unk_token", v.text(v.unk()));
        else model.add("unk_token", null);
        model.add("continuing_subword_prefix", null);
        model.add("end_of_word_suffix", null);
        model.addProperty("fuse_unk", byteFallback);
        model.addProperty("byte_fallback", byteFallback);
        model.addProperty("ignore_merges", ignoreMerges);
        model.add("vocab", vocabulary(v));
        model.add("merges", merges);
        return model;
    }

    private static void sentencePiece(GgufVocabulary v, JsonObject root) {
        JsonArray normalizers = new JsonArray();
        if (v.addSpacePrefix()) normalizers.add(object("type", "Prepend", "prepend", SPACE_MARK));
        normalizers.add(replace(" ", SPACE_MARK));
        JsonObject normalizer = new JsonObject();
        normalizer.addProperty("type", "Sequence");
        normalizer.add("normalizers", normalizers);
        root.add("normalizer", normalizer);
        root.add("pre_tokenizer", null);
        root.add("post_processor", postProcessor(v));
        JsonArray decoders = new JsonArray();
        decoders.add(replace(SPACE_MARK, " "));
        decoders.add(object("type", "ByteFallback"));
        decoders.add(object("type", "Fuse"));
        if (v.addSpacePrefix()) {
            JsonObject strip = object("type", "Strip", "content", " ");
            strip.addProperty("start", 1);
            strip.addProperty("stop", 0);
            decoders.add(strip);
        }
        JsonObject decoder = new JsonObject();
        decoder.addProperty("type", "Sequence");
        decoder.add("decoders", decoders);
        root.add("decoder", decoder);
        root.add("model", bpeModel(v, sentencePieceMerges(v), true, false));
    }

    /**
     * llama.cpp's SentencePiece tokenizer merges, among adjacent symbols whose concatenation is a token, the one
     * whose token scores highest (leftmost on ties). As BPE merges (transformers' SentencePieceExtractor): every
     * split of a normal token into two normal tokens, by the merged token's score, highest first, then by the
     * merged token's id, then by the two parts' ids.
     */
    private static JsonArray sentencePieceMerges(GgufVocabulary v) {
        record Merge(int merged, int left, int right) {}
        List<Merge> merges = new ArrayList<>();
        for (int id = 0; id < v.size(); id++) {
            if (!v.hasAttr(id, GgufVocabulary.ATTR_NORMAL)) continue;
            String text = v.text(id);
            for (int at = text.offsetByCodePoints(0, 1); at < text.length(); at = text.offsetByCodePoints(at, 1)) {
                int left = v.idOf(text.substring(0, at)), right = v.idOf(text.substring(at));
                if (left >= 0 && right >= 0 && v.hasAttr(left, GgufVocabulary.ATTR_NORMAL) && v.hasAttr(right, GgufVocabulary.ATTR_NORMAL))
                    merges.add(new Merge(id, left, right));
            }
        }
        merges.sort(Comparator.comparingDouble((Merge m) -> -v.score(m.merged())).thenComparingInt(Merge::merged)
                .thenComparingInt(Merge::left).thenComparingInt(Merge::right));
        JsonArray out = new JsonArray();
        for (Merge m : merges) out.add(pair(v.text(m.left()), v.text(m.right())));
        return out;
    }

    private static void bytePair(GgufVocabulary v, Map<String, Object> md, JsonObject root) {
        PreTokenizer pre = PreTokenizer.forName(v.pre());
        String regex = pre.huggingFaceSplitRegex();
        if (regex == null)
            throw new UnsupportedOperationException("no tokenizer.json is written for tokenizer.ggml.pre '" + v.pre()
                    + "' (the Llama 3 family only, such as llama-bpe)");
        List<String> mergeTexts = GgufVocabulary.stringList(md, "merges");
        if (mergeTexts == null) throw new IllegalArgumentException("cannot find tokenizer merges (tokenizer.ggml.merges)");
        JsonArray merges = new JsonArray();
        for (String merge : mergeTexts) {
            int space = merge.indexOf(' ', 1);
            if (space < 0) throw new IllegalArgumentException("tokenizer merge '" + merge + "' is not two tokens separated by a space");
            merges.add(pair(merge.substring(0, space), merge.substring(space + 1)));
        }
        JsonObject split = object("type", "Split");
        JsonObject pattern = new JsonObject();
        pattern.addProperty("Regex", regex);
        split.add("pattern", pattern);
        split.addProperty("behavior", "Isolated");
        split.addProperty("invert", false);
        JsonObject byteLevel = object("type", "ByteLevel");
        byteLevel.addProperty("add_prefix_space", false);
        byteLevel.addProperty("trim_offsets", true);
        byteLevel.addProperty("use_regex", false);
        JsonArray steps = new JsonArray();
        steps.add(split);
        steps.add(byteLevel);
        JsonObject preTokenizer = object("type", "Sequence");
        preTokenizer.add("pretokenizers", steps);
        root.add("normalizer", null);
        root.add("pre_tokenizer", preTokenizer);
        root.add("post_processor", postProcessor(v));
        root.add("decoder", byteLevel.deepCopy());
        root.add("model", bpeModel(v, merges, false, pre.ignoreMerges()));
    }

    /** BOS and EOS around the text where the vocabulary adds them; null when it adds neither. */
    private static JsonElement postProcessor(GgufVocabulary v) {
        boolean bos = v.addBos() && v.bos() >= 0, eos = v.addEos() && v.eos() >= 0;
        if (!bos && !eos) return null;
        JsonArray single = new JsonArray(), pairTemplate = new JsonArray();
        JsonObject specials = new JsonObject();
        if (bos) {
            single.add(special(v, v.bos(), specials));
            pairTemplate.add(special(v, v.bos(), specials));
        }
        single.add(sequence("A", 0));
        pairTemplate.add(sequence("A", 0));
        if (eos) single.add(special(v, v.eos(), specials));
        pairTemplate.add(sequence("B", 1));
        if (eos) pairTemplate.add(special(v, v.eos(), specials));
        JsonObject p = object("type", "TemplateProcessing");
        p.add("single", single);
        p.add("pair", pairTemplate);
        p.add("special_tokens", specials);
        return p;
    }

    private static JsonObject special(GgufVocabulary v, int id, JsonObject specials) {
        String text = v.text(id);
        JsonObject entry = object("id", text);
        JsonArray ids = new JsonArray();
        ids.add(id);
        entry.add("ids", ids);
        JsonArray tokens = new JsonArray();
        tokens.add(text);
        entry.add("tokens", tokens);
        specials.add(text, entry);
        JsonObject token = object("id", text);
        token.addProperty("type_id", 0);
        JsonObject item = new JsonObject();
        item.add("SpecialToken", token);
        return item;
    }

    private static JsonObject sequence(String id, int typeId) {
        JsonObject s = object("id", id);
        s.addProperty("type_id", typeId);
        JsonObject item = new JsonObject();
        item.add("Sequence", s);
        return item;
    }

    private static JsonObject replace(String from, String to) {
        JsonObject r = object("type", "Replace");
        r.add("pattern", object("String", from));
        r.addProperty("content", to);
        return r;
    }

    private static JsonArray pair(String left, String right) {
        JsonArray p = new JsonArray();
        p.add(left);
        p.add(right);
        return p;
    }

    private static JsonObject object(String... keyValues) {
        JsonObject o = new JsonObject();
        for (int i = 0; i < keyValues.length; i += 2) o.addProperty(keyValues[i], keyValues[i + 1]);
        return o;
    }

    private static String toJson(JsonElement e) {
        return new GsonBuilder().disableHtmlEscaping().setPrettyPrinting().create().toJson(e);
    }
}
