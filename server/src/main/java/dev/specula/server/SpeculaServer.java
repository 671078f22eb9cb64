package dev.specula.server;

import com.google.gson.JsonArray;
import com.google.gson.JsonNull;
import com.google.gson.JsonObject;
import com.sun.net.httpserver.HttpExchange;
import com.sun.net.httpserver.HttpServer;
import dev.specula.GenerationRequest;
import dev.specula.GenerationResult;
import dev.specula.SpeculaEngine;
import dev.specula.StopReason;
import dev.specula.chat.Chat;
import dev.specula.chat.ChatJson;
import dev.specula.chat.ChatMessage;
import dev.specula.chat.ChatOptions;
import dev.specula.chat.ChatTemplateException;
import dev.specula.tokenizer.Tokenizer;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.net.InetSocketAddress;
import java.net.URI;
import java.nio.ByteBuffer;
import java.nio.charset.CharacterCodingException;
import java.nio.charset.CodingErrorAction;
import java.nio.charset.StandardCharsets;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.UUID;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicInteger;

/**
 * An OpenAI-compatible HTTP server on a {@link SpeculaEngine}: {@code GET /v1/models}, {@code POST /v1/completions},
 * {@code POST /v1/chat/completions} (through the model's chat template), {@code GET /health} and
 * {@code GET /metrics} (Prometheus text). Built on the JDK's {@code com.sun.net.httpserver}, one virtual thread per
 * exchange, and Gson: an application embeds it with the library and this artifact alone.
 *
 * <pre>{@code
 * try (SpeculaEngine engine = SpeculaEngine.builder().model(path).batch(8).build();
 *      SpeculaServer server = SpeculaServer.builder(engine).port(8080).start()) {
 *     server.awaitStop();
 * }
 * }</pre>
 *
 * <p>Every request is checked before it reaches the engine; a bad one gets a 4xx with OpenAI's error object and
 * the server goes on serving, and a request that fails in the engine fails alone (500). A streaming client that
 * disconnects cancels its generation at the engine's next step. The engine's listener never blocks on the network:
 * text goes through a queue that the exchange's own thread writes out, so a slow client never holds a batch back.
 * The server does not own the engine: close the engine after the server.
 */
public final class SpeculaServer implements AutoCloseable {
    /** The largest request body read (larger ones get 413). */
    public static final int DEFAULT_MAX_BODY_BYTES = 1 << 20;
    /** Text completions generate this many tokens when the request names no max_tokens (OpenAI's default). */
    public static final int DEFAULT_COMPLETION_TOKENS = 16;
    /** Requests in the server at once (waiting or generating) before it answers 429. */
    public static final int DEFAULT_MAX_REQUESTS = 1024;

    private final SpeculaEngine engine;
    private final String modelName;
    private final byte[] apiKeyDigest;
    private final int maxBodyBytes;
    private final int maxRequests;
    private final Chat chat;
    private final String chatUnavailable;
    private final String drafterName;
    private final ServerMetrics metrics = new ServerMetrics();
    private final EngineMetrics engineMetrics;
    private final AtomicInteger admitted = new AtomicInteger();
    private final Generator generator;
    private final Duration disconnectProbe; // null: off
    private final HttpServer http;
    private final ExecutorService threads;
    private final long created = System.currentTimeMillis() / 1000;
    private final Object stopped = new Object();
    private volatile boolean closed;

    private SpeculaServer(Builder b) throws IOException {
        this.engine = b.engine;
        this.modelName = b.modelName != null ? b.modelName : defaultModelName(engine);
        this.apiKeyDigest = b.apiKey == null ? null : sha256(b.apiKey);
        this.maxBodyBytes = b.maxBodyBytes;
        this.maxRequests = b.maxRequests;
        this.drafterName = engine.drafter().cliName();
        Chat c = null;
        String why = null;
        try {
            c = Chat.of(engine, b.chatFormat);
        } catch (ChatTemplateException e) {
            why = e.getMessage(); // the server still serves text completions
        }
        this.chat = c;
        this.chatUnavailable = why;
        this.generator = b.generator != null ? b.generator : engine::generate;
        this.disconnectProbe = b.disconnectProbe;
        this.engineMetrics = b.engineMetrics != null ? b.engineMetrics : EngineMetrics.of(engine);
        this.threads = Executors.newVirtualThreadPerTaskExecutor();
        this.http = HttpServer.create(new InetSocketAddress(b.host, b.port), b.backlog);
        http.setExecutor(threads);
        http.createContext("/", this::handle);
        http.start();
    }

