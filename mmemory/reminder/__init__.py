"""The <reminder> self-reflection stage: teacher data, Gemma-3 LoRA fine-tuning, leak-free variants.

Modules: `prompts` (conversations, prompts, memory blocks), `response` (validation and final answers), `teachers`
(template / ollama / transformers), `generate` (resumable teacher runs), `finetune` (hf and unsloth backends),
`predict` (variants), `stage` (the workflow steps). `evaluate` scores predictions (`python -m mmemory.evaluate` is its command line).
"""
