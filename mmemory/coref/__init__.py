"""The coref stage (issue 13): which object in which shared photo a dialogue's last pronoun ("that one", "저거") means.

Built so far: `data` (the schema, checked on load; seed 002's text format; content-disjoint splits), `toy` (the
embedded default's toy dialogues and a rule that reads the referent), `answers` (a generated answer -> a choice
label, and whether it names exactly one option in its words), `prompts` (the prompt and target shared by training
and evaluation), `models` (the tiny toy Llamas and their tokenizer) and `evaluate` (greedy generation parsed,
option likelihood as lm-evaluation-harness scores multiple choice, Wilson intervals, position bias, baselines).
Not yet: training (`train_coref`), the rules and the report section (docs/coref.md).
"""
