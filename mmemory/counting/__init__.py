"""The counting stage (issue 14, seed 003): "how many people are in this image?" with a fine-tuned LLaVA VLM.

Built so far: `toy` (synthetic CCTV frames in the Mall layout, and a classical head counter), `model` (the tiny
LLaVA and one loading path, 4-bit NF4 at paper scale), `train` (QLoRA through TRL's SFTTrainer, TensorBoard,
fingerprinted resume) and `predict` (batched greedy answers). Not yet: the Mall / COCO reader, count parsing,
metrics, rules and the report section (docs/counting.md).
"""
