package dev.specula.bench;

import com.google.gson.JsonObject;
import com.google.gson.JsonParser;
import dev.specula.Drafter;
import dev.specula.SpeculaEngine;
import dev.specula.server.SpeculaServer;
import java.lang.management.ManagementFactory;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Iterator;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.concurrent.ConcurrentLinkedQueue;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicLong;
import java.util.stream.Stream;

/**
 * Load test of the OpenAI-compatible server (not in CI): the demo target behind {@link SpeculaServer} on a loopback
 * port, and N streaming clients (java.net.http, each its own connection) sending M requests in all, greedy and
 * sampled, every k-th one hung up after its first pieces of text. Reports throughput and the client-side
 * time to first token and inter-token latency (p50, p99), and the process's memory (Java heap after a full GC,
 * resident set) after the first quarter of the requests and at the end; exits 1 on any error or when memory grew
 * past the allowance.
 *
 * <p>Usage: ServeLoad [--clients 64] [--requests 2000] [--max-tokens 32] [--batch 8] [--cancel-every 10]
 * [--drafter recycling] [--context 512] [--model FILE] [--prompts FILE.jsonl] [--max-heap-growth-mib 8]
 * [--max-rss-growth-mib 48] [--max-seconds 900]
 */
public final class ServeLoad {
    record Snapshot(int requests, double seconds, double heapAfterGcMiB, double rssMiB, double rssAnonMiB, double directMiB, double nmtMiB) {
        String row() {
            return String.format(Locale.ROOT, "| %d | %.0f | %.1f | %.1f | %.1f | %.1f | %s |", requests, seconds, heapAfterGcMiB, rssMiB, rssAnonMiB,
                    directMiB, nmtMiB < 0 ? "n/a" : String.format(Locale.ROOT, "%.1f", nmtMiB));
        }
    }

