"""The counting stage: "how many people are in this image?" with a fine-tuned LLaVA VLM
(docs/counting.md).

`data` (the Mall layout in both nestings, checked row by row; seeded 80:20 or Mall's first-800 split), `coco` (person
counts from COCO instance annotations through pycocotools), `toy` (synthetic CCTV frames in the Mall layout, and the
oracle head counter that knows their head colours), `classical` (a palette-free blob counter, its settings chosen on
val), `model` (the tiny LLaVA and one loading path, 4-bit NF4 at paper scale), `train` (LoRA /
QLoRA through TRL's SFTTrainer, TensorBoard, fingerprinted resume), `predict` (batched greedy answers), `answers`
(count parsing: digits, English words, Korean), `metrics` (exact / ±1 / ±2, MAE, RMSE, P/R/F1) and `stage` (the
workflow's steps: the data, the toy model, fine-tuning, prediction, and the table, comparisons and figures).
"""
