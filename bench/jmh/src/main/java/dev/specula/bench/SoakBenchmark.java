package dev.specula.bench;

import com.google.gson.Gson;
import com.google.gson.JsonObject;
import dev.specula.SpeculaEngine;
import dev.specula.Drafter;
import dev.specula.GenerationRequest;
import dev.specula.GenerationResult;
import dev.specula.sampling.SamplingOptions;
import java.lang.management.BufferPoolMXBean;
import java.lang.management.ManagementFactory;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicLong;
import javax.management.ObjectName;

/**
 * Soak: many requests through one shared {@link SpeculaEngine} from several threads, every drafter in turn, greedy and
 * sampled, some cancelled midway, with the process's memory printed every so many requests. A leak anywhere (a KV
 * cache, a policy, a native buffer, an arena) shows as a resident set that keeps growing; this says whether it stayed
 * flat, and exits 1 when it did not or when a greedy answer differed between drafters or between runs.
 *
 * <p>Usage: SoakBenchmark [--requests N] [--threads N] [--every N] [--max-tokens N] [--context N]
 * [--compute-threads N] [--max-growth-mib M] [--model FILE] [--draft-model FILE] [--prompts FILE.jsonl]
 *
 * <p>Memory columns: VmRSS, its anonymous part (heap, malloc, native buffers: where a leak grows), its file part (the
 * mapped model), the Java heap in use, the NIO direct pool (FFM arenas count there) and, when the JVM runs with
 * -XX:NativeMemoryTracking=summary, the JVM's own committed native memory. The native library's allocations are not
 * in NMT; they are in RssAnon.
 */
public final class SoakBenchmark {
    static final List<Drafter> DRAFTERS = List.of(Drafter.values());