    /** A server on engine: loopback, port 8080, no API key, until told otherwise. */
    public static Builder builder(SpeculaEngine engine) {
        return new Builder(engine);
    }

    /** The port the server listens on (the one chosen when it was asked for port 0). */
    public int port() {
        return http.getAddress().getPort();
    }

    /** The server's base address, for example {@code http://127.0.0.1:8080}. */
    public URI uri() {
        InetSocketAddress a = http.getAddress();
        String host = a.getAddress().isAnyLocalAddress() ? "127.0.0.1" : a.getAddress().getHostAddress();
        if (host.contains(":")) host = "[" + host + "]";
        return URI.create("http://" + host + ":" + a.getPort());
    }

    /** The model id that /v1/models lists and requests may name. */
    public String modelName() {
        return modelName;
    }

    /** Blocks until {@link #close} (from another thread or a shutdown hook). */
    public void awaitStop() throws InterruptedException {
        synchronized (stopped) {
            while (!closed) stopped.wait();
        }
    }

    /** Stops listening, gives open exchanges a second to finish, then closes their connections. The engine stays open. */
    @Override
    public void close() {
        synchronized (stopped) {
            if (closed) return;
            closed = true;
            stopped.notifyAll();
        }
        http.stop(1);
        threads.shutdownNow(); // a streaming exchange's writer wakes and its generation is cancelled
    }

    private static String defaultModelName(SpeculaEngine engine) {
        String file = engine.model().file().path().getFileName().toString();
        return file.endsWith(".gguf") ? file.substring(0, file.length() - ".gguf".length()) : file;
    }

    // ---------------------------------------------------------------- routing

    private void handle(HttpExchange ex) {
        String endpoint = "other";
        try {
            String path = ex.getRequestURI().getPath();
            String method = ex.getRequestMethod();
            switch (path) {
                case "/health" -> {
                    endpoint = path;
                    allow(method, "GET");
                    sendJson(ex, 200, status());
                }
                case "/metrics" -> {
                    endpoint = path;
                    allow(method, "GET");
                    send(ex, 200, "text/plain; version=0.0.4; charset=utf-8", metrics.render(engineMetrics).getBytes(StandardCharsets.UTF_8));
                }
                case "/v1/models" -> {
                    endpoint = path;
                    authorize(ex);
                    allow(method, "GET");
                    sendJson(ex, 200, models());
                }
                case "/v1/completions", "/v1/chat/completions" -> {
                    endpoint = path;
                    authorize(ex);
                    allow(method, "POST");
                    complete(ex, path.equals("/v1/chat/completions"));
                }
                default -> {
                    if (path.startsWith("/v1/")) authorize(ex);
                    throw new ApiError(404, ApiError.NOT_FOUND, null, "unknown_url", "Unknown request URL: " + method + " " + path);
                }
            }
        } catch (ApiError e) {
            if (ex.getResponseCode() < 0) sendError(ex, e);
        } catch (Throwable e) {
            if (ex.getResponseCode() < 0) sendError(ex, serverError(e));
        } finally {
            ex.close();
            metrics.http(endpoint, Math.max(ex.getResponseCode(), 0));
        }
    }

    private JsonObject status() {
        JsonObject o = new JsonObject();
        o.addProperty("status", closed ? "closing" : "ok");
        return o;
    }

    private JsonObject models() {
        JsonObject model = new JsonObject();
        model.addProperty("id", modelName);
        model.addProperty("object", "model");
        model.addProperty("created", created);
        model.addProperty("owned_by", "specula");
        model.addProperty("max_model_len", engine.contextLength());
        JsonArray data = new JsonArray();
        data.add(model);
        JsonObject list = new JsonObject();
        list.addProperty("object", "list");
        list.add("data", data);
        return list;
    }

