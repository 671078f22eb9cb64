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

    /** The [rows][cols] weight role must have in layer (ignored for global roles): the ABI's spec_weight_shape. */
    default WeightShape weightShape(WeightRole role, int layer) {
        return WeightShape.of(this, role, layer);
    }
}
