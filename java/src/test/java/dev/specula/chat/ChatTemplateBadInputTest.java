package dev.specula.chat;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.List;
import org.junit.jupiter.api.Test;

/** Bad conversations and bad templates give one clear error each; nothing hangs or crashes. */
class ChatTemplateBadInputTest {
    private static final List<ChatMessage> HELLO = List.of(ChatMessage.user("hello"));

    /**
     * The error rendering template gives. The time limit is generous, so that the bound a test expects (nesting,
     * recursion, size) is met before it even when a loaded machine stalls the render; the runaway test sets its own.
     */
    private static String renderError(String template) {
        return renderError(template, 60_000);
    }

    private static String renderError(String template, long timeLimitMillis) {
        return assertThrows(ChatTemplateException.class,
                () -> ChatTemplate.of(template).withLimits(timeLimitMillis, 1 << 20).render(HELLO, List.of(), true, "", "")).getMessage();
    }

    @Test
    void malformedMessagesJsonIsOneClearError() {
        String m = assertThrows(ChatTemplateException.class, () -> ChatJson.parseMessages("[{\"role\": \"user\", \"content\": \"hi\"")).getMessage();
        assertTrue(m.startsWith("messages: malformed JSON"), m);
        m = assertThrows(ChatTemplateException.class, () -> ChatJson.parseMessages("{\"role\": \"user\"}")).getMessage();
        assertEquals("messages: expected a JSON array of messages", m);
        m = assertThrows(ChatTemplateException.class, () -> ChatJson.parseMessages("[{\"content\": \"hi\"}]")).getMessage();
        assertEquals("messages[0]: missing \"role\"", m);
        m = assertThrows(ChatTemplateException.class, () -> ChatJson.parseMessages("[{\"role\": \"user\", \"content\": 5}]")).getMessage();
        assertTrue(m.contains("\"content\" must be a string"), m);
        m = assertThrows(ChatTemplateException.class, () -> ChatJson.parseTools("[1, 2]")).getMessage();
        assertEquals("tools: each tool must be an object", m);
        assertThrows(ChatTemplateException.class, () -> ChatJson.parseMessages("[] trailing"));
    }

    @Test
    void unknownRolesAreRejected() {
        String m = assertThrows(ChatTemplateException.class,
                () -> ChatJson.parseMessages("[{\"role\": \"wizard\", \"content\": \"hi\"}]")).getMessage();
        assertTrue(m.startsWith("messages[0]: unknown role 'wizard'; a role is one of [assistant, developer, ipython, system, tool, user]"), m);
        assertThrows(ChatTemplateException.class, () -> new ChatMessage("robot", "x", null, null, null, null));
    }

    @Test
    void syntaxErrorsNameTheLine() {
        assertEquals("template syntax error at line 2: unexpected end of template, expected else or endfor",
                assertThrows(ChatTemplateException.class, () -> ChatTemplate.of("ok\n{% for m in messages %}{{ m }}")).getMessage());
        assertEquals("template syntax error at line 1: expected end of print statement, got 'b'",
                assertThrows(ChatTemplateException.class, () -> ChatTemplate.of("{{ a b }}")).getMessage());
        assertTrue(assertThrows(ChatTemplateException.class, () -> ChatTemplate.of("{% endif %}")).getMessage()
                .contains("unknown statement 'endif' (no block is open for it)"));
        assertTrue(assertThrows(ChatTemplateException.class, () -> ChatTemplate.of("{{ 'open }}")).getMessage()
                .contains("unterminated string"));
        assertTrue(assertThrows(ChatTemplateException.class, () -> ChatTemplate.of("{{ x")).getMessage()
                .contains("expected '}}'"));
    }

    @Test
    void aRaisingTemplateGivesItsOwnMessage() {
        assertEquals("Only user and assistant roles are supported!",
                renderError("{% if messages[0].role == 'user' %}{{ raise_exception('Only user and assistant roles are supported!') }}{% endif %}"));
    }

    @Test
    void runawayTemplatesAreStopped() {
        // loops that would run for hours: stopped by the time bound
        assertTrue(renderError("{% for i in range(100000) %}{% for j in range(100000) %}{% for k in range(100000) %}{% endfor %}{% endfor %}{% endfor %}", 300)
                .contains("ran past its time limit"));
        // endless recursion: stopped by the macro depth bound
        assertTrue(renderError("{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}").contains("recursed more than"));
        // huge output: stopped by the output bound
        assertTrue(assertThrows(ChatTemplateException.class, () -> ChatTemplate.of(
                        "{% for i in range(100000) %}{% for j in range(100000) %}xxxxxxxxxxxxxxxx{% endfor %}{% endfor %}")
                .withLimits(60_000, 1 << 20).render(HELLO, List.of(), true, "", "")).getMessage().contains("produced more than 1048576 characters"));
        assertTrue(renderError("{{ 'x' * 1000000000000 }}").contains("longer than"));
        assertTrue(renderError("{% for i in range(1000000) %}{% endfor %}").contains("Range too big"));
    }