    public static void main(String[] args) throws Exception {
        Map<String, String> o = SoakBenchmark.options(args);
        int clients = Integer.parseInt(o.getOrDefault("--clients", "64"));
        int requests = Integer.parseInt(o.getOrDefault("--requests", "2000"));
        int maxTokens = Integer.parseInt(o.getOrDefault("--max-tokens", "32"));
        int batch = Integer.parseInt(o.getOrDefault("--batch", "8"));
        int cancelEvery = Integer.parseInt(o.getOrDefault("--cancel-every", "10"));
        int context = Integer.parseInt(o.getOrDefault("--context", "512"));
        double maxHeapGrowth = Double.parseDouble(o.getOrDefault("--max-heap-growth-mib", "8"));
        double maxRssGrowth = Double.parseDouble(o.getOrDefault("--max-rss-growth-mib", "48"));
        long maxSeconds = Long.parseLong(o.getOrDefault("--max-seconds", "900"));
        Drafter drafter = Drafter.parse(o.getOrDefault("--drafter", "recycling"));
        Path model = Path.of(o.getOrDefault("--model", "models/demo-target.gguf"));
        List<String> all = SoakBenchmark.prompts(Path.of(o.getOrDefault("--prompts", "models/demo-prompts.jsonl")));
        int firstMark = Math.max(1, requests / 4);

        try (SpeculaEngine engine = SpeculaEngine.builder().model(model).drafter(drafter).contextLength(context).batch(batch).build();
             SpeculaServer server = SpeculaServer.builder(engine).port(0).start();
             HttpClient http = HttpClient.newBuilder().version(HttpClient.Version.HTTP_1_1).connectTimeout(Duration.ofSeconds(30)).build()) {
            // Prompts that leave room for the answer in the context (the server refuses the others, as it should).
            List<String> prompts = all.stream().filter(p -> engine.model().tokenizer().encode(p, true).length + maxTokens < engine.contextLength()).toList();
            if (prompts.isEmpty()) throw new IllegalArgumentException("no prompt fits the context of " + engine.contextLength());
            System.out.printf(Locale.ROOT, "serve-load: %d clients, %d requests, %d tokens each, batch %d, drafter %s, every %d-th hung up, %d prompts, %s, %d cores%n",
                    clients, requests, maxTokens, batch, drafter.cliName(), cancelEvery, prompts.size(), model, Runtime.getRuntime().availableProcessors());
            URI uri = server.uri().resolve("/v1/completions");

            AtomicInteger next = new AtomicInteger();
            AtomicInteger done = new AtomicInteger();
            AtomicInteger errors = new AtomicInteger();
            AtomicInteger hungUp = new AtomicInteger();
            AtomicLong tokens = new AtomicLong();
            ConcurrentLinkedQueue<Double> ttft = new ConcurrentLinkedQueue<>();
            ConcurrentLinkedQueue<Double> itl = new ConcurrentLinkedQueue<>();
            ConcurrentLinkedQueue<String> errorSamples = new ConcurrentLinkedQueue<>();
            List<Snapshot> snapshots = new ArrayList<>();
            long start = System.nanoTime();
            long deadline = start + maxSeconds * 1_000_000_000L;

            // Four rounds of a quarter of the requests each, the clients all busy within a round; memory is read between
            // rounds, with no request in the server, so the first reading and the last are alike.
            for (int round = 1; round <= 4 && System.nanoTime() < deadline; round++) {
                int end = round == 4 ? requests : round * firstMark;
                try (ExecutorService pool = Executors.newVirtualThreadPerTaskExecutor()) {
                    for (int c = 0; c < clients; c++) {
                        pool.submit(() -> {
                            for (int i = next.getAndIncrement(); i < end && System.nanoTime() < deadline; i = next.getAndIncrement()) {
                                try {
                                    one(http, uri, prompts.get(i % prompts.size()), i, maxTokens, cancelEvery, ttft, itl, tokens, hungUp);
                                } catch (Exception e) {
                                    errors.incrementAndGet();
                                    if (errorSamples.size() < 5) errorSamples.add("request " + i + ": " + e);
                                }
                                done.incrementAndGet();
                            }
                            return null;
                        });
                    }
                }
                next.set(Math.min(next.get(), end)); // the round's clients each took one index past its end
                snapshots.add(snapshot(done.get(), start));
            }
            double seconds = (System.nanoTime() - start) / 1e9;
            for (String line : http.send(HttpRequest.newBuilder(server.uri().resolve("/metrics")).build(), HttpResponse.BodyHandlers.ofString()).body().split("\n")) {
                if (line.startsWith("specula:request_success_total") || line.startsWith("specula:spec_decode_num_accepted_tokens_total")
                        || line.startsWith("specula:spec_decode_num_drafts_total")) System.out.println("server: " + line);
            }

            List<Double> t = sorted(ttft);
            List<Double> g = sorted(itl);
            System.out.printf(Locale.ROOT, "%n%d requests in %.1f s: %.1f requests/s, %d tokens streamed, %.1f tokens/s; %d hung up on purpose, %d errors%n",
                    done.get(), seconds, done.get() / seconds, tokens.get(), tokens.get() / seconds, hungUp.get(), errors.get());
            System.out.printf(Locale.ROOT, "time to first token: p50 %.1f ms, p99 %.1f ms (%d samples)%n", pct(t, 50) * 1e3, pct(t, 99) * 1e3, t.size());
            System.out.printf(Locale.ROOT, "inter-token latency: p50 %.2f ms, p99 %.1f ms (%d samples; tokens of one speculative step arrive together)%n",
                    pct(g, 50) * 1e3, pct(g, 99) * 1e3, g.size());
            System.out.println("\n| requests | seconds | heap after GC MiB | VmRSS MiB | RssAnon MiB | direct MiB | NMT committed MiB |\n|---|---|---|---|---|---|---|");
            for (Snapshot s : snapshots) System.out.println(s.row());
            Snapshot first = snapshots.getFirst();
            Snapshot last = snapshots.getLast();
            double heapGrowth = last.heapAfterGcMiB() - first.heapAfterGcMiB();
            double rssGrowth = last.rssMiB() - first.rssMiB();
            boolean flat = heapGrowth <= maxHeapGrowth && rssGrowth <= maxRssGrowth;
            System.out.printf(Locale.ROOT, "memory from request %d to %d: heap after GC %+.1f MiB (allowance %.0f), VmRSS %+.1f MiB (allowance %.0f): %s%n",
                    first.requests(), last.requests(), heapGrowth, maxHeapGrowth, rssGrowth, maxRssGrowth, flat ? "FLAT" : "GROWING");
            errorSamples.forEach(e -> System.out.println("error: " + e));
            boolean complete = done.get() == requests;
            if (!complete) System.out.println("stopped at the time limit after " + done.get() + " requests");
            System.exit(flat && errors.get() == 0 && complete ? 0 : 1);
        }
    }