    public static void main(String[] args) throws Exception {
        Map<String, String> o = options(args);
        int requests = Integer.parseInt(o.getOrDefault("--requests", "10000"));
        int threads = Integer.parseInt(o.getOrDefault("--threads", "4"));
        int every = Integer.parseInt(o.getOrDefault("--every", "1000"));
        int maxTokens = Integer.parseInt(o.getOrDefault("--max-tokens", "16"));
        int context = Integer.parseInt(o.getOrDefault("--context", "1024"));
        int computeThreads = Integer.parseInt(o.getOrDefault("--compute-threads", "0"));
        double maxGrowthMiB = Double.parseDouble(o.getOrDefault("--max-growth-mib", "32"));
        Path model = Path.of(o.getOrDefault("--model", "models/demo-target.gguf"));
        Path draft = Path.of(o.getOrDefault("--draft-model", "models/demo-draft.gguf"));
        Path heads = Path.of(o.getOrDefault("--heads", "models/demo-heads"));
        List<String> prompts = prompts(Path.of(o.getOrDefault("--prompts", "models/demo-prompts.jsonl")));

        System.out.printf(Locale.ROOT, "soak: %d requests, %d threads, drafters %s, %d tokens each, context %d, model %s, %d prompts%n",
                requests, threads, DRAFTERS, maxTokens, context, model, prompts.size());
        List<Sample> samples = new ArrayList<>();
        AtomicInteger mismatches = new AtomicInteger(), failures = new AtomicInteger(), cancelled = new AtomicInteger();
        AtomicLong tokens = new AtomicLong();
        long start = System.nanoTime();
        // The engine decodes plainly by default; each request names its drafter.
        try (SpeculaEngine engine = SpeculaEngine.builder().model(model).draftModel(draft).heads(heads).drafter(Drafter.NONE).batch(threads)
                .contextLength(context).threads(computeThreads).build()) {
            // One request per drafter first, outside the figures: each drafter makes its shared state on first use.
            for (Drafter d : DRAFTERS) engine.generate(request(engine, d, prompts.get(0), maxTokens, SamplingOptions.GREEDY), t -> {}, () -> false);
            Sample first = Sample.take(0, start);
            samples.add(first);
            System.out.println(Sample.HEADER);
            System.out.println(first.row());
            Map<Integer, int[]> greedyAnswers = new ConcurrentHashMap<>(); // prompt index -> tokens
            AtomicInteger next = new AtomicInteger(), done = new AtomicInteger();
            ExecutorService pool = Executors.newFixedThreadPool(threads);
            List<Future<?>> workers = new ArrayList<>();
            for (int w = 0; w < threads; w++) {
                workers.add(pool.submit(() -> {
                    for (int i = next.getAndIncrement(); i < requests; i = next.getAndIncrement()) {
                        Drafter drafter = DRAFTERS.get(i % DRAFTERS.size());
                        int promptIndex = (i / DRAFTERS.size()) % prompts.size();
                        boolean sampled = i % 3 == 1;
                        boolean cancel = i % 11 == 7; // cancelled after a few pieces of text
                        SamplingOptions sampling = sampled ? SamplingOptions.sampled(0.8f, i) : SamplingOptions.GREEDY;
                        AtomicInteger pieces = new AtomicInteger();
                        try {
                            GenerationResult r = engine.generate(request(engine, drafter, prompts.get(promptIndex), maxTokens, sampling),
                                    t -> pieces.incrementAndGet(), () -> cancel && pieces.get() >= 3);
                            tokens.addAndGet(r.tokens().length);
                            if (cancel) cancelled.incrementAndGet();
                            if (!sampled && !cancel) {
                                int[] seen = greedyAnswers.putIfAbsent(promptIndex, r.tokens());
                                if (seen != null && !Arrays.equals(seen, r.tokens())) {
                                    mismatches.incrementAndGet();
                                    System.out.printf("MISMATCH: request %d (%s) on prompt %d%n", i, drafter, promptIndex);
                                }
                            }
                        } catch (RuntimeException e) {
                            failures.incrementAndGet();
                            System.out.printf("FAILED: request %d (%s, %s): %s%n", i, drafter, sampled ? "sampled" : "greedy", e);
                        }
                        int finished = done.incrementAndGet();
                        if (finished % every == 0 || finished == requests) {
                            Sample s = Sample.take(finished, start);
                            synchronized (samples) {
                                samples.add(s);
                                System.out.println(s.row());
                            }
                        }
                    }
                    return null;
                }));
            }
            for (Future<?> f : workers) f.get();
            pool.shutdown();
        }
        double seconds = (System.nanoTime() - start) / 1e9;
        samples.sort((a, b) -> Integer.compare(a.requests, b.requests));
        // Flat: after the first interval (heap, caches and the allocator's arenas reach their working size), the
        // anonymous resident set grows by less than the allowance from its lowest point to the end.
        Sample base = samples.size() > 2 ? samples.get(1) : samples.get(0);
        double lowest = samples.stream().skip(1).mapToDouble(s -> s.rssAnonKiB).min().orElse(base.rssAnonKiB) / 1024;
        double last = samples.getLast().rssAnonKiB / 1024.0;
        double rssGrowth = last - lowest;
        double nmtGrowth = samples.getLast().nmtCommittedKiB < 0 ? 0 : (samples.getLast().nmtCommittedKiB - base.nmtCommittedKiB) / 1024.0;
        boolean flat = rssGrowth < maxGrowthMiB && nmtGrowth < maxGrowthMiB;
        System.out.printf(Locale.ROOT, "done: %d requests in %.0f s (%.1f requests/s, %d tokens, %d cancelled), %d failed, %d greedy mismatches%n",
                requests, seconds, requests / seconds, tokens.get(), cancelled.get(), failures.get(), mismatches.get());
        System.out.printf(Locale.ROOT, "RssAnon: lowest after the first %d requests %.1f MiB, last %.1f MiB, growth %.1f MiB; NMT committed growth %s"
                        + " (allowance %.0f MiB): %s%n", every, lowest, last, rssGrowth,
                samples.getLast().nmtCommittedKiB < 0 ? "n/a (NMT off)" : String.format(Locale.ROOT, "%.1f MiB", nmtGrowth),
                maxGrowthMiB, flat ? "FLAT" : "GROWING");
        System.exit(flat && failures.get() == 0 && mismatches.get() == 0 ? 0 : 1);
    }

