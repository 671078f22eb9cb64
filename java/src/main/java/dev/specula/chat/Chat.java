package dev.specula.chat;

import dev.specula.SpeculaEngine;
import dev.specula.GenerationRequest;
import dev.specula.GenerationResult;
import dev.specula.TextListener;
import dev.specula.model.ModelFile;
import dev.specula.tokenizer.Tokenizer;
import java.util.BitSet;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Set;
import java.util.function.BooleanSupplier;

/**
 * Chat on a {@link SpeculaEngine}: renders a conversation with the model's template, tokenizes it (the template's
 * special tokens as special tokens, the conversation's text as plain text), generates the answer with the
 * engine's drafter, and stops at the model's end-of-turn tokens. Thread-safe.
 *
 * <p>Speculation carries across turns: each answer's prompt is the whole conversation, so prompt lookup drafts
 * from every earlier turn, and the engine's learned state (the recycling matrix, the draft model's predictor)
 * is shared by all requests.
 */
public final class Chat {
    private final SpeculaEngine engine;
    private final Tokenizer tokenizer;
    private final ChatTemplate template;
    private final ChatTemplate toolTemplate;
    private final String bosText;
    private final String eosText;
    private final Set<Integer> endOfTurn;

    private Chat(SpeculaEngine engine, Tokenizer tokenizer, ChatTemplate template, ChatTemplate toolTemplate) {
        this.engine = engine;
        this.tokenizer = tokenizer;
        this.template = template;
        this.toolTemplate = toolTemplate;
        this.bosText = tokenizer.bos() >= 0 ? tokenizer.tokenText(tokenizer.bos()) : "";
        this.eosText = tokenizer.eos() >= 0 ? tokenizer.tokenText(tokenizer.eos()) : "";
        this.endOfTurn = endOfTurnTokens(template);
    }

    /** Chat with the template the model carries; a model without one is a clear error. */
    public static Chat of(SpeculaEngine engine) {
        return of(engine, (String) null);
    }

    /**
     * Chat with the model's own template (chatFormat null) or a built-in format the user chose
     * ({@link ChatTemplate#BUILTIN_FORMATS}).
     */
    public static Chat of(SpeculaEngine engine, String chatFormat) {
        return create(engine, engine.model().file(), engine.model().tokenizer(), chatFormat);
    }

    /** Chat with a template the caller chose (a built-in format, or one read elsewhere). */
    public static Chat of(SpeculaEngine engine, ChatTemplate template) {
        return new Chat(engine, engine.model().tokenizer(), template, template);
    }

    /** Rendering and tokenizing only, without loading the model's weights ({@link #chat} is refused). */
    public static Chat forRendering(ModelFile file, Tokenizer tokenizer, String chatFormat) {
        return create(null, file, tokenizer, chatFormat);
    }

    private static Chat create(SpeculaEngine engine, ModelFile file, Tokenizer tokenizer, String chatFormat) {
        if (chatFormat != null) {
            ChatTemplate t = ChatTemplate.builtin(chatFormat);
            return new Chat(engine, tokenizer, t, t);
        }
        String source = ChatTemplate.sourceOf(file, false).orElseThrow(() -> new ChatTemplateException(
                file.path() + " has no chat template (tokenizer.chat_template); choose a format explicitly, one of "
                        + new java.util.TreeSet<>(ChatTemplate.BUILTIN_FORMATS.keySet()) + " (--chat-format)"));
        String toolSource = ChatTemplate.sourceOf(file, true).orElse(source);
        ChatTemplate t = ChatTemplate.of(source);
        return new Chat(engine, tokenizer, t, toolSource.equals(source) ? t : ChatTemplate.of(toolSource));
    }

    public ChatTemplate template() {
        return template;
    }

    /** The token ids that end an answer: the tokenizer's EOS/EOT tokens and the template's end-of-turn marker. */
    public Set<Integer> endOfTurnTokens() {
        return endOfTurn;
    }

    /** The rendered prompt for a conversation, ending with the start of the assistant's turn. */
    public RenderedPrompt render(List<ChatMessage> messages, ChatOptions options) {
        if (messages.isEmpty()) throw new ChatTemplateException("the conversation has no messages");
        ChatTemplate t = options.tools().isEmpty() ? template : toolTemplate;
        return t.render(messages, options.tools(), true, bosText, eosText);
    }

    /**
     * The prompt's tokens: the template's special tokens parsed, the conversation's text plain. BOS is put first
     * when the model asks for it and the template did not write it already.
     */
    public int[] tokenize(RenderedPrompt prompt) {
        boolean bos = tokenizer.addBos() && tokenizer.bos() >= 0 && !(bosText.length() > 0 && prompt.text().startsWith(bosText)
                && !prompt.fromConversation(0));
        return tokenizer.encode(prompt.text(), bos, prompt.conversationChars());
    }

    /** Answers the conversation, streaming the text to listener; cancel by making cancelled return true. */
    public ChatResult chat(List<ChatMessage> messages, ChatOptions options, TextListener listener, BooleanSupplier cancelled) {
        if (engine == null) throw new IllegalStateException("this Chat renders only; make one on an engine to answer");
        RenderedPrompt prompt = render(messages, options);
        GenerationResult r = engine.generate(request(prompt, options), listener, cancelled);
        ToolCallParser.Parsed parsed = options.tools().isEmpty() ? new ToolCallParser.Parsed(r.text(), List.of()) : ToolCallParser.parse(r.text());
        return new ChatResult(parsed.text(), parsed.calls(), prompt, r);
    }

    /**
     * The engine request that answers a conversation, for callers that check or schedule it themselves before
     * {@link SpeculaEngine#generate} (a server checks the prompt against the context first).
     */
    public GenerationRequest request(List<ChatMessage> messages, ChatOptions options) {
        return request(render(messages, options), options);
    }

    /** The rendered prompt's tokens, the end-of-turn tokens as stop tokens, and the options' budget, sampling, stops and drafter. */
    private GenerationRequest request(RenderedPrompt prompt, ChatOptions options) {
        return GenerationRequest.builder(prompt.text()).promptTokens(tokenize(prompt)).stopTokens(endOfTurn)
                .maxTokens(options.maxTokens()).sampling(options.sampling()).stopStrings(options.stopStrings()).drafter(options.drafter()).build();
    }

    /**
     * The template's end-of-turn marker: the first special token it writes after an assistant message's content
     * (for example {@code <|im_end|>} or {@code <|eot_id|>}), found by rendering a probe conversation.
     */
    private Set<Integer> endOfTurnTokens(ChatTemplate t) {
        Set<Integer> ids = new LinkedHashSet<>(tokenizer.stopTokens());
        if (tokenizer.eos() >= 0) ids.add(tokenizer.eos());
        String answer = "\uE000probe-answer\uE001";
        try {
            RenderedPrompt probe = t.render(List.of(ChatMessage.user("\uE000probe-question\uE001"), ChatMessage.assistant(answer)),
                    List.of(), false, bosText, eosText);
            int at = probe.text().indexOf(answer);
            if (at >= 0) {
                String after = probe.text().substring(at + answer.length()).stripLeading();
                int[] next = tokenizer.encode(after, false, new BitSet());
                if (next.length > 0 && tokenizer.isControl(next[0]) && next[0] != tokenizer.bos()) ids.add(next[0]);
            }
        } catch (ChatTemplateException e) {
            // a template that rejects the probe conversation: the tokenizer's own end tokens stay
        }
        return Set.copyOf(ids);
    }
}
