package dev.specula.sampling;

import dev.specula.model.ModelWeights;
import dev.specula.model.gguf.GgmlQuant;
import dev.specula.model.gguf.GgufFile;
import dev.specula.model.gguf.GgufTensor;
import java.util.concurrent.ConcurrentHashMap;
import java.util.function.Supplier;

/**
 * The k nearest tokens of each token by cosine similarity of their embedding rows, for LANTERN's relaxed
 * acceptance. Neighbours are computed on first use, one token at a time (a pass over the whole matrix), and
 * cached. The matrix itself is loaded on first use from the supplier. Thread-safe.
 */
public final class TokenNeighbours {
    public static final int DEFAULT_K = 8;

    private final Supplier<float[][]> source;
    private final int k;
    private final ConcurrentHashMap<Integer, int[]> cache = new ConcurrentHashMap<>();
    private float[][] rows;
    private double[] norms;

    /**
     * @param embeddings supplies the embedding matrix, one row per token id (called once, on first use)
     * @param k          neighbours per token, the token itself excluded
     */
    public TokenNeighbours(Supplier<float[][]> embeddings, int k) {
        if (k < 1) throw new IllegalArgumentException("k must be >= 1, got " + k);
        this.source = embeddings;
        this.k = k;
    }

    public TokenNeighbours(float[][] embeddings, int k) {
        this(() -> embeddings, k);
    }

    /**
     * Reads "token_embd.weight" from a GGUF file, dequantized (any type GgmlQuant decodes), when first needed.
     * The file must stay open until then. The matrix is held as floats: vocab × dim × 4 bytes of heap.
     */
    public static TokenNeighbours fromGguf(GgufFile gguf, int k) {
        return new TokenNeighbours(() -> {
            GgufTensor t = gguf.tensor(ModelWeights.GGUF_TOKEN_EMBD);
            int cols = Math.toIntExact(t.cols()), n = Math.toIntExact(t.rows());
            long rowBytes = t.type().bytesFor(cols);
            float[][] m = new float[n][];
            for (int r = 0; r < n; r++) m[r] = GgmlQuant.decode(t.type(), t.data().asSlice(r * rowBytes, rowBytes), cols);
            return m;
        }, k);
    }

    public int k() {
        return k;
    }

    private synchronized void load() {
        if (rows != null) return;
        float[][] m = source.get();
        double[] n = new double[m.length];
        for (int i = 0; i < m.length; i++) {
            double s = 0;
            for (float v : m[i]) s += (double) v * v;
            n[i] = Math.sqrt(s);
        }
        norms = n;
        rows = m;
    }

    /** Cosine similarity of two tokens' embeddings (0 where either row is all zeros). */
    public double similarity(int a, int b) {
        load();
        if (norms[a] == 0 || norms[b] == 0) return 0;
        float[] x = rows[a], y = rows[b];
        double dot = 0;
        for (int i = 0; i < x.length; i++) dot += (double) x[i] * y[i];
        return dot / (norms[a] * norms[b]);
    }

    /** The k most similar tokens to token, most similar first (ties: lower id first), token excluded. */
    public int[] of(int token) {
        int[] cached = cache.get(token);
        if (cached != null) return cached.clone();
        load();
        int n = rows.length, m = Math.min(k, n - 1);
        int[] best = new int[m];
        double[] sim = new double[m];
        int size = 0;
        for (int t = 0; t < n; t++) {
            if (t == token) continue;
            double s = similarity(token, t);
            if (size == m && !(s > sim[m - 1])) continue;
            int i = size < m ? size++ : m - 1;
            while (i > 0 && s > sim[i - 1]) {
                sim[i] = sim[i - 1];
                best[i] = best[i - 1];
                i--;
            }
            sim[i] = s;
            best[i] = t;
        }
        cache.put(token, best);
        return best.clone();
    }

    /** Whether candidate is among token's k neighbours. */
    public boolean contains(int token, int candidate) {
        if (candidate == token) return false;
        int[] nb = cache.get(token);
        if (nb == null) nb = of(token);
        for (int t : nb) if (t == candidate) return true;
        return false;
    }
}
