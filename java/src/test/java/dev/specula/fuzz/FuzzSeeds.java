package dev.specula.fuzz;

import com.google.gson.JsonArray;
import com.google.gson.JsonObject;
import dev.specula.model.HfFixture;
import dev.specula.model.ModelConfig;
import dev.specula.model.TestModelMaker;
import dev.specula.model.gguf.GgmlType;
import dev.specula.model.gguf.GgufFile;
import dev.specula.model.gguf.GgufTensor;
import dev.specula.model.gguf.GgufType;
import dev.specula.model.gguf.GgufWriter;
import dev.specula.model.gguf.RawGguf;
import dev.specula.model.safetensors.StWriter;
import dev.specula.tokenizer.TokenizerFuzzSeeds;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Comparator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.stream.Stream;

/**
 * Writes the fuzz targets' seed corpora (the {@code *Inputs/<method>/seed-*} files under
 * {@code src/test/resources/dev/specula/fuzz/}) with the project's own writers, plus edge cases. The files are
 * committed; rerun after a format change (inputs the fuzzer found are kept under other names and left alone):
 *
 * <pre>
 * mvn -q -pl java test-compile dependency:build-classpath -Dmdep.outputFile=target/cp.txt
 * java -cp java/target/test-classes:java/target/classes:$(cat java/target/cp.txt) dev.specula.fuzz.FuzzSeeds java/src/test/resources
 * </pre>
 */
public final class FuzzSeeds {
    private FuzzSeeds() {}

    public static void main(String[] args) throws IOException {
        Path resources = Path.of(args.length > 0 ? args[0] : "java/src/test/resources");
        Path fuzz = resources.resolve("dev/specula/fuzz");
        gguf(inputs(fuzz, "GgufFuzzTest", "openModel"));
        safetensors(inputs(fuzz, "SafetensorsFuzzTest", "openFile"));
        shardIndexes(inputs(fuzz, "ShardIndexFuzzTest", "openShardIndex"));
        configs(inputs(fuzz, "HfConfigFuzzTest", "parseConfig"));
        TokenizerFuzzSeeds.ggufVocabularies(inputs(fuzz, "GgufTokenizerFuzzTest", "loadAndEncode"), "fuzz.text");
        TokenizerFuzzSeeds.texts(inputs(fuzz, "TokenizerRoundTripFuzzTest", "roundTrip"));
        TokenizerFuzzSeeds.huggingFaceJson(inputs(fuzz, "HfTokenizerFuzzTest", "loadAndEncode"));
        chatTemplates(inputs(fuzz, "ChatTemplateFuzzTest", "renderTemplate"), resources.resolve("chat"));
        conversations(inputs(fuzz, "ChatConversationFuzzTest", "renderConversation"));
        toolCallAnswers(inputs(fuzz, "ToolCallFuzzTest", "parseToolCalls"));
    }

    /** A target's input folder, with the seeds of an earlier run removed (found inputs stay). */
    private static Path inputs(Path fuzz, String testClass, String method) throws IOException {
        Path dir = fuzz.resolve(testClass + "Inputs").resolve(method);
        Files.createDirectories(dir);
        try (Stream<Path> files = Files.list(dir)) {
            for (Path f : files.filter(p -> p.getFileName().toString().startsWith("seed-")).toList()) Files.delete(f);
        }
        return dir;
    }

    private static void write(Path dir, String name, byte[] data) throws IOException {
        Files.write(dir.resolve("seed-" + name), data);
    }

    // ---------------------------------------------------------------- GGUF

