package dev.specula.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.google.gson.JsonObject;
import com.google.gson.JsonParser;
import dev.specula.chat.ChatJson;
import dev.specula.chat.ChatTemplate;
import dev.specula.model.TestModelMaker;
import dev.specula.model.gguf.GgmlType;
import dev.specula.tokenizer.VocabTrainer;
import java.io.ByteArrayInputStream;
import java.io.PrintWriter;
import java.io.StringWriter;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import picocli.CommandLine;

/** The chat command on small random-weight models whose GGUF carries a chat template. */
class ChatCommandTest {
    @TempDir
    static Path dir;
    static Path model;
    static Path bare;
    static Path broken;
    static Path conversation;

    static final String TEMPLATE = "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}"
            + "{% if tools %}<|im_start|>tools\n{{ tools | tojson }}<|im_end|>\n{% endif %}"
            + "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}";

    /** A small random-weight model: a trained GPT-2-style vocabulary plus ChatML markers, and the template (null: none). */
    @SuppressWarnings("unchecked")
    static Path write(Path file, String template, long seed) {
        Map<String, Object> md = new LinkedHashMap<>(VocabTrainer.ggufMetadata("gpt2", 400, 7));
        List<String> tokens = new ArrayList<>((List<String>) md.get("tokenizer.ggml.tokens"));
        int[] types = (int[]) md.get("tokenizer.ggml.token_type");
        int[] more = Arrays.copyOf(types, types.length + 2);
        tokens.add("<|im_start|>");
        tokens.add("<|im_end|>");
        more[types.length] = more[types.length + 1] = 3; // control
        md.put("tokenizer.ggml.tokens", List.copyOf(tokens));
        md.put("tokenizer.ggml.token_type", more);
        if (template != null) md.put("tokenizer.chat_template", template);
        new TestModelMaker().arch("qwen2").dim(64).layers(1).heads(4).kvHeads(2).ff(160).vocab(tokens.size()).context(1024)
                .type(GgmlType.F32).seed(seed).tokenizer(md).write(file);
        return file;
    }

    @BeforeAll
    static void models() throws Exception {
        model = write(dir.resolve("chat.gguf"), TEMPLATE, 21);
        bare = write(dir.resolve("bare.gguf"), null, 22);
        broken = write(dir.resolve("broken.gguf"), "{% for m in messages %}{{ m.content }", 23);
        conversation = Files.writeString(dir.resolve("conv.json"), """
                [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Héllo 😀 <|im_end|>"}]""");
    }

    private record Run(int code, String out, String err) {}

    private static Run run(String input, String... args) {
        StringWriter out = new StringWriter(), err = new StringWriter();
        CommandLine cli = SpeculaCli.commandLine();
        cli.setOut(new PrintWriter(out));
        cli.setErr(new PrintWriter(err));
        if (input != null) {
            ((ChatCommand) cli.getSubcommands().get("chat").getCommand()).in = new ByteArrayInputStream(input.getBytes(StandardCharsets.UTF_8));
        }
        int code = cli.execute(args);
        return new Run(code, out.toString(), err.toString());
    }

    @Test
    void renderOnlyPrintsThePromptExactly() throws Exception {
        Run r = run(null, "chat", "--model", model.toString(), "--messages", conversation.toString(), "--render-only");
        assertEquals(0, r.code(), r.err());
        String expected = ChatTemplate.of(TEMPLATE).render(ChatJson.parseMessages(Files.readString(conversation)), List.of(), true,
                "<|endoftext|>", "<|endoftext|>").text();
        assertEquals(expected, r.out());
        assertEquals("", r.err());
        // --system replaces the conversation's own; tools are rendered through the template
        Path tools = Files.writeString(dir.resolve("tools.json"), "[{\"type\": \"function\", \"function\": {\"name\": \"f\"}}]");
        r = run(null, "chat", "--model", model.toString(), "--messages", conversation.toString(), "--system", "New",
                "--tools", tools.toString(), "--render-only");
        assertEquals(0, r.code(), r.err());
        assertTrue(r.out().startsWith("<|im_start|>system\nNew<|im_end|>\n<|im_start|>user\n"), r.out());
        assertTrue(r.out().contains("<|im_start|>tools\n[{\"type\": \"function\", \"function\": {\"name\": \"f\"}}]<|im_end|>\n"), r.out());
    }

