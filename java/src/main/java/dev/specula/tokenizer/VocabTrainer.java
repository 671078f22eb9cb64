package dev.specula.tokenizer;

import dev.specula.internal.SplitMix64;
import java.io.IOException;
import java.io.InputStream;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collections;
import java.util.HashMap;
import java.util.HashSet;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.PriorityQueue;
import java.util.Set;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * Trains a small, real BPE vocabulary on a built-in corpus (English prose, Java/C/Python code,
 * JSON, numbers, whitespace runs, accented Latin, Greek, Cyrillic, CJK, emoji) and returns it as
 * GGUF tokenizer metadata, for test models that need a tokenizer llama.cpp accepts.
 *
 * <p>Deterministic: the same style, size and seed always give the same vocabulary. The seed only
 * breaks ties between equally frequent pairs, so different seeds give slightly different,
 * equally valid vocabularies. Training takes well under a second for 512 to 4096 tokens.
 */
public final class VocabTrainer {

    /** SentencePiece-style vocabulary: {@code tokenizer.ggml.model = "llama"}. */
    public static final String STYLE_LLAMA = "llama";
    /** GPT-2 byte-level BPE vocabulary: {@code tokenizer.ggml.model = "gpt2"}. */
    public static final String STYLE_GPT2 = "gpt2";

    /** The pre-tokenizer of the "gpt2" style (Llama 3's regex). */
    static final String GPT2_STYLE_PRE = "llama-bpe";
    static final String END_OF_TEXT = "<|endoftext|>";

    private static final String CORPUS_RESOURCE = "corpus.txt";
    private static final int SPM_SPECIALS = 3; // <unk>, <s>, </s>
    private static final char SPACE_MARK = '\u2581';
    /** SentencePiece-style training words: spaces with the word after them, newlines alone. */
    private static final Pattern SPM_WORD = Pattern.compile("\u2581+[^\u2581\n]*|[^\u2581\n]+|\n+");

    private static volatile String corpus;

    private VocabTrainer() {}

    /**
     * Trains a vocabulary of exactly {@code vocabSize} tokens and returns its
     * {@code tokenizer.ggml.*} metadata (types as {@link Tokenizer#fromGgufMetadata} expects:
     * {@code List<String>} tokens and merges, {@code float[]} scores, {@code int[]} token types,
     * {@code Integer} ids, {@code Boolean} flags), in a stable order.
     *
     * <p>{@code "llama"}: {@code <unk>}=0 (unknown), {@code <s>}=1 and {@code </s>}=2 (control),
     * {@code <0x00>..<0xFF>} (byte), the corpus's most frequent characters (space as
     * {@code '▁'}; rarer characters are left to byte fallback when the vocabulary is small), then
     * the learned merges with score {@code -rank}; {@code add_space_prefix} is true and
     * {@code add_bos_token} true, as for Llama 2.
     *
     * <p>{@code "gpt2"}: the 256 byte characters of GPT-2's byte-to-unicode table (id = byte
     * value), the learned merges in order, then {@code <|endoftext|>} (control) as BOS and EOS;
     * {@code tokenizer.ggml.pre = "llama-bpe"} (Llama 3's pre-tokenizer, also used for
     * training); {@code add_bos_token} false.
     *
     * <p>When the corpus runs out of pairs to merge, the rest is filled with control tokens
     * {@code <|reserved_N|>}.
     *
     * @throws IllegalArgumentException for an unknown style or a size too small for the style
     */
    public static Map<String, Object> ggufMetadata(String style, int vocabSize, long seed) {
        return switch (style) {
            case STYLE_LLAMA -> sentencePiece(vocabSize, seed);
            case STYLE_GPT2 -> bytePair(vocabSize, seed);
            default -> throw new IllegalArgumentException("unknown vocabulary style '" + style
                    + "' (expected " + STYLE_LLAMA + " or " + STYLE_GPT2 + ")");
        };
    }

    /** The built-in training corpus. */
    public static String corpus() {
        String text = corpus;
        if (text == null) {
            try (InputStream in = VocabTrainer.class.getResourceAsStream(CORPUS_RESOURCE)) {
                if (in == null) {
                    throw new IllegalStateException("missing resource " + CORPUS_RESOURCE);
                }
                text = new String(in.readAllBytes(), StandardCharsets.UTF_8);
            } catch (IOException e) {
                throw new UncheckedIOException(e);
            }
            corpus = text;
        }
        return text;
    }

