"""Which attnzoo model each parity golden (../shared/parity/<golden>.json) checks."""

GOLDEN_MODELS: dict[str, str] = {
    "halonet26t": "az_halonet26t",
    "convit_tiny": "az_convit_tiny",
    "biformer_tiny": "biformer_tiny",
    "biformer_small": "biformer_small",
}
