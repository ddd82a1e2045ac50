"""A stand-in for microsoft/Phi-4-multimodal-instruct's ``modeling_phi4mm.Phi4MMForCausalLM`` (swift-ext's tiny
checkpoint ships it as remote code): transformers' ``Phi4MultimodalForCausalLM`` under the hub model's input
names (``input_image_embeds``, ``input_mode``, ...) and with its ``set_lora_adapter``, which ms-swift's loader
calls (the hub model switches its built-in vision / speech LoRA; the tiny one has none). The parameters are
spelled out: ``generate`` refuses inputs a signature does not name."""
from transformers import Phi4MultimodalForCausalLM


def _images(pixels, image_sizes, image_attention_mask):
    """The image inputs under transformers' names; none where there are no pixels (an empty tensor: no image)."""
    if pixels is None or not pixels.numel():
        return {}
    return {'image_pixel_values': pixels, 'image_sizes': image_sizes, 'image_attention_mask': image_attention_mask}


class Phi4MMForCausalLM(Phi4MultimodalForCausalLM):

    def set_lora_adapter(self, adapter_name):
        pass

    def forward(self, input_ids=None, attention_mask=None, position_ids=None, past_key_values=None, inputs_embeds=None,
                input_image_embeds=None, image_sizes=None, image_attention_mask=None, input_audio_embeds=None,
                audio_embed_sizes=None, audio_attention_mask=None, input_mode=None, labels=None, use_cache=None,
                logits_to_keep=0, **kwargs):
        kwargs.pop('num_img_tokens', None)
        # From generate, the images come back under transformers' name (prepare_inputs_for_generation's output).
        pixels = kwargs.pop('image_pixel_values', None) if input_image_embeds is None else input_image_embeds
        return super().forward(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                               past_key_values=past_key_values, inputs_embeds=inputs_embeds, labels=labels,
                               use_cache=use_cache, logits_to_keep=logits_to_keep,
                               **_images(pixels, image_sizes, image_attention_mask), **kwargs)

    def prepare_inputs_for_generation(self, input_ids, past_key_values=None, attention_mask=None, inputs_embeds=None,
                                      input_image_embeds=None, image_sizes=None, image_attention_mask=None,
                                      input_audio_embeds=None, audio_embed_sizes=None, audio_attention_mask=None,
                                      input_mode=None, position_ids=None, use_cache=True, logits_to_keep=0, **kwargs):
        kwargs.pop('num_img_tokens', None)
        return super().prepare_inputs_for_generation(
            input_ids, past_key_values=past_key_values, attention_mask=attention_mask, inputs_embeds=inputs_embeds,
            position_ids=position_ids, use_cache=use_cache, logits_to_keep=logits_to_keep,
            **_images(input_image_embeds, image_sizes, image_attention_mask), **kwargs)