    private static void allow(String method, String allowed) {
        if (!method.equals(allowed)) throw new ApiError(405, ApiError.INVALID_REQUEST, null, "method_not_allowed",
                "Method " + method + " is not allowed here; use " + allowed);
    }

    /** With an API key, {@code Authorization: Bearer KEY}; compared through digests, in time independent of the key. */
    private void authorize(HttpExchange ex) {
        if (apiKeyDigest == null) return;
        String header = ex.getRequestHeaders().getFirst("Authorization");
        String given = header != null && header.regionMatches(true, 0, "Bearer ", 0, 7) ? header.substring(7).strip() : null;
        if (given == null || !MessageDigest.isEqual(sha256(given), apiKeyDigest)) {
            ex.getResponseHeaders().set("WWW-Authenticate", "Bearer");
            throw new ApiError(401, ApiError.AUTHENTICATION, null, "invalid_api_key",
                    given == null ? "Missing API key: send Authorization: Bearer KEY" : "Incorrect API key provided");
        }
    }

    private static byte[] sha256(String s) {
        try {
            return MessageDigest.getInstance("SHA-256").digest(s.getBytes(StandardCharsets.UTF_8));
        } catch (NoSuchAlgorithmException e) {
            throw new IllegalStateException("this JDK has no SHA-256", e);
        }
    }

    // ---------------------------------------------------------------- completions

    /** A checked request, ready for the engine. */
    private record Job(OpenAiRequest request, GenerationRequest generation, int promptTokens, String id, long arrivedNanos) {}

    private void complete(HttpExchange ex, boolean isChat) throws IOException {
        long arrived = System.nanoTime();
        OpenAiRequest r = OpenAiRequest.parse(readBody(ex), isChat);
        if (r.model() != null && !r.model().equals(modelName))
            throw new ApiError(404, ApiError.INVALID_REQUEST, "model", "model_not_found", "The model '" + r.model() + "' does not exist; this server serves '" + modelName + "'");
        if (closed) throw new ApiError(503, ApiError.SERVER_ERROR, null, "server_closing", "The server is shutting down");
        Job job = prepare(r, arrived);
        if (admitted.incrementAndGet() > maxRequests) {
            admitted.decrementAndGet();
            throw new ApiError(429, ApiError.OVERLOADED, null, "server_overloaded", "The server has " + maxRequests + " requests in hand; try again later");
        }
        try {
            if (r.stream()) stream(ex, job);
            else whole(ex, job);
        } finally {
            admitted.decrementAndGet();
        }
    }

    /** The engine request: tokens, budget and stops, checked against the model's context. */
    private Job prepare(OpenAiRequest r, long arrived) {
        Tokenizer tokenizer = engine.model().tokenizer();
        GenerationRequest g;
        int[] prompt;
        String promptParam;
        if (r.chat()) {
            promptParam = "messages";
            if (chat == null) throw ApiError.invalid("messages", "chat_template_missing", "This server cannot answer chats: " + chatUnavailable);
            List<ChatMessage> messages;
            try {
                messages = ChatJson.parseMessages(r.messages().toString());
                g = chat.request(messages, ChatOptions.defaults().withMaxTokens(1).withSampling(r.sampling()).withStopStrings(r.stop()));
            } catch (ChatTemplateException e) {
                throw ApiError.invalid("messages", e.getMessage());
            }
            prompt = g.promptTokens().orElseThrow();
        } else {
            promptParam = "prompt";
            if (r.promptIds() != null) {
                prompt = r.promptIds();
                for (int id : prompt) {
                    if (id >= tokenizer.vocabSize()) throw ApiError.invalid("prompt", "token id " + id + " is not in the vocabulary (" + tokenizer.vocabSize() + " tokens)");
                }
            } else {
                prompt = tokenizer.encode(r.prompt(), tokenizer.addBos());
            }
            if (prompt.length == 0) throw ApiError.invalid("prompt", "The prompt is empty (and the model adds no BOS token)");
            g = GenerationRequest.builder(r.prompt() != null ? r.prompt() : "").promptTokens(prompt).sampling(r.sampling()).stopStrings(r.stop()).build();
        }
        int context = engine.contextLength();
        if (prompt.length >= context)
            throw ApiError.invalid(promptParam, "context_length_exceeded", "This model's maximum context length is " + context + " tokens. However, your "
                    + promptParam + " has " + prompt.length + " tokens, which leaves no room for an answer.");
        int room = context - prompt.length;
        int maxTokens;
        if (r.maxTokens().isPresent()) {
            maxTokens = r.maxTokens().getAsInt();
            if (maxTokens > room) throw ApiError.invalid(r.maxTokensParam(), "context_length_exceeded", "This model's maximum context length is "
                    + context + " tokens. However, you requested " + (prompt.length + maxTokens) + " tokens (" + prompt.length + " in the " + promptParam
                    + ", " + maxTokens + " in the completion). Please reduce the length of the " + promptParam + " or the completion.");
        } else {
            maxTokens = r.chat() ? room : Math.min(DEFAULT_COMPLETION_TOKENS, room);
        }
        g = g.toBuilder().maxTokens(maxTokens).build();
        String id = (r.chat() ? "chatcmpl-" : "cmpl-") + UUID.randomUUID().toString().replace("-", "");
        return new Job(r, g, prompt.length, id, arrived);
    }