    private static void gguf(Path dir) throws IOException {
        Path tmp = Files.createTempDirectory("specula-seeds");
        try {
            Map<String, TestModelMaker> models = new LinkedHashMap<>();
            models.put("llama-f32", new TestModelMaker().dim(16).heads(2).kvHeads(1).ff(16).layers(1).vocab(16).context(64));
            models.put("llama-q8_0-tied", new TestModelMaker().dim(32).heads(4).kvHeads(2).ff(32).layers(1).vocab(8)
                    .type(GgmlType.Q8_0).tied(true).context(64));
            models.put("llama-q4_0", new TestModelMaker().dim(32).heads(2).kvHeads(2).ff(32).layers(1).vocab(8)
                    .type(GgmlType.Q4_0).context(64));
            models.put("qwen2-f16", new TestModelMaker().arch("qwen2").dim(16).heads(2).kvHeads(2).ff(16).layers(1)
                    .vocab(16).type(GgmlType.F16).context(64));
            models.put("llama-bf16-tinyvocab", new TestModelMaker().dim(16).heads(2).kvHeads(1).ff(16).layers(1)
                    .type(GgmlType.BF16).tokenizer(dev.specula.model.TinyVocab.metadata()).context(64));
            for (Map.Entry<String, TestModelMaker> e : models.entrySet()) {
                Path file = tmp.resolve(e.getKey() + ".gguf");
                e.getValue().write(file);
                write(dir, e.getKey() + ".gguf", Files.readAllBytes(file));
            }
            // Llama 3 RoPE scaling, as llama.cpp's converter stores it: per-pair factors in rope_freqs.weight.
            Path base = tmp.resolve("llama-f32.gguf");
            Path scaled = tmp.resolve("llama3-rope.gguf");
            try (GgufFile g = GgufFile.open(base)) {
                GgufWriter w = new GgufWriter();
                for (String key : g.metadata().keySet()) w.copy(g, key);
                for (GgufTensor t : g.tensors()) w.addRawTensor(t.name(), t.type(), t.dims(), t.data());
                int headDim = 8;
                float[] factors = ModelConfig.llama3Factors(10000f, headDim, 8f, 1f, 4f, 16);
                w.addTensor(ModelConfig.ROPE_FREQS_TENSOR, GgmlType.F32, new long[] {headDim / 2}, factors);
                w.write(scaled);
            }
            write(dir, "llama3-rope.gguf", Files.readAllBytes(scaled));
            write(dir, "every-value-type.gguf", everyValueType(tmp.resolve("types.gguf")));
        } finally {
            try (Stream<Path> files = Files.walk(tmp)) {
                for (Path p : files.sorted(Comparator.reverseOrder()).toList()) Files.delete(p);
            }
        }
        int f32 = 0;
        write(dir, "empty", new byte[0]);
        write(dir, "magic-only", new RawGguf().raw((byte) 'G', (byte) 'G', (byte) 'U', (byte) 'F').bytes());
        write(dir, "big-endian", new RawGguf().header(Integer.reverseBytes(3), 0, 0).bytes());
        write(dir, "version-99", new RawGguf().header(99, 0, 0).bytes());
        write(dir, "2pow40-tensors", new RawGguf().header(3, 1L << 40, 0).bytes());
        write(dir, "2pow40-kvs", new RawGguf().header(3, 0, 1L << 40).bytes());
        write(dir, "huge-string", new RawGguf().header(3, 0, 1).u64(Long.MAX_VALUE).bytes());
        write(dir, "2pow40-array", new RawGguf().header(3, 0, 1).str("a").u32(GgufType.ARRAY.id())
                .u32(GgufType.UINT64.id()).u64(1L << 40).bytes());
        RawGguf nested = new RawGguf().header(3, 0, 1).str("nested").u32(GgufType.ARRAY.id());
        for (int i = 0; i < 12; i++) nested.u32(GgufType.ARRAY.id()).u64(1);
        write(dir, "nested-arrays", nested.bytes());
        write(dir, "dims-overflow", new RawGguf().header(3, 1, 0).tensor("t", f32, 0, 1L << 32, 1L << 32).data(32, 0).bytes());
        write(dir, "misaligned-offset", new RawGguf().header(3, 1, 0).tensor("t", f32, 7, 4).data(32, 64).bytes());
        write(dir, "alignment-3", new RawGguf().header(3, 1, 1).kvU32("general.alignment", 3).tensor("t", f32, 0, 4)
                .data(32, 16).bytes());
        write(dir, "overlapping-tensors", new RawGguf().header(3, 2, 0).tensor("a", f32, 0, 8).tensor("b", f32, 0, 8)
                .data(32, 32).bytes());
        write(dir, "past-the-end", new RawGguf().header(3, 1, 0).tensor("t", f32, 0, 1024).data(32, 16).bytes());
        write(dir, "unknown-type", new RawGguf().header(3, 1, 0).tensor("t", 1000, 0, 32).data(32, 128).bytes());
    }

