package dev.specula.nativeapi;

/**
 * The shape and numeric conventions of a transformer, field for field what the ABI's spec_model_config
 * takes (less the KV cache type, chosen per model instance). Model readers implement it.
 */
public interface ModelShape {
    /** SPEC_ARCH_* */
    int archCode();

    int nVocab();

    int nEmbd();

    int nLayer();

    int nHead();

    int nHeadKv();

    int headDim();

    int nFf();

    int nCtxTrain();

    float rmsEps();

    float ropeTheta();

    /** SPEC_ROPE_NORM (adjacent pairs, GGUF llama layout) or SPEC_ROPE_NEOX (halves, qwen2 and HF layout). */
    int ropeStyleCode();

    /** Rotated dims per head; 0 means head_dim. */
    int ropeDims();

    /** SPEC_ROPE_SCALING_* */
    int ropeScalingCode();

    float ropeFactor();

    float ropeLowFreqFactor();

    float ropeHighFreqFactor();

    int ropeOrigCtx();
}