    /** What the engine hands the exchange's thread: text, then the result or the failure. */
    private sealed interface Event permits Text, Done, Failed {}

    private record Text(String text) implements Event {}

    private record Done(GenerationResult result) implements Event {}

    private record Failed(Throwable error) implements Event {}

    /**
     * Runs a job's generation on its own virtual thread; its text and its end arrive on events. Latencies are
     * taken as the engine hands the text out.
     */
    private void start(Job job, LinkedBlockingQueue<Event> events, AtomicBoolean cancelled) {
        Thread.ofVirtual().name("specula-" + job.id()).start(() -> {
            long[] last = {0};
            try {
                GenerationResult result = generator.generate(job.generation(), text -> {
                    long now = System.nanoTime();
                    if (last[0] == 0) metrics.ttft.observe((now - job.arrivedNanos()) / 1e9);
                    else metrics.interToken.observe((now - last[0]) / 1e9);
                    last[0] = now;
                    events.add(new Text(text));
                }, cancelled::get);
                events.add(new Done(result));
            } catch (Throwable e) {
                metrics.finished("error");
                events.add(new Failed(e));
            }
        });
    }

    /**
     * A non-streamed answer. The JDK's server notices a client that hung up only when a write fails, so without a
     * probe such a generation runs to its end. With {@link Builder#disconnectProbe}, once a generation has run one
     * interval the headers go out (200, chunked) and a space, which JSON ignores before a value, is written every
     * interval, text arriving or not: the write after the client's connection reset fails, and the generation is cancelled. The status
     * is then already sent, so a failure after it is answered as an error object under that 200.
     */
    private void whole(HttpExchange ex, Job job) throws IOException {
        LinkedBlockingQueue<Event> events = new LinkedBlockingQueue<>();
        AtomicBoolean cancelled = new AtomicBoolean();
        start(job, events, cancelled);
        StringBuilder text = new StringBuilder();
        OutputStream probed = null; // the body, once the probe has sent the headers
        boolean counted = false; // the generation's end is in the metrics
        long nextProbe = disconnectProbe == null ? 0 : System.nanoTime() + disconnectProbe.toNanos();
        try {
            while (true) {
                Event e = disconnectProbe == null ? take(events, cancelled) : poll(events, cancelled, nextProbe - System.nanoTime());
                if (disconnectProbe != null && System.nanoTime() - nextProbe >= 0) { // an interval passed: probe the connection
                    nextProbe = System.nanoTime() + disconnectProbe.toNanos();
                    if (probed == null) {
                        ex.getResponseHeaders().set("Content-Type", "application/json");
                        ex.sendResponseHeaders(200, 0);
                        probed = ex.getResponseBody();
                    }
                    probed.write(' ');
                    probed.flush();
                }
                if (e == null) continue;
                switch (e) {
                    case Text t -> text.append(t.text());
                    case Failed f -> {
                        counted = true; // start() counted the failure
                        ApiError error = failure(f.error());
                        if (probed == null) throw error;
                        probed.write(error.toJson().toString().getBytes(StandardCharsets.UTF_8));
                        probed.close();
                        return;
                    }
                    case Done d -> {
                        GenerationResult result = d.result();
                        if (result.stopReason() == StopReason.CANCELLED && probed == null) throw failure(new IllegalStateException("engine closed"));
                        finished(job, result);
                        counted = true;
                        JsonObject body = result.stopReason() == StopReason.CANCELLED ? failure(new IllegalStateException("engine closed")).toJson()
                                : answer(job, result, text.toString());
                        if (probed == null) {
                            sendJson(ex, 200, body);
                        } else {
                            probed.write(body.toString().getBytes(StandardCharsets.UTF_8));
                            probed.close();
                        }
                        return;
                    }
                }
            }
        } catch (IOException e) {
            if (probed == null) throw e;
            // The client went away: stop its generation at the next step and let it leave the engine.
            cancelled.set(true);
            if (!counted) metrics.finished("abort");
        }
    }

