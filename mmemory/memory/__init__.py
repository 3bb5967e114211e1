"""Retrieval memory: a persistent multimodal memory store scored by relevance, recency, frequency and saliency.

    python -m mmemory.memory add | search | stats | evaluate ...   (see `python -m mmemory.memory -h`)
"""
from mmemory.memory.index import IndexConfig
from mmemory.memory.scoring import COMPONENTS
from mmemory.memory.store import Memory, MemoryInputError, MemoryStore, Retrieved

__all__ = ["COMPONENTS", "IndexConfig", "Memory", "MemoryInputError", "MemoryStore", "Retrieved"]
