"""Extraction-Memorization (EMR): embedding extraction to shards, the MA-LMM bridge into a frozen LM, training and
evaluation. Modules: data (keys, extraction, records), memory_bank, bridge, lm, train, evaluate, toy."""