    /** The next event, or null when none came within the nanoseconds given; an interrupt cancels as in {@link #take}. */
    private static Event poll(LinkedBlockingQueue<Event> events, AtomicBoolean cancelled, long nanos) {
        try {
            return events.poll(Math.max(0, nanos), TimeUnit.NANOSECONDS);
        } catch (InterruptedException e) {
            cancelled.set(true);
            Event next = take(events, cancelled);
            Thread.currentThread().interrupt();
            return next;
        }
    }

    private void stream(HttpExchange ex, Job job) throws IOException {
        LinkedBlockingQueue<Event> events = new LinkedBlockingQueue<>();
        AtomicBoolean cancelled = new AtomicBoolean();
        start(job, events, cancelled);
        Sse sse = new Sse(ex);
        boolean chatRole = job.request().chat();
        boolean counted = false; // the generation's end is in the metrics (a failed last write is not an abort then)
        try {
            while (true) {
                Event e = take(events, cancelled);
                switch (e) {
                    case Text t -> {
                        StringBuilder text = new StringBuilder(t.text());
                        for (Event more = events.peek(); more instanceof Text m; more = events.peek()) { // what piled up goes as one chunk
                            events.poll();
                            text.append(m.text());
                        }
                        if (chatRole) {
                            sse.send(chunk(job, roleDelta(), null));
                            chatRole = false;
                        }
                        sse.send(chunk(job, delta(job, text.toString()), null));
                    }
                    case Failed f -> {
                        ApiError error = failure(f.error());
                        if (!sse.started()) throw error; // nothing sent yet: an ordinary error answer
                        counted = true; // start() counted the failure
                        sse.send(error.toJson());
                        sse.done();
                        return;
                    }
                    case Done d -> {
                        GenerationResult result = d.result();
                        if (result.stopReason() == StopReason.CANCELLED && !sse.started())
                            throw failure(new IllegalStateException("engine closed"));
                        finished(job, result);
                        counted = true;
                        if (chatRole) sse.send(chunk(job, roleDelta(), null));
                        sse.send(chunk(job, job.request().chat() ? new JsonObject() : delta(job, ""), finishReason(result.stopReason())));
                        if (job.request().includeUsage()) {
                            JsonObject last = chunk(job, null, null);
                            last.add("usage", usage(result));
                            sse.send(last);
                        }
                        sse.done();
                        return;
                    }
                }
            }
        } catch (IOException e) {
            // The client went away: stop its generation at the next step and let it leave the engine.
            cancelled.set(true);
            if (!counted) metrics.finished("abort");
        }
    }

    /** The next event; an interrupt (the server closing) cancels the generation and waits for it to leave. */
    private static Event take(LinkedBlockingQueue<Event> events, AtomicBoolean cancelled) {
        boolean interrupted = false;
        try {
            while (true) {
                try {
                    return events.take();
                } catch (InterruptedException e) {
                    interrupted = true;
                    cancelled.set(true);
                }
            }
        } finally {
            if (interrupted) Thread.currentThread().interrupt();
        }
    }

