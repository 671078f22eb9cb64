package dev.specula.cli;

import com.google.gson.Gson;
import com.google.gson.JsonArray;
import com.google.gson.JsonObject;
import dev.specula.Drafter;
import dev.specula.GenerationRequest;
import dev.specula.GenerationResult;
import dev.specula.SpeculaEngine;
import dev.specula.tokenizer.Tokenizer;
import java.awt.BasicStroke;
import java.awt.Color;
import java.awt.Font;
import java.awt.Graphics2D;
import java.awt.RenderingHints;
import java.awt.image.BufferedImage;
import java.io.IOException;
import java.io.PrintWriter;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.LocalDate;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.concurrent.Callable;
import java.util.function.Consumer;
import javax.imageio.ImageIO;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Option;
import picocli.CommandLine.Spec;

/**
 * Spec-Bench style comparison of drafters on one model: every question of a JSONL file (question_id, category,
 * turns) is answered greedily by plain decoding ("none") and by each drafter, paired: in each round, for each drafter
 * in turn, every question is answered by plain decoding and the drafter back to back, in alternating order (plain
 * first for one question, the drafter first for the next), so both sides of a pair share the machine's load. Per
 * drafter and category the table gives the median over rounds of plain decoding's time over the drafter's, with a
 * 95% bootstrap interval ({@link PairedRatios}), by wall clock and by CPU time, and the mean accepted tokens per step.
 */
@Command(name = "bench", sortOptions = false, mixinStandardHelpOptions = true,
        description = "Compare drafters on a Spec-Bench style prompt file: speedup over plain decoding and mean accepted tokens.")
final class BenchCommand implements Callable<Integer> {
    @Spec
    CommandSpec spec;

    @Mixin
    EngineOptions engine;

    @Option(names = "--prompts", paramLabel = "FILE.jsonl", required = true,
            description = "One JSON object per line with question_id, category and turns (the first turn is the prompt).")
    Path prompts;

    @Option(names = "--drafters", paramLabel = "LIST", defaultValue = "none,pld,recycling", split = ",",
            converter = EngineOptions.DrafterName.class,
            description = "Comma-separated drafters; none is always included (default: ${DEFAULT-VALUE}).")
    List<Drafter> drafters;

    @Option(names = "--max-tokens", paramLabel = "N", defaultValue = "128", description = "Tokens per answer (default: ${DEFAULT-VALUE}).")
    int maxTokens;

    @Option(names = "--limit", paramLabel = "N", defaultValue = "0", description = "Use only the first N questions (0 = all).")
    int limit;

    @Option(names = "--rounds", paramLabel = "N", defaultValue = "3",
            description = "Paired rounds: each answers every question with plain decoding and each drafter back to back (default: ${DEFAULT-VALUE}).")
    int rounds;

    @Option(names = "--out", paramLabel = "DIR", description = "Write the table (bench.md) and chart (bench.png) here.")
    Path out;

    record Question(String id, String category, String prompt) {}

    /** Sums per drafter and category, and the paired rounds' ratios against plain decoding. */
    static final class Tally {
        final PairedRatios wallRatios = new PairedRatios(), cpuRatios = new PairedRatios();
        // this round's sums, on both sides of the pairs
        double roundPlain, roundDrafter, roundPlainCpu, roundDrafterCpu;
        double seconds;
        double cpuSeconds; // the process's CPU time over the request (every thread: on a shared machine, what the request cost)
        double draftSeconds; // time in the drafter's propose
        long tokens;
        long steps;
        long acceptedTokens;

        void add(PairedRatios.Timed t) {
            GenerationResult r = t.result();
            seconds += t.seconds();
            cpuSeconds += t.cpuSeconds();
            tokens += r.tokens().length;
            if (r.speculation() != null) {
                steps += r.speculation().steps();
                acceptedTokens += r.speculation().tokens();
                draftSeconds += r.speculation().draftSeconds();
            } else {
                steps += r.tokens().length;
                acceptedTokens += r.tokens().length;
            }
        }

        double tokensPerSecond() {
            return seconds > 0 ? tokens / seconds : 0;
        }

        double meanAccepted() {
            return steps > 0 ? (double) acceptedTokens / steps : 0;
        }