    /**
     * One streamed completion, read to {@code data: [DONE]} (or hung up after its third piece of text); throws on
     * anything but a well-formed stream.
     */
    static void one(HttpClient http, URI uri, String prompt, int i, int maxTokens, int cancelEvery, ConcurrentLinkedQueue<Double> ttft,
                    ConcurrentLinkedQueue<Double> itl, AtomicLong tokens, AtomicInteger hungUp) throws Exception {
        JsonObject body = new JsonObject();
        body.addProperty("prompt", prompt);
        body.addProperty("max_tokens", maxTokens);
        body.addProperty("temperature", i % 3 == 2 ? 0.8 : 0);
        body.addProperty("stream", true);
        JsonObject options = new JsonObject();
        options.addProperty("include_usage", true);
        body.add("stream_options", options);
        boolean hangUp = cancelEvery > 0 && i % cancelEvery == cancelEvery - 1;
        long sent = System.nanoTime();
        HttpResponse<Stream<String>> r = http.send(HttpRequest.newBuilder(uri).timeout(Duration.ofMinutes(5)).header("Content-Type", "application/json")
                .POST(HttpRequest.BodyPublishers.ofString(body.toString())).build(), HttpResponse.BodyHandlers.ofLines());
        try (Stream<String> lines = r.body()) {
            if (r.statusCode() != 200) throw new IllegalStateException("status " + r.statusCode() + ": " + lines.findFirst().orElse(""));
            long last = 0;
            int pieces = 0;
            boolean finished = false;
            for (Iterator<String> it = lines.iterator(); it.hasNext(); ) {
                String line = it.next();
                if (!line.startsWith("data: ")) continue;
                String data = line.substring(6);
                if (data.equals("[DONE]")) {
                    if (!finished) throw new IllegalStateException("[DONE] before the usage chunk");
                    return;
                }
                JsonObject chunk = JsonParser.parseString(data).getAsJsonObject();
                if (chunk.has("error")) throw new IllegalStateException("error event: " + data);
                if (chunk.has("usage") && !chunk.get("usage").isJsonNull()) {
                    tokens.addAndGet(chunk.getAsJsonObject("usage").get("completion_tokens").getAsLong());
                    finished = true;
                    continue;
                }
                var choices = chunk.getAsJsonArray("choices");
                if (choices.isEmpty() || choices.get(0).getAsJsonObject().get("text").getAsString().isEmpty()) continue;
                long now = System.nanoTime();
                if (last == 0) ttft.add((now - sent) / 1e9);
                else itl.add((now - last) / 1e9);
                last = now;
                if (hangUp && ++pieces == 3) {
                    hungUp.incrementAndGet();
                    tokens.addAndGet(pieces);
                    return; // closing the stream closes the connection: the server cancels the generation
                }
            }
            if (!(hangUp && pieces > 0)) throw new IllegalStateException("the stream ended without data: [DONE]");
            hungUp.incrementAndGet(); // it finished before the third piece
        }
    }

    static Snapshot snapshot(int requests, long start) throws Exception {
        System.gc();
        System.gc();
        double heap = ManagementFactory.getMemoryMXBean().getHeapMemoryUsage().getUsed() / 1048576.0;
        Map<String, Long> status = SoakBenchmark.procStatus();
        double direct = 0;
        for (var pool : ManagementFactory.getPlatformMXBeans(java.lang.management.BufferPoolMXBean.class)) {
            if (pool.getName().equals("direct")) direct = pool.getMemoryUsed() / 1048576.0;
        }
        long nmt = SoakBenchmark.jvmNativeCommittedKiB();
        return new Snapshot(requests, (System.nanoTime() - start) / 1e9, heap, status.getOrDefault("VmRSS", -1L) / 1024.0,
                status.getOrDefault("RssAnon", -1L) / 1024.0, direct, nmt < 0 ? -1 : nmt / 1024.0);
    }

    static List<Double> sorted(ConcurrentLinkedQueue<Double> q) {
        Double[] a = q.toArray(new Double[0]);
        Arrays.sort(a);
        return Arrays.asList(a);
    }

    static double pct(List<Double> sorted, int p) {
        if (sorted.isEmpty()) return Double.NaN;
        return sorted.get(Math.min(sorted.size() - 1, (int) Math.ceil(p / 100.0 * sorted.size()) - 1));
    }
}
