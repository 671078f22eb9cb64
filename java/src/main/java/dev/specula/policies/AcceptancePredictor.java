package dev.specula.policies;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Locale;

/**
 * SpecDec++-style acceptance prediction (arXiv 2405.19715): a logistic regression over a few features of the
 * drafter's distribution at a drafted token, predicting the probability that the target accepts that token
 * given that it accepted every earlier one. A drafter stops once the predicted probability that at least one
 * of its tokens is rejected, 1 - prod p_i, exceeds a threshold.
 *
 * <p>Features: a bias, the drafter's top-1 probability, its entropy divided by log(vocabulary) (so it lies in
 * [0, 1] whatever the vocabulary), the top-1 minus top-2 margin, and the depth divided by 8. The paper trains
 * its head offline on the draft model's hidden states; here the model is tiny and learns online by SGD on the
 * log loss from every verification (which drafted tokens were accepted), so it adapts to the pair of models
 * and the text at hand without a training set.
 *
 * <p>Thread-safe: one predictor may serve every sequence of a drafter pair (it learns faster that way). Saved
 * as a small text file ({@link #save}, {@link #load}).
 */
public final class AcceptancePredictor {
    public static final int FEATURES = 5;
    private static final String MAGIC = "specula-acceptance-predictor 1";

    private final double[] weights;
    private final double learningRate;
    private long updates;

    /**
     * Starts from weights that trust the drafter's confidence: about 0.85 predicted acceptance at top-1
     * probability 0.9 and about 0.45 at 0.3, before any learning.
     */
    public AcceptancePredictor() {
        this(new double[] {-1.0, 3.0, -0.5, 0.5, -0.1}, 0.05);
    }

    public AcceptancePredictor(double[] weights, double learningRate) {
        if (weights.length != FEATURES) throw new IllegalArgumentException("need " + FEATURES + " weights, got " + weights.length);
        if (!(learningRate > 0) || Double.isInfinite(learningRate)) throw new IllegalArgumentException("learningRate must be > 0, got " + learningRate);
        for (double w : weights) if (!Double.isFinite(w)) throw new IllegalArgumentException("weights must be finite: " + Arrays.toString(weights));
        this.weights = weights.clone();
        this.learningRate = learningRate;
    }

    /** The feature vector of one drafted token at depth (1 = the root's child). */
    public static double[] features(double p1, double entropy, int vocab, double p2, int depth) {
        double h = vocab > 1 ? entropy / Math.log(vocab) : 0;
        return new double[] {1.0, p1, h, p1 - p2, depth / 8.0};
    }

    static double[] features(TopTokens t, int depth) {
        return features(t.p1(), t.entropy(), t.vocab(), t.p2(), depth);
    }

    /** P(this token is accepted | every earlier drafted token was). */
    public synchronized double predict(double[] x) {
        return sigmoid(dot(x));
    }

    /** One SGD step on the log loss: accepted is what verification said of a token it reached. */
    public synchronized void learn(double[] x, boolean accepted) {
        double err = (accepted ? 1 : 0) - sigmoid(dot(x));
        for (int i = 0; i < FEATURES; i++) weights[i] += learningRate * err * x[i];
        updates++;
    }

    /**
     * Learns from one verified chain: the first nAccepted of drafted (depth order) were accepted, the next one,
     * if there is one, was rejected; later tokens were never reached, so they teach nothing.
     */
    public void learnChain(List<double[]> drafted, int nAccepted) {
        for (int i = 0; i < drafted.size() && i <= nAccepted; i++) learn(drafted.get(i), i < nAccepted);
    }

    public synchronized double[] weights() {
        return weights.clone();
    }

    public double learningRate() {
        return learningRate;
    }

    /** SGD steps taken so far. */
    public synchronized long updates() {
        return updates;
    }

    public synchronized void save(Path file) throws IOException {
        List<String> lines = new ArrayList<>();
        lines.add(MAGIC);
        StringBuilder w = new StringBuilder("weights");
        for (double v : weights) w.append(' ').append(Double.toString(v));
        lines.add(w.toString());
        lines.add("learning_rate " + learningRate);
        lines.add("updates " + updates);
        Files.write(file, lines, StandardCharsets.UTF_8);
    }

    public static AcceptancePredictor load(Path file) throws IOException {
        List<String> lines = Files.readAllLines(file, StandardCharsets.UTF_8);
        if (lines.isEmpty() || !lines.get(0).trim().equals(MAGIC))
            throw new IOException(file + ": not an acceptance predictor file (first line must be '" + MAGIC + "')");
        double[] w = null;
        double rate = 0.05;
        long updates = 0;
        for (String line : lines.subList(1, lines.size())) {
            String[] f = line.trim().split("\\s+");
            if (f.length == 0 || f[0].isEmpty()) continue;
            try {
                switch (f[0]) {
                    case "weights" -> {
                        if (f.length != FEATURES + 1) throw new IOException(file + ": 'weights' needs " + FEATURES + " numbers, got " + (f.length - 1));
                        w = new double[FEATURES];
                        for (int i = 0; i < FEATURES; i++) w[i] = Double.parseDouble(f[i + 1]);
                    }
                    case "learning_rate" -> rate = Double.parseDouble(f[1]);
                    case "updates" -> updates = Long.parseLong(f[1]);
                    default -> throw new IOException(file + ": unknown key '" + f[0] + "'");
                }
            } catch (NumberFormatException | ArrayIndexOutOfBoundsException e) {
                throw new IOException(file + ": bad line '" + line + "'", e);
            }
        }
        if (w == null) throw new IOException(file + ": no 'weights' line");
        AcceptancePredictor p;
        try {
            p = new AcceptancePredictor(w, rate);
        } catch (IllegalArgumentException e) {
            throw new IOException(file + ": " + e.getMessage(), e);
        }
        p.updates = updates;
        return p;
    }

    @Override
    public synchronized String toString() {
        StringBuilder s = new StringBuilder("AcceptancePredictor(");
        for (int i = 0; i < FEATURES; i++) s.append(i == 0 ? "" : ", ").append(String.format(Locale.ROOT, "%.4f", weights[i]));
        return s.append("; ").append(updates).append(" updates)").toString();
    }

    private double dot(double[] x) {
        if (x.length != FEATURES) throw new IllegalArgumentException("need " + FEATURES + " features, got " + x.length);
        double z = 0;
        for (int i = 0; i < FEATURES; i++) z += weights[i] * x[i];
        return z;
    }

    private static double sigmoid(double z) {
        return 1 / (1 + Math.exp(-z));
    }
}
