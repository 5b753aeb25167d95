"""Test doubles that speak real protocols (local HTTP servers on 127.0.0.1)."""