    // --- SentencePiece style -------------------------------------------------------------------

    private static Map<String, Object> sentencePiece(int vocabSize, long seed) {
        int minimum = SPM_SPECIALS + 256 + 1;
        if (vocabSize < minimum) {
            throw new IllegalArgumentException("a llama-style vocabulary needs at least " + minimum + " tokens");
        }
        // As SentencePiece sees it: each line gets the space prefix, spaces become '▁'.
        StringBuilder escaped = new StringBuilder();
        for (String line : corpus().split("\n", -1)) {
            escaped.append(SPACE_MARK).append(line.replace(' ', SPACE_MARK)).append('\n');
        }
        String text = escaped.toString();

        // Characters by frequency; keep at most half of the remaining room for them.
        Map<Integer, Integer> charCounts = new HashMap<>();
        text.codePoints().forEach(cp -> charCounts.merge(cp, 1, Integer::sum));
        List<Integer> chars = new ArrayList<>(charCounts.keySet());
        chars.sort((a, b) -> !charCounts.get(a).equals(charCounts.get(b))
                ? Integer.compare(charCounts.get(b), charCounts.get(a)) : Integer.compare(a, b));
        int room = vocabSize - SPM_SPECIALS - 256;
        int charBudget = Math.max(1, Math.min(chars.size(), room / 2));
        List<Integer> kept = new ArrayList<>(chars.subList(0, charBudget));
        if (!kept.contains((int) SPACE_MARK)) {
            kept.set(kept.size() - 1, (int) SPACE_MARK);
        }
        Collections.sort(kept);
        Set<Integer> keptSet = new HashSet<>(kept);

        // Training words; characters left out of the vocabulary split words.
        Bpe bpe = new Bpe(seed);
        for (int cp : kept) {
            bpe.symbol(new String(Character.toChars(cp)));
        }
        Map<String, Integer> words = new HashMap<>();
        Matcher m = SPM_WORD.matcher(text);
        while (m.find()) {
            StringBuilder word = new StringBuilder();
            m.group().codePoints().forEach(cp -> {
                if (keptSet.contains(cp)) {
                    word.appendCodePoint(cp);
                } else if (!word.isEmpty()) {
                    words.merge(word.toString(), 1, Integer::sum);
                    word.setLength(0);
                }
            });
            if (!word.isEmpty()) {
                words.merge(word.toString(), 1, Integer::sum);
            }
        }
        words.forEach((word, count) -> bpe.addWord(word.codePoints()
                .mapToObj(cp -> new String(Character.toChars(cp))).toList(), count));

        int wantedPieces = room - kept.size();
        List<String> pieces = bpe.train(wantedPieces);

        List<String> tokens = new ArrayList<>(vocabSize);
        List<Float> scores = new ArrayList<>(vocabSize);
        List<Integer> types = new ArrayList<>(vocabSize);
        addToken(tokens, scores, types, "<unk>", 0f, GgufVocabulary.TYPE_UNKNOWN);
        addToken(tokens, scores, types, "<s>", 0f, GgufVocabulary.TYPE_CONTROL);
        addToken(tokens, scores, types, "</s>", 0f, GgufVocabulary.TYPE_CONTROL);
        for (int b = 0; b < 256; b++) {
            addToken(tokens, scores, types, String.format("<0x%02X>", b), 0f, GgufVocabulary.TYPE_BYTE);
        }
        for (int i = 0; i < kept.size(); i++) {
            addToken(tokens, scores, types, new String(Character.toChars(kept.get(i))), -1_000_000f - i,
                    GgufVocabulary.TYPE_NORMAL);
        }
        for (int rank = 0; rank < pieces.size(); rank++) {
            addToken(tokens, scores, types, pieces.get(rank), -rank, GgufVocabulary.TYPE_NORMAL);
        }
        padWithReserved(tokens, scores, types, vocabSize);

        float[] scoreArray = new float[scores.size()];
        for (int i = 0; i < scoreArray.length; i++) {
            scoreArray[i] = scores.get(i);
        }
        Map<String, Object> md = new LinkedHashMap<>();
        md.put("tokenizer.ggml.model", "llama");
        md.put("tokenizer.ggml.tokens", List.copyOf(tokens));
        md.put("tokenizer.ggml.scores", scoreArray);
        md.put("tokenizer.ggml.token_type", types.stream().mapToInt(Integer::intValue).toArray());
        md.put("tokenizer.ggml.bos_token_id", 1);
        md.put("tokenizer.ggml.eos_token_id", 2);
        md.put("tokenizer.ggml.unknown_token_id", 0);
        md.put("tokenizer.ggml.add_bos_token", true);
        md.put("tokenizer.ggml.add_eos_token", false);
        md.put("tokenizer.ggml.add_space_prefix", true);
        return Collections.unmodifiableMap(md);
    }

