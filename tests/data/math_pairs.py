"""Writes tests/data/math_pairs.jsonl: (gold, reply, expected) pairs for the differential
test of Verity's math verifier against math-verify (tests/suite/math_verify.rs).

`expected` is the mathematically right verdict, decided by hand per family below, with
`why` saying what the pair checks. Replies are written as models write them (prose,
\\boxed{}, "The answer is …", inline math), so extraction is tested as well as
equivalence. Run: python3 tests/data/math_pairs.py > tests/data/math_pairs.jsonl
"""
import json
from fractions import Fraction

pairs = []


def add(gold, reply, expected, why):
    pairs.append({"gold": gold, "reply": reply, "expected": expected, "why": why})


# Integers and the ways replies state them.
for n in [0, 7, 42, -3, 128, 1000, 365]:
    add(str(n), f"\\boxed{{{n}}}", True, "boxed integer")
    add(str(n), f"The answer is {n}.", True, "'the answer is'")
    add(str(n), f"The answer is {n + 1}.", False, "off by one")
    add(str(n), f"First I had {n + 5} items, then some were used, so the final answer is ${n}$.", True, "final answer after other numbers")
# Fractions, decimals, LaTeX forms.
for num, den in [(1, 2), (3, 4), (2, 3), (5, 8), (7, 3)]:
    f = Fraction(num, den)
    add(f"\\frac{{{num}}}{{{den}}}", f"\\boxed{{{num}/{den}}}", True, "slash vs \\frac")
    add(f"{num}/{den}", f"\\boxed{{\\dfrac{{{num}}}{{{den}}}}}", True, "\\dfrac")
    if den in (2, 4, 8):
        add(f"\\frac{{{num}}}{{{den}}}", f"\\boxed{{{float(f)}}}", True, "terminating decimal")
    else:
        add(f"\\frac{{{num}}}{{{den}}}", f"\\boxed{{{float(f):.3f}}}", False, "3-digit rounding is a different number")
        add(f"\\frac{{{num}}}{{{den}}}", f"\\boxed{{{float(f):.7f}}}", True, "7-digit decimal (math-verify's rounding)")
    add(f"\\frac{{{num}}}{{{den}}}", f"\\boxed{{\\frac{{{num + 1}}}{{{den}}}}}", False, "different fraction")
    add(f"\\frac{{{num}}}{{{den}}}", f"\\boxed{{\\frac{{{2 * num}}}{{{2 * den}}}}}", True, "unreduced fraction")
add("\\frac{1}{2}", "\\boxed{\\frac12}", True, "\\frac12 shorthand")
add("0.5", "The answer is $\\frac{1}{2}$.", True, "decimal gold, fraction reply")
add("2", "\\boxed{2.0}", True, "2.0 is 2")
add("2.5", "\\boxed{\\frac{5}{2}}", True, "decimal gold")
# Roots, pi, expressions without variables.
add("\\sqrt{2}", "\\boxed{\\sqrt 2}", True, "\\sqrt 2")
add("\\frac{\\sqrt{2}}{2}", "\\boxed{\\frac{1}{\\sqrt{2}}}", True, "rationalised")
add("2\\sqrt{2}", "\\boxed{\\sqrt{8}}", True, "simplified root")
add("2\\sqrt{3}", "\\boxed{\\sqrt{8}}", False, "different root")
add("\\sqrt{2}", "\\boxed{1.414}", False, "3-decimal approximation")
add("2\\pi", "\\boxed{2\\pi}", True, "pi")
add("2\\pi", "\\boxed{6.283185307}", True, "pi numerically")
add("\\pi", "\\boxed{3.14}", False, "pi rounded to 2 places")
add("4\\pi", "\\boxed{\\pi \\cdot 4}", True, "product order")
add("\\sqrt[3]{8}", "\\boxed{2}", True, "cube root")
add("2^{10}", "\\boxed{1024}", True, "power")
add("10^{-2}", "\\boxed{0.01}", True, "negative power")
# Percent.
add("50\\%", "\\boxed{50\\%}", True, "percent both sides")
add("50", "\\boxed{50\\%}", True, "percent reply, plain gold")
add("0.5", "\\boxed{50\\%}", True, "50% is 0.5")
add("0.25", "The answer is 25%.", True, "25% is 0.25")
add("25", "\\boxed{30\\%}", False, "different percent")
# Currency and units.
add("5", "\\boxed{\\$5}", True, "\\$5")
add("5", "It costs $5.", True, "$5 in prose")
add("12.50", "The total is \\boxed{\\$12.50}", True, "dollars and cents")
add("12", "The answer is 12 apples.", True, "unit word after the number")
add("12", "The answer is 13 apples.", False, "wrong count with a unit")
add("5", "\\boxed{5\\text{ cm}}", True, "\\text unit")
add("90", "\\boxed{90^\\circ}", True, "degrees")
add("3", "\\boxed{3 \\text{ hours}}", True, "hours")
# Thousands separators.
add("1000", "\\boxed{1,000}", True, "comma separator")
add("1000", "\\boxed{1{,}000}", True, "LaTeX {,} separator")
add("1000000", "\\boxed{1\\,000\\,000}", True, "thin-space separator")
add("1234567.5", "The answer is 1,234,567.5", True, "separators with decimals")
add("1200", "\\boxed{1{,}300}", False, "different thousands")
# Equations: x = 3 vs 3.
add("3", "\\boxed{x = 3}", True, "x = 3 vs 3")
add("3", "\\boxed{x=4}", False, "x = 4 vs 3")
add("x=3", "\\boxed{3}", True, "gold equation, plain reply")
add("y = 2x + 1", "\\boxed{y = 1 + 2x}", True, "equation, terms reordered")
add("y = 2x + 1", "\\boxed{y = 2x - 1}", False, "different equation")
add("-2", "So $x = -2$.", True, "negative solution in inline math")
# Choice letters.
for letter in "ABCD":
    add(letter, f"\\boxed{{{letter}}}", True, "boxed letter")
    add(letter, f"The answer is ({letter}).", True, "(X)")
    add(letter, f"\\boxed{{\\text{{{letter}}}}}", True, "\\text{X}")
    other = "ABCD"[("ABCD".index(letter) + 1) % 4]
    add(letter, f"\\boxed{{{other}}}", False, "other letter")