    /** Metadata of every GGUF value type, arrays of each, an array of arrays, and one tensor of each writable type. */
    private static byte[] everyValueType(Path file) throws IOException {
        GgufWriter w = new GgufWriter()
                .putString("general.architecture", "llama")
                .putUInt8("u8", 200).putInt8("i8", -100).putUInt16("u16", 60000).putInt16("i16", -30000)
                .putUInt32("u32", 4_000_000_000L).putInt32("i32", -2_000_000_000)
                .putUInt64("u64", -1L).putInt64("i64", Long.MIN_VALUE)
                .putFloat32("f32", Float.NaN).putFloat64("f64", Double.NEGATIVE_INFINITY).putBool("bool", true)
                .putArray("a.u8", GgufType.UINT8, new int[] {1, 255}).putArray("a.i16", GgufType.INT16, new int[] {-1, 2})
                .putArray("a.u32", GgufType.UINT32, new int[] {-1, 7}).putArray("a.i64", GgufType.INT64, new long[] {-5, 5})
                .putArray("a.f32", GgufType.FLOAT32, new float[] {1.5f, -0f})
                .putArray("a.f64", GgufType.FLOAT64, new double[] {Double.NaN})
                .putArray("a.bool", GgufType.BOOL, new boolean[] {true, false})
                .putArray("a.string", GgufType.STRING, List.of("", "é", "\u0000"))
                .put("a.nested", List.of(List.of("x", "y"), List.of("z")));
        for (GgmlType type : new GgmlType[] {GgmlType.F32, GgmlType.F16, GgmlType.BF16, GgmlType.Q8_0, GgmlType.Q4_0}) {
            w.addTensor("t." + type, type, new long[] {32, 2}, new float[64]);
        }
        w.write(file);
        return Files.readAllBytes(file);
    }

    // ---------------------------------------------------------------- safetensors

    /** The checkpoint the safetensors targets use: small enough that every input is fast. */
    static HfFixture checkpoint() {
        HfFixture f = new HfFixture();
        f.hidden = 8;
        f.heads = 2;
        f.kvHeads = 1;
        f.ff = 8;
        f.layers = 1;
        f.vocab = 8;
        return f;
    }