    // --- GPT-2 style ---------------------------------------------------------------------------

    private static Map<String, Object> bytePair(int vocabSize, long seed) {
        int minimum = 256 + 1;
        if (vocabSize < minimum) {
            throw new IllegalArgumentException("a gpt2-style vocabulary needs at least " + minimum + " tokens");
        }
        Bpe bpe = new Bpe(seed);
        for (int b = 0; b < 256; b++) {
            bpe.symbol(String.valueOf(ByteLevel.charOf(b)));
        }
        Map<String, Integer> words = new HashMap<>();
        for (String word : PreTokenizer.forName(GPT2_STYLE_PRE).split(corpus())) {
            words.merge(ByteLevel.encode(word), 1, Integer::sum);
        }
        words.forEach((word, count) -> bpe.addWord(word.chars()
                .mapToObj(ch -> String.valueOf((char) ch)).toList(), count));

        List<String> pieces = bpe.train(vocabSize - 256 - 1);

        List<String> tokens = new ArrayList<>(vocabSize);
        List<Float> scores = new ArrayList<>(vocabSize);
        List<Integer> types = new ArrayList<>(vocabSize);
        for (int b = 0; b < 256; b++) {
            addToken(tokens, scores, types, String.valueOf(ByteLevel.charOf(b)), 0f, GgufVocabulary.TYPE_NORMAL);
        }
        for (String piece : pieces) {
            addToken(tokens, scores, types, piece, 0f, GgufVocabulary.TYPE_NORMAL);
        }
        padWithReserved(tokens, scores, types, vocabSize - 1);
        int endOfText = tokens.size();
        addToken(tokens, scores, types, END_OF_TEXT, 0f, GgufVocabulary.TYPE_CONTROL);

        Map<String, Object> md = new LinkedHashMap<>();
        md.put("tokenizer.ggml.model", "gpt2");
        md.put("tokenizer.ggml.pre", GPT2_STYLE_PRE);
        md.put("tokenizer.ggml.tokens", List.copyOf(tokens));
        md.put("tokenizer.ggml.token_type", types.stream().mapToInt(Integer::intValue).toArray());
        md.put("tokenizer.ggml.merges", List.copyOf(bpe.mergeStrings()));
        md.put("tokenizer.ggml.bos_token_id", endOfText);
        md.put("tokenizer.ggml.eos_token_id", endOfText);
        md.put("tokenizer.ggml.add_bos_token", false);
        md.put("tokenizer.ggml.add_eos_token", false);
        return Collections.unmodifiableMap(md);
    }

    private static void addToken(List<String> tokens, List<Float> scores, List<Integer> types, String text,
            float score, int type) {
        tokens.add(text);
        scores.add(score);
        types.add(type);
    }

    private static void padWithReserved(List<String> tokens, List<Float> scores, List<Integer> types, int size) {
        for (int i = 0; tokens.size() < size; i++) {
            addToken(tokens, scores, types, "<|reserved_" + i + "|>", 0f, GgufVocabulary.TYPE_CONTROL);
        }
    }

    // --- BPE training --------------------------------------------------------------------------

    /**
     * Byte-pair-encoding training over counted words: repeatedly merges the most frequent
     * adjacent pair of symbols (ties broken by a hash of the pair and the seed), keeping pair
     * counts up to date incrementally.
     */
    private static final class Bpe {
        private final long seed;
        private final List<String> symbolTexts = new ArrayList<>();
        private final Map<String, Integer> symbolIds = new HashMap<>();
        private final List<int[]> words = new ArrayList<>();
        private final List<Integer> wordCounts = new ArrayList<>();
        private final Map<Long, Integer> pairCounts = new HashMap<>();
        private final Map<Long, Set<Integer>> pairWords = new HashMap<>();
        private final PriorityQueue<Candidate> queue = new PriorityQueue<>();
        private final List<String> merges = new ArrayList<>();

        /** A pair and its count when queued; stale once the count has changed. */
        private record Candidate(long pair, int count, long tieBreak) implements Comparable<Candidate> {
            @Override
            public int compareTo(Candidate o) {
                if (count != o.count) {
                    return Integer.compare(o.count, count);
                }
                if (tieBreak != o.tieBreak) {
                    return Long.compare(tieBreak, o.tieBreak);
                }
                return Long.compare(pair, o.pair);
            }
        }