    static GenerationRequest request(SpeculaEngine engine, Drafter drafter, String prompt, int maxTokens, SamplingOptions sampling) {
        return GenerationRequest.builder(prompt).maxTokens(maxTokens).sampling(sampling).drafter(drafter).build();
    }

    /** One memory reading. Figures in KiB; nmtCommittedKiB is -1 when NMT is off. */
    record Sample(int requests, double seconds, long rssKiB, long rssAnonKiB, long rssFileKiB, long heapUsedKiB, long directKiB,
                  long nmtCommittedKiB) {
        static final String HEADER = "| requests | seconds | VmRSS MiB | RssAnon MiB | RssFile MiB | heap used MiB | direct MiB | NMT committed MiB |\n"
                + "|---|---|---|---|---|---|---|---|";

        static Sample take(int requests, long start) throws Exception {
            Map<String, Long> status = procStatus();
            long direct = 0;
            for (BufferPoolMXBean pool : ManagementFactory.getPlatformMXBeans(BufferPoolMXBean.class)) {
                if (pool.getName().equals("direct")) direct = pool.getMemoryUsed() / 1024;
            }
            long heap = ManagementFactory.getMemoryMXBean().getHeapMemoryUsage().getUsed() / 1024;
            return new Sample(requests, (System.nanoTime() - start) / 1e9, status.getOrDefault("VmRSS", -1L),
                    status.getOrDefault("RssAnon", -1L), status.getOrDefault("RssFile", -1L), heap, direct, jvmNativeCommittedKiB());
        }

        String row() {
            return String.format(Locale.ROOT, "| %d | %.0f | %.1f | %.1f | %.1f | %.1f | %.1f | %s |", requests, seconds, rssKiB / 1024.0,
                    rssAnonKiB / 1024.0, rssFileKiB / 1024.0, heapUsedKiB / 1024.0, directKiB / 1024.0,
                    nmtCommittedKiB < 0 ? "n/a" : String.format(Locale.ROOT, "%.1f", nmtCommittedKiB / 1024.0));
        }
    }

    /** The kB figures of /proc/self/status (Linux). */
    static Map<String, Long> procStatus() throws Exception {
        Map<String, Long> out = new java.util.HashMap<>();
        Path status = Path.of("/proc/self/status");
        if (!Files.exists(status)) return out;
        for (String line : Files.readAllLines(status)) {
            String[] kv = line.split(":\\s+");
            if (kv.length == 2 && kv[1].endsWith(" kB")) out.put(kv[0], Long.parseLong(kv[1].substring(0, kv[1].length() - 3).trim()));
        }
        return out;
    }

    /** The JVM's committed native memory from NMT's summary (what `jcmd PID VM.native_memory summary` prints), or -1. */
    static long jvmNativeCommittedKiB() {
        try {
            Object text = ManagementFactory.getPlatformMBeanServer().invoke(new ObjectName("com.sun.management:type=DiagnosticCommand"),
                    "vmNativeMemory", new Object[] {new String[] {"summary"}}, new String[] {String[].class.getName()});
            var m = java.util.regex.Pattern.compile("Total: reserved=(\\d+)KB, committed=(\\d+)KB").matcher(text.toString());
            return m.find() ? Long.parseLong(m.group(2)) : -1;
        } catch (Exception e) {
            return -1;
        }
    }

    static List<String> prompts(Path file) throws Exception {
        List<String> out = new ArrayList<>();
        Gson gson = new Gson();
        for (String line : Files.readAllLines(file)) {
            if (line.isBlank()) continue;
            out.add(gson.fromJson(line, JsonObject.class).getAsJsonArray("turns").get(0).getAsString());
        }
        if (out.isEmpty()) throw new IllegalArgumentException(file + ": no prompts");
        return out;
    }

    static Map<String, String> options(String[] args) {
        Map<String, String> o = new java.util.HashMap<>();
        for (int i = 0; i < args.length; i++) {
            if (!args[i].startsWith("--") || i + 1 >= args.length) throw new IllegalArgumentException("usage: --option value ...; got " + args[i]);
            o.put(args[i], args[++i]);
        }
        return o;
    }
}
