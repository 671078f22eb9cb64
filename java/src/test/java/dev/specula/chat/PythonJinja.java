package dev.specula.chat;

import static org.junit.jupiter.api.Assumptions.assumeTrue;

import com.google.gson.JsonArray;
import com.google.gson.JsonElement;
import com.google.gson.JsonParser;
import java.io.IOException;
import java.io.InputStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;

/**
 * The rendering oracle: Python Jinja2 run as Hugging Face runs chat templates ({@code chat/hf_render.py}).
 * Tests that use it skip with a message where python3 or jinja2 is missing (tools/install-test-deps.sh
 * installs Debian's python3-jinja2).
 */
final class PythonJinja {
    private PythonJinja() {}

    /** One render: the template, the conversation as template values, tools (or null), and the flags. */
    record Case(String template, List<?> messages, List<?> tools, boolean addGenerationPrompt, String bos, String eos) {}

    /** The reference's answer: the text, or the error it raised. */
    record Answer(String text, String error) {}

    static void assumeAvailable() {
        assumeTrue(available(), "python3 with jinja2 is not installed (tools/install-test-deps.sh installs python3-jinja2); skipping the rendering oracle");
    }

    private static Boolean available;

    static synchronized boolean available() {
        if (available == null) {
            try {
                Process p = new ProcessBuilder("python3", "-c", "import jinja2").redirectErrorStream(true).start();
                p.getInputStream().readAllBytes();
                available = p.waitFor(30, TimeUnit.SECONDS) && p.exitValue() == 0;
            } catch (IOException | InterruptedException e) {
                available = false;
            }
        }
        return available;
    }

    static List<Answer> render(List<Case> cases) throws IOException, InterruptedException {
        Path script = Files.createTempFile("hf_render", ".py");
        try (InputStream in = PythonJinja.class.getResourceAsStream("/chat/hf_render.py")) {
            Files.write(script, in.readAllBytes());
        }
        StringBuilder json = new StringBuilder("[");
        for (Case c : cases) {
            if (json.length() > 1) json.append(',');
            json.append("{\"template\":").append(Py.jsonString(c.template(), true))
                    .append(",\"messages\":").append(ChatJson.toJson(c.messages()))
                    .append(",\"tools\":").append(c.tools() == null ? "null" : ChatJson.toJson(c.tools()))
                    .append(",\"add_generation_prompt\":").append(c.addGenerationPrompt())
                    .append(",\"bos_token\":").append(Py.jsonString(c.bos(), true))
                    .append(",\"eos_token\":").append(Py.jsonString(c.eos(), true)).append('}');
        }
        json.append(']');
        try {
            Process p = new ProcessBuilder("python3", script.toString()).redirectError(ProcessBuilder.Redirect.INHERIT).start();
            p.getOutputStream().write(json.toString().getBytes(StandardCharsets.UTF_8));
            p.getOutputStream().close();
            String out = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
            if (!p.waitFor(120, TimeUnit.SECONDS) || p.exitValue() != 0) throw new IOException("the Jinja2 oracle failed: " + out);
            JsonArray array = JsonParser.parseString(out).getAsJsonArray();
            List<Answer> answers = new ArrayList<>();
            for (JsonElement e : array) {
                var o = e.getAsJsonObject();
                answers.add(o.has("text") ? new Answer(o.get("text").getAsString(), null) : new Answer(null, o.get("error").getAsString()));
            }
            return answers;
        } finally {
            Files.deleteIfExists(script);
        }
    }

    static String resource(String name) throws IOException {
        try (InputStream in = PythonJinja.class.getResourceAsStream("/chat/" + name)) {
            if (in == null) throw new IOException("no test resource chat/" + name);
            return new String(in.readAllBytes(), StandardCharsets.UTF_8);
        }
    }
}