        double tokensPerCpuSecond() {
            return cpuSeconds > 0 ? tokens / cpuSeconds : 0;
        }

        double draftMillisPerStep() {
            return steps > 0 ? 1e3 * draftSeconds / steps : 0;
        }

        /** One pair of this round: the same question answered by plain decoding and by the drafter. */
        void pair(PairedRatios.Timed plain, PairedRatios.Timed drafted) {
            add(drafted);
            roundPlain += plain.seconds();
            roundDrafter += drafted.seconds();
            roundPlainCpu += plain.cpuSeconds();
            roundDrafterCpu += drafted.cpuSeconds();
        }

        void endRound() {
            wallRatios.add(roundPlain, roundDrafter);
            cpuRatios.add(roundPlainCpu, roundDrafterCpu);
            roundPlain = roundDrafter = roundPlainCpu = roundDrafterCpu = 0;
        }
    }

    @Override
    public Integer call() throws IOException {
        PrintWriter stdout = spec.commandLine().getOut(), stderr = spec.commandLine().getErr();
        List<Question> questions = readQuestions(prompts);
        if (limit > 0 && questions.size() > limit) questions = questions.subList(0, limit);
        List<Drafter> chosen = new ArrayList<>(List.of(Drafter.NONE));
        for (Drafter d : drafters) if (!chosen.contains(d)) chosen.add(d);
        List<String> names = chosen.stream().map(Drafter::cliName).toList();
        Path path = engine.modelPath();
        if (rounds < 1) throw new IllegalArgumentException("--rounds must be at least 1, got " + rounds);
        Map<String, Map<String, Tally>> tallies = new LinkedHashMap<>(); // drafter -> category ("all" too) -> tally
        for (String name : names) tallies.put(name, new LinkedHashMap<>());
        List<Drafter> compared = chosen.subList(1, chosen.size());
        List<Question> asked;
        int context;
        // The engine is budgeted for the library's default drafter; each request names its own.
        try (SpeculaEngine generator = engine.builder(Drafter.parse(Drafter.DEFAULT_NAME), EngineOptions.CLI_BATCH).build()) {
            context = generator.contextLength();
            asked = fitting(questions, generator, warning -> {
                stderr.println(warning);
                stderr.flush();
            });
            for (Question question : asked) for (Map<String, Tally> byCategory : tallies.values()) {
                byCategory.computeIfAbsent("all", k -> new Tally());
                byCategory.computeIfAbsent(question.category(), k -> new Tally());
            }
            // Warm-up, outside the figures: first-touch of the mapping, and every drafter's code run once (JIT).
            int[][] reference = new int[asked.size()][];
            reference[0] = PairedRatios.run(generator, request(asked.get(0), Drafter.NONE)).result().tokens();
            for (Drafter drafter : compared) check(drafter, asked.get(0), reference, 0, PairedRatios.run(generator, request(asked.get(0), drafter)));
            Progress progress = Progress.toStandardError(stderr, "rounds", rounds);
            for (int round = 0; round < rounds; round++) {
                for (int k = 0; k < compared.size(); k++) {
                    Drafter drafter = compared.get((k + round) % compared.size()); // who follows whom changes per round
                    Map<String, Tally> byCategory = tallies.get(drafter.cliName());
                    for (int q = 0; q < asked.size(); q++) {
                        Question question = asked.get(q);
                        // ABBA: plain first on every other question (and the other way round in the next round)
                        boolean plainFirst = (q + round) % 2 == 0;
                        PairedRatios.Timed plain = null, drafted = null;
                        for (int side = 0; side < 2; side++) {
                            if ((side == 0) == plainFirst) {
                                plain = PairedRatios.run(generator, request(question, Drafter.NONE));
                                if (reference[q] == null) reference[q] = plain.result().tokens();
                            } else {
                                drafted = PairedRatios.run(generator, request(question, drafter));
                            }
                        }
                        check(Drafter.NONE, question, reference, q, plain);
                        check(drafter, question, reference, q, drafted);
                        for (String c : List.of("all", question.category())) {
                            byCategory.get(c).pair(plain, drafted);
                            tallies.get("none").get(c).add(plain);
                        }
                    }
                    for (Tally t : byCategory.values()) t.endRound();
                }
                if (compared.isEmpty()) { // plain decoding alone: its speed
                    for (int q = 0; q < asked.size(); q++) {
                        PairedRatios.Timed plain = PairedRatios.run(generator, request(asked.get(q), Drafter.NONE));
                        check(Drafter.NONE, asked.get(q), reference, q, plain);
                        for (String c : List.of("all", asked.get(q).category())) tallies.get("none").get(c).add(plain);
                    }
                }
                progress.update(round + 1, asked.size() < questions.size() ? (questions.size() - asked.size()) + " skipped" : "");
            }
            progress.finish();
        }
        String table = table(path, asked.size(), questions.size() - asked.size(), context, names, tallies);
        stdout.print(table);
        stdout.flush();
        if (out != null) {
            Files.createDirectories(out);
            Files.writeString(out.resolve("bench.md"), table);
            chart(names, tallies, out.resolve("bench.png"));
            stderr.println("wrote " + out.resolve("bench.md") + " and " + out.resolve("bench.png"));
            stderr.flush();
        }
        return 0;
    }