        Bpe(long seed) {
            this.seed = seed;
        }

        int symbol(String text) {
            Integer id = symbolIds.get(text);
            if (id == null) {
                id = symbolTexts.size();
                symbolTexts.add(text);
                symbolIds.put(text, id);
            }
            return id;
        }

        void addWord(List<String> symbols, int count) {
            int[] word = new int[symbols.size()];
            for (int i = 0; i < word.length; i++) {
                word[i] = symbol(symbols.get(i));
            }
            int index = words.size();
            words.add(word);
            wordCounts.add(count);
            for (int i = 0; i + 1 < word.length; i++) {
                long pair = pair(word[i], word[i + 1]);
                pairCounts.merge(pair, count, Integer::sum);
                pairWords.computeIfAbsent(pair, k -> new HashSet<>()).add(index);
            }
        }

        /** Learns up to {@code wanted} new symbols; returns their texts in the order learned. */
        List<String> train(int wanted) {
            for (Map.Entry<Long, Integer> e : pairCounts.entrySet()) {
                queue.add(candidate(e.getKey(), e.getValue()));
            }
            List<String> learned = new ArrayList<>();
            Set<String> known = new HashSet<>(symbolTexts);
            while (learned.size() < wanted && !queue.isEmpty()) {
                Candidate best = queue.poll();
                Integer current = pairCounts.get(best.pair());
                if (current == null || current != best.count() || current <= 0) {
                    continue; // stale
                }
                int left = (int) (best.pair() >>> 32);
                int right = (int) best.pair();
                String text = symbolTexts.get(left) + symbolTexts.get(right);
                merges.add(symbolTexts.get(left) + " " + symbolTexts.get(right));
                int merged = symbol(text);
                if (known.add(text)) {
                    learned.add(text);
                }
                apply(best.pair(), left, right, merged);
            }
            return learned;
        }

        List<String> mergeStrings() {
            return merges;
        }

        private void apply(long pair, int left, int right, int merged) {
            Set<Long> changed = new HashSet<>();
            for (int index : List.copyOf(pairWords.getOrDefault(pair, Set.of()))) {
                int[] word = words.get(index);
                if (!contains(word, left, right)) {
                    continue;
                }
                int count = wordCounts.get(index);
                for (int i = 0; i + 1 < word.length; i++) {
                    long p = pair(word[i], word[i + 1]);
                    pairCounts.merge(p, -count, Integer::sum);
                    changed.add(p);
                }
                int[] next = new int[word.length];
                int n = 0;
                for (int i = 0; i < word.length; i++) {
                    if (i + 1 < word.length && word[i] == left && word[i + 1] == right) {
                        next[n++] = merged;
                        i++;
                    } else {
                        next[n++] = word[i];
                    }
                }
                word = Arrays.copyOf(next, n);
                words.set(index, word);
                for (int i = 0; i + 1 < word.length; i++) {
                    long p = pair(word[i], word[i + 1]);
                    pairCounts.merge(p, count, Integer::sum);
                    pairWords.computeIfAbsent(p, k -> new HashSet<>()).add(index);
                    changed.add(p);
                }
            }
            pairCounts.remove(pair);
            for (long p : changed) {
                Integer count = pairCounts.get(p);
                if (count != null && count > 0) {
                    queue.add(candidate(p, count));
                }
            }
        }

        private static boolean contains(int[] word, int left, int right) {
            for (int i = 0; i + 1 < word.length; i++) {
                if (word[i] == left && word[i + 1] == right) {
                    return true;
                }
            }
            return false;
        }

        private static long pair(int left, int right) {
            return ((long) left << 32) | (right & 0xFFFFFFFFL);
        }

        private Candidate candidate(long pair, int count) {
            String left = symbolTexts.get((int) (pair >>> 32));
            String right = symbolTexts.get((int) pair);
            long h = seed * SplitMix64.GOLDEN_GAMMA;
            for (int i = 0; i < left.length(); i++) {
                h = SplitMix64.mix(h ^ left.charAt(i));
            }
            h = SplitMix64.mix(h ^ 0x1F);
            for (int i = 0; i < right.length(); i++) {
                h = SplitMix64.mix(h ^ right.charAt(i));
            }
            return new Candidate(pair, count, h);
        }
    }
}
