package dev.specula.tokenizer;

import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/** Small hand-made vocabularies for unit tests. */
final class TestVocabs {

    private TestVocabs() {}

    /**
     * A SentencePiece vocabulary: {@code <unk>}=0, {@code <s>}=1, {@code </s>}=2, then the byte
     * tokens {@code <0x00>..<0xFF>} (ids 3..258) when {@code withBytes}, then {@code pieces}
     * (normal) with their scores.
     */
    static Map<String, Object> sentencePiece(List<String> pieces, float[] scores, boolean withBytes,
            boolean addSpacePrefix) {
        List<String> tokens = new ArrayList<>(List.of("<unk>", "<s>", "</s>"));
        List<Integer> types = new ArrayList<>(List.of(2, 3, 3));
        List<Float> allScores = new ArrayList<>(List.of(0f, 0f, 0f));
        if (withBytes) {
            for (int b = 0; b < 256; b++) {
                tokens.add(String.format("<0x%02X>", b));
                types.add(6);
                allScores.add(0f);
            }
        }
        for (int i = 0; i < pieces.size(); i++) {
            tokens.add(pieces.get(i));
            types.add(1);
            allScores.add(scores[i]);
        }
        Map<String, Object> md = new LinkedHashMap<>();
        md.put("tokenizer.ggml.model", "llama");
        md.put("tokenizer.ggml.tokens", tokens);
        float[] s = new float[allScores.size()];
        for (int i = 0; i < s.length; i++) {
            s[i] = allScores.get(i);
        }
        md.put("tokenizer.ggml.scores", s);
        md.put("tokenizer.ggml.token_type", types.stream().mapToInt(Integer::intValue).toArray());
        md.put("tokenizer.ggml.add_space_prefix", addSpacePrefix);
        return md;
    }

    /**
     * A byte-level BPE vocabulary: the 256 byte characters (id = byte value), then one token per
     * merge result in order, then {@code extra} tokens with their types.
     */
    static Map<String, Object> bytePair(String pre, List<String> merges, List<String> extra, List<Integer> extraTypes) {
        List<String> tokens = new ArrayList<>();
        List<Integer> types = new ArrayList<>();
        for (int b = 0; b < 256; b++) {
            tokens.add(String.valueOf(ByteLevel.charOf(b)));
            types.add(1);
        }
        for (String merge : merges) {
            String merged = merge.replace(" ", "");
            if (!tokens.contains(merged)) {
                tokens.add(merged);
                types.add(1);
            }
        }
        tokens.addAll(extra);
        types.addAll(extraTypes);
        Map<String, Object> md = new LinkedHashMap<>();
        md.put("tokenizer.ggml.model", "gpt2");
        md.put("tokenizer.ggml.pre", pre);
        md.put("tokenizer.ggml.tokens", tokens);
        md.put("tokenizer.ggml.token_type", types.stream().mapToInt(Integer::intValue).toArray());
        md.put("tokenizer.ggml.merges", merges);
        return md;
    }

    /** The vocabulary texts of the ids, for readable assertions. */
    static List<String> texts(Tokenizer tokenizer, int[] ids) {
        List<String> out = new ArrayList<>();
        for (int id : ids) {
            out.add(tokenizer.tokenText(id));
        }
        return out;
    }
}