    @Test
    void answersOneConversationWithStats() {
        Run r = run(null, "chat", "--model", model.toString(), "--messages", conversation.toString(), "--max-tokens", "12", "--json",
                "--context", "512");
        assertEquals(0, r.code(), r.err());
        JsonObject o = JsonParser.parseString(r.out()).getAsJsonObject();
        assertTrue(o.get("tokens").getAsJsonArray().size() <= 12);
        assertTrue(o.has("text"));
        assertEquals("recycling", o.getAsJsonObject("stats").get("drafter").getAsString());
        assertTrue(o.getAsJsonObject("stats").get("steps").getAsLong() > 0);
        Run plain = run(null, "chat", "--model", model.toString(), "--messages", conversation.toString(), "--max-tokens", "12",
                "--context", "512", "--drafter", "none");
        assertEquals(0, plain.code(), plain.err());
        assertEquals(o.get("text").getAsString() + "\n", plain.out(), "streamed text, plain decoding, same answer");
        assertTrue(plain.err().contains("stopped:"), plain.err());
    }

    @Test
    void interactiveChatStreamsResetsAndExits() {
        Run r = run("hello\n/reset\nhi there\n/exit\nnot read\n", "chat", "--model", model.toString(), "--max-tokens", "6",
                "--context", "512", "--system", "Be brief.");
        assertEquals(0, r.code(), r.err());
        assertTrue(r.err().contains("(conversation reset)"), r.err());
        assertEquals(2, r.err().split("stopped:", -1).length - 1, "two answers:\n" + r.err());
    }

    @Test
    void badInputIsOneClearLine() throws Exception {
        Path malformed = Files.writeString(dir.resolve("bad.json"), "[{\"role\": \"user\", \"content\": ");
        Path unknownRole = Files.writeString(dir.resolve("role.json"), "[{\"role\": \"wizard\", \"content\": \"hi\"}]");
        String[][] cases = {
                {"--messages", malformed.toString(), "messages: malformed JSON"},
                {"--messages", unknownRole.toString(), "messages[0]: unknown role 'wizard'"},
                {"--messages", dir.resolve("missing.json").toString(), "--messages: no such file"},
        };
        for (String[] c : cases) {
            Run r = run(null, "chat", "--model", model.toString(), c[0], c[1], "--render-only");
            assertEquals(1, r.code(), r.err());
            assertTrue(r.err().startsWith("specula: " + c[2]), r.err());
            assertEquals(1, r.err().strip().lines().count(), "one line: " + r.err());
            assertEquals("", r.out());
        }
        Run r = run(null, "chat", "--model", broken.toString(), "--messages", conversation.toString(), "--render-only");
        assertEquals(1, r.code());
        assertTrue(r.err().startsWith("specula: template syntax error at line 1"), r.err());
        assertFalse(r.err().contains("\tat "), r.err());
        r = run(null, "chat", "--model", bare.toString(), "--messages", conversation.toString(), "--render-only");
        assertEquals(1, r.code());
        assertTrue(r.err().contains("has no chat template") && r.err().contains("--chat-format"), r.err());
        r = run(null, "chat", "--model", bare.toString(), "--messages", conversation.toString(), "--render-only", "--chat-format", "chatml");
        assertEquals(0, r.code(), r.err());
        assertTrue(r.out().startsWith("<|im_start|>system\nBe brief.<|im_end|>\n"), r.out());
        r = run(null, "chat", "--model", bare.toString(), "--messages", conversation.toString(), "--render-only", "--chat-format", "vicuna");
        assertEquals(1, r.code());
        assertTrue(r.err().startsWith("specula: unknown chat format 'vicuna'"), r.err());
    }
}