    private GenerationRequest request(Question question, Drafter drafter) {
        return GenerationRequest.builder(question.prompt()).maxTokens(maxTokens).drafter(drafter).build();
    }

    /** Every answer must be plain decoding's: a drafter that changed one is a bug, not a figure. */
    private static void check(Drafter drafter, Question question, int[][] reference, int q, PairedRatios.Timed t) {
        if (reference[q] == null) reference[q] = t.result().tokens();
        else if (!Arrays.equals(reference[q], t.result().tokens()))
            throw new IllegalStateException("drafter " + drafter.cliName() + " changed the greedy output of question " + question.id());
    }

    /**
     * The questions whose prompts fit the context, with a warning for each that does not. They are skipped, not
     * truncated: a cut prompt is a different question (often without its question, which comes last), and the
     * figures would no longer compare with other runs over the same file.
     */
    static List<Question> fitting(List<Question> questions, SpeculaEngine engine, Consumer<String> warn) {
        List<Question> fit = new ArrayList<>();
        int context = engine.contextLength();
        Tokenizer tokenizer = engine.model().tokenizer();
        for (Question q : questions) {
            int tokens = tokenizer.encode(q.prompt(), tokenizer.addBos()).length;
            if (tokens < context) {
                fit.add(q);
            } else {
                warn.accept(String.format(Locale.ROOT, "warning: skipping question %s: its prompt's %d tokens do not fit the %d-token context",
                        q.id(), tokens, context));
            }
        }
        if (fit.isEmpty())
            throw new IllegalArgumentException("none of the " + questions.size() + " prompts fits the model's context of " + context + " tokens");
        return fit;
    }

    static List<Question> readQuestions(Path file) throws IOException {
        List<Question> out = new ArrayList<>();
        Gson gson = new Gson();
        int line = 0;
        for (String s : Files.readAllLines(file)) {
            line++;
            if (s.isBlank()) continue;
            JsonObject o;
            try {
                o = gson.fromJson(s, JsonObject.class);
            } catch (RuntimeException e) {
                throw new IllegalArgumentException(file + ":" + line + ": not a JSON object: " + e.getMessage());
            }
            if (o == null || !o.has("turns") || !o.get("turns").isJsonArray() || o.getAsJsonArray("turns").isEmpty())
                throw new IllegalArgumentException(file + ":" + line + ": needs a non-empty \"turns\" array");
            JsonArray turns = o.getAsJsonArray("turns");
            String id = o.has("question_id") ? o.get("question_id").getAsString() : String.valueOf(line);
            String category = o.has("category") ? o.get("category").getAsString() : "default";
            out.add(new Question(id, category, turns.get(0).getAsString()));
        }
        if (out.isEmpty()) throw new IllegalArgumentException(file + ": no questions");
        return out;
    }

