"""The reference for Verity's MCP calculator benchmark: an equivalent exact calculator
served with the official Python SDK's high-level server (`MCPServer`, formerly FastMCP).

Exact rational arithmetic with `fractions.Fraction` over a restricted AST (+ - * / ** ^ %
and parentheses), returning structured content like Verity's tool.

    python calc_server.py stdio
    python calc_server.py http PORT
"""

import ast
import operator
import sys
from fractions import Fraction

from pydantic import BaseModel

from mcp.server.mcpserver import MCPServer


class CalculatorOutput(BaseModel):
    expression: str
    value: str
    exact: str | None
    decimal: str | None
    is_exact: bool
    precision: int


OPS = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.Pow: operator.pow,
    ast.Mod: operator.mod,
}


def ev(node):
    if isinstance(node, ast.Expression):
        return ev(node.body)
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)):
        return Fraction(str(node.value))
    if isinstance(node, ast.BinOp) and type(node.op) in OPS:
        return OPS[type(node.op)](ev(node.left), ev(node.right))
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        return -ev(node.operand)
    raise ValueError(f"unsupported syntax: {ast.dump(node)[:40]}")


def decimal(v: Fraction, digits: int = 15) -> str:
    if v.denominator == 1:
        return str(v.numerator)
    return f"{float(v):.{digits}g}"


mcp = MCPServer("python-calculator")


@mcp.tool()
def calculator(expression: str) -> CalculatorOutput:
    """Evaluates a math expression exactly."""
    v = ev(ast.parse(expression.replace("^", "**"), mode="eval"))
    exact = str(v)
    return CalculatorOutput(expression=expression, value=exact, exact=exact,
                            decimal=decimal(v), is_exact=True, precision=15)


if __name__ == "__main__":
    if sys.argv[1:2] == ["http"]:
        mcp.run(transport="streamable-http", host="127.0.0.1", port=int(sys.argv[2]))
    else:
        mcp.run()
