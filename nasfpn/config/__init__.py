"""Configuration: the flat YAML + --key=value format every entry point reads."""