    static String table(Path model, int questions, int skipped, int context, List<String> names, Map<String, Map<String, Tally>> tallies) {
        StringBuilder sb = new StringBuilder();
        String skips = skipped == 0 ? "" : String.format(Locale.ROOT, " (%d skipped: longer than the %d-token context)", skipped, context);
        sb.append(String.format(Locale.ROOT, "Model %s, %d questions%s, greedy, %s%n%n", model.getFileName(), questions, skips, LocalDate.now()));
        List<String> categories = new ArrayList<>(tallies.get("none").keySet());
        int rounds = 0;
        for (String name : names) if (!name.equals("none")) rounds = Math.max(rounds, tallies.get(name).get("all").wallRatios.size());
        sb.append(String.format(Locale.ROOT, "Speedup: median over %d paired rounds of plain decoding's time over the drafter's, "
                + "[95%% bootstrap interval]; decoding only (the prompt's processing left out).%n%n", rounds));
        sb.append("| drafter | category | tokens/s | speedup vs none | mean accepted tokens | drafting ms/step | CPU-time speedup |\n"
                + "|---|---|---|---|---|---|---|\n");
        for (String name : names) {
            for (String c : categories) {
                Tally t = tallies.get(name).get(c);
                boolean plain = name.equals("none");
                sb.append(String.format(Locale.ROOT, "| %s | %s | %.1f | %s | %.2f | %.3f | %s |%n", name, c, t.tokensPerSecond(),
                        plain ? "1.00x" : t.wallRatios.describe(), t.meanAccepted(), t.draftMillisPerStep(),
                        plain ? "1.00x" : t.cpuRatios.describe()));
            }
        }
        return sb.toString();
    }

    static void chart(List<String> names, Map<String, Map<String, Tally>> tallies, Path png) throws IOException {
        System.setProperty("java.awt.headless", "true");
        List<String> categories = new ArrayList<>(tallies.get("none").keySet());
        int w = 160 + categories.size() * (names.size() * 36 + 30), h = 420, left = 60, bottom = 340;
        BufferedImage img = new BufferedImage(w, h, BufferedImage.TYPE_INT_RGB);
        Graphics2D g = img.createGraphics();
        g.setRenderingHint(RenderingHints.KEY_ANTIALIASING, RenderingHints.VALUE_ANTIALIAS_ON);
        g.setColor(Color.WHITE);
        g.fillRect(0, 0, w, h);
        double max = 1.0;
        for (String n : names) for (String c : categories) max = Math.max(max, speedup(tallies, n, c));
        double scale = 280 / (max * 1.1);
        Color[] palette = {new Color(0x9e9e9e), new Color(0x1f77b4), new Color(0xff7f0e), new Color(0x2ca02c), new Color(0xd62728)};
        g.setFont(new Font(Font.SANS_SERIF, Font.PLAIN, 12));
        g.setColor(Color.BLACK);
        g.drawString("speedup over plain decoding (none = 1.0)", left, 20);
        int x = left + 10;
        for (String c : categories) {
            for (int i = 0; i < names.size(); i++) {
                double v = speedup(tallies, names.get(i), c);
                int bh = (int) Math.round(v * scale);
                g.setColor(palette[i % palette.length]);
                g.fillRect(x, bottom - bh, 30, bh);
                g.setColor(Color.BLACK);
                g.drawString(String.format(Locale.ROOT, "%.2f", v), x, bottom - bh - 4);
                x += 36;
            }
            g.drawString(c.length() > 22 ? c.substring(0, 22) : c, x - names.size() * 36, bottom + 18);
            x += 30;
        }
        g.setStroke(new BasicStroke(1f, BasicStroke.CAP_BUTT, BasicStroke.JOIN_MITER, 10f, new float[] {4f}, 0f));
        int one = bottom - (int) Math.round(scale);
        g.drawLine(left, one, w - 20, one);
        g.setStroke(new BasicStroke(1f));
        g.drawLine(left, bottom, w - 20, bottom);
        int lx = left;
        for (int i = 0; i < names.size(); i++) {
            g.setColor(palette[i % palette.length]);
            g.fillRect(lx, h - 40, 12, 12);
            g.setColor(Color.BLACK);
            g.drawString(names.get(i), lx + 16, h - 30);
            lx += 110;
        }
        g.dispose();
        ImageIO.write(img, "png", png.toFile());
    }

    /** The paired median speedup (1 for plain decoding itself). */
    private static double speedup(Map<String, Map<String, Tally>> tallies, String name, String category) {
        return name.equals("none") ? 1.0 : tallies.get(name).get(category).wallRatios.median();
    }
}
