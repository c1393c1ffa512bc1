"""Client APIs other than OpenAI's, translated to and from the OpenAI-format pipeline (sans-IO)."""
