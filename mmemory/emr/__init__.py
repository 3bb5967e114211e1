"""Extraction-Memorization (EMR): embedding extraction to shards, the MA-LMM bridge into a frozen LM, training and
evaluation. Modules: data (keys, extraction, records), memory_bank, bridge, lm, train, evaluate, report (the table
and the loss curves) and stage (the workflow's steps, which the scripts call)."""
