package dev.specula.nativeapi;

/**
 * The shape and numeric conventions of a transformer, field for field what the ABI's spec_model_config
 * takes (less the KV cache type, chosen per model instance). Model readers implement it.
 */
public interface ModelShape {
    Arch arch();

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

    RopeStyle ropeStyle();

    /** Rotated dims per head; 0 means head_dim. */
    int ropeDims();

    RopeScaling ropeScaling();

    float ropeFactor();

    float ropeLowFreqFactor();

    float ropeHighFreqFactor();

    int ropeOrigCtx();

    // ABI 0.8 (architectures): all zero keeps full attention in every layer and one RoPE.

    /** 0 = none; else local layers attend only to keys at positions above p - slidingWindow. */
    default int slidingWindow() {
        return 0;
    }

    /** Which layers are local: 0 = every layer; n = all but every n-th ((layer + 1) % n == 0 is global). */
    default int swaPattern() {
        return 0;
    }

    /** The local layers' RoPE base (without scaling); 0 = the global RoPE. */
    default float ropeThetaLocal() {
        return 0f;
    }

    /** The softmax scale of q.k; 0 = 1 / sqrt(head_dim). */
    default float attnScale() {
        return 0f;
    }

    /** The [rows][cols] weight role must have in layer (ignored for global roles): the ABI's spec_weight_shape. */
    default WeightShape weightShape(WeightRole role, int layer) {
        return WeightShape.of(this, role, layer);
    }
}
