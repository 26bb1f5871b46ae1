"""Code identity: what a function *is*, as a digest that changes exactly when its behaviour can.

The normalised AST of its source (comments, docstrings and formatting ignored), the project
helpers it calls and the module-level values it reads, transitively, and the versions of the
packages it uses (`identity`, `codetree`); the environment a call ran in (`env`); and the same
judgement made from a script's text when the function cannot be imported (`script_check`).
Pure: it imports nothing of the store or the index, so it can be tested and reused alone.
"""
