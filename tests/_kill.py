"""Simulated kills for the resume tests: a patched function raises KeyboardInterrupt on its n-th call."""
from __future__ import annotations


def kill_on_call(monkeypatch, owner, name: str, n: int) -> list:
    """Patch `owner.name` so that its n-th call raises KeyboardInterrupt("killed"); returns the call log (one entry
    per call). `monkeypatch.undo()` or leaving the test restores the original."""
    real, calls = getattr(owner, name), []

    def dying(*a, **k):
        calls.append(1)
        if len(calls) == n:
            raise KeyboardInterrupt("killed")
        return real(*a, **k)

    monkeypatch.setattr(owner, name, dying)
    return calls
