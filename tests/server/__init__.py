"""Server layer tests: real sockets, hypercorn trio worker, h1/h2c/h2/h3."""
