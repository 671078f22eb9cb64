package dev.specula.engine;

import static org.junit.jupiter.api.Assertions.*;

import dev.specula.Drafter;
import dev.specula.GenerationRequest;
import dev.specula.GenerationResult;
import dev.specula.SpeculaEngine;
import dev.specula.model.ModelFile;
import dev.specula.nativeapi.Context;
import dev.specula.nativeapi.KvCache;
import dev.specula.nativeapi.NativeModel;
import dev.specula.nativeapi.Recycler;
import dev.specula.policies.PromptLookupPolicy;
import dev.specula.policies.RecyclingPolicy;
import dev.specula.sampling.BannedSequences;
import dev.specula.sampling.CandidateFilter;
import dev.specula.sampling.PredicateFilter;
import dev.specula.sampling.Sampler;
import dev.specula.sampling.SamplingOptions;
import dev.specula.tokenizer.Tokenizer;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.function.Supplier;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Candidate filters: plain greedy output never breaks them, and speculative greedy output equals plain greedy
 * output under the same filters (lossless w.r.t. the filtered distribution), for prompt lookup and recycling.
 */
class CandidateFilterTest {
    static final int VOCAB = TinyModel.VOCAB;
    static final int PROMPTS = 24;
    static final int MAX_TOKENS = 40;

    @TempDir
    static Path temp;
    static TinyModel tiny;
    static Context context;
    static ModelFile file;
    static NativeModel model;
    static final List<int[]> prompts = new ArrayList<>();
    static final List<int[]> unfiltered = new ArrayList<>();

    @BeforeAll
    static void setUp() {
        tiny = TinyModel.open(temp);
        context = tiny.context;
        file = tiny.file;
        model = tiny.model;
        prompts.addAll(TinyModel.prompts(PROMPTS, 11));
        unfiltered.addAll(tiny.greedy(prompts, MAX_TOKENS));
    }

    @AfterAll
    static void tearDown() {
        tiny.close();
    }

    static List<int[]> plain(List<CandidateFilter> filters) {
        List<int[]> out = new ArrayList<>();
        for (int[] prompt : prompts) out.add(ReferenceDecoder.generate(model, TinyModel.CONTEXT, prompt, MAX_TOKENS, SamplingOptions.GREEDY, filters));
        return out;
    }

    static void checkSpeculative(Supplier<DraftPolicy> policy, int maxTreeNodes, int batch, List<CandidateFilter> filters, List<int[]> expected) {
        try (DecodeLoop engine = new DecodeLoop(model, maxTreeNodes, false)) {
            for (int start = 0; start < PROMPTS; start += batch) {
                List<DecodeLoop.Request> requests = new ArrayList<>();
                List<KvCache> caches = new ArrayList<>();
                for (int p = start; p < Math.min(PROMPTS, start + batch); p++) {
                    KvCache kv = model.newKvCache(512);
                    caches.add(kv);
                    requests.add(new DecodeLoop.Request(kv, prompts.get(p), MAX_TOKENS, SamplingOptions.GREEDY,
                            policy.get(), t -> false, t -> true, () -> false).withFilters(filters));
                }
                List<DecodeLoop.Result> results = engine.generateBatch(requests);
                for (int i = 0; i < results.size(); i++)
                    assertArrayEquals(expected.get(start + i), results.get(i).tokens(),
                            "prompt " + (start + i) + " with " + policy.get().name() + " (batch " + batch + ")");
                caches.forEach(KvCache::close);
            }
        }
    }

    static void checkAllPolicies(List<CandidateFilter> filters, List<int[]> expected) {
        checkSpeculative(PromptLookupPolicy::new, 16, 1, filters, expected);
        checkSpeculative(PromptLookupPolicy::new, 16, 5, filters, expected);
        try (Recycler recycler = Recycler.create(context, VOCAB, Recycler.DEFAULT_K, Recycler.Fill.ZERO)) {
            RecyclingPolicy shared = new RecyclingPolicy(recycler, Recycler.Template.defaultTemplate());
            checkSpeculative(() -> shared, 81, 1, filters, expected);
            checkSpeculative(() -> shared, 81, 4, filters, expected);
        }
    }

    /** Whether a banned sequence ends inside the output (it may start in the prompt). */
    static boolean completesBanned(BannedSequences ban, int[] prompt, int[] output) {
        int[] all = Arrays.copyOf(prompt, prompt.length + output.length);
        System.arraycopy(output, 0, all, prompt.length, output.length);
        for (int end = prompt.length + 1; end <= all.length; end++)
            for (int[] s : ban.sequences())
                if (s.length <= end && Arrays.equals(all, end - s.length, end, s, 0, s.length)) return true;
        return false;
    }

    static int changed(List<int[]> a, List<int[]> b) {
        int n = 0;
        for (int i = 0; i < a.size(); i++) if (!Arrays.equals(a.get(i), b.get(i))) n++;
        return n;
    }

