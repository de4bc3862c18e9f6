# Remote-code configuration for the harness's tiny offline Phi-4-multimodal ("phi4mm") model.
#
# Written by harness/models (vllm-rocm-harness); same fields and semantics as Microsoft's
# Phi-4-multimodal-instruct `configuration_phi4mm.py`, for vLLM's `Phi4MMForCausalLM`.
# Loaded with trust_remote_code=True; depends only on transformers.
"""Phi4MM configuration (tiny offline variant)."""

from transformers.configuration_utils import PretrainedConfig

SIGLIP_NAME = "siglip-so400m-patch14-448"


class VisionTowerSpec(dict):
    """The `img_processor` entry: a dict that also hashes and compares equal to its encoder name.

    vLLM reads `config.img_processor.get("layer_idx")` (so the SigLIP tower is built with
    `layer_idx + 1` layers, 1 here instead of 26) and also uses `config.img_processor` as a key
    of `VISION_ENCODER_TO_PROCESSING_CONFIG` (keyed by "siglip-so400m-patch14-448"); a plain dict
    there is unhashable. Serialises as a plain JSON object.
    """

    def _name(self):
        return self.get("name", SIGLIP_NAME)

    def __hash__(self):
        return hash(self._name())

    def __eq__(self, other):
        if isinstance(other, str):
            return self._name() == other
        return dict.__eq__(self, other)

    def __ne__(self, other):
        return not self.__eq__(other)

    def __reduce__(self):
        return (VisionTowerSpec, (dict(self),))


class Phi4MMConfig(PretrainedConfig):
    model_type = "phi4mm"
    keys_to_ignore_at_inference = ["past_key_values"]

    def __init__(
        self,
        vocab_size=200064,
        hidden_size=3072,
        intermediate_size=8192,
        num_hidden_layers=32,
        num_attention_heads=32,
        num_key_value_heads=None,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attention_dropout=0.0,
        hidden_act="silu",
        max_position_embeddings=4096,
        original_max_position_embeddings=4096,
        initializer_range=0.02,
        rms_norm_eps=1e-5,
        use_cache=True,
        tie_word_embeddings=False,
        rope_theta=10000.0,
        rope_scaling=None,
        partial_rotary_factor=1.0,
        bos_token_id=199999,
        eos_token_id=199999,
        pad_token_id=199999,
        sliding_window=None,
        embd_layer="default",
        img_processor=None,
        audio_processor=None,
        vision_lora=None,
        speech_lora=None,
        **kwargs,
    ):
        self.embd_layer = embd_layer
        if isinstance(img_processor, dict):
            img_processor = VisionTowerSpec(img_processor)
        self.img_processor = img_processor
        self.audio_processor = audio_processor
        self.vision_lora = vision_lora
        self.speech_lora = speech_lora
        self.vocab_size = vocab_size
        self.hidden_size = hidden_size
        self.intermediate_size = intermediate_size
        self.num_hidden_layers = num_hidden_layers
        self.num_attention_heads = num_attention_heads
        if num_key_value_heads is None:
            num_key_value_heads = num_attention_heads
        self.num_key_value_heads = num_key_value_heads
        self.resid_pdrop = resid_pdrop
        self.embd_pdrop = embd_pdrop
        self.attention_dropout = attention_dropout
        self.hidden_act = hidden_act
        self.max_position_embeddings = max_position_embeddings
        self.original_max_position_embeddings = original_max_position_embeddings
        self.initializer_range = initializer_range
        self.rms_norm_eps = rms_norm_eps
        self.use_cache = use_cache
        self.rope_theta = rope_theta
        self.rope_scaling = rope_scaling
        self.partial_rotary_factor = partial_rotary_factor
        self.sliding_window = sliding_window
        super().__init__(
            bos_token_id=bos_token_id,
            eos_token_id=eos_token_id,
            pad_token_id=pad_token_id,
            tie_word_embeddings=tie_word_embeddings,
            **kwargs,
        )
        # PretrainedConfig may have re-set attributes from kwargs: keep the hashable spec.
        if isinstance(self.img_processor, dict) and not isinstance(self.img_processor, VisionTowerSpec):
            self.img_processor = VisionTowerSpec(self.img_processor)
