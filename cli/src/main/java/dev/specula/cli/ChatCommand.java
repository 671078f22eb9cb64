package dev.specula.cli;

import com.google.gson.GsonBuilder;
import dev.specula.SpeculaEngine;
import dev.specula.chat.Chat;
import dev.specula.chat.ChatJson;
import dev.specula.chat.ChatMessage;
import dev.specula.chat.ChatOptions;
import dev.specula.chat.ChatResult;
import dev.specula.chat.ChatTemplateException;
import dev.specula.chat.RenderedPrompt;
import dev.specula.sampling.SamplingOptions;
import dev.specula.model.LoadedModel;
import dev.specula.model.ModelFile;
import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStream;
import java.io.InputStreamReader;
import java.io.PrintWriter;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Option;
import picocli.CommandLine.Spec;

/**
 * Chat with a model through its own chat template: interactively (streamed answers, /reset, /exit), or one
 * conversation from a JSON file (OpenAI message format), or only the rendered prompt.
 */
@Command(name = "chat", sortOptions = false, mixinStandardHelpOptions = true,
        description = "Chat with a model through its chat template: interactive, or one conversation from --messages.")
final class ChatCommand implements Callable<Integer> {
    @Spec
    CommandSpec spec;

    @Mixin
    EngineOptions engineOptions;

    @Mixin
    EngineOptions.DrafterChoice drafterChoice;

    @Option(names = "--system", paramLabel = "TEXT", description = "A system prompt (replaces the conversation's own).")
    String system;

    @Option(names = "--messages", paramLabel = "FILE", description = "Answer this conversation (a JSON array of OpenAI-style messages) and exit.")
    Path messages;

    @Option(names = "--tools", paramLabel = "FILE", description = "Tool definitions (a JSON array of OpenAI-style tools) the template renders.")
    Path tools;

    @Option(names = "--render-only", description = "Print the rendered prompt exactly, and nothing else, then exit.")
    boolean renderOnly;

    @Option(names = "--json", description = "Print the answer with its tool calls, tokens and stats as one JSON object.")
    boolean json;

    @Mixin
    EngineOptions.ChatFormatChoice chatFormat;

    @Option(names = "--max-tokens", paramLabel = "N", defaultValue = "512", description = "Most tokens per answer (default: ${DEFAULT-VALUE}).")
    int maxTokens;

    @Mixin
    EngineOptions.SamplingChoice samplingChoice;


    /** Where interactive input comes from (tests replace it). */
    InputStream in = System.in;

    @Override
    public Integer call() throws IOException {
        return run(); // errors are reported as CliErrors says: one line for bad conversations, templates and files
    }

    private int run() throws IOException {
        Path path = engineOptions.modelPath();
        List<ChatMessage> conversation = new ArrayList<>();
        if (messages != null) conversation.addAll(ChatJson.parseMessages(read(messages, "--messages")));
        List<Object> toolList = tools == null ? List.of() : ChatJson.parseTools(read(tools, "--tools"));
        if (system != null) {
            if (!conversation.isEmpty() && conversation.getFirst().role().equals("system")) conversation.removeFirst();
            conversation.addFirst(ChatMessage.system(system));
        }
        SamplingOptions sampling = samplingChoice.temperature == 0 ? SamplingOptions.GREEDY
                : SamplingOptions.sampled(samplingChoice.temperature, samplingChoice.seed);
        ChatOptions options = ChatOptions.defaults().withMaxTokens(maxTokens).withSampling(sampling).withTools(toolList);
        PrintWriter out = spec.commandLine().getOut();
        if (renderOnly) {
            if (messages == null && system == null) throw new IllegalArgumentException("--render-only needs a conversation: --messages FILE (or --system TEXT)");
            try (ModelFile file = ModelFile.open(path)) {
                RenderedPrompt prompt = Chat.forRendering(file, LoadedModel.tokenizer(file), chatFormat.chatFormat).render(conversation, options);
                out.print(prompt.text());
                out.flush();
            }
            return 0;
        }
        try (SpeculaEngine engine = engineOptions.builder(drafterChoice.drafter, EngineOptions.CLI_BATCH).build()) {
            Chat chat = Chat.of(engine, chatFormat.chatFormat);
            if (messages != null) {
                answer(chat, conversation, options, out, path);
                return 0;
            }
            interactive(chat, conversation, options, out, path);
        }
        return 0;
    }