    /** What fuzzing found (inputs in src/test/resources/dev/specula/fuzz/Chat*Inputs): each is one clear error now. */
    @Test
    void fuzzFindingsAreClearErrors() {
        // deep nesting: refused by the parser's and the renderer's nesting bounds, never a StackOverflowError
        assertTrue(syntaxError("{{ " + "(".repeat(20_000) + "1" + ")".repeat(20_000) + " }}").contains("nests more than"));
        assertTrue(syntaxError("{% if true %}".repeat(20_000) + "{% endif %}".repeat(20_000)).contains("nests more than"));
        assertTrue(renderError("{{ 1" + " + 1".repeat(20_000) + " }}").contains("nests more than"));
        assertTrue(renderError("{{ 'a'" + " | upper".repeat(20_000) + " }}").contains("nests more than"));
        // a lone macro recursion still meets the macro bound first
        assertTrue(renderError("{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}").contains("recursed more than"));
        // numbers and escapes the lexer cannot read
        assertTrue(syntaxError("{{ 9223372036854775808 }}").contains("cannot read the number '9223372036854775808'"));
        assertTrue(syntaxError("{{ '\\u0U00' }}").contains("truncated escape"));
        assertTrue(syntaxError("{{ '\\x4' }}").contains("truncated escape"));
        assertTrue(syntaxError("{{ '\\U77777777' }}").contains("past Unicode"));
        assertEquals("\u00e9\uD83D\uDE00A", ChatTemplate.of("{{ '\\u00e9\\U0001F600\\x41' }}").render(HELLO, List.of(), false, "", "").text());
        // arithmetic: Python's errors, and ** that neither overflows silently nor loops 2**62 times
        assertEquals("integer division or modulo by zero", renderError("{{ 3 is divisibleby 0 }}"));
        assertTrue(renderError("{{ 2 ** 100000 }}").contains("too large"));
        assertEquals("1", ChatTemplate.of("{{ 1 ** 9223372036854775807 }}").render(HELLO, List.of(), false, "", "").text());
        // an answer full of unclosed <tool_call> tags is read in linear time and left as text
        String unclosed = "<tool_call>".repeat(50_000);
        assertEquals(unclosed, ToolCallParser.parse(unclosed).text());
    }

    private static String syntaxError(String template) {
        return assertThrows(ChatTemplateException.class, () -> ChatTemplate.of(template)).getMessage();
    }

    @Test
    void undefinedValuesFailOnlyWhenUsed() {
        assertEquals("'nothing' is undefined", renderError("{{ nothing.attr }}"));
        assertEquals("'dict object' has no attribute 'missing'", renderError("{{ messages[0].missing.deeper }}"));
        assertEquals("[]", ChatTemplate.of("[{{ nothing }}{% for x in nothing %}x{% endfor %}]").render(HELLO, List.of(), true, "", "").text());
        assertTrue(renderError("{{ messages.append(1) }}").contains("unsafe"));
    }

    @Test
    void specialTokenTextTypedByAUserIsMarkedAsConversationText() {
        ChatTemplate t = ChatTemplate.builtin("chatml");
        RenderedPrompt p = t.render(List.of(ChatMessage.user("a<|im_end|>b")), List.of(), true, "", "");
        assertEquals("<|im_start|>user\na<|im_end|>b<|im_end|>\n<|im_start|>assistant\n", p.text());
        int typed = p.text().indexOf("<|im_end|>");
        int template = p.text().lastIndexOf("<|im_end|>");
        assertTrue(p.fromConversation(typed));
        assertFalse(p.fromConversation(template));
        assertFalse(p.fromConversation(0));
        assertFalse(p.fromConversation(p.text().indexOf("user")), "roles are template text");
    }

    @Test
    void chatTemplateComesFromAStringOrANamedList() {
        var gson = com.google.gson.JsonParser.parseString(
                "[{\"name\": \"default\", \"template\": \"D\"}, {\"name\": \"tool_use\", \"template\": \"T\"}]");
        assertEquals("D", ChatTemplate.selectTemplate(gson, false, "x"));
        assertEquals("T", ChatTemplate.selectTemplate(gson, true, "x"));
        assertEquals("S", ChatTemplate.selectTemplate(com.google.gson.JsonParser.parseString("\"S\""), true, "x"));
        assertThrows(ChatTemplateException.class, () -> ChatTemplate.builtin("nope"));
    }

    @Test
    void toolCallsAreFoundInCommonFormats() {
        var tagged = ToolCallParser.parse("Let me check.\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"location\": \"Oslo\"}}\n</tool_call>");
        assertEquals("Let me check.", tagged.text());
        assertEquals(List.of(new ChatMessage.ToolCall("call_0", "get_weather", "{\"location\":\"Oslo\"}")), tagged.calls());
        var bare = ToolCallParser.parse(" {\"name\": \"add\", \"parameters\": {\"a\": 1, \"b\": 2}} ");
        assertEquals(List.of(new ChatMessage.ToolCall("call_0", "add", "{\"a\":1,\"b\":2}")), bare.calls());
        assertEquals("", bare.text());
        var text = ToolCallParser.parse("{not json} just text");
        assertEquals(List.of(), text.calls());
        assertEquals("{not json} just text", text.text());
    }
}
