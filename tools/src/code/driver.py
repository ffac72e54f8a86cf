# Verity's in-sandbox driver. Runs inside CPython for WASI under wasmtime; everything it
# can touch is the sandbox. Two modes (env VERITY_MODE):
#   once     stdin is a per-call token line (random, from the host), then the user's code;
#            run it as __main__ and exit. The value's marker carries the token, so output
#            that merely contains a marker (echoed data, a prompt injection) is not taken
#            for the value. (Code that digs the token out of this frame can forge its value
#            — no more than ending in an expression of its choice would give it.)
#   session  cells arrive on stdin as <8-byte little-endian length><utf-8 source>; each
#            runs in one persistent namespace; after each, a marker line on stderr says
#            how it ended. Variables, imports and functions persist across cells.
# Like a notebook cell, a final expression's repr() is reported as the cell's value.
# `_ast` (built in) rather than `ast`: importing `ast` costs more than most cells.
import _ast, os, sys

MARK_VALUE = "\x00verity-value-%s\x00"
MARK_END = "\x00verity-end\x00"

def run_cell(src, ns):
    """Returns (status, value_repr, exit_code)."""
    try:
        tree = compile(src, "<code>", "exec", _ast.PyCF_ONLY_AST)
    except SyntaxError:
        import traceback
        traceback.print_exc(limit=0)
        return "error", None, None
    last = None
    if tree.body and isinstance(tree.body[-1], _ast.Expr):
        last = _ast.Expression(tree.body.pop().value)
    try:
        exec(compile(tree, "<code>", "exec"), ns)
        value = None
        if last is not None:
            v = eval(compile(last, "<code>", "eval"), ns)
            if v is not None:
                try:
                    value = repr(v)[:65536]
                except Exception as e:
                    value = "<unrepresentable %s: %s>" % (type(v).__name__, e)
        return "ok", value, None
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        if not isinstance(e.code, (int, type(None))):
            print(e.code, file=sys.stderr)
        return "exit", None, code
    except BaseException as e:
        import traceback
        # Hide this driver's frame: the traceback starts at the user's code.
        tb = e.__traceback__
        if tb is not None and tb.tb_frame.f_code.co_filename != "<code>":
            tb = tb.tb_next
        traceback.print_exception(type(e), e, tb)
        return "error", None, None

def main():
    try:
        os.chdir("/scratch")
    except OSError:
        pass
    ns = {"__name__": "__main__", "__builtins__": __builtins__}
    if os.environ.get("VERITY_MODE") != "session":
        token, _, src = sys.stdin.read().partition("\n")
        status, value, code = run_cell(src, ns)
        sys.stdout.flush()
        if value is not None:
            sys.stderr.write(MARK_VALUE % token + value + "\n")
        if status == "exit":
            return code
        return 0 if status == "ok" else 1
    import json
    inp = sys.stdin.buffer
    while True:
        header = inp.read(8)
        if len(header) < 8:
            return 0
        src = inp.read(int.from_bytes(header, "little")).decode("utf-8", "replace")
        status, value, code = run_cell(src, ns)
        sys.stdout.flush()
        sys.stderr.write(MARK_END + json.dumps({"status": status, "value": value, "exit_code": code}) + "\n")
        sys.stderr.flush()
        if status == "exit":
            return code

sys.exit(main())