    private static String read(Path file, String option) throws IOException {
        if (!Files.isRegularFile(file)) throw new IllegalArgumentException(option + ": no such file " + file);
        return Files.readString(file, StandardCharsets.UTF_8);
    }

    private ChatResult answer(Chat chat, List<ChatMessage> conversation, ChatOptions options, PrintWriter out, Path path) {
        ChatResult r = chat.chat(conversation, options, text -> {
            if (!json) {
                out.print(text);
                out.flush();
            }
        }, () -> false);
        if (json) {
            out.println(new GsonBuilder().disableHtmlEscaping().create().toJson(describe(r, path)));
        } else {
            out.println();
            out.flush();
            PrintWriter err = spec.commandLine().getErr();
            String spec = r.speculation() == null ? "" : String.format(", %s: %.2f tokens/step", drafterChoice.drafter, r.speculation().meanAccepted());
            err.printf("[%d prompt tokens, %d generated at %.1f tok/s%s, stopped: %s]%n", r.generation().stats().promptTokens(),
                    r.generation().stats().generatedTokens(), r.generation().stats().generatedTokensPerSecond(), spec,
                    r.stopReason().name().toLowerCase());
            err.flush();
        }
        return r;
    }

    private Map<String, Object> describe(ChatResult r, Path path) {
        Map<String, Object> o = new LinkedHashMap<>();
        o.put("model", path.toString());
        o.put("text", r.text());
        List<Map<String, Object>> calls = new ArrayList<>();
        for (ChatMessage.ToolCall c : r.toolCalls()) {
            Map<String, Object> call = new LinkedHashMap<>();
            call.put("id", c.id());
            call.put("name", c.name());
            call.put("arguments", c.argumentsJson());
            calls.add(call);
        }
        o.put("tool_calls", calls);
        o.put("stop_reason", r.stopReason().name().toLowerCase());
        o.put("prompt_tokens", r.generation().promptTokens());
        o.put("tokens", r.generation().tokens());
        Map<String, Object> stats = new LinkedHashMap<>();
        stats.put("prompt_tokens", r.generation().stats().promptTokens());
        stats.put("generated_tokens", r.generation().stats().generatedTokens());
        stats.put("prompt_seconds", r.generation().stats().promptSeconds());
        stats.put("generate_seconds", r.generation().stats().generateSeconds());
        stats.put("generated_tokens_per_second", r.generation().stats().generatedTokensPerSecond());
        if (r.speculation() != null) {
            stats.put("drafter", drafterChoice.drafter.toString());
            stats.put("steps", r.speculation().steps());
            stats.put("mean_accepted_tokens", r.speculation().meanAccepted());
            stats.put("accepted_length_histogram", r.speculation().acceptedLengthHistogram());
        }
        o.put("stats", stats);
        return o;
    }

    private void interactive(Chat chat, List<ChatMessage> start, ChatOptions options, PrintWriter out, Path path) throws IOException {
        List<ChatMessage> conversation = new ArrayList<>(start);
        BufferedReader reader = new BufferedReader(new InputStreamReader(in, StandardCharsets.UTF_8));
        PrintWriter err = spec.commandLine().getErr();
        err.println("specula chat with " + path.getFileName() + ": type a message; /reset starts over, /exit ends.");
        err.flush();
        while (true) {
            err.print("> ");
            err.flush();
            String line = reader.readLine();
            if (line == null || line.strip().equals("/exit")) return;
            if (line.strip().equals("/reset")) {
                conversation = new ArrayList<>(start);
                err.println("(conversation reset)");
                err.flush();
                continue;
            }
            if (line.isBlank()) continue;
            conversation.add(ChatMessage.user(line));
            try {
                ChatResult r = answer(chat, conversation, options, out, path);
                conversation.add(r.asMessage());
            } catch (ChatTemplateException e) {
                conversation.removeLast();
                err.println("specula chat: " + e.getMessage());
                err.flush();
            }
        }
    }
}
