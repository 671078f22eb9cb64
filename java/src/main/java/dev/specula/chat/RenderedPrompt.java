package dev.specula.chat;

import java.util.BitSet;

/**
 * A chat template's output: the prompt text, and which of its characters came from the conversation (message
 * content, tool definitions) rather than from the template. Special-token text is parsed as special tokens only
 * in the template's own characters, so a user who types {@code <|im_end|>} gets plain text.
 */
public record RenderedPrompt(String text, BitSet conversationChars) {
    public RenderedPrompt {
        conversationChars = (BitSet) conversationChars.clone();
    }

    /** Whether the character at index came from the conversation. */
    public boolean fromConversation(int index) {
        return conversationChars.get(index);
    }

    @Override
    public BitSet conversationChars() {
        return (BitSet) conversationChars.clone();
    }
}
