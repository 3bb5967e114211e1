"""The coref stage: which object in which shared photo a dialogue's last pronoun ("that one", "저거") means, out of
four choices (docs/coref.md).

`data` (the schema, checked on load; seed 002's text format; content-disjoint splits), `stage` (the workflow's
steps: the data, the toy models, evaluation and the table), `toy` (the embedded default's toy dialogues, the rule that
reads the referent, the recency heuristic), `prompts` (the prompt and the answer formats shared by training and
evaluation), `models` (the tiny toy Llamas, their tokenizer and copy pretraining), `train` (transformers Trainer;
DDP / DeepSpeed / FSDP under torchrun; resume), `answers` (a generated answer -> a choice label, and exact match),
`evaluate` (greedy generation parsed, option likelihood as lm-evaluation-harness scores multiple choice, Wilson
intervals, position bias, baselines) and `report` (the tables and the figure).
"""
