"""Choosing where a request goes: public model ids, aliases and provider-qualified names."""
