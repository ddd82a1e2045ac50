"""The remote code a tiny Phi-4-multimodal checkpoint ships (copied into it, loaded with trust_remote_code).

ms-swift 4.6's ``phi4_multimodal`` loader and template expect the processor and model of the hub repository
microsoft/Phi-4-multimodal-instruct (``processing_phi4mm.py``, ``modeling_phi4mm.py``), which need
transformers < 4.49 and are not installable offline. These two modules are swift-ext's own stand-ins with
the interface ms-swift uses, built on transformers' port of that model (``Phi4MultimodalImageProcessor``,
``Phi4MultimodalForCausalLM``): see each module. Nothing here is imported by swift-ext itself.
"""
