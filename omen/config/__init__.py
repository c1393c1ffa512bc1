"""Configuration: TOML file + environment overrides + secret references, validated into structs."""