    private void finished(Job job, GenerationResult result) {
        metrics.finished(result.stopReason() == StopReason.CANCELLED ? "abort" : finishReason(result.stopReason()));
        metrics.promptTokens.add(result.promptTokens().length);
        metrics.generationTokens.add(result.tokens().length);
        metrics.e2e.observe((System.nanoTime() - job.arrivedNanos()) / 1e9);
        metrics.speculation(drafterName, result.speculation());
    }

    /**
     * An engine failure as the answer to this request alone: the user's input the engine refused is a 400, a full
     * queue a 429, an engine that is closing a 503, anything else a 500.
     */
    private ApiError failure(Throwable e) {
        if (e instanceof ApiError a) return a;
        if (e instanceof IllegalArgumentException) return ApiError.invalid(null, e.getMessage());
        // An engine whose queue is full refuses the request: the client may retry later.
        if (e instanceof dev.specula.EngineBusyException || e instanceof java.util.concurrent.RejectedExecutionException)
            return new ApiError(429, ApiError.OVERLOADED, null, "queue_full", "The server is busy: " + e.getMessage() + "; try again later");
        if (e instanceof IllegalStateException && "engine closed".equals(e.getMessage()))
            return new ApiError(503, ApiError.SERVER_ERROR, null, "engine_closed", "The engine is shutting down");
        return serverError(e);
    }

    private ApiError serverError(Throwable e) {
        System.getLogger(SpeculaServer.class.getName()).log(System.Logger.Level.ERROR, "request failed", e);
        String what = e.getMessage() == null ? e.getClass().getSimpleName() : e.getMessage();
        return new ApiError(500, ApiError.SERVER_ERROR, null, "internal_error", "The request failed in the server: " + what);
    }

    static String finishReason(StopReason reason) {
        return switch (reason) {
            case END_OF_SEQUENCE, STOP_STRING, CANCELLED -> "stop";
            case MAX_TOKENS, CONTEXT_FULL -> "length";
        };
    }

    // ---------------------------------------------------------------- answers

    private JsonObject answer(Job job, GenerationResult result, String text) {
        JsonObject choice = new JsonObject();
        choice.addProperty("index", 0);
        if (job.request().chat()) {
            JsonObject message = new JsonObject();
            message.addProperty("role", "assistant");
            message.addProperty("content", text);
            message.add("refusal", JsonNull.INSTANCE);
            choice.add("message", message);
        } else {
            choice.addProperty("text", text);
        }
        choice.add("logprobs", JsonNull.INSTANCE);
        choice.addProperty("finish_reason", finishReason(result.stopReason()));
        JsonObject o = envelope(job, job.request().chat() ? "chat.completion" : "text_completion");
        JsonArray choices = new JsonArray();
        choices.add(choice);
        o.add("choices", choices);
        o.add("usage", usage(result));
        return o;
    }

    private JsonObject envelope(Job job, String object) {
        JsonObject o = new JsonObject();
        o.addProperty("id", job.id());
        o.addProperty("object", object);
        o.addProperty("created", System.currentTimeMillis() / 1000);
        o.addProperty("model", modelName);
        return o;
    }

    private static JsonObject usage(GenerationResult result) {
        JsonObject u = new JsonObject();
        int prompt = result.promptTokens().length;
        int completion = result.tokens().length;
        u.addProperty("prompt_tokens", prompt);
        u.addProperty("completion_tokens", completion);
        u.addProperty("total_tokens", prompt + completion);
        return u;
    }

    /** One streamed chunk; choice null gives the usage chunk's empty choices. */
    private JsonObject chunk(Job job, JsonObject delta, String finishReason) {
        JsonObject o = envelope(job, job.request().chat() ? "chat.completion.chunk" : "text_completion");
        JsonArray choices = new JsonArray();
        if (delta != null) {
            JsonObject choice = job.request().chat() ? new JsonObject() : delta;
            choice.addProperty("index", 0);
            if (job.request().chat()) choice.add("delta", delta);
            choice.add("logprobs", JsonNull.INSTANCE);
            if (finishReason == null) choice.add("finish_reason", JsonNull.INSTANCE);
            else choice.addProperty("finish_reason", finishReason);
            choices.add(choice);
        }
        o.add("choices", choices);
        return o;
    }