add("C", "The answer is (C) 42.", True, "letter with its option text")
# Tuples, intervals, sets.
add("(1,2)", "\\boxed{(1, 2)}", True, "ordered pair")
add("(1,2)", "\\boxed{(2, 1)}", False, "ordered pair reversed is another point")
add("(1,2)", "\\boxed{[1, 2]}", False, "open vs closed interval")
add("[1,2]", "\\boxed{[1,2]}", True, "closed interval")
add("[1,2]", "\\boxed{x \\in [1,2]}", True, "x \\in interval")
add("[1,2)", "\\boxed{[1,2]}", False, "half-open vs closed")
add("(-\\infty, 3]", "\\boxed{(-\\infty,3]}", True, "interval to infinity")
add("(3, 4, 5)", "\\boxed{(3,4,5)}", True, "triple")
add("(3, 4, 5)", "\\boxed{(3,5,4)}", False, "triple reordered")
add("\\{1,2\\}", "\\boxed{\\{2,1\\}}", True, "set order")
add("\\{1,2\\}", "\\boxed{\\{1,3\\}}", False, "different set")
add("1, 2", "\\boxed{2, 1}", True, "list of solutions, any order")
add("1, 2", "\\boxed{1, 2, 3}", False, "extra solution")
add("\\left( \\frac{1}{2}, 3 \\right)", "\\boxed{(0.5, 3)}", True, "\\left( \\right) pair")
# Expressions in variables.
add("(x+1)^2", "\\boxed{x^2+2x+1}", True, "expanded square")
add("(x+1)^2", "\\boxed{x^2+x+1}", False, "wrong expansion")
add("x^2-1", "\\boxed{(x-1)(x+1)}", True, "difference of squares")
add("\\frac{x}{2}", "\\boxed{0.5x}", True, "x/2")
add("2x+3y", "\\boxed{3y+2x}", True, "commuted")
add("2x+3y", "\\boxed{3x+2y}", False, "swapped coefficients")
add("\\frac{1}{x+1}", "\\boxed{\\frac{1}{1+x}}", True, "rational function")
add("a^2b", "\\boxed{b a^2}", True, "monomial order")
add("\\sqrt{x^2}", "\\boxed{x}", False, "|x| is not x")
# Text answers.
add("Monday", "\\boxed{\\text{Monday}}", True, "word answer")
add("Monday", "The answer is Tuesday.", False, "different word")
# No answer / stray digits / truncation-like garbage.
add("7", "Up7ߢ", False, "digit inside a garbage word")
add("7", "abc7def", False, "digit inside a word")
add("3", "I don't know.", False, "no answer")
add("3", "", False, "empty reply")
add("42", "Let me compute 6 times 7 step by step. First, 6 times 7", False, "cut-off reasoning has no stated answer")
add("42", "6*7 = 42", True, "a reply that is just the computation")
add("12", "So we get 12 in the end", True, "last number standing alone")
add("5", "The values are 3 and 5, so the answer is 5", True, "answer after other numbers")
add("2", "x_2 is the variable", False, "subscript digit is not an answer")

# Programmatic variety: arithmetic results written several ways.
import random
rng = random.Random(20261201)
for _ in range(40):
    a, b = rng.randint(2, 99), rng.randint(2, 99)
    op = rng.choice("+-*")
    v = eval(f"{a}{op}{b}")
    style = rng.randrange(4)
    wrong = v + rng.choice([-2, -1, 1, 2, 10])
    reply = [
        f"{a} {op} {b} = {v}, so the answer is \\boxed{{{v}}}.",
        f"Computing {a}{op}{b} gives {v}.\nThe answer is {v}",
        f"We need {a} {op} {b}. That is ${v}$.",
        f"Final answer: {v}",
    ][style]
    add(str(v), reply, True, f"arithmetic, style {style}")
    add(str(v), reply.replace(str(v), str(wrong)) if style != 0 else f"\\boxed{{{wrong}}}", False, f"wrong arithmetic, style {style}")

for p in pairs:
    print(json.dumps(p, ensure_ascii=False))
