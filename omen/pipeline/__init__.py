"""The request pipeline: decode -> authenticate -> route -> translate -> send -> translate back ->
account -> encode. Each step is a function with one job; a request passes through them once."""