    private static JsonObject roleDelta() {
        JsonObject d = new JsonObject();
        d.addProperty("role", "assistant");
        d.addProperty("content", "");
        return d;
    }

    /** A chat chunk's delta ({"content"}), or a text completion's choice ({"text"}). */
    private static JsonObject delta(Job job, String text) {
        JsonObject d = new JsonObject();
        d.addProperty(job.request().chat() ? "content" : "text", text);
        return d;
    }

    // ---------------------------------------------------------------- HTTP plumbing

    /** The body as UTF-8 text, at most maxBodyBytes (413 beyond, before reading it where the length is declared). */
    private String readBody(HttpExchange ex) throws IOException {
        String declared = ex.getRequestHeaders().getFirst("Content-Length");
        if (declared != null) {
            long length;
            try {
                length = Long.parseLong(declared.strip());
            } catch (NumberFormatException e) {
                throw ApiError.invalid(null, "Content-Length is not a number");
            }
            if (length > maxBodyBytes) {
                if (length <= discardLimit()) try (InputStream in = ex.getRequestBody()) {
                    discardRest(in);
                }
                throw tooLarge();
            }
        }
        byte[] bytes;
        try (InputStream in = ex.getRequestBody()) {
            bytes = in.readNBytes(maxBodyBytes + 1);
            if (bytes.length > maxBodyBytes) {
                discardRest(in);
                throw tooLarge();
            }
        }
        try {
            return StandardCharsets.UTF_8.newDecoder().onMalformedInput(CodingErrorAction.REPORT).onUnmappableCharacter(CodingErrorAction.REPORT)
                    .decode(ByteBuffer.wrap(bytes)).toString();
        } catch (CharacterCodingException e) {
            throw ApiError.invalid(null, "invalid_json", "The body is not UTF-8 text");
        }
    }

    /** How much of an oversized body is read and dropped before the 413 (see discardRest). */
    private long discardLimit() {
        return Math.max(4L * maxBodyBytes, 1 << 20);
    }

    /**
     * Reads and drops the rest of an oversized body, up to discardLimit(). A client still sending when the
     * server answers and closes gets a reset connection instead of the 413 (seen with the JDK's client on a
     * body just over the limit); past the bound the connection is closed all the same.
     */
    private void discardRest(InputStream in) throws IOException {
        byte[] sink = new byte[16 * 1024];
        long left = discardLimit();
        for (int n; left > 0 && (n = in.read(sink, 0, (int) Math.min(sink.length, left))) > 0; ) left -= n;
    }

    private ApiError tooLarge() {
        return new ApiError(413, ApiError.INVALID_REQUEST, null, "request_too_large", "The request body is larger than " + maxBodyBytes + " bytes");
    }

    private static void sendJson(HttpExchange ex, int status, JsonObject body) throws IOException {
        send(ex, status, "application/json", body.toString().getBytes(StandardCharsets.UTF_8));
    }

    private static void send(HttpExchange ex, int status, String type, byte[] body) throws IOException {
        ex.getResponseHeaders().set("Content-Type", type);
        ex.sendResponseHeaders(status, body.length == 0 ? -1 : body.length);
        try (OutputStream out = ex.getResponseBody()) {
            out.write(body);
        }
    }

    private static void sendError(HttpExchange ex, ApiError e) {
        try {
            sendJson(ex, e.status, e.toJson());
        } catch (IOException ignored) {
            // the client is gone; nothing to tell it
        }
    }

    /** Server-Sent Events on an exchange: the headers go with the first event, so an error before it is a plain answer. */
    private static final class Sse {
        private final HttpExchange ex;
        private OutputStream out;

        Sse(HttpExchange ex) {
            this.ex = ex;
        }

        boolean started() {
            return out != null;
        }

        void send(JsonObject event) throws IOException {
            write("data: " + event + "\n\n");
        }

        void done() throws IOException {
            write("data: [DONE]\n\n");
            out.close();
        }

        private void write(String s) throws IOException {
            if (out == null) {
                ex.getResponseHeaders().set("Content-Type", "text/event-stream; charset=utf-8");
                ex.getResponseHeaders().set("Cache-Control", "no-cache");
                ex.sendResponseHeaders(200, 0);
                out = ex.getResponseBody();
            }
            out.write(s.getBytes(StandardCharsets.UTF_8));
            out.flush();
        }
    }