    private static void safetensors(Path dir) throws IOException {
        Path tmp = Files.createTempDirectory("specula-seeds");
        try {
            for (String variant : List.of("llama-f32", "llama-f16-tied", "qwen2-bf16")) {
                HfFixture f = checkpoint();
                f.dtype = variant.endsWith("f32") ? "F32" : variant.endsWith("f16-tied") ? "F16" : "BF16";
                f.tied = variant.contains("tied");
                if (variant.startsWith("qwen2")) f.modelType = "qwen2";
                Path d = f.write(tmp.resolve(variant), 1);
                write(dir, variant + ".safetensors", Files.readAllBytes(d.resolve("model.safetensors")));
            }
        } finally {
            try (Stream<Path> files = Files.walk(tmp)) {
                for (Path p : files.sorted(Comparator.reverseOrder()).toList()) Files.delete(p);
            }
        }
        StWriter two = new StWriter().add("a", "F32", new long[] {2}, new float[] {1, 2}).add("b", "F16", new long[] {2, 2}, new float[4]);
        write(dir, "two-tensors.safetensors", two.bytes());
        write(dir, "empty", new byte[0]);
        write(dir, "huge-header-length", new byte[] {-1, -1, -1, -1, -1, -1, -1, 0x7f, '{', '}'});
        write(dir, "header-not-object", two.bytes("[1, 2, 3]"));
        write(dir, "duplicate-name", two.bytes("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                + "\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,16]}}"));
        write(dir, "offsets-outside", two.bytes("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,9223372036854775807]}}"));
        write(dir, "shape-overflow", two.bytes("{\"a\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296],\"data_offsets\":[0,8]}}"));
        write(dir, "scalar-and-empty", two.bytes("{\"s\":{\"dtype\":\"I64\",\"shape\":[],\"data_offsets\":[0,8]},"
                + "\"e\":{\"dtype\":\"U8\",\"shape\":[0,3],\"data_offsets\":[8,8]},\"__metadata__\":{\"format\":\"pt\",\"n\":[1]}}"));
    }

    private static void shardIndexes(Path dir) throws IOException {
        Path tmp = Files.createTempDirectory("specula-seeds");
        try {
            Path d = checkpoint().write(tmp.resolve("ckpt"), 2);
            String index = Files.readString(d.resolve("model.safetensors.index.json"));
            write(dir, "index.json", index.getBytes(StandardCharsets.UTF_8));
            String first = HfFixture.shardName(0, 2);
            write(dir, "escaping-name.json", index.replace(first, "../" + first).getBytes(StandardCharsets.UTF_8));
            write(dir, "absolute-name.json", index.replace(first, "/etc/hostname").getBytes(StandardCharsets.UTF_8));
            write(dir, "nul-in-name.json", index.replace(first, "model\\u0000.safetensors").getBytes(StandardCharsets.UTF_8));
            write(dir, "missing-shard.json", index.replace(first, "model-00009-of-00009.safetensors").getBytes(StandardCharsets.UTF_8));
            write(dir, "config-as-shard.json", index.replace(first, "config.json").getBytes(StandardCharsets.UTF_8));
            write(dir, "no-weight-map.json", "{\"metadata\":{},\"weight_map\":[]}".getBytes(StandardCharsets.UTF_8));
        } finally {
            try (Stream<Path> files = Files.walk(tmp)) {
                for (Path p : files.sorted(Comparator.reverseOrder()).toList()) Files.delete(p);
            }
        }
    }

    // ---------------------------------------------------------------- config.json

    private static void configs(Path dir) throws IOException {
        HfFixture llama = checkpoint();
        config(dir, "llama", llama.config());
        HfFixture qwen = checkpoint();
        qwen.modelType = "qwen2";
        qwen.tied = true;
        config(dir, "qwen2-tied", qwen.config());

        JsonObject linear = llama.config();
        JsonObject scaling = new JsonObject();
        scaling.addProperty("type", "linear");
        scaling.addProperty("factor", 2.0);
        linear.add("rope_scaling", scaling);
        config(dir, "rope-linear", linear);

        JsonObject llama3 = llama.config();
        JsonObject l3 = new JsonObject();
        l3.addProperty("rope_type", "llama3");
        l3.addProperty("factor", 8.0);
        l3.addProperty("low_freq_factor", 1.0);
        l3.addProperty("high_freq_factor", 4.0);
        l3.addProperty("original_max_position_embeddings", 8192);
        llama3.add("rope_scaling", l3);
        llama3.addProperty("head_dim", 4);
        llama3.addProperty("partial_rotary_factor", 0.5);
        config(dir, "rope-llama3-partial", llama3);

        JsonObject params = llama.config();
        params.remove("rope_theta");
        JsonObject rp = new JsonObject();
        rp.addProperty("rope_type", "default");
        rp.addProperty("rope_theta", 1e6);
        params.add("rope_parameters", rp);
        config(dir, "rope-parameters", params);

        JsonObject huge = llama.config();
        huge.addProperty("hidden_size", new java.math.BigDecimal("1e999999999"));
        huge.addProperty("rms_norm_eps", new java.math.BigDecimal("1e-999999999"));
        config(dir, "huge-exponents", huge);

        JsonObject wrongTypes = llama.config();
        wrongTypes.addProperty("num_attention_heads", "4");
        wrongTypes.add("vocab_size", new JsonArray());
        wrongTypes.addProperty("tie_word_embeddings", 1);
        config(dir, "wrong-types", wrongTypes);

        write(dir, "empty.json", new byte[0]);
        write(dir, "not-an-object.json", "[]".getBytes(StandardCharsets.UTF_8));
        write(dir, "deep-nesting.json", ("{\"a\":" + "[".repeat(5000) + "]".repeat(5000) + "}").getBytes(StandardCharsets.UTF_8));
    }

    private static void config(Path dir, String name, JsonObject json) throws IOException {
        write(dir, name + ".json", json.toString().getBytes(StandardCharsets.UTF_8));
    }

    // ---------------------------------------------------------------- chat templates

    private static void text(Path dir, String name, String text) throws IOException {
        write(dir, name, text.getBytes(StandardCharsets.UTF_8));
    }

    /** The test templates, then the constructs a hostile or broken template uses to run away or crash. */
    private static void chatTemplates(Path dir, Path chatResources) throws IOException {
        try (Stream<Path> files = Files.list(chatResources)) {
            for (Path f : files.filter(p -> p.toString().endsWith(".jinja")).sorted().toList()) {
                write(dir, f.getFileName().toString(), Files.readAllBytes(f));
            }
        }
        text(dir, "empty.jinja", "");
        text(dir, "deep-parens.jinja", "{{ " + "(".repeat(20_000) + "1" + ")".repeat(20_000) + " }}");
        text(dir, "deep-lists.jinja", "{{ " + "[".repeat(20_000) + "]".repeat(20_000) + " }}");
        text(dir, "deep-not.jinja", "{{ " + "not ".repeat(20_000) + "true }}");
        text(dir, "deep-minus.jinja", "{{ " + "-".repeat(20_000) + "1 }}");
        text(dir, "deep-filters.jinja", "{{ 'a'" + " | upper".repeat(20_000) + " }}");
        text(dir, "deep-attributes.jinja", "{{ messages" + "[0]".repeat(20_000) + " }}");
        text(dir, "deep-ifs.jinja", "{% if true %}".repeat(20_000) + "x" + "{% endif %}".repeat(20_000));
        text(dir, "deep-fors.jinja", "{% for m in messages %}".repeat(5_000) + "x" + "{% endfor %}".repeat(5_000));
        text(dir, "deep-plus.jinja", "{{ 1" + " + 1".repeat(20_000) + " }}");
        text(dir, "huge-range.jinja", "{% for i in range(1000000000) %}x{% endfor %}");
        text(dir, "nested-ranges.jinja", "{% for i in range(99999) %}{% for j in range(99999) %}{% endfor %}{% endfor %}");
        text(dir, "string-doubling.jinja", "{% set s = namespace(v='ab') %}{% for i in range(64) %}{% set s.v = s.v + s.v %}{% endfor %}{{ s.v }}");
        text(dir, "string-repeat.jinja", "{{ 'x' * 1000000000 }}");
        text(dir, "list-repeat.jinja", "{{ ([1, 2] * 1000000000) | length }}");
        text(dir, "macro-recursion.jinja", "{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}");
        text(dir, "macro-fanout.jinja", "{% macro f(n) %}{% if n > 0 %}{{ f(n - 1) }}{{ f(n - 1) }}{% endif %}{% endmacro %}{{ f(40) }}");
        text(dir, "macro-caller.jinja", "{% macro f() %}[{{ caller() }}]{% endmacro %}{% call f() %}{{ f() }}{% endcall %}");
        text(dir, "unterminated-expression.jinja", "{{ messages[0]['content'] ");
        text(dir, "unterminated-statement.jinja", "{% for m in messages %}{{ m.content }}");
        text(dir, "unterminated-string.jinja", "{{ 'abc }}");
        text(dir, "unterminated-comment.jinja", "{# never closed");
        text(dir, "unterminated-raw.jinja", "{% raw %}{{ x }}");
        text(dir, "unbalanced-end.jinja", "{% endfor %}{% endif %}{% endmacro %}");
        text(dir, "break-outside-loop.jinja", "{% break %}{% continue %}");
        text(dir, "raise.jinja", "{{ raise_exception('Conversation roles must alternate') }}{{ raise_exception() }}");
        text(dir, "unicode.jinja", "{{ '\\u00e9\\U0001F600\\x00' }}\u202e\uFEFF{{ 'é😀𝔘\u0301' | upper | length }}{{ '\uD800' }}"
                + "{{ messages[0].content[::-1] }}{{ '\\N{BULLET}' }}");
        text(dir, "whitespace-control.jinja", "{%- for m in messages -%}{{- m.role -}}{%+ if m.content +%}{{ m.content }}{%- endif -%}{%- endfor -%}");
        text(dir, "filters-and-tests.jinja", "{{ messages | map(attribute='role') | join(',') }}{{ tools | tojson(indent=2) }}"
                + "{{ messages | selectattr('role', 'equalto', 'user') | list | length }}{{ 3 is divisibleby 0 }}"
                + "{{ '%s %d' % ('a', 1) }}{{ {'a': 1} | dictsort }}{{ 1 / 0 }}{{ 1 // 0 }}{{ 1 % 0 }}");
        text(dir, "strftime.jinja", "{{ strftime_now('%Y-%m-%d %A %B %%') }}{{ strftime_now('%') }}");
        text(dir, "numbers.jinja", "{{ 1e308 * 10 }}{{ 9223372036854775807 + 1 }}{{ -9223372036854775808 // -1 }}{{ 2 ** 100000 }}");
        text(dir, "slices.jinja", "{{ messages[::0] }}{{ messages[9223372036854775807:] }}{{ 'abc'[-9999:9999:-1] }}");
    }

    /** Conversations in OpenAI's format, each optionally followed by a NUL and tool definitions. */
    private static void conversations(Path dir) throws IOException {
        String tools = "[{\"type\": \"function\", \"function\": {\"name\": \"get_weather\", \"description\": \"Weather in a city\","
                + " \"parameters\": {\"type\": \"object\", \"properties\": {\"city\": {\"type\": \"string\"}}, \"required\": [\"city\"]}}}]";
        String chat = "[{\"role\": \"system\", \"content\": \"Be brief.\"}, {\"role\": \"user\", \"content\": \"Weather in Paris?\"},"
                + " {\"role\": \"assistant\", \"content\": null, \"tool_calls\": [{\"id\": \"c1\", \"type\": \"function\","
                + " \"function\": {\"name\": \"get_weather\", \"arguments\": \"{\\\"city\\\": \\\"Paris\\\"}\"}}]},"
                + " {\"role\": \"tool\", \"tool_call_id\": \"c1\", \"content\": \"18 C\"}, {\"role\": \"assistant\", \"content\": \"18 C.\"}]";
        text(dir, "chat.json", chat);
        text(dir, "chat-with-tools.json", chat + "\0" + tools);
        text(dir, "object-form.json", "{\"messages\": [{\"role\": \"user\", \"content\": [{\"type\": \"text\", \"text\": \"hi\"},"
                + " {\"type\": \"image_url\"}]}]}\0{\"tools\": " + tools + "}");
        text(dir, "arguments-object.json", "[{\"role\": \"assistant\", \"tool_calls\": [{\"name\": \"f\", \"arguments\": {\"x\": [1, 2.5, null, true]}}]}]");
        text(dir, "empty.json", "[]");
        text(dir, "not-json.json", "[{\"role\": \"user\", \"content\": \"hi\"");
        text(dir, "unknown-role.json", "[{\"role\": \"wizard\", \"content\": \"hi\"}]");
        text(dir, "wrong-types.json", "[{\"role\": 5, \"content\": {\"a\": 1}}]\0[1, \"x\"]");
        text(dir, "deep-content.json", "[{\"role\": \"user\", \"content\": " + "[".repeat(5_000) + "]".repeat(5_000) + "}]");
        text(dir, "deep-tool.json", "[{\"role\": \"user\", \"content\": \"hi\"}]\0[{\"type\": \"function\", \"function\": "
                + "{\"a\": ".repeat(5_000) + "1" + "}".repeat(5_000) + "}]");
        text(dir, "template-in-content.json", "[{\"role\": \"user\", \"content\": \"{{ raise_exception('x') }}{% for %}\\u0000\\ud800😀\"}]");
        text(dir, "huge-numbers.json", "[{\"role\": \"user\", \"content\": \"x\"}]\0[{\"n\": 1e999999999, \"m\": -99999999999999999999999999}]");
    }

    /** Model answers with tool calls in the formats {@code ToolCallParser} reads, and near misses. */
    private static void toolCallAnswers(Path dir) throws IOException {
        text(dir, "qwen.txt", "Let me check.\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>");
        text(dir, "qwen-two.txt", "<tool_call>{\"name\": \"a\", \"arguments\": \"{}\"}</tool_call><tool_call>{\"function\": {\"name\": \"b\"}}</tool_call>");
        text(dir, "llama31.txt", "{\"name\": \"get_weather\", \"parameters\": {\"city\": \"Paris\"}}");
        text(dir, "llama31-list.txt", "[{\"name\": \"a\", \"parameters\": null}, {\"name\": \"b\", \"arguments\": [1]}]");
        text(dir, "plain.txt", "The weather in Paris is 18 C.");
        text(dir, "unterminated-tag.txt", "<tool_call>{\"name\": \"a\"");
        text(dir, "bad-json-in-tag.txt", "<tool_call>{name: a,,}</tool_call>");
        text(dir, "name-not-string.txt", "{\"name\": {\"x\": 1}}");
        text(dir, "deep-json.txt", "[".repeat(10_000) + "]".repeat(10_000));
        text(dir, "deep-json-in-tag.txt", "<tool_call>" + "{\"a\":".repeat(10_000) + "1" + "}".repeat(10_000) + "</tool_call>");
        text(dir, "many-tags.txt", "<tool_call>".repeat(2_000) + "</tool_call>".repeat(2_000));
    }
}
