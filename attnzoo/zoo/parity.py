"""Which attnzoo model each parity golden (../shared/parity/<golden>.json) checks."""

GOLDEN_MODELS: dict[str, str] = {
    "halonet26t": "az_halonet26t",
    "convit_tiny": "az_convit_tiny",
    "biformer_tiny": "biformer_tiny",
    "biformer_small": "biformer_small",
    "infvit_pure_4l": "infvit_pure_4l",
    "infvit_linear_4l": "infvit_linear_4l",
}
