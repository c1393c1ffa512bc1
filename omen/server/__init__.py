"""HTTP server layer: hypercorn (trio worker) serving h1, h2c, h2 over TLS and h3, plus the multi-process
launcher.

``omen.server.serve`` builds the hypercorn config and runs it in-process, ``omen.server.launcher`` runs N
independent ``SO_REUSEPORT`` worker processes, and ``omen.server.hypercorn_patches`` holds every patch we
apply to hypercorn 0.18.0. Nothing heavy is imported here so ``import omen.server`` stays cheap.
"""