    @Test
    void bannedSequencesNeverAppearAndSpeculationIsLossless() {
        // Ban sequences the unfiltered model really produces: bigrams, a trigram and the most common token.
        List<int[]> banned = new ArrayList<>();
        for (int p = 0; p < 8; p++) {
            int[] out = unfiltered.get(p);
            if (out.length > 4) banned.add(new int[] {out[2], out[3]});
            if (p == 3 && out.length > 8) banned.add(new int[] {out[6], out[7], out[8]});
        }
        int[] counts = new int[VOCAB];
        for (int[] out : unfiltered) for (int t : out) counts[t]++;
        banned.add(new int[] {Sampler.argmax(Arrays.stream(counts).asDoubleStream().toArray())});
        BannedSequences ban = new BannedSequences(banned);
        boolean bannedSeenBefore = false;
        for (int p = 0; p < PROMPTS; p++) bannedSeenBefore |= completesBanned(ban, prompts.get(p), unfiltered.get(p));
        assertTrue(bannedSeenBefore, "the test's banned sequences never occur unfiltered");

        List<CandidateFilter> filters = List.of(ban);
        List<int[]> expected = plain(filters);
        for (int p = 0; p < PROMPTS; p++) {
            assertFalse(completesBanned(ban, prompts.get(p), expected.get(p)), "plain output " + p + " contains a banned sequence");
            assertEquals(MAX_TOKENS, expected.get(p).length);
        }
        assertTrue(changed(unfiltered, expected) >= PROMPTS / 2, "the ban changed only " + changed(unfiltered, expected) + " outputs");
        checkAllPolicies(filters, expected);
    }

    @Test
    void tokenPredicateIsRespectedAndSpeculationIsLossless() {
        List<CandidateFilter> filters = List.of(PredicateFilter.ofTokens(t -> t % 2 == 0));
        List<int[]> expected = plain(filters);
        for (int[] out : expected) for (int t : out) assertEquals(0, t % 2, "odd token " + t + " in " + Arrays.toString(out));
        assertTrue(changed(unfiltered, expected) > 0);
        checkAllPolicies(filters, expected);
    }

    @Test
    void contextPredicateSeesTheTreePath() {
        // Forbids repeating the previous token and any token equal to the one two back: both need the right
        // context at every tree node, including the path inside the tree.
        PredicateFilter noRepeat = new PredicateFilter((ctx, len, c) -> c != ctx[len - 1] && (len < 2 || c != ctx[len - 2]));
        List<CandidateFilter> filters = List.of(noRepeat, PredicateFilter.ofTokens(t -> t != 7));
        List<int[]> expected = plain(filters);
        for (int p = 0; p < PROMPTS; p++) {
            int[] out = expected.get(p), prompt = prompts.get(p);
            for (int i = 0; i < out.length; i++) {
                int prev = i > 0 ? out[i - 1] : prompt[prompt.length - 1];
                assertNotEquals(prev, out[i], "prompt " + p + " repeats at " + i);
            }
        }
        assertTrue(changed(unfiltered, expected) > 0);
        checkAllPolicies(filters, expected);
    }

    @Test
    void bannedSequencesMaskOnlyCompletions() {
        BannedSequences ban = new BannedSequences(List.of(new int[] {5, 6, 7}, new int[] {9}));
        float[] row = new float[12];
        ban.mask(new int[] {1, 5, 6}, 3, row);
        assertEquals(Float.NEGATIVE_INFINITY, row[7]);
        assertEquals(Float.NEGATIVE_INFINITY, row[9]);
        row = new float[12];
        ban.mask(new int[] {5, 6, 1}, 2, row); // only the first two count
        assertEquals(Float.NEGATIVE_INFINITY, row[7]);
        row = new float[12];
        ban.mask(new int[] {1, 6, 5}, 3, row);
        assertEquals(0f, row[7]);
        assertEquals(Float.NEGATIVE_INFINITY, row[9]);
        assertThrows(IllegalStateException.class,
                () -> CandidateFilter.applyAll(List.of(PredicateFilter.ofTokens(t -> false)), new int[] {1}, 1, new float[4]));
    }

    @Test
    void bannedStringsThroughTheEngine() {
        Tokenizer tokenizer = tiny.tokenizer();
        try (SpeculaEngine generator = SpeculaEngine.builder().model(file.path()).drafter(Drafter.NONE).contextLength(512).build()) {
        GenerationRequest base = GenerationRequest.builder("int x = 1;").maxTokens(30).build();
        GenerationResult free = generator.generate(base, t -> {}, () -> false);
        // Ban the text of the first generated token whose text encodes back to it (after any dummy prefix).
        String bannedText = null;
        int bannedToken = -1;
        for (int t : free.tokens()) {
            String text = tokenizer.decode(new int[] {t});
            int[] ids = text.isEmpty() || text.contains("\uFFFD") ? new int[0] : tokenizer.encode(text, false);
            if (ids.length > 0 && ids[ids.length - 1] == t) {
                bannedText = text;
                bannedToken = t;
                break;
            }
        }
        assertNotNull(bannedText, "no generated token round-trips through the tokenizer");
        BannedSequences ban = BannedSequences.ofStrings(tokenizer, List.of(bannedText));
        assertArrayEquals(tokenizer.encode(bannedText, false), ban.sequences().get(0));
        final int token = bannedToken;
        assertTrue(ban.sequences().stream().anyMatch(q -> Arrays.equals(q, new int[] {token})),
                "the string's token alone (without a dummy space prefix) is banned too");
        GenerationRequest filtered = base.toBuilder().filters(List.of(ban)).build();
        GenerationResult plain = generator.generate(filtered, t -> {}, () -> false);
        GenerationResult spec = generator.generate(filtered.toBuilder().speculation(
                new GenerationRequest.Speculation(new PromptLookupPolicy(), 16, false)).build(), t -> {}, () -> false);
        assertArrayEquals(plain.tokens(), spec.tokens());
        assertFalse(Arrays.stream(plain.tokens()).anyMatch(t -> t == token), "the banned token was generated");
        assertFalse(completesBanned(ban, plain.promptTokens(), plain.tokens()));
        }
    }
}
