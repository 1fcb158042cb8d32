"""The model stage: loading, hook-point sites and tokenisation conventions."""