    /** How a request is generated: the engine's {@link SpeculaEngine#generate}, or a test's wrapper around it. */
    @FunctionalInterface
    interface Generator {
        GenerationResult generate(GenerationRequest request, dev.specula.TextListener listener, java.util.function.BooleanSupplier cancelled);
    }

    /** Options for {@link SpeculaServer}. */
    public static final class Builder {
        private final SpeculaEngine engine;
        private String host = "127.0.0.1";
        private int port = 8080;
        private String apiKey;
        private String modelName;
        private String chatFormat;
        private int maxBodyBytes = DEFAULT_MAX_BODY_BYTES;
        private int maxRequests = DEFAULT_MAX_REQUESTS;
        private int backlog = 1024;
        private EngineMetrics engineMetrics;
        private Generator generator;
        private Duration disconnectProbe;

        private Builder(SpeculaEngine engine) {
            if (engine == null) throw new IllegalArgumentException("the server needs an engine");
            this.engine = engine;
        }

        /** The address to bind (default 127.0.0.1, loopback only; 0.0.0.0 for every interface). */
        public Builder host(String h) {
            if (h == null || h.isBlank()) throw new IllegalArgumentException("host is empty");
            this.host = h;
            return this;
        }

        /** The port (default 8080; 0 picks a free one, see {@link SpeculaServer#port()}). */
        public Builder port(int p) {
            if (p < 0 || p > 65535) throw new IllegalArgumentException("port must be from 0 to 65535, got " + p);
            this.port = p;
            return this;
        }

        /** Requires {@code Authorization: Bearer KEY} on /v1/ (null, the default: no key). */
        public Builder apiKey(String key) {
            if (key != null && key.isEmpty()) throw new IllegalArgumentException("the API key is empty");
            this.apiKey = key;
            return this;
        }

        /** The model id clients name (default: the model file's name without .gguf). */
        public Builder modelName(String name) {
            this.modelName = name;
            return this;
        }

        /** A built-in chat format for a model without a template (chatml, llama3); default: the model's own template. */
        public Builder chatFormat(String format) {
            this.chatFormat = format;
            return this;
        }

        /** The largest request body in bytes (default {@value SpeculaServer#DEFAULT_MAX_BODY_BYTES}). */
        public Builder maxBodyBytes(int n) {
            if (n < 1) throw new IllegalArgumentException("the body limit must be at least 1 byte, got " + n);
            this.maxBodyBytes = n;
            return this;
        }

        /** Requests in hand at once before 429 (default {@value SpeculaServer#DEFAULT_MAX_REQUESTS}). */
        public Builder maxRequests(int n) {
            if (n < 1) throw new IllegalArgumentException("max requests must be at least 1, got " + n);
            this.maxRequests = n;
            return this;
        }

        /** The engine's batch, queue and speculative figures for /metrics (default: the engine's own {@link dev.specula.SpeculaEngine#stats()}). */
        public Builder engineMetrics(EngineMetrics m) {
            this.engineMetrics = m;
            return this;
        }

        /**
         * Notices a non-streaming client that hung up, by writing a space (which JSON ignores) every interval once
         * its generation has run that long; null (the default) turns it off, and such a generation then runs to
         * its end. The cost: the 200 status goes out before the answer is known, so an engine failure after it
         * comes as an error object under that 200. Streamed answers notice a hang-up at their next event anyway.
         */
        public Builder disconnectProbe(Duration interval) {
            if (interval != null && (interval.isNegative() || interval.isZero()))
                throw new IllegalArgumentException("the disconnect probe's interval must be positive, got " + interval);
            this.disconnectProbe = interval;
            return this;
        }

        /** For tests: generate through g (which wraps the engine) instead of the engine directly. */
        Builder generator(Generator g) {
            this.generator = g;
            return this;
        }

        /** Binds and starts serving; throws IOException when the address cannot be bound. */
        public SpeculaServer start() throws IOException {
            return new SpeculaServer(this);
        }
    }
}
