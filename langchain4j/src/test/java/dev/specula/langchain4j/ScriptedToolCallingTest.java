package dev.specula.langchain4j;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.langchain4j.agent.tool.P;
import dev.langchain4j.agent.tool.Tool;
import dev.langchain4j.agent.tool.ToolSpecification;
import dev.langchain4j.data.message.UserMessage;
import dev.langchain4j.model.chat.request.ChatRequest;
import dev.langchain4j.model.chat.request.json.JsonObjectSchema;
import dev.langchain4j.model.chat.response.ChatResponse;
import dev.langchain4j.model.output.FinishReason;
import dev.langchain4j.service.AiServices;
import dev.specula.chat.ChatMessage;
import dev.specula.chat.ChatResult;
import dev.specula.chat.ChatTemplate;
import dev.specula.chat.RenderedPrompt;
import dev.specula.GenerationResult;
import dev.specula.GenerationStats;
import dev.specula.StopReason;
import java.util.ArrayList;
import java.util.List;
import java.util.function.Function;
import org.junit.jupiter.api.Test;

/**
 * The tool-calling path through LangChain4j's AiServices, with the model's generation SCRIPTED at the adapter
 * boundary (a random-weight model never calls a tool by itself): messages and tool specifications are converted
 * and rendered through a real Qwen-style chat template, the scripted answer text is parsed by the adapter into
 * tool execution requests, AiServices runs the tool and feeds the result back through the template.
 */
class ScriptedToolCallingTest {
    static final String TEMPLATE = """
            {%- if tools %}{{- '<|im_start|>system\\n# Tools\\n<tools>' }}{%- for tool in tools %}{{- '\\n' + (tool | tojson) }}{%- endfor %}\
            {{- '\\n</tools><|im_end|>\\n' }}{%- endif %}
            {%- for message in messages %}
                {%- if message.role == 'assistant' and message.tool_calls %}
                    {{- '<|im_start|>assistant' }}
                    {%- for tool_call in message.tool_calls %}
                        {{- '\\n<tool_call>\\n{"name": "' + tool_call.function.name + '", "arguments": ' + (tool_call.function.arguments | tojson) + '}\\n</tool_call>' }}
                    {%- endfor %}
                    {{- '<|im_end|>\\n' }}
                {%- elif message.role == 'tool' %}
                    {{- '<|im_start|>user\\n<tool_response>\\n' + message.content + '\\n</tool_response><|im_end|>\\n' }}
                {%- else %}
                    {{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>\\n' }}
                {%- endif %}
            {%- endfor %}
            {%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}""";

    /** A backend that renders with the real template and answers with scripted text. */
    static final class Scripted implements ChatBackend {
        final ChatTemplate template = ChatTemplate.of(TEMPLATE);
        final List<String> prompts = new ArrayList<>();
        final Function<List<ChatMessage>, String> script;

        Scripted(Function<List<ChatMessage>, String> script) {
            this.script = script;
        }

        @Override
        public ChatResult chat(List<ChatMessage> messages, dev.specula.chat.ChatOptions options, dev.specula.TextListener listener,
                               java.util.function.BooleanSupplier cancelled) {
            RenderedPrompt prompt = template.render(messages, options.tools(), true, "", "");
            prompts.add(prompt.text());
            String answer = script.apply(messages);
            listener.onText(answer);
            GenerationResult g = new GenerationResult(new int[] {1, 2, 3}, new int[] {4, 5}, answer, StopReason.END_OF_SEQUENCE,
                    new GenerationStats(3, 2, 0.01, 0.02), null);
            return new ChatResult(answer, List.of(), prompt, g);
        }
    }

    static final class Calculator {
        final List<String> calls = new ArrayList<>();

        @Tool("Adds two integers")
        int add(@P("the first") int a, @P("the second") int b) {
            calls.add(a + "+" + b);
            return a + b;
        }
    }

    interface Assistant {
        String chat(String message);
    }

    @Test
    void aiServicesCallsTheToolTheModelAsksForInToolCallTags() {
        Scripted backend = new Scripted(messages -> {
            ChatMessage last = messages.getLast();
            if (last.role().equals("tool")) return "The sum is " + last.content() + ".";
            return "<tool_call>\n{\"name\": \"add\", \"arguments\": {\"a\": 2, \"b\": 3}}\n</tool_call>";
        });
        Calculator calculator = new Calculator();
        Assistant assistant = AiServices.builder(Assistant.class)
                .chatModel(SpeculaChatModel.builder().backend(backend).build())
                .tools(calculator).build();
        assertEquals("The sum is 5.", assistant.chat("What is 2 + 3?"));
        assertEquals(List.of("2+3"), calculator.calls);
        assertEquals(2, backend.prompts.size());
        String first = backend.prompts.get(0);
        assertTrue(first.contains("\"name\": \"add\", \"description\": \"Adds two integers\""), first);
        assertTrue(first.contains("\"a\": {\"type\": \"integer\", \"description\": \"the first\"}"), first);
        assertTrue(first.endsWith("<|im_start|>user\nWhat is 2 + 3?<|im_end|>\n<|im_start|>assistant\n"), first);
        String second = backend.prompts.get(1);
        assertTrue(second.contains("<|im_start|>assistant\n<tool_call>\n{\"name\": \"add\", \"arguments\": {\"a\": 2, \"b\": 3}}\n</tool_call><|im_end|>\n"), second);
        assertTrue(second.contains("<|im_start|>user\n<tool_response>\n5\n</tool_response><|im_end|>\n"), second);
    }

    @Test
    void aBareJsonFunctionCallIsAToolExecutionRequest() {
        Scripted backend = new Scripted(messages -> "{\"name\": \"add\", \"parameters\": {\"a\": 1, \"b\": 1}}");
        ToolSpecification add = ToolSpecification.builder().name("add").description("Adds")
                .parameters(JsonObjectSchema.builder().addIntegerProperty("a").addIntegerProperty("b").build()).build();
        ChatResponse r = SpeculaChatModel.builder().backend(backend).build()
                .chat(ChatRequest.builder().messages(UserMessage.from("1+1?")).toolSpecifications(add).build());
        assertEquals(FinishReason.TOOL_EXECUTION, r.finishReason());
        assertEquals(1, r.aiMessage().toolExecutionRequests().size());
        assertEquals("add", r.aiMessage().toolExecutionRequests().getFirst().name());
        assertEquals("{\"a\":1,\"b\":1}", r.aiMessage().toolExecutionRequests().getFirst().arguments());
        // without tools offered, the same text is just text
        ChatResponse plain = SpeculaChatModel.builder().backend(backend).build().chat(ChatRequest.builder().messages(UserMessage.from("1+1?")).build());
        assertEquals("{\"name\": \"add\", \"parameters\": {\"a\": 1, \"b\": 1}}", plain.aiMessage().text());
        assertEquals(FinishReason.STOP, plain.finishReason());
    }
}
